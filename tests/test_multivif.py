"""netback serving several frontends (guests/xennet/netback_vifs.S, -D VIFS=n) on the xennet host: n
domUs on the split path (-D GUESTS=n -D VIFS=n), the wire carrying one TCP stream per guest. Counts by
construction (Native page flipping), a few messages each: every frame crosses dom0 once -- a wire frame
for a guest is one GNTTABOP_transfer, a guest's frame for the wire one map_grant_ref + unmap_grant_ref;
dom0's only other maps are one connect per vif (two ring pages in one call); the bridge routes by MAC,
so each guest's stream is its own; a rerun is byte-identical; VIFS=1 (the default) is the netback of
the single-guest tests, unchanged (tests/test_xennet_guests.py, the reference tests)."""
from __future__ import annotations

import pytest

VMCALL, GNTTAB_OP = 18, 20
MAP, UNMAP, TRANSFER = 0, 1, 4


def run(receive: int, guests: int = 2, **more):
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    return scenarios.run_scenario("xennet", {"MESSAGES": 4, "RECEIVE": receive, "GUESTS": guests, "VIFS": guests,
                                             **more},
                                  load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=1.0))


def calls(trace, nr: int, subop: int) -> int:
    e = trace.exits
    return int(((e["reason"] == VMCALL) & (e["qualifier"] == nr) & (e["subop"] == subop)).sum())


@pytest.mark.parametrize("receive", [0, 1])
def test_each_frame_crosses_dom0_once_and_each_guest_has_its_stream(receive):
    r = run(receive)
    dom0, *guests = r.traces
    assert dom0.meta["console"] == "netback: a vif connected\n" * 2
    assert len(guests) == 2 and all(g.meta["status"] == "exited" for g in guests)
    nic = dom0.meta["nic"]
    assert calls(dom0, GNTTAB_OP, TRANSFER) == nic["rx_frames"] > 0       # the wire's frames, flipped
    assert calls(dom0, GNTTAB_OP, UNMAP) == nic["tx_frames"] > 0          # the guests' frames, copied out
    assert calls(dom0, GNTTAB_OP, MAP) == 2 + nic["tx_frames"]            # + one connect per vif
    assert nic["rx_dropped"] == 0
    for g in guests:
        assert all(calls(g, GNTTAB_OP, op) == 0 for op in (MAP, UNMAP, TRANSFER))
        assert r.host["guests"][str(g.meta["domid"])]["net_bytes"] >= 4 * 4096


def test_a_rerun_is_byte_identical():
    a, b = run(1), run(1)
    for x, y in zip(a.traces, b.traces):
        assert x.exits.tobytes() == y.exits.tobytes()
    assert a.host == b.host


def test_guests_need_a_netback_built_for_them():
    from vmexit.loader import LoadError
    with pytest.raises(LoadError, match="VIFS=3"):
        run(1, guests=3, VIFS=2)
    with pytest.raises(LoadError, match="SHARED_BUFFERS"):
        run(1, SHARED_BUFFERS=1)


def test_the_dbnet_comparison_measures_the_split_path_with_several_guests():
    from vmexit.scenarios import dbnet
    r = run(1, guests=2)
    from vmexit.trace import merge_domains
    merged = merge_domains(r.traces, r.host)
    split = dbnet.slowest(merged)
    assert split["mbit_s"] == min(g["throughput_mbit_s"] for g in r.host["guests"].values()) > 0
    row = dbnet.several(merged, 2, {"mbit_s": 1e9}, merged)
    assert row["bound"] == split["mbit_s"] and row["measured"]
