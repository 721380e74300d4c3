"""Reports on a synthetic trace whose every number is known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit import analysis
from vmexit.costs import load_profile
from vmexit.exits import EXIT_DTYPE, Direction, ExitReason, Place
from vmexit.trace import Trace

SYMBOLS = {"f": 0x1000, "g": 0x1100, "h": 0x1200}


def synthetic() -> Trace:
    spec = (
        # count, rip, reason, place, direction, qualifier, cost, callers
        (5, 0x1010, ExitReason.IO_INSTRUCTION, Place.USER, Direction.IN, 0x1F7, 100, [0x1150] * 5),
        (3, 0x1020, ExitReason.IO_INSTRUCTION, Place.USER, Direction.OUT, 0x1F0, 200, [0x1250, 0x1250, 0x1150]),
        (2, 0x1110, ExitReason.VMCALL, Place.KERNEL, Direction.NONE, 1, 50, [0, 0]),
        (1, 0x1210, ExitReason.APIC_ACCESS, Place.KERNEL, Direction.OUT, 0xFEE000B0, 1000, [0]),
        (1, 0x1210, ExitReason.EPT_VIOLATION, Place.USER, Direction.IN, 0xFED00000, 10, [0]),
    )
    rows = []
    for _n, rip, reason, place, direction, qual, cost, callers in spec:
        for c in callers:
            rows.append((len(rows), len(rows) * 10, len(rows) * 100, rip, reason, place, direction, qual, 1, 0, cost, c))
    exits = np.array(rows, dtype=EXIT_DTYPE)
    meta = {"freq_hz": 1000, "guest": "synthetic", "instructions": 120, "virtual_seconds": 10.0, "cycles": 10000,
            "idle_cycles": 0, "cpi": [1, 1], "status": "exited", "detail": "guest wrote 0 to port 0xf4",
            "profile": "test"}
    return Trace(exits, meta, dict(SYMBOLS))


def test_by_function_with_callers():
    rep = analysis.report(synthetic(), "function", callers=True)
    rows = [(r["function"], r["address"], r["count"], round(r["time_s"], 6), round(r["time_pct"], 6), r["caller"],
             r["caller_address"]) for r in rep.rows]
    assert rows == [
        ("f", "0x00001010", 8, 1.1, 11.0, "g", "0x00001150"),
        ("g", "0x00001110", 2, 0.1, 1.0, "-", "-"),
        ("h", "0x00001210", 2, 1.01, 10.1, "-", "-"),
    ]
    assert rep.totals["exits"] == 12 and rep.totals["time_s"] == pytest.approx(2.21)


def test_by_address_and_caller():
    rep = analysis.report(synthetic(), "address")
    assert [(r["address"], r["count"], r["function"]) for r in rep.rows] == [
        ("0x00001010", 5, "f"), ("0x00001020", 3, "f"), ("0x00001110", 2, "g"), ("0x00001210", 2, "h")]
    rep = analysis.report(synthetic(), "caller")
    assert [(r["caller"], r["count"]) for r in rep.rows] == [("g", 6), ("[unknown]", 4), ("h", 2)]


def test_top_limits_rows():
    assert len(analysis.report(synthetic(), "address", top=2).rows) == 2
    assert len(analysis.report(synthetic(), "address", top=None).rows) == 4


def test_by_reason_perf_columns():
    rep = analysis.report(synthetic(), "reason")
    got = {r["reason"]: (r["count"], round(r["count_pct"], 4), round(r["time_pct"], 4), r["min_us"], r["max_us"])
           for r in rep.rows}
    assert got == {
        "IO_INSTRUCTION": (8, 66.6667, round(100 * 1100 / 2210, 4), 100000.0, 200000.0),
        "VMCALL": (2, 16.6667, round(100 * 100 / 2210, 4), 50000.0, 50000.0),
        "APIC_ACCESS": (1, 8.3333, round(100 * 1000 / 2210, 4), 1000000.0, 1000000.0),
        "EPT_VIOLATION": (1, 8.3333, round(100 * 10 / 2210, 4), 10000.0, 10000.0),
    }
    io = rep.rows[0]
    assert io["avg_us"] == pytest.approx(1100 / 8 * 1000)
    assert rep.footer == "Total Samples:12, Total events handled time:2210000.00us."


def test_by_port_and_mmio():
    rep = analysis.report(synthetic(), "port")
    assert [(r["key"], r["port"], r["direction"], r["count"]) for r in rep.rows] == [
        ("0x1f7:PIN", "0x1f7", "in", 5), ("0x1f0:POUT", "0x1f0", "out", 3)]
    rep = analysis.report(synthetic(), "mmio")
    assert [(r["key"], r["direction"], r["count"]) for r in rep.rows] == [
        ("0xfed00000:R", "read", 1), ("0xfee000b0:W", "write", 1)]


def test_reprice_under_another_profile():
    t = synthetic()
    prof = load_profile("kvm-skylake")
    rep = analysis.report(t, "reason", profile=prof)
    io_cost = prof.cost(ExitReason.IO_INSTRUCTION, Place.USER, Direction.IN)
    assert rep.rows[0]["min_us"] == pytest.approx(io_cost * 1e6 / prof.freq_hz)
    assert rep.totals["profile"] == "kvm-skylake"
    expected_run = (120 + float(prof.price(t.exits).sum())) / prof.freq_hz
    assert rep.totals["virtual_seconds"] == pytest.approx(expected_run)


def test_empty_trace():
    t = synthetic()
    t.exits = t.exits[:0]
    for by in analysis.BY_CHOICES:
        rep = analysis.report(t, by)
        assert rep.rows == [] and rep.totals["exits"] == 0


def _after() -> Trace:
    """The synthetic run after a change: the 0x1020 site coalesced away, one more VMCALL."""
    t = synthetic()
    keep = t.exits["rip"] != 0x1020
    exits = t.exits[keep].copy()
    extra = exits[exits["reason"] == ExitReason.VMCALL][:1].copy()
    exits = np.concatenate([exits, extra])
    exits["seq"] = np.arange(len(exits))
    meta = dict(t.meta, instructions=100)
    return Trace(exits, meta, dict(t.symbols))


def test_compare_same_image_by_address():
    before, after = synthetic(), _after()
    before.meta["guest_sha256"] = after.meta["guest_sha256"] = "same"
    rep = analysis.compare(before, after, "address")
    rows = {r["key"]: (r["before"], r["after"], r["delta"], r["ratio"]) for r in rep.rows}
    assert rows == {
        "0x00001010 f": (5, 5, 0, 1.0),
        "0x00001020 f": (3, 0, -3, 0.0),
        "0x00001110 g": (2, 3, 1, 1.5),
        "0x00001210 h": (2, 2, 0, 1.0),
    }
    assert rep.totals["matched_by"] == "address"
    assert rep.totals["before"]["exits"] == 12 and rep.totals["after"]["exits"] == 10
    assert rep.totals["after"]["instructions"] == 100


def test_compare_different_images_match_by_function():
    before, after = synthetic(), _after()
    before.meta["guest_sha256"], after.meta["guest_sha256"] = "a", "b"
    # the after image is laid out differently: every symbol moved by 0x100
    after.symbols = {k: v + 0x100 for k, v in after.symbols.items()}
    after.exits["rip"] += 0x100
    rep = analysis.compare(before, after, "address")
    assert rep.totals["matched_by"] == "function name"
    assert {r["key"]: (r["before"], r["after"]) for r in rep.rows} == {"f": (8, 5), "g": (2, 3), "h": (2, 2)}


def test_compare_by_reason_and_port():
    rep = analysis.compare(synthetic(), _after(), "reason")
    assert {r["key"]: r["delta"] for r in rep.rows} == {"IO_INSTRUCTION": -3, "VMCALL": 1, "APIC_ACCESS": 0,
                                                        "EPT_VIOLATION": 0}
    rep = analysis.compare(synthetic(), _after(), "port")
    assert [(r["key"], r["before"], r["after"], r["ratio"]) for r in rep.rows] == [
        ("0x1f7:PIN", 5, 5, 1.0), ("0x1f0:POUT", 3, 0, 0.0)]
    with pytest.raises(ValueError):
        analysis.compare(synthetic(), _after(), "mmio")


def test_one_exit_time():
    """Report totals, comparisons and sweeps all take a trace's modeled exit time from exit_seconds."""
    t = synthetic()
    assert analysis.exit_seconds(t) == pytest.approx(2.21)
    assert analysis.report(t, "reason").totals["time_s"] == analysis.exit_seconds(t)
    assert analysis.compare(t, _after()).totals["before"]["time_s"] == analysis.exit_seconds(t)
    assert analysis.sweep([({"X": 1}, t)]).rows[0]["time_s"] == analysis.exit_seconds(t)
    prof = load_profile("kvm-skylake")
    assert analysis.report(t, "function", profile=prof).totals["time_s"] == analysis.exit_seconds(t, prof)
