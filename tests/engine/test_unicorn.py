"""The Unicorn engine behind the engine interface: slices, the exact counter, traps, and errors raised
inside a trap reaching the caller of run()."""
from __future__ import annotations

import pytest

from vmexit.engine import ENGINES, engine_class

CODE = 0x1000
# mov eax, 5; out 0x80, al; cpuid; nop; nop; hlt
PROGRAM = bytes.fromhex("b805000000" "e680" "0fa2" "90" "90" "f4")


def _engine():
    e = engine_class("unicorn")(0x200000)
    e.write(CODE, PROGRAM)
    e.set_reg("eip", CODE)
    return e


def test_unknown_engine_is_a_clear_error():
    assert "unicorn" in ENGINES
    with pytest.raises(ValueError, match="unknown CPU engine 'kvm-real'"):
        engine_class("kvm-real")


def test_a_slice_counts_exactly_and_stops_at_its_count():
    e = _engine()
    end = e.run(2)
    assert (end.executed, end.exhausted, end.fault) == (2, True, None)
    assert e.reg("eip") == CODE + 7 and e.reg("eax") == 5


def test_traps_get_the_events_own_arguments_and_the_exact_count():
    e = _engine()
    seen = []
    e.trap_port_out(lambda port, size, value: seen.append(("out", port, size, value, e.counter.executed())))
    e.trap_cpuid(lambda: seen.append(("cpuid", e.reg("eip"), e.counter.executed())))
    end = e.run(100)
    assert seen == [("out", 0x80, 1, 5, 2), ("cpuid", CODE + 7, 3)]
    assert (end.executed, end.exhausted) == (6, False)  # stopped by the hlt


def test_every_block_is_shown_before_it_runs_and_counts_stay_exact():
    # a look at the first block before any run (Unicorn then translates it) must not lose its count
    e = _engine()
    blocks = []
    e.watch_code(lambda pc, size: blocks.append((pc, size)) or False)
    end = e.run(100)
    assert (end.executed, end.exhausted) == (6, False)
    assert blocks[0][0] == CODE and sum(size for _, size in set(blocks)) >= len(PROGRAM)


def test_a_trap_set_when_a_block_is_shown_fires_on_its_first_run():
    e = _engine()
    fired = []

    def watch(pc, size):
        e.trap_block(pc, lambda address, _size: fired.append((address, e.counter.executed())))
        return True
    e.watch_code(watch)
    total = 0
    while True:
        end = e.run(100)
        total += end.executed
        if not end.exhausted:
            break
    assert total == 6
    assert fired and fired[0] == (CODE, 0)


def test_an_error_inside_a_trap_reaches_the_caller():
    e = _engine()

    def broken(port, size, value):
        raise RuntimeError("device bug")
    e.trap_port_out(broken)
    with pytest.raises(RuntimeError, match="device bug"):
        e.run(100)


def test_a_fetch_from_nowhere_is_a_fetch_fault():
    e = _engine()
    e.set_reg("eip", 0x10000000)
    end = e.run(10)
    assert end.fault is not None and end.fault.kind == "fetch"


def test_map_foreign_shares_another_engines_page():
    a, b = _engine(), engine_class("unicorn")(0x200000)
    b.write(0x5000, (0x11223344).to_bytes(4, "little"))
    # mov eax, [0x40000000]; mov dword ptr [0x40000004], 0x55667788; hlt
    a.write(CODE, bytes.fromhex("a100000040" "c70504000040" "88776655" "f4"))
    a.map_foreign(0x40000000, b.ram, 0x5000)
    a.run(10)
    assert a.reg("eax") == 0x11223344 and bytes(b.ram[0x5004:0x5008]) == bytes.fromhex("88776655")
    with pytest.raises(ValueError):
        a.map_foreign(0x40000000, b.ram, 0x6000)   # mapped already
    a.unmap_foreign(0x40000000)
    a.set_reg("eip", CODE)
    assert a.run(10).fault is not None              # the page is gone
    with pytest.raises(ValueError):
        a.unmap_foreign(0x40000000)
    b.write(0x5004, bytes(4))
    a.map_foreign(0x40000000, b.ram, 0x5000, readonly=True)
    a.set_reg("eip", CODE)
    end = a.run(10)
    assert end.fault is not None and bytes(b.ram[0x5004:0x5008]) == bytes(4)   # read-only: the store faults


@pytest.mark.parametrize("block_counting", [True, False])
def test_slices_under_paging_keep_cr2_and_the_exception_state(block_counting):
    # Identity-mapped first 4 MiB (PSE), 0xffffffff unmapped: ending a slice makes Unicorn look up
    # that address; the guest's CR2 stays, and a later page fault arrives as #PF (14), not #DF (8).
    import struct
    e = engine_class("unicorn")(0x400000, block_counting=block_counting)
    e.write(0x30000, struct.pack("<I", 0x83) + bytes(4092))
    e.write(CODE, b"\x90" * 16 + bytes.fromhex("a100008000"))   # nops; mov eax, [0x800000] (unmapped)
    e.set_reg("cr4", 0x10)
    e.set_reg("cr3", 0x30000)
    e.set_reg("cr0", 0x80000011)
    e.set_reg("cr2", 0x1234)
    e.set_reg("eip", CODE)
    vectors = []
    e.trap_interrupt(lambda v: (vectors.append(v), e.set_reg("eip", CODE + 21)))
    for _ in range(3):
        e.run(4)
        assert e.reg("cr2") == 0x1234
    e.run(8)
    assert vectors == [14] and e.reg("cr2") == 0x800000
