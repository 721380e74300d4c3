"""Reports on a synthetic trace whose every number is known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit import analysis, views
from vmexit.costs import load_profile
from vmexit.exits import EMULATED_DTYPE, EXIT_DTYPE, Direction, ExitReason, Place
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
            rows.append((len(rows), len(rows) * 10, len(rows) * 100, rip, reason, place, direction, qual, 1, 0, cost, c,
                         0, 0))
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


def big(n: int = 4000, seed: int = 11) -> Trace:
    """A trace whose costs are not round numbers of microseconds, with emulated accesses to re-price."""
    rng = np.random.default_rng(seed)
    ex = np.zeros(n, dtype=EXIT_DTYPE)
    ex["seq"] = np.arange(n)
    ex["rip"] = rng.choice([0x1010, 0x1020, 0x1110, 0x1210, 0x1214, 0x900], n)
    ex["caller"] = rng.choice([0, 0x1150, 0x1250], n)
    ex["reason"] = rng.choice([ExitReason.IO_INSTRUCTION, ExitReason.VMCALL, ExitReason.APIC_ACCESS,
                               ExitReason.EPT_VIOLATION, ExitReason.HLT], n)
    ex["place"] = rng.integers(0, 2, n)
    ex["direction"] = rng.integers(0, 3, n)
    ex["qualifier"] = rng.choice([0x1F0, 0x1F7, 0x80, 0xFEE000B0, 1, 0x100], n)
    ex["size"] = rng.integers(1, 5, n)
    ex["cost"] = rng.choice([1790, 14526, 17385, 3898], n) + rng.integers(0, 4, n) * 7
    em = np.zeros(n // 2, dtype=EMULATED_DTYPE)
    em["exit"] = np.sort(rng.choice(np.flatnonzero(ex["reason"] == ExitReason.VMCALL), n // 2))
    em["place"] = Place.USER
    em["direction"] = rng.integers(1, 3, n // 2)
    meta = {"freq_hz": 2_830_000_000, "guest": "big", "instructions": 10 * n, "virtual_seconds": 0.25,
            "idle_cycles": 12345, "cpi": [1, 1], "status": "exited", "detail": "", "profile": "kvm76-q9550"}
    return Trace(ex, meta, dict(SYMBOLS), em)


def everything(t: Trace) -> list[str]:
    """Every report (both layouts, callers, re-priced) and every comparison, rendered as JSON."""
    from vmexit.render import RENDERERS
    prof = load_profile("kvm-skylake")
    reps = [analysis.report(t, by, None, callers, p) for by in analysis.BY_CHOICES for callers in (False, True)
            for p in (None, prof)]
    reps += [analysis.compare(t, synthetic(), by) for by in analysis.COMPARE_CHOICES]
    return [RENDERERS["json"](r) + r.footer for r in reps]


def test_reports_on_a_chunked_trace_equal_reports_on_the_whole(monkeypatch):
    """Reports are made CHUNK exits at a time; the chunk size changes no bit of any number."""
    t = big(1000)
    monkeypatch.setattr(views, "CHUNK", len(t.exits))
    whole = everything(t)
    for chunk in (3, 64, 999):
        monkeypatch.setattr(views, "CHUNK", chunk)
        assert everything(t) == whole, chunk


def test_repricing_adds_the_emulated_accesses_to_their_exits():
    t = big()
    prof = load_profile("kvm-skylake")
    want = prof.price(t.exits).astype(np.float64) + np.bincount(
        t.emulated["exit"].astype(np.intp), weights=prof.price_emulated(t.emulated).astype(np.float64),
        minlength=len(t.exits))
    pricing = analysis.Pricing.of(t, prof)
    assert np.array_equal(pricing.costs, want) and pricing.total_cycles == int(want.sum())


@pytest.mark.parametrize("seed", range(40))
def test_order_statistics_are_numpys(seed):
    """min, max, p50 and p95 from the counts of distinct costs are np.percentile's, bit for bit; the
    standard deviation is np.std's to rounding (exactly when the values are whole microseconds)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    costs = rng.choice(rng.integers(1, 40_000, int(rng.integers(1, 6))), n)
    freq = 1_000_000 if seed % 2 else 2_830_000_000  # whole microseconds, or not
    ex = np.zeros(n, dtype=EXIT_DTYPE)
    ex["reason"] = ExitReason.IO_INSTRUCTION
    ex["cost"] = costs
    t = Trace(ex, {"freq_hz": freq, "virtual_seconds": 1.0}, {})
    row = analysis.report(t, "reason").rows[0]
    us = costs.astype(np.float64) * 1e6 / freq
    p50, p95 = np.percentile(us, [50, 95])
    assert (row["min_us"], row["max_us"], row["p50_us"], row["p95_us"]) == (us.min(), us.max(), p50, p95)
    assert row["avg_us"] == np.bincount(np.zeros(n, dtype=np.intp), weights=us)[0] / n
    spread = 100.0 * us.std() / row["avg_us"]
    if freq == 1_000_000 or len(set(costs)) == 1:
        assert row["stddev_pct"] == pytest.approx(spread, abs=1e-12)
    assert row["stddev_pct"] == pytest.approx(spread, rel=1e-12, abs=1e-12)


def test_reports_allocate_a_chunk_not_the_trace():
    """Python-side allocations of every report on a 400,000-exit trace (tracemalloc, numpy's included)
    stay bounded by the chunk: no per-exit array of the whole trace is made."""
    import tracemalloc
    t = big(400_000)
    bound = 16 * views.CHUNK * 8  # a few chunk-long temporaries of 8 bytes (8 seen)
    assert bound < t.exits.nbytes / 2
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for by in analysis.BY_CHOICES:
            analysis.report(t, by, callers=True)
        analysis.report(t, "reason", profile=load_profile("kvm-skylake"))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < bound, peak
