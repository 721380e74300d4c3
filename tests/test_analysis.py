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
            rows.append((len(rows), len(rows) * 10, len(rows) * 100, rip, reason, place, direction, qual, 1, 0, cost, c, 0, 0, 0))
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
        assert rep.totals["exits"] == 0
        assert [r["count"] for r in rep.rows] == ([0] if by == "domain" else [])  # the one domain, no exits


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


# a run of two domains --------------------------------------------------------------------------------
DOM0_SYMBOLS = {"net_rx_action": 0x1000, "netif_be_start_xmit": 0x1100}
DOM1_SYMBOLS = {"xennet_start_xmit": 0x1000, "xennet_poll": 0x1080}
GNT, EVT, SCHED = 20, 32, 29          # grant_table_op, event_channel_op, sched_op
COPY, MAP, SEND, BLOCK = 5, 0, 4, 1   # their sub-operations


def _domain_trace(domid: int, spec, emulated_at: int, meta: dict, symbols: dict) -> Trace:
    """One domain's trace as its recorder gives it: spec rows (cycles, rip, reason, qualifier, subop,
    size, cost), seq from 0, one emulated access inside exit `emulated_at`."""
    rows = [(i, cyc // 2, cyc, rip, reason, Place.KERNEL, Direction.NONE, qual, size, 0, cost, 0, domid, subop, 0)
            for i, (cyc, rip, reason, qual, subop, size, cost) in enumerate(spec)]
    em = np.array([(emulated_at, 0x1010, Place.USER, Direction.OUT, 1, 0xC000, 0, 7)], dtype=EMULATED_DTYPE)
    base = {"freq_hz": 1000, "cpi": [1, 1], "cycles": 10000, "hypervisor": "xen-pv", "profile": "test",
            "status": "exited", "detail": "done", "idle_cycles": 0}
    return Trace(np.array(rows, dtype=EXIT_DTYPE), dict(base, domid=domid, **meta), dict(symbols), em)


def two_domains() -> list[Trace]:
    """dom0 (netback: the NIC, 3 grant copies of 1500 B, 2 sends) and dom1 (netfront: 2 grant maps of
    2 ops, 2 sends, a block). Address 0x1010 is net_rx_action in dom0, xennet_start_xmit in dom1."""
    io, vm = ExitReason.IO_INSTRUCTION, ExitReason.VMCALL
    dom0 = ((50, 0x1120, io, 0xC000, 0, 1, 1000), (100, 0x1010, vm, GNT, COPY, 1500, 300),
            (200, 0x1110, vm, EVT, SEND, 1, 100), (300, 0x1010, vm, GNT, COPY, 1500, 300),
            (500, 0x1010, vm, GNT, COPY, 1500, 300), (600, 0x1110, vm, EVT, SEND, 1, 100))
    dom1 = ((150, 0x1090, vm, GNT, MAP, 2, 400), (300, 0x1010, vm, EVT, SEND, 1, 100),
            (700, 0x1010, vm, EVT, SEND, 1, 100), (800, 0x1090, vm, GNT, MAP, 2, 400),
            (900, 0x1090, vm, SCHED, BLOCK, 0, 50))
    nic = {"tx_frames": 4, "rx_frames": 6, "tx_bytes": 256, "rx_bytes": 9000, "rx_dropped": 0,
           "throughput_mbit_s": 0.0072}
    return [_domain_trace(0, dom0, 0, {"name": "dom0", "guest": "netback", "instructions": 2000, "nic": nic,
                                       "xen": {"events_sent": 2, "events_received": 2, "upcalls": 2, "maps": 0,
                                               "unmaps": 0, "copies": 3, "bytes_copied": 4500, "transfers": 0}},
                          DOM0_SYMBOLS),
            _domain_trace(1, dom1, 1, {"name": "domU", "guest": "netfront", "instructions": 1000,
                                       "nic": dict(nic, tx_frames=0, rx_frames=0),
                                       "xen": {"events_sent": 2, "upcalls": 2}}, DOM1_SYMBOLS)]


HOST = {"cycles": 10000, "switches": 8, "switch_cycles": 50, "name": "xennet"}


def merged_synthetic() -> Trace:
    from vmexit.trace import merge_domains
    return merge_domains(two_domains(), HOST)


def test_by_domain_adds_up_per_domain():
    rep = analysis.report(merged_synthetic(), "domain")
    got = [(r["domain"], r["name"], r["guest"], r["count"], r["hypercalls"], r["events_sent"], r["events_received"],
            r["grant_ops"], round(r["exit_time_s"], 9), round(r["cpu_s"], 9), round(r["cpu_pct"], 9)) for r in rep.rows]
    # dom0: 2000 instructions + 1000 + 3 x 300 + 2 x 100 exit cycles; dom1: 1000 + 2 x 100 + 2 x 400 + 50
    # dom0's grant ops and events received are Xen's counts; dom1's run kept none: 2 maps of 2 ops from
    # its exits, and its upcalls
    assert got == [(0, "dom0", "netback", 6, 5, 2, 2, 3, 2.1, 4.1, 41.0),
                   (1, "domU", "netfront", 5, 5, 2, 2, 4, 1.05, 2.05, 20.5)]
    assert sum(r["count"] for r in rep.rows) == rep.totals["exits"] == 11
    assert "8 domain switches (50 cycles each, 0.400000 s)" in rep.footer


def test_domain_restricts_every_view_to_its_exits_and_symbols():
    t = merged_synthetic()
    rep = analysis.report(t, "function", domain=1)
    assert [(r["function"], r["count"], r["address"]) for r in rep.rows] == [
        ("xennet_poll", 3, "0x00001090"), ("xennet_start_xmit", 2, "0x00001010")]
    assert rep.title == "Hot functions (netfront)" and rep.totals["exits"] == 5
    assert rep.totals["instructions"] == 1000
    rep = analysis.report(t, "hypercall", domain=0)
    assert [(r["hypercall"], r["count"], r["requests"]) for r in rep.rows] == [
        ("grant_table_op:copy", 3, 4500), ("event_channel_op:send", 2, 2)]
    for by in analysis.BY_CHOICES:  # the domains' rows add up to the run's
        whole = analysis.report(t, by, top=None)
        parts = [analysis.report(t, by, top=None, domain=d) for d in (0, 1)]
        assert sum(r["count"] for p in parts for r in p.rows) == sum(r["count"] for r in whole.rows), by


def test_an_address_means_different_code_in_each_domain():
    rep = analysis.report(merged_synthetic(), "address", top=None)
    assert [(r["address"], r["function"], r["count"]) for r in rep.rows] == [
        ("d0:0x00001010", "d0:net_rx_action", 3), ("d1:0x00001090", "d1:xennet_poll", 3),
        ("d0:0x00001110", "d0:netif_be_start_xmit", 2), ("d1:0x00001010", "d1:xennet_start_xmit", 2),
        ("d0:0x00001120", "d0:netif_be_start_xmit", 1)]
    rep = analysis.report(merged_synthetic(), "function", top=None)
    assert {r["function"]: r["count"] for r in rep.rows} == {
        "d0:net_rx_action": 3, "d0:netif_be_start_xmit": 3, "d1:xennet_poll": 3, "d1:xennet_start_xmit": 2}


def test_hypercalls_are_named_with_their_sub_operation():
    rep = analysis.report(merged_synthetic(), "hypercall", top=None)
    assert [(r["hypercall"], r["count"]) for r in rep.rows] == [
        ("event_channel_op:send", 4), ("grant_table_op:copy", 3), ("grant_table_op:map_grant_ref", 2),
        ("sched_op:block", 1)]


def test_network_totals_per_packet():
    per = analysis.report(merged_synthetic(), "reason").totals["network"]["per_packet"]
    # 10 NIC frames; 11 exits, 10 hypercalls, 4 sends, 3 + 4 grant ops, 8 switches
    assert per == {"frames": 10, "exits": 1.1, "hypercalls": 1.0, "notifications": 0.4, "grant_ops": 0.7,
                   "domain_switches": 0.8, "cpu_us": {"dom0": pytest.approx(410000.0), "domU": pytest.approx(205000.0)}}
    assert "per_packet" not in analysis.report(merged_synthetic(), "reason", domain=0).totals["network"]


def _profile_with(keys: dict):
    import json

    from vmexit.costs import PROFILE_DIR, parse_profile
    doc = json.loads((PROFILE_DIR / "xen-pv-q9550.json").read_text())
    doc["costs"].update(keys)
    return parse_profile(json.dumps(doc), "test")


def test_repricing_honours_sub_operation_keys():
    """VMCALL/grant_table_op:copy prices the copies (1000 + 1 a byte), every other exit as before."""
    t = merged_synthetic()
    plain = _profile_with({})
    own = _profile_with({"VMCALL/grant_table_op:copy": {"cycles": 1000, "per_item": 1, "source": "test"}})
    base = analysis.Pricing.of(t, plain)
    priced = analysis.Pricing.of(t, own)
    copies = (t.exits["reason"] == ExitReason.VMCALL) & (t.exits["qualifier"] == GNT) & (t.exits["subop"] == COPY)
    want = base.cycles(t.exits, 0).copy()
    want[copies] = 2500
    assert priced.cycles(t.exits, 0).tolist() == want.tolist()
    assert priced.total_cycles == base.total_cycles + sum(2500 - int(c) for c in base.cycles(t.exits, 0)[copies])
    rows = {r["hypercall"]: r for r in analysis.report(t, "hypercall", profile=own).rows}
    assert rows["grant_table_op:copy"]["min_us"] == pytest.approx(2500 * 1e6 / own.freq_hz)


def test_repricing_a_merged_run_keeps_switches_and_idle():
    t = merged_synthetic()
    p = _profile_with({})
    pricing = analysis.Pricing.of(t, p)
    # 3000 instructions at CPI 1 and the re-priced exits at the profile's clock; 3450 idle and 8 x 50
    # switch cycles at the run's 1000 Hz
    assert pricing.run_seconds == pytest.approx((3000 + pricing.total_cycles) / p.freq_hz + (3450 + 400) / 1000)
