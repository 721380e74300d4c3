"""Exits where the function has not set up its frame (vmexit/frames.py): by construction, a frameless
leaf called from two framed functions names each as its caller, with the full stack; without symbols,
or where the frame is set up, the plain frame-pointer walk is unchanged."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vmexit import analysis, guests, session
from vmexit.asm import assemble
from vmexit.costs import load_profile
from vmexit.exits import ExitReason
from vmexit.frames import ENTRY, FRAMED, OTHER, FrameAnalysis
from vmexit.symbols import SymbolTable

from .conftest import inline_image
from .test_stacks import PAGING

N = 7
#: f and g keep frames; leaf_out never has one; leaf_in is shrink-wrapped like Linux 6.1's ioread16 (a
#: frame only on its slow path) and pushes ebx before its `in`; late exits after its `pop ebp`.
SOURCE = """
    xor ebp, ebp
    call main
    out 0xf4, al
main:
    push ebp
    mov ebp, esp
    mov ecx, {n}
.Lmain_loop:
    call f
    call g
    dec ecx
    jnz .Lmain_loop
    pop ebp
    ret
f:
    push ebp
    mov ebp, esp
    sub esp, 8
    call leaf_out
    call leaf_in
    leave
    ret
g:
    push ebp
    mov ebp, esp
    push ebx
    push ecx
    call leaf_in
    call leaf_out
    call late
    call g_tail
    pop ecx
    pop ebx
    pop ebp
    ret
g_tail:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, 7
    push ebx
    jmp g_tail_end
g_tail_end:                             # a label inside g_tail, reached by a jump, not a call
    mov dx, 0x83
    out dx, al
    add esp, 4
    pop ebx
    pop ebp
    ret
leaf_out:
    mov dx, 0x80
    out dx, al
    ret
leaf_in:
    cmp eax, 0x12345678
    je .Lleaf_in_slow
    push ebx
    mov dx, 0x81
    in al, dx
    pop ebx
    ret
.Lleaf_in_slow:
    push ebp
    mov ebp, esp
    call leaf_out
    pop ebp
    ret
late:
    push ebp
    mov ebp, esp
    nop
    pop ebp
    mov dx, 0x82
    out dx, al
    ret
"""

#: every exit's stack, named (the exit's own function last), and how often: by construction
EXPECTED = {
    "_start;main;f;leaf_out": N, "_start;main;f;leaf_in": N,
    "_start;main;g;leaf_in": N, "_start;main;g;leaf_out": N, "_start;main;g;late": N,
    "_start;main;g;g_tail_end": N,      # a framed function: the plain walk, g_tail's frame names g
    "_start": 1,
}


def run(symbols: bool = True, prefix: str = ""):
    image = inline_image(prefix + SOURCE.format(n=N))
    if not symbols:
        image.symbols = {}
    return session.run(image, load_profile(None), session.RunOptions())


def stacks_of(t) -> dict[str, int]:
    return {r["stack"]: r["count"] for r in analysis.report(t, "stack", top=None).rows}


@pytest.fixture(scope="module")
def traced():
    return run()


def test_a_frameless_leaf_names_each_framed_caller_and_the_whole_stack(traced):
    t = traced
    assert t.meta["status"] == "exited"
    assert stacks_of(t) == EXPECTED
    io = (t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] < 0xf4)
    first = np.array([t.stacks.get(int(s))[0] if s else 0 for s in t.exits["stack"]])
    assert np.array_equal(first[io], t.exits["caller"][io])   # the record's caller is the stack's first
    table = SymbolTable(t.symbols)
    got: dict[tuple[str, str], int] = {}
    for rip, caller in zip(t.exits["rip"][io], t.exits["caller"][io]):
        key = (table.name(int(rip)), table.name(int(caller) - 1))
        got[key] = got.get(key, 0) + 1
    assert got == {("leaf_out", "f"): N, ("leaf_out", "g"): N, ("leaf_in", "f"): N, ("leaf_in", "g"): N,
                   ("late", "g"): N, ("g_tail_end", "g"): N}


def test_without_symbols_the_plain_walk_is_unchanged(traced):
    # the same code: each frameless exit's stack lacks the level its return address gives, the rest is equal
    plain = run(symbols=False)
    assert plain.exits.tobytes() != traced.exits.tobytes()
    io = (traced.exits["reason"] == ExitReason.IO_INSTRUCTION) & (traced.exits["qualifier"] < 0xf4)
    for with_, without in zip(traced.exits[io], plain.exits[io]):
        full, bare = traced.stacks.get(int(with_["stack"])), plain.stacks.get(int(without["stack"]))
        if with_["qualifier"] == 0x83:
            assert full == bare
        else:
            assert full[1:] == bare and without["caller"] == full[1]
    same = [f for f in traced.exits.dtype.names if f not in ("caller", "stack")]
    assert all(np.array_equal(traced.exits[f], plain.exits[f]) for f in same)


def test_the_return_address_is_read_through_the_guests_page_tables():
    t = run(prefix=PAGING)
    assert t.meta["status"] == "exited"
    assert stacks_of(t) == EXPECTED


def test_every_xen_hypercall_names_the_function_that_called_its_stub(vmexit_run):
    # pvmm.S: `call HYPERCALL_x` calls the 32-byte stub `mov eax, x; int 0x82; ret` in the hypercall page;
    # only the page's start is a symbol, the other stubs are found from the call before the return address
    t = vmexit_run("fork", hypervisor="xen-pv")
    page = t.symbols["hypercall_page"]
    calls = t.exits[(t.exits["reason"] == ExitReason.VMCALL) & (t.exits["rip"] >= page)]
    assert len(calls) > 0 and len(set(calls["qualifier"].tolist())) >= 5
    segment = guests.resolve("fork").segments[0]   # the guest's code as loaded
    base, data = segment.address, segment.data
    for rip, nr, caller in zip(calls["rip"], calls["qualifier"], calls["caller"]):
        assert int(rip) == page + 32 * int(nr) + 5                      # at the stub's int 0x82
        at = int(caller) - 5 - base
        assert data[at] == 0xE8                                          # the caller's `call rel32` ...
        target = (int(caller) + int.from_bytes(data[at + 1:at + 5], "little", signed=True)) & 0xFFFFFFFF
        assert target == page + 32 * int(nr)                             # ... to this very stub


# the static analysis alone -------------------------------------------------------------------------------
SHRINK_WRAPPED = """
ioread16:
    cmp eax, 0x3ffff
    jbe .Lport
    mov ax, word ptr [eax]
    jmp .Ldone
.Lport:
    cmp eax, 0x10000
    jbe .Lbad
    mov edx, eax
    in ax, dx
.Ldone:
    movzx eax, ax
    ret
.Lbad:
    push ebp
    mov edx, 0x1234
    mov ebp, esp
    call ioread16
    mov eax, 0xffff
    pop ebp
    ret
saves:
    push ebp
    mov ebp, esp
    push edi
    push esi
    push ebx
    sub esp, 20
    call ioread16
    lea esp, [ebp - 12]
    pop ebx
    pop esi
    pop edi
    pop ebp
    ret
joins:
    test eax, eax
    je .Lj
    push ebx
.Lj:
    in al, dx
    ret
gpr:
    push ebp
    mov ebp, eax                        # EBP as a general register (code built without frame pointers)
    add esp, -8
    in al, dx
    add esp, 8
    pop ebp
    out dx, al
    ret
"""


def _analysis():
    code, labels = assemble(SHRINK_WRAPPED, base=0x1000)
    starts = [labels[n] for n in ("ioread16", "saves", "joins", "gpr")]
    return FrameAnalysis(starts, lambda a, n: code[a - 0x1000:a - 0x1000 + n]), code, labels


def _at(code: bytes, labels: dict, function: str, text: bytes) -> int:
    """The address of the first instruction with these bytes inside a function."""
    return labels[function] + code[labels[function] - 0x1000:].index(text)


def test_the_analysis_finds_where_the_frame_is_set_up():
    fa, code, labels = _analysis()
    at = lambda fn, b: _at(code, labels, fn, b)   # noqa: E731
    assert fa.slot(at("ioread16", b"\x66\xed")) == 0          # in ax, dx: before any frame
    assert fa.slot(at("ioread16", b"\xc3")) == 0              # its ret
    assert fa.slot(at("ioread16", b"\x55")) == 0              # push ebp
    assert fa.slot(at("ioread16", b"\x89\xe5")) == 4          # mov ebp, esp: ebp pushed, frame not yet set
    assert fa.slot(at("ioread16", b"\x89\xe5") + 2) is None   # the call after it: frame set up
    assert fa.slot(at("ioread16", b"\xb8\xff\xff")) is None   # after the call: frame set up
    pop = at("ioread16", b"\xb8\xff\xff") + 5
    assert fa.slot(pop) is None and fa.slot(pop + 1) == 0     # pop ebp, then its ret
    assert fa.slot(at("joins", b"\xec")) is None              # two depths meet: unknown
    assert fa.slot(at("joins", b"\x85\xc0")) == 0
    f = fa.function(labels["saves"])
    ret = at("saves", b"\x8d\x65\xf4")                        # lea esp, [ebp - 12], after the call
    assert ret in f.returns and f.states[ret] == (36, FRAMED, -1) and fa.frame_depth(ret) == 36
    assert f.states[ret + 3] == (16, FRAMED, -1)              # lea esp, [ebp - 12]: 4 + 12
    assert f.states[ret + 6] == (4, FRAMED, -1) and f.states[ret + 7] == (0, ENTRY, -1)
    g = fa.function(labels["gpr"])
    assert g.states[at("gpr", b"\xec")] == (12, OTHER, 4) and fa.slot(at("gpr", b"\xec")) is None
    assert fa.slot(at("gpr", b"\xee")) == 0                   # `pop ebp` took the caller's EBP back
    inner = at("ioread16", b"\xb8\xff\xff")
    assert fa.frame_depth(inner) == 4 and fa.frame_depth(at("ioread16", b"\x66\xed")) is None


# a real Linux kernel (tools/linux/build.sh; skipped when not built) --------------------------------------
def test_linux_ioread16_names_the_rtl8139_functions_that_call_it():
    """6.1's ioread16 reads the port before any frame (objdump of vmlinux: `in ax, dx; movzx; ret` on its
    port path): its callers are 8139too's functions, never the IRQ core that calls rtl8139_interrupt."""
    from vmexit import bzimage
    d = Path(os.environ.get("VMEXIT_LINUX_DIR") or Path.home() / ".cache/vmexit/linux")
    if not (d / "READY").exists():
        pytest.skip("Linux kernel not built: run tools/linux/build.sh")
    image = bzimage.load_file(d / "bzImage", "console=ttyS0 acpi=off quiet vmexit.workload=net vmexit.count=16",
                              d / "initramfs.cpio", d / "System.map")
    t = session.run(image, load_profile(None), session.RunOptions(net_peer="tcp",
                                                                  until_console="workload net done"))
    assert t.meta["status"] == "console", t.meta["detail"]
    table = SymbolTable(t.symbols)
    e = t.exits[table.names_of(t.exits["rip"]) == "ioread16"]
    callers = table.names_of(e["caller"].astype(np.uint64) - 1)
    # every caller is a return address right after a call in the kernel's code (vmlinux): `call ioread16`,
    # or an indirect call (8139too's mdio_read, called through mii->mdio_read, tail-jumps to ioread16)
    text = _text(d / "vmlinux")
    calls = {_call_before(text, int(c)) for c in e["caller"]}
    assert calls <= {t.symbols["ioread16"], "indirect"} and t.symbols["ioread16"] in calls
    assert "__handle_irq_event_percpu" not in set(callers)
    irq = e[callers == "rtl8139_interrupt"]
    assert len(irq) > 0
    for stack in {int(s) for s in irq["stack"]}:
        frames = t.stacks.get(stack)
        assert table.name(frames[1] - 1) == "__handle_irq_event_percpu"   # the level the frame pointer shows


def _text(vmlinux: Path):
    """A reader of the kernel's bytes at a virtual address, from the ELF's loadable segments."""
    from elftools.elf.elffile import ELFFile
    with vmlinux.open("rb") as f:
        elf = ELFFile(f)
        segments = [(s["p_vaddr"], s.data()) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]

    def read(address: int, size: int) -> bytes:
        for start, data in segments:
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        raise AssertionError(f"0x{address:x} is in no segment of vmlinux")
    return read


def _call_before(text, ret: int):
    """The target of the call instruction that ends at ret ("indirect" for one through a register or
    memory), or None."""
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    if text(ret - 5, 1) == b"\xe8":
        return (ret + int.from_bytes(text(ret - 4, 4), "little", signed=True)) & 0xFFFFFFFF
    md = Cs(CS_ARCH_X86, CS_MODE_32)
    for size in range(2, 8):
        insns = list(md.disasm(text(ret - size, size), ret - size))
        if len(insns) == 1 and insns[0].mnemonic == "call" and insns[0].size == size:
            return "indirect"
    return None


USER_BELOW = """
    mov ebp, fake_frame     # code below every symbol, with an EBP that looks like a frame
    out 0x80, al
    xor ebp, ebp
    call kern
    out 0xf4, al
.align 4
fake_frame:
    .long 0
    .long kern_mid          # a "return address" inside kern
kern:
    push ebp
    mov ebp, esp
kern_mid:
    out 0x81, al
    pop ebp
    ret
"""


def test_code_below_every_symbol_gets_no_caller():
    # a Linux guest's user space under the kernel's System.map: its EBP is not a frame pointer, and a
    # walk from it would name kern as the caller of the out at 0x80
    image = inline_image(USER_BELOW)
    image.symbols = {"kern": image.symbols["kern"]}
    t = session.run(image, load_profile(None), session.RunOptions())
    e = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    user, kern = e[e["qualifier"] == 0x80], e[e["qualifier"] == 0x81]
    assert len(user) == 1 and user["caller"][0] == 0 and user["stack"][0] == 0
    # kern's own exit keeps its walk: it returns to the call below it
    assert len(kern) == 1 and kern["caller"][0] != 0 and kern["caller"][0] < image.symbols["kern"]
