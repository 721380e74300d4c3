"""The benchmark's guests and helpers (speed itself is measured by tools/bench.py, never asserted)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

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


def test_memory_case_runs(bench):
    row = bench.memory(2000)
    # 2 exits per iteration and the final isa-debug-exit write; the peaks are measured, never asserted
    assert row["exits"] == 2 * 2000 + 1 and row["rss_mib"] > 0 and row["baseline_rss_mib"] > 0
