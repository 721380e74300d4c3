"""Seed 002's DBNet on the xennet host (`vmexit run xennet -D DBNET=1 [-D GUESTS=1..4]`), and the
`dbnet` scenario entry whose paper compares the split-driver path, DBNet and native Linux.

run_host() is xennet's host with DBNet (xennet.py hands DBNET=1 runs to it): dom0 (netback.S) probes
and starts the NIC and hands it to the hypervisor's driver (hypervisors/dbnet.py), then sleeps;
GUESTS domUs (netfront.S in DBNET mode, domids 1..GUESTS, MACs 00:16:3e:00:00:<domid>) each run
netperf over it. The other end of the wire is one TCP stream per guest (Streams: each a TcpStreamPeer
to its guest's MAC, the link's rate shared equally, the socket buffer's window each). Its events
belong to no domain: they follow the CPU (host.py's roaming devices), so a frame arriving while dom0
sleeps does not schedule dom0 -- the interrupt is Xen's, taken in whatever context is current (an
EXTERNAL_INTERRUPT exit when a guest is running), and the driver's interrupt work is charged to the
domain whose time it runs on. The run ends when every guest has ended.
"""
from __future__ import annotations

from dataclasses import replace

from ..domain import Domain
from ..devices.netpeer import TcpStreamPeer
from ..hypervisors.dbnet import DBNet
from ..hypervisors.xen_host import XenHost
from ..loader import LoadError
from ..vcpu import TimedDevice
from .base import SIF_INITDOMAIN, SIF_PRIVILEGED, Scenario, run_domains, start_info

MAX_GUESTS = 4


def guest_mac(domid: int) -> bytes:
    """Guest domid's MAC: Xen's OUI 00:16:3e, the domid last (domid 1 is xennet's DOMU_MAC)."""
    return bytes.fromhex("00163e0000") + bytes((domid,))


class Streams:
    """One TCP stream per guest on one wire (see the module docstring); the peer of devices/pc.py's NIC."""
    name = "netpeer"

    def __init__(self, freq_hz: int, deliver, irq: int, macs: list[bytes], options, rate_bps: int, window: int):
        self._now = lambda: 0
        share = max(1, rate_bps // len(macs))
        self.irq = irq
        self.peers = {mac: TcpStreamPeer(lambda: self._now(), freq_hz, deliver, irq, mac, options.net_ack_every,
                                         options.net_ack_delay_us * 1e-6, options.net_peer_sends,
                                         options.net_frame_size, share, window, wait_for_guest=True)
                      for mac in macs}
        self.frames_unrouted = 0

    def on_transmit(self, frame: bytes) -> None:
        peer = self.peers.get(bytes(frame[6:12]))     # the stream of the guest that sent it
        if peer is None:
            self.frames_unrouted += 1
        else:
            peer.on_transmit(frame)

    def next_event(self) -> int | None:
        dues = [t for t in (p.next_event() for p in self.peers.values()) if t is not None]
        return min(dues) if dues else None

    def advance(self, now: int) -> int:
        return sum(p.advance(now) for p in self.peers.values())


def run_host(images: dict, profile, options, progress=None):
    """dom0 = images[0], every guest from images[1]; wired and run as the module docstring says."""
    from .xennet import LINK_RATE_BPS, MSS, _constant
    front = images[1]
    n = _constant(front, "GUESTS", 1)
    if not 1 <= n <= MAX_GUESTS:
        raise LoadError(f"GUESTS={n}: DBNet's host runs 1 to {MAX_GUESTS} guests")
    receive, sockbuf = _constant(front, "RECEIVE", 1), _constant(front, "SOCKBUF", 8192)
    xen = XenHost(dbnet=DBNet(profile))
    dom0_options = replace(options, hypervisor="xen-pv", nic=True, net_peer_sends=bool(receive),
                           net_peer_waits=True, net_rate_bps=options.net_rate_bps or LINK_RATE_BPS,
                           net_dest_mac=guest_mac(1).hex(), net_window=max(1, sockbuf // MSS))
    dom0 = Domain(images[0], profile, dom0_options, domid=0, xen_host=xen)
    guests = [Domain(front, profile, replace(options, hypervisor="xen-pv", nic=False), domid=i, xen_host=xen)
              for i in range(1, n + 1)]
    roaming = _streams(dom0, [guest_mac(g.domid) for g in guests], dom0_options)
    db = xen.dbnet
    db.nic, db.events = dom0.devices["nic"], xen.events
    streams = roaming.device

    def on_hold(d) -> None:
        db.irq_clock, db.irq_domid = d.clock, d.domid
        streams._now = d.clock.now
    ports = [xen.events.alloc_unbound(None, g.domid, 0) for g in guests]   # the toolstack's vif channels
    start_info(dom0, peer=1, port=ports[0], flags=SIF_PRIVILEGED | SIF_INITDOMAIN)
    for g, port in zip(guests, ports):
        start_info(g, peer=0, port=port, mac=guest_mac(g.domid))
    run = run_domains([dom0, *guests], profile, options, progress, workload=guests, roaming=[roaming],
                      on_hold=on_hold)
    run.host.update(_facts(dom0, streams, guests, run.host["cycles"] / profile.freq_hz, bool(receive)))
    run.host["dbnet"] = db.facts()
    return run


def _streams(dom0, macs: list[bytes], options) -> TimedDevice:
    """dom0's single peer replaced by one stream per guest; its timed entry taken off dom0's vCPU."""
    nic, old = dom0.devices["nic"], dom0.devices["peer"]
    entry = next(t for t in dom0.vcpu.timed if t.device is old)
    dom0.vcpu.timed.remove(entry)
    streams = Streams(dom0.clock.freq_hz, nic.receive, old.irq, macs, options, options.net_rate_bps,
                      options.net_window)
    dom0.devices["peer"] = streams
    return TimedDevice(streams, entry.vector)


def _facts(dom0, streams: Streams, guests: list, seconds: float, receive: bool) -> dict:
    """The wire's totals (as xennet's) and each guest's stream."""
    nic = dom0.devices["nic"]
    moved = nic.rx_bytes if receive else nic.tx_bytes
    per = {}
    for g in guests:
        p = streams.peers[guest_mac(g.domid)]
        b = p.frames_sent * p.frame_size if receive else p.bytes_received
        per[str(g.domid)] = {"net_bytes": b, "throughput_mbit_s": b * 8 / seconds / 1e6 if seconds else 0.0}
    return {"net_bytes": moved, "throughput_mbit_s": moved * 8 / seconds / 1e6 if seconds else 0.0,
            "guests": per}


# the `dbnet` entry: xennet with DBNET=1 by default, and its paper: split path vs DBNet vs native ---------
DIRECTIONS = {"transmit": 0, "receive": 1}    # -> RECEIVE


def run_dbnet(constants: dict, profile, options, progress=None):
    """`vmexit run dbnet`: the xennet host with DBNet (DBNET=1 unless -D says otherwise)."""
    from . import xennet
    return xennet.xennet({"DBNET": 1, **constants}, profile, options, progress)


def measure(trace) -> dict:
    """Throughput, CPU per packet (the host's busy time over the NIC's frames, both ways) and exits per
    packet, from a run's trace (a merged xennet run or one native guest)."""
    meta = trace.meta
    nic = meta.get("nic") or {}
    frames = int(nic.get("rx_frames", 0)) + int(nic.get("tx_frames", 0))
    host = meta.get("host") or {}
    mbit = float(host.get("throughput_mbit_s", nic.get("throughput_mbit_s", 0.0)))
    busy = int(meta.get("cycles", 0)) - int(meta.get("idle_cycles", 0))
    per = 1.0 / frames if frames else 0.0
    return {"mbit_s": mbit, "cpu_us": busy / float(meta["freq_hz"]) * 1e6 * per,
            "exits": len(trace.exits) * per, "frames": frames}


def native_net(receive: int, sockbuf: int = 8192) -> dict:
    """The peer of the Linux baseline, as RunOptions fields: xennet's (1 Gb/s, the socket buffer's
    window), streaming from the start when the guest receives (netperf.S sends nothing first)."""
    from .xennet import LINK_RATE_BPS, MSS
    return {"nic": True, "net_peer_sends": bool(receive), "net_peer_waits": not receive,
            "net_rate_bps": LINK_RATE_BPS, "net_window": max(1, sockbuf // MSS)}


def native_run(receive: int, constants: dict, profile):
    """The Linux baseline: the netperf guest driving the same NIC itself, no hypervisor, the same peer
    (1 Gb/s, the socket buffer's window; streaming from the start when the guest receives: netperf.S
    sends nothing before the first frame)."""
    from .. import guests, session
    keep = {k: v for k, v in constants.items() if k in ("MESSAGES", "MSG_SIZE")}
    image = guests.resolve("netperf", {"MESSAGES": 256, "MSG_SIZE": 4096, **keep, "RECEIVE": receive})
    options = session.RunOptions(hypervisor="native", **native_net(receive, constants.get("SOCKBUF", 8192)))
    return session.run(image, profile, options)


def beside_paper(constants: dict, run):
    """Seed 002's orderings beside ours: per direction (RECEIVE, both unless -D gives one), the split
    path (DBNET=0), DBNet (DBNET=1) and native Linux (the netperf guest under `native`)."""
    from .. import papers
    from ..costs import load_profile
    paper = papers.dbnet_paper()
    chosen = {k: v for k, v in DIRECTIONS.items() if "RECEIVE" not in constants or constants["RECEIVE"] == v}
    if not chosen:
        raise ValueError("RECEIVE is 0 (transmit) or 1 (receive)")
    n = constants.get("GUESTS", 1)
    base = {k: v for k, v in constants.items() if k not in ("DBNET", "RECEIVE", "GUESTS", "VIFS")}
    ours: dict[str, dict] = {}
    for direction, receive in chosen.items():
        split = run(dict(base, RECEIVE=receive, DBNET=0))
        db = run(dict(base, RECEIVE=receive, DBNET=1))
        native = native_run(receive, base, load_profile(split.meta.get("profile") or "xen-pv-q9550"))
        ours[direction] = {"Xen split path": measure(split), "DBNet": measure(db),
                           "native Linux": measure(native)}
        if n > 1:
            split_n = run(dict(base, RECEIVE=receive, DBNET=0, GUESTS=n, VIFS=n))
            ours[direction][f"Xen split path, {n} guests: the slowest"] = slowest(split_n)
            ours[direction][f"DBNet, {n} guests: the slowest"] = several(
                run(dict(base, RECEIVE=receive, DBNET=1, GUESTS=n)), n, ours[direction]["Xen split path"], split_n)
    return papers.beside_dbnet_paper(paper, ours)


def slowest(trace) -> dict:
    """A run of several guests (DBNet's or the split path's): measure() with the slowest guest's
    throughput."""
    per = (trace.meta.get("host") or {}).get("guests") or {}
    return dict(measure(trace), mbit_s=min((float(g["throughput_mbit_s"]) for g in per.values()), default=0.0))


def several(trace, n: int, split_one: dict, split_n=None) -> dict:
    """The slowest guest of a DBNet run of n guests, beside the split path's share for one of n guests:
    measured, the slowest guest of the split path's run of n guests (split_n: netback serving n
    frontends); without that run, its one-guest throughput / n (an estimate: the split path's one-guest
    run already keeps the CPU busy, so n guests would share about that throughput)."""
    bound = slowest(split_n)["mbit_s"] if split_n is not None else split_one["mbit_s"] / n
    return dict(slowest(trace), bound=bound, measured=split_n is not None)


ENTRY = Scenario("dbnet", "seed 002's DBNet: xennet's host with the NIC driver's fast path in the hypervisor "
                          "(-D DBNET=0 is the split path); --paper: split path vs DBNet vs native Linux",
                 "xen-pv-q9550", run_dbnet, lambda: _sources(), paper=beside_paper)


def _sources():
    from .xennet import xennet_sources
    return xennet_sources()
