"""The xennet guests (guests/xennet/: netfront.S in domU, netback.S in dom0, netif.S shared).

Two layers:
- the io/ring.h macros as netif.S implements them, called one by one in a bare Unicorn (no vmexit
  machinery): the notification rule `(new - event) < (new - old)` and the consumer's re-arm, so that a
  burst under suppression costs exactly one notification;
- the two-domain scenario (vmexit/scenarios.py) in each mode, a few messages each (CI has 2 cores):
  grant operations per packet by construction -- Native: one GNTTABOP_transfer per frame received,
  one map_grant_ref + one unmap_grant_ref per frame sent; seed 000's shared buffers: none per packet
  on receive and for header-only frames, one map + unmap per payload on transmit -- and a run's
  determinism.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from vmexit.asm import LOAD_ADDRESS, assemble
from vmexit.exits import ExitReason
from vmexit.guests import read_source

GUESTS = Path(__file__).resolve().parent.parent / "guests" / "xennet"
RETURN = 0x600            # where a called function returns to: the emulation stops there
STACK = 0x80000
SRING = 0x12000           # netfront's TX_RING_PAGE
BACK_VIEW = 0x20000       # a back end's private view {rsp_prod_pvt, req_cons, sring}, scratch memory


class Functions:
    """netfront.S assembled, in a bare Unicorn: call its cdecl functions one at a time."""

    def __init__(self):
        from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
        code, self.symbols = assemble(read_source(GUESTS / "netfront.S"), {})
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.uc.mem_map(0, 4 << 20)
        self.uc.mem_write(LOAD_ADDRESS, code)

    def call(self, name: str, *args: int) -> int:
        from unicorn.x86_const import UC_X86_REG_EAX, UC_X86_REG_ESP
        frame = struct.pack(f"<{len(args) + 1}I", RETURN, *args)
        self.uc.mem_write(STACK - len(frame), frame)
        self.uc.reg_write(UC_X86_REG_ESP, STACK - len(frame))
        self.uc.emu_start(self.symbols[name], RETURN, count=100_000)
        return self.uc.reg_read(UC_X86_REG_EAX)

    def u32(self, address: int) -> int:
        return struct.unpack("<I", self.uc.mem_read(address, 4))[0]

    def set_u32(self, address: int, value: int) -> None:
        self.uc.mem_write(address, struct.pack("<I", value & 0xFFFFFFFF))


@pytest.fixture
def ring():
    f = Functions()
    front = f.symbols["tx_ring"]
    f.call("shared_ring_init", SRING)
    f.call("ring_init", front, SRING)
    f.call("ring_init", BACK_VIEW, SRING)
    return f, front


def test_shared_ring_init_arms_both_events(ring):
    f, _ = ring
    assert [f.u32(SRING + off) for off in (0, 4, 8, 12)] == [0, 1, 0, 1]   # req_prod, req_event, rsp_prod, rsp_event


def test_a_burst_under_suppression_costs_one_notification(ring):
    f, front = ring
    f.set_u32(front, 5)                                   # five requests written, then one push
    assert f.call("ring_push_requests_and_check_notify", front) == 1
    assert f.u32(SRING) == 5
    f.set_u32(front, 8)                                   # the consumer has not re-armed: no notification
    assert f.call("ring_push_requests_and_check_notify", front) == 0
    f.set_u32(front, 9)
    assert f.call("ring_push_requests_and_check_notify", front) == 0


def test_consumer_rearms_before_sleeping(ring):
    f, front = ring
    f.set_u32(front, 3)
    f.call("ring_push_requests_and_check_notify", front)
    assert f.call("ring_has_unconsumed_requests", BACK_VIEW) == 3
    f.set_u32(BACK_VIEW + 4, 3)                           # the back end consumed all three
    assert f.call("ring_final_check_for_requests", BACK_VIEW) == 0
    assert f.u32(SRING + 4) == 4                          # req_event = req_cons + 1
    f.set_u32(front, 7)                                   # the next burst notifies once
    assert f.call("ring_push_requests_and_check_notify", front) == 1
    f.set_u32(front, 8)
    assert f.call("ring_push_requests_and_check_notify", front) == 0


def test_final_check_sees_work_without_rearming(ring):
    f, front = ring
    f.set_u32(front, 2)
    f.call("ring_push_requests_and_check_notify", front)
    assert f.call("ring_final_check_for_requests", BACK_VIEW) == 2
    assert f.u32(SRING + 4) == 1                          # untouched: there was work


def test_responses_follow_the_same_rule(ring):
    f, front = ring
    f.set_u32(BACK_VIEW, 4)                               # four responses, one push
    assert f.call("ring_push_responses_and_check_notify", BACK_VIEW) == 1
    f.set_u32(BACK_VIEW, 6)
    assert f.call("ring_push_responses_and_check_notify", BACK_VIEW) == 0
    assert f.call("ring_has_unconsumed_responses", front) == 6
    f.set_u32(front + 4, 6)                               # the front end consumed them
    assert f.call("ring_final_check_for_responses", front) == 0
    assert f.u32(SRING + 12) == 7
    f.set_u32(BACK_VIEW, 7)
    assert f.call("ring_push_responses_and_check_notify", BACK_VIEW) == 1


def test_unconsumed_requests_never_exceed_the_free_response_slots(ring):
    f, front = ring
    f.set_u32(SRING, 300)                                 # a front end producing past the ring (bad input)
    assert f.call("ring_has_unconsumed_requests", BACK_VIEW) == 256


def test_indices_wrap_as_unsigned(ring):
    f, front = ring
    for view, value in ((front, 0xFFFFFFFE), (front + 4, 0xFFFFFFFE)):
        f.set_u32(view, value)
    f.set_u32(SRING, 0xFFFFFFFE)
    f.set_u32(SRING + 4, 0xFFFFFFFF)                      # the consumer waits for the next request
    f.set_u32(front, 0x00000001)                          # three more, across the wrap
    assert f.call("ring_push_requests_and_check_notify", front) == 1


def test_grant_entry_is_written_flags_last(ring):
    f, _ = ring
    gnttab = 0x11000
    f.call("gnttab_grant_foreign_access_ref", 9, 0, 0x13, 1)
    assert struct.unpack("<HHI", f.uc.mem_read(gnttab + 9 * 8, 8)) == (1 | 4, 0, 0x13)   # permit | readonly
    assert f.call("gnttab_end_foreign_access_ref", 9) == 1
    f.call("gnttab_grant_foreign_access_ref", 9, 0, 0x13, 0)
    f.uc.mem_write(gnttab + 9 * 8, struct.pack("<H", 1 | 8))                          # mapped: GTF_reading
    assert f.call("gnttab_end_foreign_access_ref", 9) == 0


def test_transfer_entry_ends_only_when_completed(ring):
    f, _ = ring
    gnttab = 0x11000
    f.call("gnttab_grant_foreign_transfer_ref", 70, 0, 0x306)
    assert struct.unpack("<HHI", f.uc.mem_read(gnttab + 70 * 8, 8)) == (2, 0, 0x306)
    assert f.call("gnttab_end_foreign_transfer_ref", 70) == 0            # nothing came: withdrawn
    assert struct.unpack("<H", f.uc.mem_read(gnttab + 70 * 8, 2))[0] == 0
    f.call("gnttab_grant_foreign_transfer_ref", 70, 0, 0x306)
    f.uc.mem_write(gnttab + 70 * 8, struct.pack("<H", 2 | 4 | 8))        # committed | completed
    assert f.call("gnttab_end_foreign_transfer_ref", 70) == 0x306


# ==== the two-domain scenario ====================================================================

MESSAGES = 4              # 16 KiB at MSG_SIZE 4096: a dozen frames each way, well under a second of CPU
GNTTAB_OP, EVTCHN_OP, VMCALL = 20, 32, 18
MAP, UNMAP, SETUP, TRANSFER = 0, 1, 2, 4
SHARED_BUF_PAGES = 33     # netfront's: 32 pages of two rx buffers + the tx header page


def run_xennet(**constants):
    from vmexit import scenarios, session
    from vmexit.costs import load_profile
    constants.setdefault("MESSAGES", MESSAGES)
    return scenarios.run_scenario("xennet", constants, load_profile("xen-pv-q9550"),
                                  session.RunOptions(max_seconds=1.0))


_RUNS: dict = {}


def mode(receive: int, shared: int):
    """One run per mode per test session."""
    key = (receive, shared)
    if key not in _RUNS:
        _RUNS[key] = run_xennet(RECEIVE=receive, SHARED_BUFFERS=shared)
    return _RUNS[key]


def calls(trace, nr: int, subop: int | None = None) -> int:
    e = trace.exits
    hit = (e["reason"] == VMCALL) & (e["qualifier"] == nr)
    if subop is not None:
        hit &= e["subop"] == subop
    return int(hit.sum())


def finished(run) -> tuple:
    dom0, domu = run.traces
    assert domu.meta["status"] == "exited", domu.meta["detail"]
    assert dom0.meta["console"] == "netback: vif1.0 connected\n"
    return dom0, domu


@pytest.mark.parametrize("shared", [0, 1])
def test_receive_completes(shared):
    dom0, domu = finished(mode(1, shared))
    payload = int(domu.meta["console"].split()[2])
    assert domu.meta["console"].startswith("netfront: received ")
    # it stops after the poll that reaches the target; that poll took what had come (the window: 5)
    assert MESSAGES * 4096 <= payload <= MESSAGES * 4096 + 5 * 1460
    # netfront's own grant table work is local: setup_table once, nothing per packet
    assert calls(domu, GNTTAB_OP) == calls(domu, GNTTAB_OP, SETUP) == 1


def test_native_receive_flips_one_page_per_frame_and_maps_each_frame_sent():
    dom0, domu = finished(mode(1, 0))
    nic = dom0.meta["nic"]
    assert calls(dom0, GNTTAB_OP, TRANSFER) == nic["rx_frames"] == dom0.meta["xen"]["transfers"]
    # domU's frames (the SYN, then the ACKs): one map and one unmap each; the rings: one map call
    assert calls(dom0, GNTTAB_OP, UNMAP) == nic["tx_frames"] == dom0.meta["xen"]["unmaps"]
    assert calls(dom0, GNTTAB_OP, MAP) == nic["tx_frames"] + 1
    assert dom0.meta["xen"]["maps"] == nic["tx_frames"] + 2


def test_shared_buffers_receive_needs_no_grant_operation_per_packet():
    dom0, domu = finished(mode(1, 1))
    assert dom0.meta["nic"]["rx_frames"] > 8 and dom0.meta["nic"]["tx_frames"] > 4
    # connect: one call for the two rings, one for the shared pages; then nothing, either way
    assert calls(dom0, GNTTAB_OP) == calls(dom0, GNTTAB_OP, MAP) == 2
    assert dom0.meta["xen"]["maps"] == 2 + SHARED_BUF_PAGES
    assert dom0.meta["xen"]["transfers"] == dom0.meta["xen"]["unmaps"] == 0


@pytest.mark.parametrize("shared", [0, 1])
def test_send_maps_each_payload(shared):
    dom0, domu = finished(mode(0, shared))
    nic = dom0.meta["nic"]
    frames = MESSAGES * 3                                          # 4096 B = 1448 + 1448 + 1200
    assert domu.meta["console"].startswith(f"netfront: sent {MESSAGES * 4096} bytes")
    assert nic["tx_frames"] == frames
    assert calls(dom0, GNTTAB_OP, UNMAP) == frames
    assert calls(dom0, GNTTAB_OP, MAP) == frames + 1 + shared    # + the connect calls
    # the peer's ACKs come back to domU: flipped in Native, copied into shared buffers in Enhanced
    assert calls(dom0, GNTTAB_OP, TRANSFER) == (0 if shared else nic["rx_frames"])


def test_send_moves_the_same_bytes_in_both_modes():
    native, shared = (mode(0, s).traces[0].meta["nic"] for s in (0, 1))
    assert native["tx_bytes"] == shared["tx_bytes"] == MESSAGES * (4096 + 3 * 54)


def test_notifications_are_suppressed_while_the_other_end_is_busy():
    """One CPU: dom0 runs until it blocks, so between two of its blocks netfront cannot re-arm its
    event indices, and each ring notifies it at most once per dom0 wake-up, however many frames the
    wake-up moved (Native pushes each rx response alone, Enhanced once per batch)."""
    for shared in (0, 1):
        dom0, _ = finished(mode(1, shared))
        sends = calls(dom0, EVTCHN_OP, 4)
        blocks = calls(dom0, 29, 1)
        assert 0 < sends <= 2 * (blocks + 1)
        assert sends < dom0.meta["nic"]["rx_frames"] + dom0.meta["nic"]["tx_frames"]


def test_a_run_is_deterministic():
    import numpy as np
    a, b = run_xennet(SHARED_BUFFERS=1, MESSAGES=2), run_xennet(SHARED_BUFFERS=1, MESSAGES=2)
    for ta, tb in zip(a.traces, b.traces):
        assert np.array_equal(ta.exits, tb.exits)
        assert ta.meta["instructions"] == tb.meta["instructions"] and ta.meta["console"] == tb.meta["console"]


def test_a_waiting_peer_streams_from_the_guests_connect():
    """The scenario's peer waits for domU's SYN: nothing is sent to a NIC that is not up yet."""
    from vmexit.devices.netpeer import TcpStreamPeer
    now = [0]
    sent = []
    peer = TcpStreamPeer(lambda: now[0], 1_000_000_000, lambda f: sent.append(f) or True, 11, b"\x00" * 6,
                         sending=True, window=5, wait_for_guest=True)
    assert peer.next_event() is None
    now[0] = 5000
    peer.on_transmit(bytes(60))                            # the connect: acknowledges nothing
    assert peer.next_event() == 5000 and peer.acked == 0
    peer.advance(5000)
    assert len(sent) == 1


@pytest.mark.parametrize("receive", [0, 1])
def test_dom0_drives_the_nic_without_exits_and_stops_with_the_workload(receive):
    """xen_start_kernel asks for I/O privilege (physdev_op set_iopl) before any port access (the PIC's
    set-up and the NIC's driver come after it): dom0 has no port exit at all; domU's end stops dom0."""
    run = mode(receive, 0)
    dom0, domu = finished(run)
    e = dom0.exits
    iopl = e[(e["reason"] == VMCALL) & (e["qualifier"] == 33)]
    assert len(iopl) == 1 and iopl["subop"][0] == 6 and iopl["value"][0] == 0
    assert not (e["reason"] == ExitReason.IO_INSTRUCTION).any()
    assert run.host["ends"][0]["status"] == "stopped"
