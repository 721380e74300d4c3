"""Dynamic I/O coalescing (--opt coalesce): what merges, and that it is exact."""
from __future__ import annotations

import hashlib

import pytest

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.exits import ExitReason
from vmexit.optimizations.coalesce_dynamic import LookAhead

from ..conftest import run_inline

EXIT = "    out 0xf4, al\n"
REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip", "eflags")


def run(name: str, opts: dict, **options):
    state = {}

    def capture(machine, devices):
        state["regs"] = [machine.engine.reg(r) for r in REGS]
        state["ram"] = hashlib.sha256(machine.ram[:machine.ram_size]).hexdigest()
        ide, nic = devices["ide"], devices["nic"]
        state["disk"] = sorted(devices["disk"].overlay.items())
        state["ide"] = (ide.regs, ide.device, ide.devctl, ide.status, ide.error, ide.commands,
                        ide.sectors_read, ide.sectors_written)
        state["nic"] = (nic.rx_frames, nic.rx_bytes, nic.tx_frames, nic.tx_bytes)
        state["console"] = bytes(devices["uart"].output)

    t = session.run(guests.resolve(name), load_profile(None),
                    session.RunOptions(optimizations=opts, **options), on_end=capture)
    return t, state


def test_the_eleven_outb_of_ide_do_rw_disk_take_one_exit():
    t = run("ide", {"coalesce": 64})[0]
    requests = 2 * 16
    sym = t.symbols
    e = t.exits
    rw = (e["rip"] >= sym["__ide_do_rw_disk"]) & (e["rip"] < sym["ide_execute_command"])
    assert int(rw.sum()) == requests
    em = t.emulated
    in_rw = (em["rip"] >= sym["__ide_do_rw_disk"]) & (em["rip"] < sym["ide_execute_command"])
    assert int(in_rw.sum()) == 10 * requests
    # the ten merged ones are the ten outs after the first, at their own addresses
    assert len(set(em[in_rw]["rip"].tolist())) == 10
    assert (em[in_rw]["port"].reshape(requests, 10) == [0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F1, 0x1F2, 0x1F3, 0x1F4,
                                                          0x1F5, 0x1F6]).all()
    assert t.meta["optimizations"]["coalesce"]["accesses_merged"] == len(em)


def test_a_window_too_short_merges_less():
    # __ide_do_rw_disk's first out is followed by: mov dx; out -- a window of 2 covers one more
    t = run("ide", {"coalesce": 2})[0]
    sym = t.symbols
    em = t.emulated
    in_rw = (em["rip"] >= sym["__ide_do_rw_disk"]) & (em["rip"] < sym["ide_execute_command"])
    e = t.exits
    rw = (e["rip"] >= sym["__ide_do_rw_disk"]) & (e["rip"] < sym["ide_execute_command"])
    assert int(rw.sum()) + int(in_rw.sum()) == 11 * 32
    assert int(rw.sum()) > 32


@pytest.mark.parametrize("name", ["ide", "bonnie"])
def test_exact_on_guests_that_do_not_depend_on_time(name):
    base_trace, base = run(name, {})
    opt_trace, opt = run(name, {"coalesce": 64})
    assert opt == base
    assert opt_trace.meta["instructions"] == base_trace.meta["instructions"]
    # every access is still there, as an exit or inside one
    io = base_trace.exits["reason"] == ExitReason.IO_INSTRUCTION
    io_opt = opt_trace.exits["reason"] == ExitReason.IO_INSTRUCTION
    assert int(io.sum()) == int(io_opt.sum()) + len(opt_trace.emulated)


@pytest.mark.parametrize("name, work", [("timer", "timer_interrupts"), ("specjbb", None), ("netperf", "tx")])
def test_same_work_on_timer_driven_guests(name, work):
    base_trace, base = run(name, {})
    opt_trace, opt = run(name, {"coalesce": 64})
    assert opt["console"] == base["console"]
    assert opt_trace.meta["status"] == base_trace.meta["status"] == "exited"
    if work == "tx":
        assert opt["nic"][2:] == base["nic"][2:]
    assert len(opt_trace.exits) <= len(base_trace.exits)


def test_what_the_look_ahead_passes_over():
    # out; mov dx, imm; mov eax, ebx; shr eax, 8; out -> merged. A memory write, a push, a branch,
    # a rep string op or sti ends the run.
    t = run_inline("""
    mov dx, 0x80
    out dx, al
    mov dx, 0x81
    mov eax, ebx
    shr eax, 8
    out dx, al
    mov [0x20000], eax
    out dx, al
    push eax
    out dx, al
    pop eax
    jmp .Lnext
.Lnext:
    out dx, al
    in al, dx
    sti
    out dx, al
""" + EXIT, optimizations={"coalesce": 64})
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    # exits: first out (merges the next), the out after the store, after push, after jmp (merges the
    # in), after sti, and the final debug-exit out -- which follows sti's out directly, so merges
    assert len(io) == 5 and len(t.emulated) == 3
    assert t.emulated["port"].tolist() == [0x81, 0x81, 0xF4]


def test_plans_count_instructions_from_the_exiting_one():
    la = LookAhead(lambda a, n: bytes.fromhex("e680" "e681" "e682"), 8)
    assert la.plan(0x1000) == {0x1002: 1, 0x1004: 2}
    la2 = LookAhead(lambda a, n: bytes.fromhex("90e680"), 8)
    assert la2.plan(0x1000) == {}  # the exiting instruction must itself be port I/O


def test_a_guest_with_nothing_to_merge_gets_a_note():
    t = run_inline("""
    mov dx, 0x80
    out dx, al
    mov [0x20000], eax
    out dx, al
    mov [0x20000], eax
""" + EXIT, optimizations={"coalesce": 64})
    assert len(t.emulated) == 0
    assert t.meta["optimizations"]["coalesce"]["note"].startswith("no-op")
