"""Counting a block at a time (the compiled helper, engine/blockcount.py) gives what Unicorn's count
mode gives: the same counts at every slice end and inside every trap, the same registers, the same
traces. Each test runs both ways in one process (the pure way forced with VMEXIT_PURE=1); without a C
compiler both ways are count mode and the tests still pass."""
from __future__ import annotations

import shutil

import pytest
from keystone import KS_ARCH_X86, KS_MODE_32, Ks

from tests import test_reference
from vmexit.engine import blockcount, engine_class

CODE = 0x1000
MMIO = 0x10000000


@pytest.fixture
def pure(monkeypatch):
    """Count mode for what is built inside the test; the helper again afterwards."""
    monkeypatch.setenv("VMEXIT_PURE", "1")
    blockcount.helper.cache_clear()
    yield
    monkeypatch.undo()
    blockcount.helper.cache_clear()


def _both(run, monkeypatch):
    """run() with the helper (when it builds), then in count mode: both results."""
    monkeypatch.delenv("VMEXIT_PURE", raising=False)
    blockcount.helper.cache_clear()
    with_helper = run()
    monkeypatch.setenv("VMEXIT_PURE", "1")
    blockcount.helper.cache_clear()
    try:
        return with_helper, run()
    finally:
        monkeypatch.undo()
        blockcount.helper.cache_clear()


def _engine(source: str):
    e = engine_class("unicorn")(0x200000)
    code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(source, CODE)
    e.write(CODE, bytes(code))
    e.set_reg("eip", CODE)
    e.set_reg("esp", 0x8000)
    return e


def _slices(e, sizes) -> list[tuple]:
    """Run slices of the given sizes (cycled) until the guest halts: what each ended with."""
    out = []
    for i in range(100_000):
        end = e.run(sizes[i % len(sizes)])
        out.append((end.executed, end.exhausted, e.reg("eip"), e.reg("eax"), e.reg("ecx"), e.reg("eflags")))
        if not end.exhausted:
            return out
    raise AssertionError("the guest did not halt")


LOOP = """
    xor eax, eax
    xor ecx, ecx
next:
    add eax, ecx
    mov dword ptr [0x3000], eax
    inc ecx
    cmp ecx, 3000
    jb next
    hlt
"""


@pytest.mark.parametrize("sizes", [[1], [7, 13], [100, 3, 1], [1 << 40]])
def test_slices_end_at_the_same_instruction_both_ways(sizes, monkeypatch):
    blocks, counted = _both(lambda: _slices(_engine(LOOP), sizes), monkeypatch)
    assert blocks == counted
    assert sum(s[0] for s in counted) == 2 + 5 * 3000 + 1


def test_the_helper_counts_hot_blocks_a_block_at_a_time(monkeypatch):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: count mode only")
    monkeypatch.delenv("VMEXIT_PURE", raising=False)
    blockcount.helper.cache_clear()
    try:
        assert blockcount.helper() is not None
        e = _engine(LOOP)
        _slices(e, [1 << 40])
        assert e._blocks is not None and any(e._blocks.counter._index), "no block was block-counted"
    finally:
        blockcount.helper.cache_clear()


def test_an_mmio_access_in_a_block_counted_block_is_made_once_with_its_exact_count(monkeypatch):
    source = """
        xor ecx, ecx
    next:
        mov eax, dword ptr [0x10000000]
        add ebx, eax
        mov dword ptr [0x3000], ebx
        inc ecx
        cmp ecx, 500
        jb next
        hlt
    """

    def run():
        e = _engine(source)
        seen = []
        e.map_mmio(MMIO, 0x1000, lambda off, size: seen.append(("r", e.counter.executed(), e.reg("eip"))) or len(seen),
                   lambda off, size, value: None)
        return _slices(e, [37]), seen
    blocks, counted = _both(run, monkeypatch)
    assert blocks == counted
    assert len(counted[1]) == 500


def test_an_exception_inside_a_block_counted_block_counts_the_faulting_instruction(monkeypatch):
    source = """
        xor ecx, ecx
    next:
        inc ecx
        mov dword ptr [0x3000], ecx
        xor edx, edx
        mov eax, ecx
        div ebx
        add esi, eax
        cmp ecx, 400
        jb next
        hlt
    """

    def run():
        e = _engine(source)
        e.set_reg("ebx", 0)
        seen = []

        def on_interrupt(vector):
            seen.append((vector, e.counter.executed(), e.reg("eip")))
            e.set_reg("eip", e.reg("eip") + 2)  # past the div
            e.reset_exception_state()
        e.trap_interrupt(on_interrupt)
        return _slices(e, [1000]), seen
    blocks, counted = _both(run, monkeypatch)
    assert blocks == counted
    assert len(counted[1]) == 400 and counted[1][0][0] == 0


def test_without_a_compiler_the_engine_counts_in_count_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    blockcount.helper.cache_clear()
    try:
        assert blockcount.helper() is None
        e = _engine(LOOP)
        assert e._blocks is None
        assert sum(s[0] for s in _slices(e, [1000])) == 2 + 5 * 3000 + 1
    finally:
        blockcount.helper.cache_clear()


def test_no_compiled_helper_is_in_the_package():
    package = blockcount.SOURCE.parent.parent
    assert not [p for p in package.rglob("*") if p.suffix in (".so", ".o", ".dll", ".dylib")]


@pytest.mark.parametrize("name", sorted(test_reference.CASES))
def test_the_reference_runs_give_the_same_records_in_count_mode(name, pure):
    """tests/test_reference.py runs these with the helper (where it builds); here count mode."""
    test_reference.assert_same_as_reference(name, test_reference._run(name))


def test_a_block_counted_block_another_block_rewrites_is_counted_exactly(monkeypatch):
    # the store (in its own block) rewrites the immediate of the mov in the next, hot, block: QEMU
    # drops that block's translation, which then runs counted one by one until hot again
    source = """
        xor ecx, ecx
        xor ebx, ebx
    next:
        mov byte ptr [patch + 1], cl
        jmp body
    body:
        inc ecx
    patch:
        mov eax, 0x11111111
        add ebx, eax
        mov dword ptr [0x3000], ebx
        cmp ecx, 300
        jb next
        hlt
    """

    def run():
        e = _engine(source)
        return _slices(e, [1000, 7]), e.reg("ebx")
    blocks, counted = _both(run, monkeypatch)
    assert blocks == counted
    assert sum(s[0] for s in counted[0]) == 2 + 8 * 300 + 1


# pushfd images a loop stores after rep string instructions that follow flag-setting ones (computed by
# hand: cmp 0x12345, 0x3ff sets AF; add 0x3ff, 0x12345 sets PF and AF; sub 0x12345, 0x201 sets PF; a
# shift by cl = 0 keeps them); bit 1 is always set
REP_FLAGS = (0x12, 0x16, 0x06)
REP_LOOPS = 40


def _rep_program() -> str:
    return f"""
        mov ebp, {REP_LOOPS}
    outer:
        mov esi, 0x20000
        mov edi, 0x30000
        mov ecx, 37
        mov eax, 0x12345
        mov edx, 0x3ff
        cmp eax, edx
        rep movsb
        pushfd
        pop ebx
        mov [0x40000 + ebp*4], ebx
        add edx, eax
        mov ecx, 5
        rep stosb
        pushfd
        pop ebx
        mov [0x50000 + ebp*4], ebx
        sub eax, 0x201
        mov ecx, 7
        rep lodsb
        shl eax, cl
        pushfd
        pop ebx
        mov [0x60000 + ebp*4], ebx
        dec ebp
        jnz outer
        hlt
    """


@pytest.mark.parametrize("sizes", [[1], [2], [3, 5, 7], [13, 1, 4, 29]])
def test_slices_ending_inside_rep_string_instructions_keep_the_flags(sizes, monkeypatch):
    # a slice may end between two iterations of a rep instruction, in a block counted either way;
    # the lazily computed flags must read back the same after it as in one unbroken run
    def run():
        e = _engine(_rep_program())
        e.write(0x20000, bytes(range(64)))
        return _slices(e, sizes), bytes(e.ram[0x40000:0x70000])
    with_helper, counted = _both(run, monkeypatch)
    assert with_helper == counted
    images = counted[1]
    for base, flags in zip((0, 0x10000, 0x20000), REP_FLAGS):
        stored = [int.from_bytes(images[base + 4 * i:base + 4 * i + 4], "little") for i in range(1, REP_LOOPS + 1)]
        assert stored == [flags] * REP_LOOPS
    assert all(s[5] & 0x200 == 0 for s in counted[0])   # IF never appears: the guest never sets it


CALLS = """
        mov ecx, 40
    again:
        call func
        dec ecx
        jnz again
        hlt
    func:
        inc eax
        ret
"""


def test_every_block_is_shown_the_same_way_with_and_without_the_helper(monkeypatch):
    # the block after each call is first reached by a return (no edge: only the block hook sees it);
    # the helper looks block starts up in C and calls Python for the first run of each only. (Unicorn's
    # edge hook shows a block again where the helper's retranslations link it anew: the same blocks.)
    def run():
        e = engine_class("unicorn")(0x200000, watch_every_block=True)
        code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(CALLS, CODE)
        e.write(CODE, bytes(code))
        e.set_reg("eip", CODE)
        e.set_reg("esp", 0x8000)
        shown = []
        e.watch_code(lambda pc, size: shown.append((pc, size)) or False)
        return _slices(e, [1000, 3]), set(shown)
    with_helper, counted = _both(run, monkeypatch)
    assert with_helper == counted
    starts = {pc - CODE for pc, _ in counted[1]}
    # mov ecx (5 bytes) + call (5): the return lands at +10 (dec; jnz), func at +14 after the hlt
    assert starts == {0, 5, 10, 13, 14}
    assert sum(s[0] for s in counted[0]) == 1 + 40 * 5 + 1


def test_block_callbacks_run_in_the_order_set_and_gated_ones_only_when_open(monkeypatch):
    # three callbacks at func: a plain one, one gated on a flag set from the 10th call with CF among the
    # EFLAGS bits asked (never set there: inc leaves CF as cmp clears it), one gated on the flag alone
    source = CALLS.replace("call func", "cmp ecx, 0\n        call func")

    def run():
        e = _engine(source)
        code, labels = Ks(KS_ARCH_X86, KS_MODE_32).asm(source, CODE)
        func = CODE + len(code) - 2   # inc eax; ret
        flag = e.flag()
        fired = []

        def plain(pc, _size):
            fired.append(("plain", e.reg("ecx")))
            flag.value = e.reg("ecx") <= 31
        e.trap_block(func, plain)
        e.trap_block(func, lambda pc, _size: fired.append(("cf", e.reg("ecx"))), flag, 0x1)
        e.trap_block(func, lambda pc, _size: fired.append(("open", e.reg("ecx"))), flag, 0)
        e.forget_code(func)
        return _slices(e, [1000, 7]), fired
    with_helper, counted = _both(run, monkeypatch)
    assert with_helper == counted
    fired = counted[1]
    assert [f for f in fired if f[0] == "plain"] == [("plain", n) for n in range(40, 0, -1)]
    assert [f for f in fired if f[0] == "open"] == [("open", n) for n in range(31, 0, -1)]
    assert not [f for f in fired if f[0] == "cf"]
    assert fired.index(("plain", 31)) + 1 == fired.index(("open", 31))   # in the order set


def test_a_fault_after_a_flag_setting_instruction_keeps_the_flags_both_ways(monkeypatch):
    # cmp 0x12345, 0x3ff sets AF only (EFLAGS 0x12); the load after it in the same block faults once
    # ESI walks past the end of RAM, in the 33rd iteration (the faulting load counts, as in count
    # mode): by then the block is block-counted with the helper (no code hook) and counted one by one
    # in count mode (where Unicorn restored cc_op over the flags it had computed, and AF was lost)
    source = """
        mov esi, 0x20000
        mov ebp, 40
    again:
        mov eax, 0x12345
        mov ebx, 0x3ff
        cmp eax, ebx
        mov ecx, dword ptr [esi]
        add esi, 0x4000
        dec ebp
        jnz again
        hlt
    """

    def run():
        e = engine_class("unicorn")(0xA0000)
        code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(source, CODE)
        e.write(CODE, bytes(code))
        e.set_reg("eip", CODE)
        e.set_reg("esp", 0x8000)
        end = e.run(10_000)
        return end.executed, end.fault is not None, e.reg("esi"), e.reg("eflags")
    with_helper, counted = _both(run, monkeypatch)
    assert with_helper == counted == (2 + 32 * 7 + 4, True, 0xA0000, 0x12)
