"""DBNet (seed 002, NCTU 2006): the NIC driver's fast path moved out of dom0 into the hypervisor.

One DBNet per host (XenHost.dbnet). What runs where:
- dom0 keeps the control operations: it probes and starts the RTL8139 with its own driver (reset,
  RBSTART, TSADs, RCR/TCR, CR, IMR: netback.S), then hands the data path to Xen with
  `dbnet_op(DBNETOP_attach)` (the receive ring and transmit buffers it set up: the driver segment's
  memory) and fills the bridge's MAC table with `DBNETOP_set_mac` (domid <-> MAC). Only a privileged
  domain may make either call (-EPERM).
- The fast path runs here, in its own segment at a lower privilege than Xen: every entry into it
  (a transmit hypercall, a NIC interrupt) pays one privilege switch (the profile's host cost
  `dbnet_privilege_switch`, a round trip through a gate and back). Its work is the same register
  sequence dom0's 8139too-style driver issues for the same job (`dbnet_register_access` each), the
  bridge's MAC lookup (`dbnet_bridge_lookup`), each descriptor's bookkeeping (`dbnet_descriptor`) and
  the copies (`dbnet_copy_byte` per byte). These are charged to the CPU time of the domain on whose time
  they run (clock.extra; its Xen stats' `dbnet_cycles`), and counted.
- A guest's front end: `DBNETOP_connect {rx ring page, OUT port}` registers a receive ring (io/ring.h
  layout, netif rx slots: request {u16 id, pad, u32 guest-physical buffer address}, response
  {u16 id, u16 offset, u16 flags, i16 status = length}) and binds an event port Xen notifies on;
  `DBNETOP_xmit {buffer, length}` transmits one frame: bridged to a local guest by destination MAC, else
  copied into the next transmit buffer and sent (a TSD write). One hypercall per frame, no grant.
- The physical IRQ is taken here (the NIC's line is rebound at attach): the handler reads and acks ISR,
  reaps sent descriptors, and for each received frame looks its destination MAC up, copies it into the
  guest's next posted buffer, writes the response and CAPR; then each guest's responses are pushed with
  io/ring.h's rule (notify iff the new responses pass rsp_event): one event at most per interrupt.
No dom0 switch, event channel to dom0 or grant operation is on the data path.

Bad input never crashes the run: a buffer or ring outside the caller's RAM is -EFAULT, a bad length,
command or MAC entry -EINVAL, a transmit before attach or connect -ENODEV / -ENOTCONN, no free transmit
descriptor -EAGAIN, an unknown domain -ESRCH, a full MAC table -ENOSPC (Xen's errno values).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .calls import Handled

DBNET_OP = 49                     # hypercalls.DBNET_OP; ours (seed 002 gives no interface)
DBNETOP_ATTACH, DBNETOP_SET_MAC, DBNETOP_CONNECT, DBNETOP_XMIT = 0, 1, 2, 3
EPERM, ESRCH, EFAULT, EAGAIN, ENODEV, EINVAL, ENOSPC, ENOSYS, ENOTCONN = 1, 3, 14, 11, 19, 22, 28, 38, 107
ETH_MIN, ETH_MAX = 14, 1514
MAX_MACS = 16
NUM_TX_DESC = 4
# RTL8139 registers and bits (devices/rtl8139.py; 8139too.c's names)
TX_STATUS0, RX_BUF_PTR, CHIP_CMD, INTR_STATUS = 0x10, 0x38, 0x37, 0x3E
RX_BUF_EMPTY, RX_OK_STATUS = 0x01, 0x0001
RX_ACK_BITS, TX_DONE_BITS = 0x51, 0x40000000 | 0x8000 | 0x4000
# io/ring.h: the shared ring's header, then the slots (netif rx: 8 bytes, 256 of them)
REQ_PROD, RSP_PROD, RSP_EVENT, RING_OFFSET, RX_SLOT, RING_SLOTS = 0, 8, 12, 64, 8, 256
PAGE = 0x1000


@dataclass
class Front:
    """A guest's registered receive ring and the port Xen notifies it on."""
    machine: object
    ring: int
    port: int
    req_cons: int = 0
    rsp_prod_pvt: int = 0
    pushed: int = 0


@dataclass
class Driver:
    """What dom0 handed over at attach: the NIC ring and transmit buffers in its memory."""
    machine: object
    rx_ring: int
    rx_len: int
    tx_bufs: int
    tx_size: int
    cur_rx: int = 0
    cur_tx: int = 0
    dirty_tx: int = 0


@dataclass
class Counts:
    entries: int = 0              # privilege switches into the driver segment
    register_accesses: int = 0
    bytes_copied: int = 0
    lookups: int = 0
    interrupts: int = 0
    xmits: int = 0
    xmit_errors: int = 0
    tx_local: int = 0             # frames bridged from one guest to another without the wire
    rx_frames: int = 0
    rx_dropped: int = 0           # no guest for the MAC, or no buffer posted
    events: int = 0
    cycles: int = 0
    per_domain: dict = field(default_factory=dict)   # domid -> {xmits, rx_frames, events, cycles}


class DBNet:
    def __init__(self, profile):
        self.cost = {k: profile.host_cost(f"dbnet_{k}")
                     for k in ("privilege_switch", "register_access", "descriptor", "copy_byte", "bridge_lookup")}
        self.nic = None               # the host's RTL8139 (the scenario's; dom0 set it up)
        self.events = None            # the host's event channels (XenHost.events)
        self.irq_clock = None         # the clock interrupts are charged to (the domain their timer runs on)
        self.irq_domid = None
        self.driver: Driver | None = None
        self.macs: dict[bytes, int] = {}
        self.fronts: dict[int, Front] = {}
        self.counts = Counts()
        self._clock = None            # whose time the driver runs on now
        self._domid = None
        self._in_driver = False
        self._irq_pending = False

    # the hypercall ------------------------------------------------------------------------------------
    def handler(self, domid: int, machine, clock, privileged: bool):
        """dbnet_op for one domain: (cmd, arg pointer) -> Handled."""
        def dbnet_op(args) -> Handled:
            cmd, arg = args[0], args[1]
            ops = {DBNETOP_ATTACH: (20, self._attach, True), DBNETOP_SET_MAC: (8, self._set_mac, True),
                   DBNETOP_CONNECT: (8, self._connect, False), DBNETOP_XMIT: (8, self._xmit, False)}
            if cmd not in ops:
                return Handled(-ENOSYS, 1)
            size, op, control = ops[cmd]
            if control and not privileged:
                return Handled(-EPERM, 1)
            raw = machine.read_virtual(arg, size)
            if raw is None:
                return Handled(-EFAULT, 1)
            self._clock, self._domid = clock, domid
            try:
                result = op(domid, machine, arg, raw)
            finally:
                self._clock = self._domid = None
            return Handled(result, 1, then=(lambda _eip: True) if cmd == DBNETOP_XMIT else None)
        return dbnet_op

    def _attach(self, _domid, machine, _arg, raw) -> int:
        rx_ring, rx_len, tx_bufs, tx_size, cur_rx = struct.unpack("<5I", raw)
        if self.nic is None:
            return -ENODEV
        if rx_len == 0 or rx_len & (rx_len - 1) or not 60 <= tx_size <= 0x1FFF \
                or not machine.in_ram(rx_ring, rx_len) or not machine.in_ram(tx_bufs, tx_size * NUM_TX_DESC):
            return -EINVAL
        self.driver = Driver(machine, rx_ring, rx_len, tx_bufs, tx_size, cur_rx % rx_len)
        self.nic._irq = self.interrupt   # the physical IRQ is Xen's from now on
        return 0

    def _set_mac(self, _domid, _machine, _arg, raw) -> int:
        domid, mac = struct.unpack_from("<H", raw)[0], bytes(raw[2:8])
        if self.events is not None and domid not in self.events.domains:
            return -ESRCH
        if mac[0] & 1:
            return -EINVAL           # a group address cannot name one guest
        if mac not in self.macs and len(self.macs) >= MAX_MACS:
            return -ENOSPC
        self.macs[mac] = domid
        return 0

    def _connect(self, domid, machine, arg, raw) -> int:
        ring = struct.unpack_from("<I", raw)[0]
        if ring % PAGE or not machine.in_ram(ring, PAGE):
            return -EFAULT
        if domid in self.fronts:
            return -EINVAL
        port = self.events.bind_xen(domid)
        if port < 0:
            return port
        if not machine.write_virtual(arg + 4, struct.pack("<I", port)):
            return -EFAULT
        self.fronts[domid] = Front(machine, ring, port)
        return 0

    def _xmit(self, domid, machine, _arg, raw) -> int:
        buf, length = struct.unpack("<II", raw)
        d = self.driver
        if d is None or self.nic is None:
            return -ENODEV
        if domid not in self.fronts:
            return -ENOTCONN
        if not ETH_MIN <= length <= min(ETH_MAX, d.tx_size):
            return self._xmit_error(-EINVAL)
        frame = machine.read_physical(buf, length) if machine.in_ram(buf, length) else None
        if frame is None:
            return self._xmit_error(-EFAULT)
        self._enter()
        try:
            self._charge("bridge_lookup")
            self.counts.lookups += 1
            dest = self.macs.get(bytes(frame[:6]))
            if dest is not None and dest in self.fronts:     # guest to guest: no wire
                self.counts.tx_local += 1
                self._deliver(dest, frame)
            elif not self._wire(frame):
                return self._xmit_error(-EAGAIN)
            self.counts.xmits += 1
            self._domain(domid)["xmits"] += 1
        finally:
            self._leave()
        self._push_all()
        return 0

    def _xmit_error(self, err: int) -> int:
        self.counts.xmit_errors += 1
        return err

    def _wire(self, frame: bytes) -> bool:
        """8139too's start_xmit: the frame into the next descriptor's buffer, its TSD written."""
        d = self.driver
        if d.cur_tx - d.dirty_tx >= NUM_TX_DESC:
            return False
        n = d.cur_tx % NUM_TX_DESC
        self._charge("descriptor")
        d.machine.write_physical(d.tx_bufs + n * d.tx_size, frame)
        self._copied(len(frame))
        self._reg_write(TX_STATUS0 + 4 * n, 4, max(60, len(frame)))
        d.cur_tx += 1
        return True

    # the interrupt handler ----------------------------------------------------------------------------
    def interrupt(self) -> None:
        """The NIC's line: taken in Xen. Raised inside a transmit, it is handled once the driver is left
        (Xen runs with interrupts off), as its own entry."""
        if self._in_driver:
            self._irq_pending = True
            return
        self._handle_irq()

    def _handle_irq(self) -> None:
        self.counts.interrupts += 1
        self._enter()
        try:
            status = self._reg_read(INTR_STATUS, 2)
            if status & ~RX_ACK_BITS:
                self._reg_write(INTR_STATUS, 2, status & ~RX_ACK_BITS)
            self._tx_reap()
            self._rx()
        finally:
            self._leave()
        self._push_all()

    def _tx_reap(self) -> None:
        d = self.driver
        while d.dirty_tx != d.cur_tx:
            if not self._reg_read(TX_STATUS0 + 4 * (d.dirty_tx % NUM_TX_DESC), 4) & TX_DONE_BITS:
                break
            d.dirty_tx += 1

    def _rx(self) -> None:
        """8139too's rtl8139_rx: while the ring holds frames, the one at cur_rx to its guest, CAPR on."""
        d = self.driver
        while not self._reg_read(CHIP_CMD, 1) & RX_BUF_EMPTY:
            head = d.machine.read_physical(d.rx_ring + d.cur_rx, 4)
            if head is None:
                break
            status, length = struct.unpack("<HH", head)
            frame = d.machine.read_physical(d.rx_ring + d.cur_rx + 4, max(0, length - 4)) \
                if status & RX_OK_STATUS and length > 4 else None
            d.cur_rx = ((d.cur_rx + length + 4 + 3) & ~3) % d.rx_len
            self._charge("descriptor")
            if frame is not None:
                self._charge("bridge_lookup")
                self.counts.lookups += 1
                dest = self.macs.get(bytes(frame[:6]))
                if dest is None or dest not in self.fronts or not self._deliver(dest, frame):
                    self.counts.rx_dropped += 1
            self._reg_write(RX_BUF_PTR, 2, (d.cur_rx - 16) & 0xFFFF)
            status = self._reg_read(INTR_STATUS, 2)
            if status & RX_ACK_BITS:
                self._reg_write(INTR_STATUS, 2, status & RX_ACK_BITS)

    def _deliver(self, domid: int, frame: bytes) -> bool:
        """The frame into the guest's next posted buffer and its response written (pushed later)."""
        f = self.fronts[domid]
        m = f.machine
        raw = m.read_physical(f.ring + REQ_PROD, 4)
        req_prod = struct.unpack("<I", raw)[0]
        if (req_prod - f.req_cons) & 0xFFFFFFFF == 0 or f.rsp_prod_pvt - f.req_cons >= RING_SLOTS:
            return False
        slot = f.ring + RING_OFFSET + (f.req_cons % RING_SLOTS) * RX_SLOT
        rid, addr = struct.unpack("<HxxI", m.read_physical(slot, 8))
        f.req_cons += 1
        ok = m.in_ram(addr, len(frame)) and m.write_physical(addr, frame)
        if ok:
            self._copied(len(frame))
            self.counts.rx_frames += 1
            self._domain(domid)["rx_frames"] += 1
        status = len(frame) if ok else -1       # NETIF_RSP_ERROR for a bad buffer
        rslot = f.ring + RING_OFFSET + (f.rsp_prod_pvt % RING_SLOTS) * RX_SLOT
        m.write_physical(rslot, struct.pack("<HHHh", rid, 0, 0, status))
        f.rsp_prod_pvt += 1
        return ok

    def _push_all(self) -> None:
        """RING_PUSH_RESPONSES_AND_CHECK_NOTIFY for each guest with new responses: one event at most."""
        for domid, f in self.fronts.items():
            if f.rsp_prod_pvt == f.pushed:
                continue
            old, new = f.pushed, f.rsp_prod_pvt
            f.machine.write_physical(f.ring + RSP_PROD, struct.pack("<I", new & 0xFFFFFFFF))
            f.pushed = new
            event = struct.unpack("<I", f.machine.read_physical(f.ring + RSP_EVENT, 4))[0]
            if (new - event) & 0xFFFFFFFF < (new - old) & 0xFFFFFFFF:
                self.counts.events += 1
                self._domain(domid)["events"] += 1
                self.events.raise_xen(domid, f.port)

    # entering and leaving the driver segment; what its work costs --------------------------------------
    def _enter(self) -> None:
        self._in_driver = True
        self.counts.entries += 1
        self._charge("privilege_switch")

    def _leave(self) -> None:
        self._in_driver = False
        if self._irq_pending:
            self._irq_pending = False
            self._handle_irq()           # on the same CPU time as the call it interrupted

    def _reg_read(self, offset: int, size: int) -> int:
        self.counts.register_accesses += 1
        self._charge("register_access")
        return self.nic.read(self.nic.base + offset, size)

    def _reg_write(self, offset: int, size: int, value: int) -> None:
        self.counts.register_accesses += 1
        self._charge("register_access")
        self.nic.write(self.nic.base + offset, size, value)

    def _copied(self, n: int) -> None:
        self.counts.bytes_copied += n
        self._charge("copy_byte", n)

    def _charge(self, what: str, n: int = 1) -> None:
        cycles = self.cost[what] * n
        self.counts.cycles += cycles
        clock, domid = (self._clock, self._domid) if self._clock is not None else (self.irq_clock, self.irq_domid)
        if clock is not None:
            clock.extra += cycles
            self._domain(domid)["cycles"] += cycles

    def _domain(self, domid: int) -> dict:
        return self.counts.per_domain.setdefault(domid, {"xmits": 0, "rx_frames": 0, "events": 0, "cycles": 0})

    def domain_stats(self, domid: int) -> dict:
        """The domain's share, for its Xen stats: what the driver did for it, and on its time."""
        d = self.counts.per_domain.get(domid, {})
        return {"dbnet_xmits": d.get("xmits", 0), "dbnet_rx_frames": d.get("rx_frames", 0),
                "dbnet_events": d.get("events", 0), "dbnet_cycles": d.get("cycles", 0)}

    def facts(self) -> dict:
        """What the driver did, for the run's host facts."""
        c = self.counts
        return {"entries": c.entries, "register_accesses": c.register_accesses, "bytes_copied": c.bytes_copied,
                "lookups": c.lookups, "interrupts": c.interrupts, "xmits": c.xmits, "xmit_errors": c.xmit_errors,
                "tx_local": c.tx_local, "rx_frames": c.rx_frames, "rx_dropped": c.rx_dropped, "events": c.events,
                "cycles": c.cycles, "per_domain": {str(k): dict(v) for k, v in sorted(c.per_domain.items())}}
