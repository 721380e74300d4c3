"""The xennet scenario with DBNet (-D DBNET=1, seed 002): netfront transmits by dbnet_op hypercall and
receives from the hypervisor's event into buffers it registered; dom0 only starts the NIC and hands it
over. Counts by construction, a few messages each (CI has 2 cores): one dbnet_op:xmit per frame sent,
no grant operation, no event channel to or from dom0 and no dom0 exit per packet (dom0's exits do not
grow with the run), no domain switch after boot, one event at most per NIC interrupt; and a rerun is
byte-identical."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit.hypervisors.hypercalls import DBNET_OP

VMCALL, GNTTAB_OP, EVTCHN_OP = 18, 20, 32
XMIT, CONNECT, ATTACH, SET_MAC = 3, 2, 0, 1


def run(messages: int, receive: int, dbnet: int = 1):
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    return scenarios.run_scenario("xennet", {"MESSAGES": messages, "RECEIVE": receive, "DBNET": dbnet},
                                  load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=1.0))


def calls(trace, nr: int, subop: int | None = None) -> int:
    e = trace.exits
    hit = (e["reason"] == VMCALL) & (e["qualifier"] == nr)
    if subop is not None:
        hit &= e["subop"] == subop
    return int(hit.sum())


@pytest.fixture(scope="module")
def runs():
    return {(m, r): run(m, r) for m in (2, 4) for r in (0, 1)}


@pytest.mark.parametrize("receive", [0, 1])
def test_the_stream_completes_over_dbnet(runs, receive):
    r = runs[4, receive]
    dom0, domu = r.traces
    assert domu.meta["status"] == "exited", domu.meta["detail"]
    moved = int(domu.meta["console"].split()[2])        # the receiver counts whole segments
    assert moved == 4 * 4096 if not receive else 4 * 4096 <= moved < 4 * 4096 + 1460
    assert r.host["dbnet"]["xmit_errors"] == 0


@pytest.mark.parametrize("receive", [0, 1])
def test_one_hypercall_per_frame_sent_and_nothing_of_dom0s_per_packet(runs, receive):
    small, big = runs[2, receive], runs[4, receive]
    for r in (small, big):
        dom0, domu = r.traces
        nic = dom0.meta["nic"]
        assert calls(domu, DBNET_OP, XMIT) == nic["tx_frames"] == r.host["dbnet"]["xmits"]
        assert calls(domu, DBNET_OP, CONNECT) == 1
        assert calls(dom0, DBNET_OP, ATTACH) == calls(dom0, DBNET_OP, SET_MAC) == 1
        assert calls(domu, GNTTAB_OP) == calls(domu, GNTTAB_OP, 2) == 1   # boot's gnttab_init (setup_table)
        assert calls(dom0, GNTTAB_OP) == 0
        assert calls(domu, EVTCHN_OP, 4) == calls(dom0, EVTCHN_OP, 4) == 0
        assert dom0.meta["xen"]["events_received"] == 0
        assert r.host["switches"] == 1          # dom0 boots, hands over, sleeps: one switch to domU
    frames = [r.traces[0].meta["nic"]["tx_frames"] + r.traces[0].meta["nic"]["rx_frames"] for r in (small, big)]
    assert frames[1] > frames[0]
    assert len(small.traces[0].exits) == len(big.traces[0].exits)   # dom0's exits do not grow


@pytest.mark.parametrize("receive", [0, 1])
def test_events_and_driver_entries_by_construction(runs, receive):
    r = runs[4, receive]
    dom0, domu = r.traces
    d = r.host["dbnet"]
    nic = dom0.meta["nic"]
    assert d["events"] <= d["interrupts"]                 # one push per interrupt, one event at most
    assert domu.meta["xen"]["events_received"] == d["events"]
    assert d["rx_frames"] == nic["rx_frames"] and d["rx_dropped"] == 0
    assert d["entries"] == d["xmits"] + d["interrupts"]   # a privilege switch per entry, nothing else
    assert domu.meta["xen"]["dbnet_cycles"] == d["cycles"] > 0


def test_a_rerun_is_byte_identical():
    a, b = run(2, 1), run(2, 1)
    for ta, tb in zip(a.traces, b.traces):
        assert ta.exits.tobytes() == tb.exits.tobytes()
        assert ta.meta["instructions"] == tb.meta["instructions"] and ta.meta["xen"] == tb.meta["xen"]
    assert a.host == b.host


def test_dbnet_beats_the_split_path_on_the_same_run():
    split, db = run(4, 0, dbnet=0), run(4, 0, dbnet=1)
    assert db.host["throughput_mbit_s"] > split.host["throughput_mbit_s"]


def test_the_dbnet_entry_runs_dbnet_and_its_paper_keeps_the_thesis_orderings():
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    from vmexit.trace import merge_domains
    profile, options = load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=1.0)
    entry = scenarios.SCENARIOS["dbnet"]
    assert entry.defaults["DBNET"] == 0 and entry.paper is not None
    plain = scenarios.run_scenario("dbnet", {"MESSAGES": 2}, profile, options)
    assert plain.host["dbnet"]["xmits"] > 0                 # `vmexit run dbnet` is DBNet

    def run(constants):
        r = scenarios.run_scenario("dbnet", constants, profile, options)
        return merge_domains(r.traces, {"name": "dbnet", **r.host})
    report = entry.paper({"MESSAGES": 64}, run)   # fewer: boot weighs on transmit (README)
    rows = {(r["direction"], r["system"]): r for r in report.rows}
    assert {d for d, _ in rows} == {"transmit", "receive"}
    for direction in ("transmit", "receive"):
        assert rows[direction, "DBNet"]["holds"] == "yes"
        assert rows[direction, "DBNet"]["over_split"] > 1
    with pytest.raises(ValueError):
        entry.paper({"RECEIVE": 2}, run)


@pytest.mark.parametrize("receive", [0, 1])
def test_several_guests_share_the_nic_each_by_its_own_mac(receive):
    """GUESTS=2: dom0 fills the bridge's table once per guest and sleeps; each guest's frames are its
    own hypercalls and its own stream's; the run ends when both have ended; still nothing of dom0's
    per packet."""
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    r = scenarios.run_scenario("xennet", {"MESSAGES": 4, "RECEIVE": receive, "DBNET": 1, "GUESTS": 2},
                               load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=1.0))
    dom0, *guests = r.traces
    assert len(guests) == 2 and all(g.meta["status"] == "exited" for g in guests)
    assert calls(dom0, DBNET_OP, SET_MAC) == 2 and calls(dom0, DBNET_OP, ATTACH) == 1
    assert dom0.meta["xen"]["events_received"] == 0 and calls(dom0, EVTCHN_OP, 4) == 0
    d = r.host["dbnet"]
    for g in guests:
        mine = d["per_domain"][str(g.meta["domid"])]
        assert calls(g, DBNET_OP, XMIT) == mine["xmits"] > 0
        assert g.meta["xen"]["events_received"] == mine["events"] > 0
        assert r.host["guests"][str(g.meta["domid"])]["net_bytes"] >= 4 * 4096
    assert d["rx_dropped"] == 0 and d["xmits"] == dom0.meta["nic"]["tx_frames"]


def test_guests_beyond_one_need_dbnet():
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    from vmexit.loader import LoadError
    with pytest.raises(LoadError, match="DBNET=1"):
        scenarios.run_scenario("xennet", {"GUESTS": 2}, load_profile("xen-pv-q9550"), session.RunOptions())
    with pytest.raises(LoadError, match="1 to 4"):
        scenarios.run_scenario("xennet", {"GUESTS": 5, "DBNET": 1}, load_profile("xen-pv-q9550"),
                               session.RunOptions())
