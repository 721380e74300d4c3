"""The xenidc scenario (guests/xenidc/: dom0 with the directory, the receiver -- XenSocket's server --
and the sender -- its client): a shared-memory channel between two co-resident domUs (seed 004).

Counts by construction, on small streams (CI has 2 cores):
- setup: the sender maps the descriptor and the 32 ring pages, one map_grant_ref each (33), binds one
  port; the receiver allocates it; no grant operation once data flows;
- BOOST=1 (a woken domain preempts): each send wakes the receiver, which drains it and blocks: one
  notification and one receiver block per send, the sender never blocks;
- BOOST=0 with BUF = the ring (131072): every send after the first finds the ring full: the sender
  raises sender_is_blocking, notifies and blocks once (sends - 1), the receiver notifies once per
  drain it makes while the flag is up (sends - 1) and blocks once per send;
- bad input (a peer not on this host, an order beyond the sender's window, a ring ref not granted,
  free space beyond the ring) is refused in the guest with its code; vmexit runs to the end;
- a rerun is byte-identical;
- SHM=0, the split-driver path (netfront -> netback with two vifs -> bridge -> netback -> netfront, Native
  page flipping): every frame crosses dom0 once: one map + unmap of the sending frontend's granted page
  on the tx side and one transfer of the skb page on the receiving frontend's rx side; the domUs make
  no grant operation of their own; dom0's only other maps are the two connects (two rings each).
"""
from __future__ import annotations

import numpy as np
import pytest

from vmexit.exits import ExitReason
from vmexit.loader import LoadError

VMCALL = int(ExitReason.VMCALL)
GNTTAB_OP, SCHED_OP, EVTCHN_OP = 20, 29, 32
MAP, UNMAP, BLOCK, SEND, ALLOC_UNBOUND, BIND = 0, 1, 1, 4, 6, 0
RING = 32 * 4096


def run_xenidc(**constants):
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    return scenarios.run_scenario("xenidc", constants, load_profile("xen-pv-q9550"),
                                  session.RunOptions(max_seconds=1.0))


_RUNS: dict = {}


def cached(**constants):
    key = tuple(sorted(constants.items()))
    if key not in _RUNS:
        _RUNS[key] = run_xenidc(**constants)
    return _RUNS[key]


def calls(trace, nr: int, subop: int | None = None) -> int:
    e = trace.exits
    hit = (e["reason"] == VMCALL) & (e["qualifier"] == nr)
    if subop is not None:
        hit &= e["subop"] == subop
    return int(hit.sum())


def ends(run) -> tuple:
    dom0, receiver, sender = run.traces
    assert dom0.meta["console"] == "dom0: xenstore directory, domains 2\n"
    return receiver, sender


@pytest.mark.parametrize("boost", [0, 1])
def test_setup_maps_the_descriptor_and_the_ring_once(boost):
    run = cached(BUF=16384, STREAM_BYTES=2 * RING, BOOST=boost)
    receiver, sender = ends(run)
    assert receiver.meta["status"] == "exited" and receiver.meta["console"] == f"xensock: received {2 * RING}\n"
    assert calls(sender, GNTTAB_OP, MAP) == sender.meta["xen"]["maps"] == 33
    assert calls(sender, GNTTAB_OP) == 33 + 1          # + our own setup_table
    assert calls(receiver, GNTTAB_OP) == 1             # setup_table: its grants are entries it writes
    assert calls(receiver, EVTCHN_OP, ALLOC_UNBOUND) == calls(sender, EVTCHN_OP, BIND) == 1
    # no grant operation on the data path: every map comes before the first notification
    e = sender.exits
    maps = e[(e["qualifier"] == GNTTAB_OP) & (e["subop"] == MAP)]["cycles"]
    sends = e[(e["reason"] == VMCALL) & (e["qualifier"] == EVTCHN_OP) & (e["subop"] == SEND)]["cycles"]
    assert maps.max() < sends.min()
    assert run.host["stream_bytes"] == 2 * RING and run.host["throughput_mbit_s"] > 0


def test_with_boost_each_send_is_one_notification_and_one_receiver_wakeup():
    run = cached(BUF=16384, STREAM_BYTES=2 * RING, BOOST=1)
    receiver, sender = ends(run)
    sends = 2 * RING // 16384
    assert calls(sender, EVTCHN_OP, SEND) == sends and calls(sender, SCHED_OP, BLOCK) == 0
    assert calls(receiver, SCHED_OP, BLOCK) == sends and calls(receiver, EVTCHN_OP, SEND) == 0
    assert receiver.meta["xen"]["upcalls"] == sends


def test_a_full_ring_blocks_the_sender_until_the_receiver_wakes_it():
    run = cached(BUF=131072, STREAM_BYTES=4 * RING)
    receiver, sender = ends(run)
    sends = 4
    assert sender.meta["console"] == f"xensock: sent {4 * RING}\n"
    assert calls(sender, SCHED_OP, BLOCK) == sends - 1
    # per send one notification, per full ring one more (send_data_wait), and the shutdown's
    assert calls(sender, EVTCHN_OP, SEND) == sends + (sends - 1) + 1
    assert calls(receiver, EVTCHN_OP, SEND) == sends - 1
    assert calls(receiver, SCHED_OP, BLOCK) == sends


def test_a_rerun_is_byte_identical():
    a, b = cached(BUF=16384, STREAM_BYTES=2 * RING, BOOST=1), run_xenidc(BUF=16384, STREAM_BYTES=2 * RING, BOOST=1)
    for x, y in zip(a.traces, b.traces):
        assert x.exits.tobytes() == y.exits.tobytes() and x.meta["console"] == y.meta["console"]
    assert {k: v for k, v in a.host.items()} == {k: v for k, v in b.host.items()}


def test_a_peer_not_on_this_host_is_refused():
    run = run_xenidc(DEST=9, STREAM_BYTES=RING)
    _, receiver, sender = run.traces
    assert sender.meta["console"] == "xensock: peer not co-resident, refused: -errno 2\n"
    assert calls(sender, GNTTAB_OP, MAP) == 0 and calls(sender, EVTCHN_OP) == 0
    # the receiver waits for a client that never comes: the host ends the run, nothing crashes
    assert receiver.meta["status"] == "halted" and "deadlock" in receiver.meta["detail"]


@pytest.mark.parametrize("bad, status, maps", [(1, 1, 33), (2, 22, 1)])
def test_a_ring_beyond_the_grants_or_the_window_is_refused(bad, status, maps):
    # BAD_ORDER=1: the receiver announces 64 pages but granted 32: the 33rd ring map names a ref it did
    # not grant -> GNTST_general_error; BAD_ORDER=2: 128 pages, beyond our window -> -EINVAL, no map
    run = run_xenidc(BAD_ORDER=bad, STREAM_BYTES=RING)
    receiver, sender = ends(run)
    assert sender.meta["console"] == f"xensock: mapping the peer's pages failed, refused: -status {status}\n"
    assert sender.meta["xen"]["maps"] == maps and calls(sender, GNTTAB_OP, MAP) == maps + (bad == 1)
    assert sender.meta["xen"]["unmaps"] == calls(sender, GNTTAB_OP, UNMAP) == maps   # all undone
    assert receiver.meta["console"] == "xensock: received 0\n"                     # sender_has_shutdown


def test_free_space_beyond_the_ring_is_refused_by_both_ends():
    run = run_xenidc(BAD_AVAIL=1, STREAM_BYTES=RING)
    receiver, sender = ends(run)
    line = f"xensock: descriptor beyond the ring, refused: avail_bytes {RING + 4096}\n"
    assert receiver.meta["console"] == sender.meta["console"] == line
    assert receiver.meta["status"] == "exited"


@pytest.mark.parametrize("constants, match", [({"SHM": 2}, "SHM is 1"), ({"BOOST": 3}, "BOOST is 0 or 1"),
                                              ({"SHM": 0, "RING_ORDER": 4}, "SHM=0 takes"),
                                              ({"SHM": 0, "BUF": 1000, "STREAM_BYTES": 4096}, "multiple of BUF")])
def test_modes_it_does_not_have_are_refused(constants, match):
    with pytest.raises(LoadError, match=match):
        run_xenidc(**constants)


def test_the_paper_table_is_seed_004s():
    from vmexit import papers
    paper = papers.xen_idc_paper()
    assert paper["buffer_sizes"] == [256, 1024, 16384, 65536, 131072]
    assert paper["mbit_s"] == [278.485, 624.092, 2365.639, 1893.218, 2053.603]
    assert "Research on Xen Inter Domain Communication Based on Shared Memory" in paper["source"]


def test_beside_the_paper_per_send_counts():
    from vmexit import papers
    from vmexit.trace import merge_domains
    run = cached(BUF=16384, STREAM_BYTES=2 * RING, BOOST=1)
    merged = merge_domains(run.traces, run.host)
    per = papers.xen_idc_per_send(merged, 16384)
    assert per["sends"] == 16 and per["sender_notify"] == 1 and per["receiver_block"] == 1
    assert per["sender_block"] == per["receiver_notify"] == 0
    assert per["cpu_us_dom0"] < per["cpu_us_receiver"] and per["us_per_send"] > 0
    rep = papers.beside_xen_idc_paper(papers.xen_idc_paper(), {(16384, "BOOST=1"): merged})
    assert [(r["buf"], r["paper_mbit_s"], r["ours_vs_16k"]) for r in rep.rows] == [(16384, 2365.639, 1.0)]
    assert np.isclose(rep.rows[0]["paper_us_per_send"], 16384 * 8 / 2365.639)


def test_notifying_only_a_waiting_receiver_leaves_one_notification_per_ring_fill():
    # NOTIFY_EVERY_SEND=0: a send notifies only if the receiver armed receiver_is_waiting since the
    # last notification; two fills of the ring: per fill its first send, one full ring, the shutdown
    run = cached(BUF=16384, STREAM_BYTES=2 * RING, NOTIFY_EVERY_SEND=0)
    receiver, sender = ends(run)
    assert receiver.meta["console"] == f"xensock: received {2 * RING}\n"
    assert calls(sender, EVTCHN_OP, SEND) == 2 + 1 + 1
    assert calls(receiver, EVTCHN_OP, SEND) == RING // 16384       # one per chunk while the sender blocks


SPLIT_FRAMES_PER_16K = 12                   # 16384 bytes in MSS (1460) segments: 11 full + one of 324


def test_split_path_each_frame_crosses_dom0_once():
    run = cached(SHM=0, BUF=16384, STREAM_BYTES=32768)
    dom0, receiver, sender = run.traces
    data = 2 * SPLIT_FRAMES_PER_16K
    acks = 1 + data // 2                    # the SYN, then one ACK per two segments
    assert receiver.meta["console"] == f"netfront: received 32768 bytes, rx frames {data}, tx frames {acks}, " \
                                       f"upcalls {receiver.meta['console'].split('upcalls ')[1]}"
    assert dom0.meta["console"] == "netback: a vif connected\n" * 2
    maps, unmaps, transfers = (calls(dom0, GNTTAB_OP, op) for op in (MAP, UNMAP, 4))
    assert maps == 2 + unmaps and unmaps == transfers              # connects; then map+unmap / transfer per frame
    # the sender's data frames all crossed; of the receiver's ACKs, the last may still be in dom0 when
    # the receiver (the workload) ends the run
    assert transfers in (data + acks - 1, data + acks)
    for domu in (receiver, sender):
        assert all(calls(domu, GNTTAB_OP, op) == 0 for op in (MAP, UNMAP, 4))
    host = run.host
    assert host["stream_bytes"] == 32768 and host["throughput_mbit_s"] > 0
    assert host["ends"][1]["status"] == "exited"


def test_split_path_rerun_is_byte_identical():
    a, b = (run_xenidc(SHM=0, BUF=1024, STREAM_BYTES=16384) for _ in range(2))
    for x, y in zip(a.traces, b.traces):
        assert x.exits.tobytes() == y.exits.tobytes()
    assert a.host == b.host


def test_shared_memory_is_well_above_the_split_path():
    shm, split = (cached(SHM=s, BUF=16384, STREAM_BYTES=2 * RING).host["throughput_mbit_s"] for s in (1, 0))
    assert shm > 10 * split > 0
