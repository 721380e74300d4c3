"""Xen event channels (the 2-level ABI of xen/include/public/event_channel.h and xen.h's shared_info),
one table per host shared by every domain's Xen model.

Each domain has ports 1..1023 (port 0 is reserved at domain creation, as Xen does); a port is free,
unbound (waiting for a given remote domain to bind it) or interdomain (bound to a remote port). The
event state a guest sees lives in its own memory, in the shared info page it placed with memory_op
(x86_32 layout): vcpu_info[0].evtchn_upcall_pending (byte 0), evtchn_upcall_mask (byte 1),
evtchn_pending_sel (u32 at 4), then evtchn_pending[32] at 0x800 and evtchn_mask[32] at 0x880 (u32
words, port p is bit p % 32 of word p / 32). Until the guest places the page, the state is kept in a
page of the model's own and copied there when it is placed (Xen's page exists from domain creation).

Xen's rules (xen/common/event_channel.c, as far as they are modeled):
- send on an interdomain port sets the remote port pending; unless it already was, and unless the port
  is masked, the selector bit of its word is set and, if it was clear, upcall_pending is set and the
  receiving vCPU is kicked (woken if blocked). A vCPU polling the port is woken in any case. send on an
  unbound port is dropped silently (0); on a free or reserved port it is -EINVAL.
- bind_interdomain takes a remote port that is unbound for the caller, and then sets the new local port
  pending (Xen does so in case a notification was lost while the remote end was unbound).
- close frees a port and returns its remote end, if bound, to unbound for this domain; unmask clears
  the mask bit and raises the upcall if the port is pending.
- alloc_unbound for another domain needs privilege (dom0, or the toolstack before boot).
Errors: -EINVAL (bad, foreign or free port, wrong state), -ESRCH (no such domain), -ENOSPC (no free
port), -EPERM.

Counted per domain: events_sent (sends on a bound port), events_received (sends that reached one of
its ports, already pending or not) and upcalls (callback entries, counted by the Xen model).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

DOMID_SELF = 0x7FF0
NR_PORTS = 1024            # 2-level ABI, 32-bit guest: 32 selector bits x 32 ports per word
EPERM, ESRCH, EFAULT, EINVAL, ENOSPC = 1, 3, 14, 22, 28
PAGE = 0x1000

# offsets in the shared info page (x86_32)
UPCALL_PENDING, UPCALL_MASK, PENDING_SEL = 0, 1, 4
EVTCHN_PENDING, EVTCHN_MASK = 0x800, 0x880

FREE, RESERVED, UNBOUND, INTERDOMAIN = "free", "reserved", "unbound", "interdomain"
XEN_BOUND = "xen"          # a port Xen itself notifies (as a VIRQ port): DBNet's (dbnet.py)


@dataclass
class Channel:
    state: str
    remote_dom: int = 0
    remote_port: int = 0


class SharedInfo:
    """One domain's shared info page: in its RAM once placed, in a page of our own before."""

    def __init__(self, machine):
        self.m = machine
        self.base: int | None = None
        self._detached = bytearray(PAGE)

    def place(self, base: int) -> None:
        """The guest placed the page at `base`: it sees the state so far there."""
        data = bytes(self._detached) if self.base is None else self.m.read_physical(self.base, PAGE)
        self.base = base
        self.m.write_physical(base, data)

    def read(self, offset: int, size: int) -> bytes:
        if self.base is None:
            return bytes(self._detached[offset:offset + size])
        return bytes(self.m.ram[self.base + offset:self.base + offset + size])

    def write(self, offset: int, data: bytes) -> None:
        if self.base is None:
            self._detached[offset:offset + len(data)] = data
        else:
            self.m.write_physical(self.base + offset, data)

    def byte(self, offset: int) -> int:
        return self.read(offset, 1)[0]

    def set_byte(self, offset: int, value: int) -> None:
        self.write(offset, bytes((value,)))

    def test_and_set(self, base: int, bit: int, value: bool = True) -> bool:
        """Set (or clear) bit `bit` of the u32 bitmap at `base`; returns its old value."""
        offset = base + 4 * (bit // 32)
        word = struct.unpack("<I", self.read(offset, 4))[0]
        mask = 1 << (bit % 32)
        new = word | mask if value else word & ~mask
        if new != word:
            self.write(offset, struct.pack("<I", new))
        return bool(word & mask)

    def test(self, base: int, bit: int) -> bool:
        return bool(struct.unpack("<I", self.read(base + 4 * (bit // 32), 4))[0] & (1 << (bit % 32)))


class DomainEvents:
    """One domain's ports, its shared info and how to kick its vCPU."""

    def __init__(self, domid: int, machine, kick: Callable[[int | None], None], privileged: bool):
        self.domid = domid
        self.shared = SharedInfo(machine)
        self.kick = kick            # kick(None): upcall newly pending; kick(port): that port became pending
        self.privileged = privileged
        self.ports: dict[int, Channel] = {0: Channel(RESERVED)}
        self.stats = {"events_sent": 0, "events_received": 0, "upcalls": 0}

    def channel(self, port: int) -> Channel | None:
        """The port's channel if it is a valid allocated port, else None."""
        chn = self.ports.get(port) if 0 <= port < NR_PORTS else None
        return chn if chn is not None and chn.state != FREE else None

    def free_port(self) -> int:
        for port in range(1, NR_PORTS):
            if port not in self.ports or self.ports[port].state == FREE:
                return port
        return -ENOSPC

    def needs_delivery(self) -> bool:
        """Xen's local_events_need_delivery: upcall pending and not masked."""
        return bool(self.shared.byte(UPCALL_PENDING)) and not self.shared.byte(UPCALL_MASK)


class EventChannels:
    """Every domain's event channels on one host."""

    def __init__(self):
        self.domains: dict[int, DomainEvents] = {}

    def attach(self, domid: int, machine, kick: Callable[[int | None], None],
               privileged: bool = False) -> DomainEvents:
        if domid in self.domains:
            raise ValueError(f"domain {domid} already has event channels")
        self.domains[domid] = DomainEvents(domid, machine, kick, privileged)
        return self.domains[domid]

    # the operations (caller: the calling domid; None is the toolstack, before boot) ---------------------
    def alloc_unbound(self, caller: int | None, dom: int, remote_dom: int) -> int:
        """A new unbound port of `dom` that `remote_dom` may bind: the port, or -errno."""
        if dom == DOMID_SELF and caller is not None:
            dom = caller
        if remote_dom == DOMID_SELF and caller is not None:
            remote_dom = caller
        if caller is not None and dom != caller and not self.domains[caller].privileged:
            return -EPERM
        d = self.domains.get(dom)
        if d is None:
            return -ESRCH
        port = d.free_port()
        if port > 0:
            d.ports[port] = Channel(UNBOUND, remote_dom)
        return port

    def bind_interdomain(self, caller: int, remote_dom: int, remote_port: int) -> int:
        """Bind a new local port to the remote domain's unbound port: the local port, or -errno."""
        if remote_dom == DOMID_SELF:
            remote_dom = caller
        ld, rd = self.domains[caller], self.domains.get(remote_dom)
        if rd is None:
            return -ESRCH
        rchn = rd.channel(remote_port)
        if rchn is None or rchn.state != UNBOUND or rchn.remote_dom != caller:
            return -EINVAL
        port = ld.free_port()
        if port < 0:
            return port
        ld.ports[port] = Channel(INTERDOMAIN, remote_dom, remote_port)
        rd.ports[remote_port] = Channel(INTERDOMAIN, caller, port)
        self._set_pending(ld, port)
        return port

    def send(self, caller: int, port: int) -> int:
        d = self.domains[caller]
        chn = d.channel(port)
        if chn is None or chn.state == RESERVED:
            return -EINVAL
        if chn.state == UNBOUND:
            return 0  # Xen drops a notification on an unbound port silently
        if chn.state == XEN_BOUND:
            return -EINVAL  # Xen's evtchn_send refuses a VIRQ-like port
        d.stats["events_sent"] += 1
        remote = self.domains[chn.remote_dom]
        remote.stats["events_received"] += 1
        self._set_pending(remote, chn.remote_port)
        return 0

    def close(self, caller: int, port: int) -> int:
        d = self.domains[caller]
        chn = d.channel(port)
        if chn is None or chn.state == RESERVED:
            return -EINVAL
        if chn.state == INTERDOMAIN:
            remote = self.domains[chn.remote_dom]
            remote.ports[chn.remote_port] = Channel(UNBOUND, caller)
        d.ports[port] = Channel(FREE)
        d.shared.test_and_set(EVTCHN_PENDING, port, False)
        return 0

    def unmask(self, caller: int, port: int) -> int:
        d = self.domains[caller]
        if d.channel(port) is None:
            return -EINVAL
        sh = d.shared
        if sh.test_and_set(EVTCHN_MASK, port, False) and sh.test(EVTCHN_PENDING, port) \
                and not sh.test_and_set(PENDING_SEL, port // 32):
            self._mark_events_pending(d)
        return 0

    def is_pending(self, domid: int, port: int) -> bool:
        return self.domains[domid].shared.test(EVTCHN_PENDING, port)

    # ports Xen notifies itself (DBNet's, like a VIRQ's: bind_virq / send_guest_global_virq) -------
    def bind_xen(self, domid: int) -> int:
        """A new port of `domid` that Xen notifies: the port, or -errno."""
        d = self.domains.get(domid)
        if d is None:
            return -ESRCH
        port = d.free_port()
        if port > 0:
            d.ports[port] = Channel(XEN_BOUND)
        return port

    def raise_xen(self, domid: int, port: int) -> None:
        """Xen notifies a port bound with bind_xen."""
        d = self.domains[domid]
        chn = d.channel(port)
        if chn is not None and chn.state == XEN_BOUND:
            d.stats["events_received"] += 1
            self._set_pending(d, port)

    # Xen's evtchn_set_pending and vcpu_mark_events_pending -------------------------------------------
    def _set_pending(self, d: DomainEvents, port: int) -> None:
        sh = d.shared
        if sh.test_and_set(EVTCHN_PENDING, port):
            return
        if not sh.test(EVTCHN_MASK, port) and not sh.test_and_set(PENDING_SEL, port // 32):
            self._mark_events_pending(d)
        d.kick(port)  # a vCPU polling this port wakes

    @staticmethod
    def _mark_events_pending(d: DomainEvents) -> None:
        if d.shared.byte(UPCALL_PENDING):
            return
        d.shared.set_byte(UPCALL_PENDING, 1)
        d.kick(None)
