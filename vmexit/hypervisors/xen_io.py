"""The Xen calls of split-driver I/O for one PV domain: set_callbacks (4), xen_version (17),
grant_table_op (20), event_channel_op (32), sched_op block / poll / yield, and the event upcall.
Their guest ABI (x86_32, little endian) is xen/include/public/{xen.h, grant_table.h,
event_channel.h, sched.h}; the tables behind them are the host's (evtchn.py, grant.py).

- grant_table_op(cmd, uop, count): `count` operations read from guest memory one by one, each one's
  status written back into it; the call returns 0 unless the arguments themselves are bad (-EFAULT
  for memory it cannot read or write, -EINVAL for setup_table with count != 1, -ENOSYS for a command
  not modeled). The exit's size is the number of operations, for copy the bytes copied.
- The upcall: when the domain's vcpu_info says upcall_pending and not upcall_mask and a callback is
  registered, Xen enters the callback on its way back into the guest -- after any hypercall, and when
  the host gives the domain the CPU (vcpu.on_entry) -- with an interrupt-like frame (EFLAGS, CS, EIP;
  IF cleared, as for Linux's upcall vector) and sets upcall_mask. Not an exit: counted (`upcalls`) and
  charged the profile's host cost `event_upcall` on the receiving domain's clock.
- sched_op block enables event delivery (clears upcall_mask) and returns at once if an event waits;
  else the vCPU sleeps until an event kicks it (or an interrupt for it is pending). poll sleeps until
  one of its ports is pending, an event is kicked, or its timeout (absolute system time in ns, 0:
  none). yield ends the host's time slice.
"""
from __future__ import annotations

import struct

from ..machine import GuestCrash
from .evtchn import NR_PORTS, UPCALL_MASK
from .calls import Handled

EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38
XENVER_version = 0
XEN_VERSION = (3 << 16) | 2
MAX_POLL_PORTS = 128      # do_poll's limit (xen/common/sched/core.c)

# grant_table_op: cmd -> (bytes per operation, method name)
_GNTTABOPS = {0: (32, "_map"), 1: (24, "_unmap"), 2: (16, "_setup_table"), 4: (16, "_transfer"), 5: (24, "_copy")}
# event_channel_op: cmd -> (argument bytes, method name)
_EVTCHNOPS = {0: (12, "_bind_interdomain"), 3: (4, "_close"), 4: (4, "_send"), 6: (8, "_alloc_unbound"),
              9: (4, "_unmask")}


class XenIO:
    def __init__(self, domid: int, vcpu, machine, clock, profile, host, privileged: bool):
        self.domid = domid
        self.vcpu, self.m, self.clock = vcpu, machine, clock
        self.host = host
        self.events = host.events.attach(domid, machine, self.kick, privileged)
        self.grants = host.grants.attach(domid, machine, privileged)
        self.callback: tuple[int, int] | None = None   # (code selector, address) of the event callback
        self.failsafe: tuple[int, int] | None = None
        self.upcall_cost = profile.host_cost("event_upcall")
        self._woken = False
        self._polling: frozenset[int] | None = None

    def handlers(self) -> dict:
        return {4: self.set_callbacks, 17: self.xen_version, 20: self.grant_table_op, 32: self.event_channel_op}

    def stats(self) -> dict:
        return {**self.events.stats, **self.grants.stats}

    def grants_place(self, idx: int, gpfn: int) -> bool:
        """memory_op(XENMAPSPACE_grant_table): this domain's table frame idx at guest frame gpfn."""
        return self.host.grants.place_frame(self.domid, idx, gpfn)

    # the upcall -------------------------------------------------------------------------------------
    def deliver(self) -> None:
        """Enter the event callback if an event waits for delivery (see the module docstring)."""
        if self.callback is None or self.vcpu.ending.end is not None or not self.events.needs_delivery():
            return
        selector, address = self.callback
        eip = self.m.eip()
        try:
            self.m.deliver_to(address, selector, eip)
        except GuestCrash as crash:
            self.vcpu.crash(f"triple fault: {crash.cause} (event upcall)", eip)
            return
        self.events.shared.set_byte(UPCALL_MASK, 1)
        self.events.stats["upcalls"] += 1
        self.clock.extra += self.upcall_cost

    def kick(self, port: int | None) -> None:
        """The event channels kick this vCPU: None when an upcall became pending, else a port that did."""
        if port is None or (self._polling is not None and port in self._polling):
            self._woken = True

    def _sleep(self, ports: frozenset[int] | None, deadline: int | None = None) -> None:
        self._woken = False
        self._polling = ports
        self.vcpu.block(lambda: self._woken, deadline)

    # set_callbacks, xen_version ------------------------------------------------------------------------
    def set_callbacks(self, args) -> Handled:
        event_cs, event_eip, failsafe_cs, failsafe_eip = args[0], args[1], args[2], args[3]
        self.callback = (event_cs & 0xFFFF, event_eip) if event_eip else None
        self.failsafe = (failsafe_cs & 0xFFFF, failsafe_eip) if failsafe_eip else None
        return Handled(0, 1)

    def xen_version(self, args) -> Handled:
        return Handled(XEN_VERSION if args[0] == XENVER_version else -ENOSYS, 1)

    # sched_op block, poll, yield ---------------------------------------------------------------------
    def block(self) -> Handled:
        self.events.shared.set_byte(UPCALL_MASK, 0)   # local_event_delivery_enable
        if not self.events.needs_delivery():
            self._sleep(None)
        return Handled(0, 1)

    def poll(self, arg: int) -> Handled:
        raw = self.m.read_virtual(arg, 16)
        if raw is None:
            return Handled(-EFAULT, 1)
        ports_ptr, nr_ports, timeout = struct.unpack("<IIQ", raw)
        if nr_ports > MAX_POLL_PORTS:
            return Handled(-EINVAL, 1)
        raw = self.m.read_virtual(ports_ptr, 4 * nr_ports) if nr_ports else b""
        if raw is None:
            return Handled(-EFAULT, 1)
        ports = frozenset(struct.unpack(f"<{nr_ports}I", raw))
        if any(p >= NR_PORTS for p in ports):
            return Handled(-EINVAL, 1)
        if self.events.needs_delivery() or any(self.host.events.is_pending(self.domid, p) for p in ports):
            return Handled(0, 1)
        deadline = -(-timeout * self.clock.freq_hz // 1_000_000_000) if timeout else None
        if deadline is None or deadline > self.clock.now():
            self._sleep(ports, deadline)
        return Handled(0, 1)

    def yield_(self) -> Handled:
        self.vcpu.yield_slice()
        return Handled(0, 1)

    # event_channel_op ----------------------------------------------------------------------------------
    def event_channel_op(self, args) -> Handled:
        cmd, arg = args[0], args[1]
        if cmd not in _EVTCHNOPS:
            return Handled(-ENOSYS, 1)
        size, method = _EVTCHNOPS[cmd]
        raw = self.m.read_virtual(arg, size)
        if raw is None:
            return Handled(-EFAULT, 1)
        result = getattr(self, method)(arg, raw)
        return Handled(result, 1)

    def _out(self, address: int, value: int) -> int:
        """Write an OUT field (u32): 0, or -EFAULT."""
        return 0 if self.m.write_virtual(address, struct.pack("<I", value)) else -EFAULT

    def _bind_interdomain(self, arg: int, raw: bytes) -> int:
        remote_dom, _, remote_port, _ = struct.unpack("<HHII", raw)
        port = self.host.events.bind_interdomain(self.domid, remote_dom, remote_port)
        return port if port < 0 else self._out(arg + 8, port)

    def _alloc_unbound(self, arg: int, raw: bytes) -> int:
        dom, remote_dom, _ = struct.unpack("<HHI", raw)
        port = self.host.events.alloc_unbound(self.domid, dom, remote_dom)
        return port if port < 0 else self._out(arg + 4, port)

    def _close(self, _arg: int, raw: bytes) -> int:
        return self.host.events.close(self.domid, struct.unpack("<I", raw)[0])

    def _send(self, _arg: int, raw: bytes) -> int:
        return self.host.events.send(self.domid, struct.unpack("<I", raw)[0])

    def _unmask(self, _arg: int, raw: bytes) -> int:
        return self.host.events.unmask(self.domid, struct.unpack("<I", raw)[0])

    # grant_table_op ------------------------------------------------------------------------------------
    def grant_table_op(self, args) -> Handled:
        cmd, uop, count = args[0], args[1], args[2]
        if cmd not in _GNTTABOPS:
            return Handled(-ENOSYS, 1)
        size, method = _GNTTABOPS[cmd]
        if cmd == 2 and count != 1:
            return Handled(-EINVAL, count)
        op, items = getattr(self, method), 0
        for i in range(count):
            address = uop + i * size
            raw = self.m.read_virtual(address, size)
            if raw is None:
                return Handled(-EFAULT, items)
            out = op(raw)   # (offset, struct format, values) to write back, status first among them
            copied = out[3] if len(out) > 3 else None
            if not self.m.write_virtual(address + out[0], struct.pack(out[1], *out[2])):
                return Handled(-EFAULT, items)
            items += copied if copied is not None else 1
        return Handled(0, items)

    def _map(self, raw: bytes) -> tuple:
        host_addr, flags, ref, dom = struct.unpack_from("<QIIH", raw)
        status, handle, bus = self.host.grants.map(self.domid, host_addr, flags, ref, dom)
        return 18, "<hIQ", (status, handle, bus)

    def _unmap(self, raw: bytes) -> tuple:
        host_addr, _bus, handle = struct.unpack_from("<QQI", raw)
        return 20, "<h", (self.host.grants.unmap(self.domid, host_addr, handle),)

    def _setup_table(self, raw: bytes) -> tuple:
        dom, nr_frames, _status, frame_list = struct.unpack("<HxxIhxxI", raw)
        status, frames = self.host.grants.setup_table(self.domid, dom, nr_frames)
        if status == 0 and frames and not self.m.write_virtual(frame_list, struct.pack(f"<{len(frames)}I", *frames)):
            status = -5   # GNTST_bad_virt_addr: Xen's status when it cannot write the frame list
        return 8, "<h", (status,)

    def _transfer(self, raw: bytes) -> tuple:
        gpfn, domid, ref = struct.unpack_from("<IHxxI", raw)
        return 12, "<h", (self.host.grants.transfer(self.domid, gpfn, domid, ref),)

    def _copy(self, raw: bytes) -> tuple:
        s_ref, s_dom, s_off, d_ref, d_dom, d_off, length, flags = struct.unpack_from("<IHHIHHHH", raw)
        status = self.host.grants.copy(self.domid, (s_ref, s_dom, s_off), (d_ref, d_dom, d_off), length, flags)
        return 20, "<h", (status,), length if status == 0 else 0
