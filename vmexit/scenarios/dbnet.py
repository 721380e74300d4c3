"""Seed 002's DBNet on the xennet host (`vmexit run xennet -D DBNET=1`), and the `dbnet` scenario entry
whose paper compares the split-driver path, DBNet and native Linux.

The wiring DBNet adds to xennet's (wire()): the host's NIC -- probed and started by dom0's driver, as
before -- is handed to the hypervisor's driver (hypervisors/dbnet.py) once dom0 attaches it; the
NIC's peer, the other end of the wire, keeps its events on the clock of the guest it talks to (so a
frame coming in while dom0 sleeps does not schedule dom0: the interrupt is Xen's, taken on the CPU
the guest runs on, an EXTERNAL_INTERRUPT exit when the guest is running), and the driver's work in
interrupts is charged to that guest's time.
"""
from __future__ import annotations

from ..hypervisors.dbnet import DBNet
from .base import Scenario


def make(profile) -> DBNet:
    return DBNet(profile)


def wire(dbnet: DBNet, events, dom0, domu) -> None:
    """The host's NIC and its peer, for DBNet: see the module docstring."""
    nic, peer = dom0.devices["nic"], dom0.devices["peer"]
    dbnet.nic = nic
    dbnet.events = events
    dbnet.irq_clock, dbnet.irq_domid = domu.clock, domu.domid
    moved = [t for t in dom0.vcpu.timed if t.device is peer]
    for t in moved:
        dom0.vcpu.timed.remove(t)
        domu.vcpu.timed.append(t)
    peer._now = domu.clock.now


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
    base = {k: v for k, v in constants.items() if k not in ("DBNET", "RECEIVE")}
    ours: dict[str, dict] = {}
    for direction, receive in chosen.items():
        split = run(dict(base, RECEIVE=receive, DBNET=0))
        db = run(dict(base, RECEIVE=receive, DBNET=1))
        native = native_run(receive, base, load_profile(split.meta.get("profile") or "xen-pv-q9550"))
        ours[direction] = {"Xen split path": measure(split), "DBNet": measure(db),
                           "native Linux": measure(native)}
    return papers.beside_dbnet_paper(paper, ours)


ENTRY = Scenario("dbnet", "seed 002's DBNet: xennet's host with the NIC driver's fast path in the hypervisor "
                          "(-D DBNET=0 is the split path); --paper: split path vs DBNet vs native Linux",
                 "xen-pv-q9550", run_dbnet, lambda: _sources(), paper=beside_paper)


def _sources():
    from .xennet import xennet_sources
    return xennet_sources()
