"""DBNet (seed 002, hypervisors/dbnet.py) on its own: the driver in the hypervisor with a real RTL8139,
the host's event channels and two domains' memory, without emulating guests. Counts by construction:
one driver entry per transmit and per NIC interrupt, the transmit's one TSD write, one event at most
per interrupt (none while the guest has not re-armed), nothing of dom0's on the data path; and bad
input from a guest gets Xen's error codes."""
from __future__ import annotations

import struct

import pytest

from vmexit.costs import load_profile
from vmexit.devices.rtl8139 import RTL8139
from vmexit.hypervisors.dbnet import (DBNET_OP, DBNETOP_ATTACH, DBNETOP_CONNECT, DBNETOP_SET_MAC, DBNETOP_XMIT,
                                      EFAULT, EINVAL, ENODEV, ENOSYS, ENOTCONN, EPERM, DBNet)
from vmexit.hypervisors.evtchn import EventChannels
from vmexit.hypervisors import hypercalls

NIC_BASE, RX_RING, RX_LEN, TX_BUFS = 0xC000, 0x200000, 32768, 0x210000
ARG, RING, BUFS, FRAME = 0x30000, 0x13000, 0x300000, 0x200000
GUEST_MAC, OTHER_MAC = bytes.fromhex("00163e000001"), bytes.fromhex("00163e0000ff")


class RAM:
    """A domain's memory, linear = physical, as the xennet domains have it."""

    def __init__(self, size: int = 4 << 20):
        self.ram = bytearray(size)

    def in_ram(self, address: int, size: int = 1) -> bool:
        return 0 <= address and address + size <= len(self.ram)

    def read_physical(self, address: int, size: int):
        return bytes(self.ram[address:address + size]) if self.in_ram(address, size) else None

    def write_physical(self, address: int, data: bytes) -> bool:
        if not self.in_ram(address, len(data)):
            return False
        self.ram[address:address + len(data)] = data
        return True

    read_virtual, write_virtual = read_physical, write_physical


class Clock:
    extra = 0


@pytest.fixture
def host():
    dom0, domu, sent = RAM(), RAM(), []
    nic = RTL8139(NIC_BASE, dom0.read_physical, dom0.write_physical, lambda: None, sent.append)
    for off, size, value in ((0x30, 4, RX_RING), (0x20, 4, TX_BUFS), (0x24, 4, TX_BUFS + 2048),
                             (0x28, 4, TX_BUFS + 4096), (0x2C, 4, TX_BUFS + 6144),
                             (0x44, 4, (2 << 11) | 0x80 | 0x0F), (0x37, 1, 0x0C), (0x3C, 2, 0x7F)):
        nic.write(NIC_BASE + off, size, value)        # dom0's driver: rtl8139_hw_start
    events = EventChannels()
    events.attach(0, dom0, lambda _p: None, privileged=True)
    events.attach(1, domu, lambda _p: None)
    db = DBNet(load_profile("xen-pv-q9550"))
    db.nic, db.events, db.irq_clock, db.irq_domid = nic, events, Clock(), 1
    ops = {0: db.handler(0, dom0, Clock(), privileged=True), 1: db.handler(1, domu, Clock(), privileged=False)}
    return db, ops, dom0, domu, nic, sent, events


def call(ops, mem, domid, cmd, *fields, fmt=None):
    mem.write_physical(ARG, struct.pack(fmt or f"<{len(fields)}I", *fields))
    return ops[domid]((cmd, ARG)).result


def attach(ops, dom0):
    assert call(ops, dom0, 0, DBNETOP_ATTACH, RX_RING, RX_LEN, TX_BUFS, 2048, 0) == 0
    assert call(ops, dom0, 0, DBNETOP_SET_MAC, 1, GUEST_MAC, fmt="<H6s") == 0


def connect(ops, domu, buffers: int = 8, domid: int = 1) -> int:
    for i in range(buffers):     # rx requests {id, pad, buffer address}
        domu.write_physical(RING + 64 + 8 * i, struct.pack("<HxxI", i, BUFS + 2048 * i))
    domu.write_physical(RING, struct.pack("<4I", buffers, 1, 0, 1))   # req_prod, req_event, rsp_prod, rsp_event
    assert call(ops, domu, domid, DBNETOP_CONNECT, RING, 0) == 0
    return struct.unpack("<I", domu.read_physical(ARG + 4, 4))[0]


def frame_to(mac: bytes, size: int = 1514) -> bytes:
    return mac + bytes.fromhex("525400abcdef") + b"\x08\x00" + bytes(size - 14)


def test_the_hypercall_is_named():
    assert hypercalls.XEN[DBNET_OP] == "dbnet_op"
    assert hypercalls.full_name(hypercalls.XEN, hypercalls.XEN_SUBOPS, DBNET_OP, 3) == "dbnet_op:xmit"


def test_control_operations_are_dom0s(host):
    db, ops, dom0, domu, *_ = host
    assert call(ops, domu, 1, DBNETOP_ATTACH, RX_RING, RX_LEN, TX_BUFS, 2048, 0) == -EPERM
    assert call(ops, domu, 1, DBNETOP_SET_MAC, 1, GUEST_MAC, fmt="<H6s") == -EPERM
    assert call(ops, dom0, 0, DBNETOP_ATTACH, RX_RING, 1000, TX_BUFS, 2048, 0) == -EINVAL   # not a power of 2
    attach(ops, dom0)
    assert call(ops, dom0, 0, DBNETOP_SET_MAC, 1, b"\x01" * 6, fmt="<H6s") == -EINVAL      # a group address
    assert db.macs == {GUEST_MAC: 1}


def test_bad_input_from_a_guest_gets_error_codes(host):
    db, ops, dom0, domu, nic, sent, _ = host
    assert ops[1]((7, ARG)).result == -ENOSYS
    assert ops[1]((DBNETOP_XMIT, 0xFFFFFFF0)).result == -EFAULT               # the argument itself
    assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 60) == -ENODEV              # not attached yet
    attach(ops, dom0)
    assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 60) == -ENOTCONN
    assert call(ops, domu, 1, DBNETOP_CONNECT, RING + 4, 0) == -EFAULT        # not a page
    connect(ops, domu)
    assert call(ops, domu, 1, DBNETOP_CONNECT, RING, 0) == -EINVAL            # twice
    assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 10) == -EINVAL             # shorter than a header
    assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 4000) == -EINVAL           # longer than a frame
    assert call(ops, domu, 1, DBNETOP_XMIT, (4 << 20) - 30, 60) == -EFAULT    # past its RAM
    assert sent == [] and db.counts.xmit_errors == 3                       # the frames refused


def test_one_transmit_is_one_hypercall_two_driver_entries_no_event(host):
    db, ops, dom0, domu, nic, sent, events = host
    attach(ops, dom0)
    connect(ops, domu)
    domu.write_physical(FRAME, frame_to(OTHER_MAC, 60))
    before = db.counts.register_accesses
    for _ in range(6):                                  # past the four descriptors: reaped each time
        assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 60) == 0
    assert len(sent) == 6 and sent[0] == frame_to(OTHER_MAC, 60)
    c = db.counts
    # per frame: the xmit's entry and the TX interrupt's; TSD written; ISR read + acked, TSD read, CR read
    assert (c.xmits, c.interrupts, c.entries, c.events) == (6, 6, 12, 0)
    assert c.register_accesses - before == 6 * 5
    assert events.domains[0].stats == {"events_sent": 0, "events_received": 0, "upcalls": 0}


def test_receive_dispatches_by_mac_with_one_event_per_unarmed_burst(host):
    db, ops, dom0, domu, nic, _, events = host
    attach(ops, dom0)
    port = connect(ops, domu)
    assert nic.receive(frame_to(GUEST_MAC)) and nic.receive(frame_to(GUEST_MAC))
    assert nic.receive(frame_to(OTHER_MAC))             # no guest has it: dropped in the bridge
    rsp_prod = struct.unpack("<I", domu.read_physical(RING + 8, 4))[0]
    assert rsp_prod == 2
    assert struct.unpack("<HHHh", domu.read_physical(RING + 64, 8)) == (0, 0, 0, 1514)
    assert domu.read_physical(BUFS + 2048, 1514) == frame_to(GUEST_MAC)
    assert events.is_pending(1, port)
    c = db.counts
    # three interrupts, three entries; the first push passed rsp_event (1), the second did not
    assert (c.interrupts, c.entries, c.rx_frames, c.rx_dropped, c.events) == (3, 3, 2, 1, 1)
    assert events.domains[0].stats["events_received"] == 0 and db.domain_stats(0)["dbnet_cycles"] == 0
    assert db.domain_stats(1)["dbnet_cycles"] == c.cycles > 0


def test_a_bad_buffer_is_an_error_response_not_a_crash(host):
    db, ops, dom0, domu, nic, *_ = host
    attach(ops, dom0)
    connect(ops, domu, buffers=1)
    domu.write_physical(RING + 64, struct.pack("<HxxI", 0, 0xFFFFFF00))     # outside its RAM
    assert nic.receive(frame_to(GUEST_MAC))
    assert struct.unpack("<HHHh", domu.read_physical(RING + 64, 8))[3] == -1   # NETIF_RSP_ERROR
    assert nic.receive(frame_to(GUEST_MAC))            # no buffer posted: dropped
    assert db.counts.rx_frames == 0 and db.counts.rx_dropped == 2


def test_the_guests_port_refuses_a_send(host):
    _, ops, dom0, domu, _, _, events = host
    attach(ops, dom0)
    port = connect(ops, domu)
    assert events.send(1, port) == -EINVAL


def test_the_bridge_dispatches_by_mac_between_guests_and_to_the_wire(host):
    """Two guests connected: a frame from one to the other's MAC is copied across in the hypervisor (no
    wire, no NIC register), one to an unknown MAC goes to the wire; each received frame reaches only the
    guest whose MAC it names."""
    db, ops, dom0, domu, nic, sent, events = host
    second, second_mac = RAM(), bytes.fromhex("00163e000002")
    events.attach(2, second, lambda _p: None)
    ops[2] = db.handler(2, second, Clock(), privileged=False)
    attach(ops, dom0)
    assert call(ops, dom0, 0, DBNETOP_SET_MAC, 2, second_mac, fmt="<H6s") == 0
    connect(ops, domu)
    port2 = connect(ops, second, domid=2)
    domu.write_physical(FRAME, frame_to(second_mac, 60))
    regs = db.counts.register_accesses
    assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 60) == 0
    assert sent == [] and db.counts.tx_local == 1 and db.counts.register_accesses == regs
    assert second.read_physical(BUFS, 60) == frame_to(second_mac, 60) and events.is_pending(2, port2)
    assert nic.receive(frame_to(second_mac)) and nic.receive(frame_to(GUEST_MAC))
    assert db.domain_stats(1)["dbnet_rx_frames"] == 1 and db.domain_stats(2)["dbnet_rx_frames"] == 2
    domu.write_physical(FRAME, frame_to(OTHER_MAC, 60))
    assert call(ops, domu, 1, DBNETOP_XMIT, FRAME, 60) == 0 and len(sent) == 1
