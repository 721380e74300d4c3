"""The benchmark's guests and helpers (speed itself is measured by tools/bench.py, never asserted)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.exits import ExitReason

from .conftest import count

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "guests" / "bench"


def _run(name, **constants):
    return session.run(guests.resolve(str(BENCH / f"{name}.S"), constants), load_profile(None), session.RunOptions())


def test_exit_heavy_two_attributed_exits_per_iteration():
    t = _run("exit_heavy", ITERATIONS=1000)
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    assert len(io) == 2 * 1000 + 1
    funcs = {v: k for k, v in t.symbols.items()}
    callers = set(io["caller"][:-1].tolist())
    assert {funcs[max(a for a in funcs if a <= c)] for c in callers} == {"device_poll"}


def test_hypercall_and_mmio_loops():
    assert count(_run("hypercall", ITERATIONS=500), ExitReason.VMCALL) == 500
    t = _run("mmio", ITERATIONS=500)
    assert count(t, ExitReason.APIC_ACCESS) == 1000


def test_exit_light_is_exit_light():
    t = _run("exit_light", ITERATIONS=100000)
    assert t.meta["status"] == "exited" and len(t.exits) < 20


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_analysis_case_runs(bench):
    row = bench.analysis_case(20000)
    assert row["exits"] == 20000 and row["trace_bytes_per_exit"] > 0


def test_memset_case_runs(bench):
    row = bench.memset(2)
    # one rep stosd over 2 MiB: Unicorn counts each of its 524,288 iterations as an instruction
    assert row["instructions"] > 2 * 262144 and row["memset_ratio"] > 0


IRQ_OFF = {"HZ": 10000, "SECTIONS": 3, "WAITERS": 9000}   # a section: 423k instructions, 1.5 ticks


def _irq_off_run(**constants):
    image = guests.resolve(str(BENCH / "irq_off.S"), constants)
    state = {}

    def capture(machine, devices):
        at = image.symbols["jiffies"]
        state["jiffies"] = int.from_bytes(machine.read_physical(at, 4), "little")

    trace = session.run(image, load_profile(None), session.RunOptions(), on_end=capture)
    return image, trace, state["jiffies"]


def _code_at(image, address: int) -> bytes:
    for seg in image.segments:
        if seg.address <= address < seg.address + len(seg.data):
            return seg.data[address - seg.address:]
    raise AssertionError(f"0x{address:x} is not in the image")


def test_irq_off_delivers_one_tick_per_section_through_its_window():
    image, t, jiffies = _irq_off_run(**IRQ_OFF)
    sections = IRQ_OFF["SECTIONS"]
    assert t.meta["status"] == "exited" and t.meta["guest_value"] == 0
    # each __wake_up() holds interrupts off for longer than a tick, so a tick is pending when it ends:
    # one tick per section, taken at the outer _raw_spin_unlock_irqrestore's popf (the nested ones
    # restore IF=0 and open nothing). No period of these constants ends in the ~500 cycles from that
    # popf to the next cli, which would add a tick (see irq_off.S).
    assert jiffies == sections
    windows = t.exits[t.exits["reason"] == ExitReason.INTERRUPT_WINDOW]
    assert len(windows) == sections
    sym = image.symbols
    for rip, caller in zip(windows["rip"].tolist(), windows["caller"].tolist()):
        assert sym["_raw_spin_unlock_irqrestore"] <= rip < sym["irq0_interrupt"]
        assert _code_at(image, rip)[:1] == b"\x9d"                           # popfd
        assert sym["__wake_up"] < caller < sym["__wake_up_common"]          # the outer unlock
    # every PIT period ends while the guest runs (no HLT): one EXTERNAL_INTERRUPT each; the PIC merges
    # those that come while one is still pending, so there are more of them than ticks taken
    externals = count(t, ExitReason.EXTERNAL_INTERRUPT)
    assert externals == t.meta["pit"]["interrupts"] > sections
    # auto-EOI: the handler makes no exit; the port exits are the PIC and PIT setup and the end
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    assert sorted(io["qualifier"].tolist()) == [0x20, 0x21, 0x21, 0x21, 0x21, 0x21, 0x40, 0x40, 0x43, 0xA1, 0xF4]
    assert len(t.exits) == len(io) + externals + sections
    _, again, _ = _irq_off_run(**IRQ_OFF)
    assert np.array_equal(again.exits, t.exits) and again.meta["instructions"] == t.meta["instructions"]


def test_irq_off_instruction_counts(bench):
    """bench.py's count of the loop bare Unicorn runs, and 23 instructions per tick taken."""
    image = guests.resolve(str(BENCH / "irq_off.S"), {"SECTIONS": 2, "WAITERS": 10})
    # the call returns through `pop ebx; pop ebp; ret` after wake_up_loop_end
    assert bench._bare_call(image, "wake_up_loop", count=True) == bench.irq_off_loop_instructions(2, 10) + 3
    two = _irq_off_run(**{**IRQ_OFF, "SECTIONS": 2})[1].meta["instructions"]
    three = _irq_off_run(**IRQ_OFF)[1].meta["instructions"]
    per_section = bench.irq_off_loop_instructions(3, 9000) - bench.irq_off_loop_instructions(2, 9000)
    assert three - two == per_section + 23


def test_irq_off_case_runs(bench):
    row = bench.irq_off(10000, 1, 9000)
    assert row["window_exits"] == 1 and row["irq_off_ratio"] > 0


def test_exit_light_gcc_case_runs_or_says_why_not(bench):
    row = bench.exit_light_gcc(20000)
    assert row.get("skipped") or row["exit_light_gcc_ratio"] > 0


def test_kernel_boot_case_runs_or_says_why_not(bench):
    row = bench.kernel_boot()
    assert row.get("skipped") or (row["kernel_boot_ratio"] > 0 and row["qemu_wall_s"] > 0)


def test_cases_without_gcc_or_qemu_say_why(bench, monkeypatch):
    which = bench.shutil.which
    monkeypatch.setattr(bench.shutil, "which", lambda name: None if name.startswith("qemu") else which(name))
    assert bench.kernel_boot() == {"case": "kernel-boot", "skipped": "qemu-system-i386 not found"}
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert bench.kernel_boot()["skipped"] == "gcc not found"
    assert bench.exit_light_gcc(1000)["skipped"].endswith("gcc not found")
    assert bench._field("skipped", "gcc not found") == "skipped: gcc not found"


def test_memory_case_runs(bench):
    row = bench.memory(2000)
    # 2 exits per iteration and the final isa-debug-exit write; the peaks are measured, never asserted
    assert row["exits"] == 2 * 2000 + 1 and row["rss_mib"] > 0 and row["baseline_rss_mib"] > 0


def test_sweep_jobs_case_runs(bench):
    row = bench.sweep_jobs(2, 200)   # checks the pooled traces equal the serial ones; speed is not asserted
    assert row["runs"] == 2 and row["sweep_jobs2_ratio"] > 0
