"""`xennet`: Xen split-driver networking. dom0 (domid 0,
guests/xennet/netback.S) owns the RTL8139 and the TCP peer (streaming to domU's MAC when RECEIVE=1,
at `net_rate_bps`, 1 Gb/s unless given); domU (domid 1, guests/xennet/netfront.S) has no NIC. Both
are xen-pv domains without paging, sharing one host's event channels and grant tables
(hypervisors/xen_host.py). What the toolstack and XenStore do on a real host is done here before boot:
- the start_info page at START_INFO (ESI at entry, Xen's PV convention): magic "xen-3.0-x86_32",
  nr_pages, flags (SIF_PRIVILEGED | SIF_INITDOMAIN for dom0), and at +0x800 the net wiring that stands
  in for the XenStore vif keys: domid, peer domid, event port, tx/rx ring grant refs, first shared-
  buffer ref and count, domU's MAC;
- domU's event port, allocated unbound for dom0 (as the toolstack allocates the store and console
  channels); dom0 gets that port number to bind_interdomain.
`-D` constants go to each domain's source that defines them (`.ifndef NAME`); one that neither
defines is an error. The peer's direction follows RECEIVE (1: the peer streams to domU) and its
window SOCKBUF (in full-sized segments of MSS bytes). With options.wake_preempts, an event that wakes a
blocked domain ends the sender's slice (Xen's credit scheduler boosts a waking vCPU past the running
one); off by default: a domain runs until it blocks, yields or its 30 ms slice ends. domU is the
workload: its end stops dom0. The host facts carry the stream on dom0's wire: net_bytes,
throughput_mbit_s over the host's virtual time. `-D DBNET=1` (seed 002) runs the host of
scenarios/dbnet.py instead: the NIC driver's fast path in the hypervisor, with GUESTS (1-4) domUs.
`-D GUESTS=n -D VIFS=n` (DBNET=0) runs n domUs on the split path: netback serving n frontends
(run_split_guests).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..costs import Profile
from ..domain import Domain
from ..guests import guests_dir
from ..hypervisors.xen_host import XenHost
from ..loader import Image, LoadError
from ..trace import Trace
from . import dbnet
from .base import (DOMU_MAC, SIF_INITDOMAIN, SIF_PRIVILEGED, Scenario, ScenarioRun, build_images, run_domains,
                   start_info, write_vif_table)

LINK_RATE_BPS = 1_000_000_000
MSS = 1460                              # TCP payload of a 1514-byte Ethernet frame
BUFS_PER_PAGE = 2                       # seed 000's MTU-sized shared buffers, two per page
RX_RING_SLOTS = 256


def xennet_sources() -> dict[int, Path]:
    """domid -> the bundled source of that domain."""
    base = guests_dir() / "xennet"
    return {0: base / "netback.S", 1: base / "netfront.S"}


def xennet(constants: dict, profile: Profile, options, progress=None) -> ScenarioRun:
    sources = xennet_sources()
    for path in sources.values():
        if not path.is_file():
            raise LoadError(f"xennet: {path.name} is not in this checkout yet (guests/xennet/)")
    images = build_images(sources, constants, {0: "xennet-netback", 1: "xennet-netfront"})
    return run_xennet(images, profile, options, progress)


def _constant(image: Image, name: str, default: int) -> int:
    return image.constants.get(name, (getattr(image, "defaults", None) or {}).get(name, default))


def run_xennet(images: dict[int, Image], profile: Profile, options, progress=None) -> ScenarioRun:
    """dom0 = images[0], domU = images[1], wired as the module docstring says, run to their ends."""
    front = images[1]
    receive = _constant(front, "RECEIVE", 1)
    sockbuf = _constant(front, "SOCKBUF", 8192)
    if _constant(front, "DBNET", 0):                   # seed 002: a host of its own (scenarios/dbnet.py)
        return dbnet.run_host(images, profile, options, progress)
    if _constant(front, "GUESTS", 1) != 1:
        return run_split_guests(images, profile, options, progress)
    xen = XenHost()
    # the peer streams once domU's netperf connects (its first frame): frames sent to a NIC not yet up
    # would be lost for good and shrink the window for the whole run
    dom0_options = replace(options, hypervisor="xen-pv", nic=True, net_peer_sends=bool(receive),
                           net_peer_waits=True, net_rate_bps=options.net_rate_bps or LINK_RATE_BPS,
                           net_dest_mac=DOMU_MAC.hex(), net_window=max(1, sockbuf // MSS))
    domu_options = replace(options, hypervisor="xen-pv", nic=False)
    dom0 = Domain(images[0], profile, dom0_options, domid=0, xen_host=xen)
    domu = Domain(images[1], profile, domu_options, domid=1, xen_host=xen)
    port = xen.events.alloc_unbound(None, 1, 0)   # the toolstack's channel for the vif
    bufs = _constant(front, "SHARED_BUF_PAGES", RX_RING_SLOTS // BUFS_PER_PAGE) \
        if _constant(front, "SHARED_BUFFERS", 0) else 0
    start_info(dom0, peer=1, port=port, bufs=bufs, flags=SIF_PRIVILEGED | SIF_INITDOMAIN)
    start_info(domu, peer=0, port=port, bufs=bufs, flags=0)
    run = run_domains([dom0, domu], profile, options, progress, workload=domu)
    run.host.update(_stream(dom0, run.host["cycles"] / profile.freq_hz))
    return run


def run_split_guests(images: dict[int, Image], profile: Profile, options, progress=None) -> ScenarioRun:
    """GUESTS (2-4) domUs on the split path: dom0's netback serves them all (VIFS = GUESTS, start_info's
    vif table), its bridge sends each guest's frames to the wire and the wire's to the guest with the
    destination MAC; the wire carries one TCP stream per guest (dbnet.Streams: the link's rate shared
    equally, each with its window), dom0's NIC peer as in xennet (its events are dom0's). The run ends
    when every guest has; the facts add each guest's stream (as DBNet's several guests)."""
    front = images[1]
    n = _constant(front, "GUESTS", 1)
    if not 1 <= n <= dbnet.MAX_GUESTS:
        raise LoadError(f"GUESTS={n}: the split path's netback serves 1 to {dbnet.MAX_GUESTS} frontends")
    if _constant(images[0], "VIFS", 1) != n:
        raise LoadError(f"GUESTS={n} needs DBNET=1 (DBNet), or on the split path netback built to serve them: "
                        f"-D VIFS={n}")
    if _constant(front, "SHARED_BUFFERS", 0):
        raise LoadError("GUESTS > 1 on the split path runs Native page flipping only (SHARED_BUFFERS=0)")
    receive, sockbuf = _constant(front, "RECEIVE", 1), _constant(front, "SOCKBUF", 8192)
    xen = XenHost()
    dom0_options = replace(options, hypervisor="xen-pv", nic=True, net_peer_sends=bool(receive),
                           net_peer_waits=True, net_rate_bps=options.net_rate_bps or LINK_RATE_BPS,
                           net_dest_mac=DOMU_MAC.hex(), net_window=max(1, sockbuf // MSS))
    dom0 = Domain(images[0], profile, dom0_options, domid=0, xen_host=xen)
    guests = [Domain(front, profile, replace(options, hypervisor="xen-pv", nic=False), domid=i, xen_host=xen)
              for i in range(1, n + 1)]
    nic, old = dom0.devices["nic"], dom0.devices["peer"]
    at = next(i for i, t in enumerate(dom0.vcpu.timed) if t.device is old)
    streams = dbnet.Streams(dom0.clock.freq_hz, nic.receive, old.irq, [dbnet.guest_mac(g.domid) for g in guests],
                            dom0_options, dom0_options.net_rate_bps, dom0_options.net_window)
    streams._now = dom0.clock.now
    dom0.devices["peer"] = streams
    dom0.vcpu.timed[at] = replace(dom0.vcpu.timed[at], device=streams)
    ports = [xen.events.alloc_unbound(None, g.domid, 0) for g in guests]   # the toolstack's vif channels
    start_info(dom0, peer=1, port=ports[0], flags=SIF_PRIVILEGED | SIF_INITDOMAIN)
    write_vif_table(dom0, [(g.domid, port, dbnet.guest_mac(g.domid)) for g, port in zip(guests, ports)])
    for g, port in zip(guests, ports):
        start_info(g, peer=0, port=port, mac=dbnet.guest_mac(g.domid))
    run = run_domains([dom0, *guests], profile, options, progress, workload=guests)
    run.host.update(dbnet._facts(dom0, streams, guests, run.host["cycles"] / profile.freq_hz, bool(receive)))
    return run


def _stream(dom0: Domain, seconds: float) -> dict:
    """The TCP stream on dom0's wire over the host's time: bytes the peer sent to domU (RECEIVE=1) or
    domU's frames it received, as the NIC counted them."""
    nic = dom0.devices["nic"]
    moved = nic.rx_bytes if dom0.options.net_peer_sends else nic.tx_bytes
    return {"net_bytes": moved, "throughput_mbit_s": moved * 8 / seconds / 1e6 if seconds else 0.0}


def beside_paper(constants: dict, run: Callable[[dict], Trace]):
    """The Xen network report's throughput beside ours: one run per system of the paper (its
    SHARED_BUFFERS mode) at the run's MSG_SIZE (-D, else the guests' default)."""
    from .. import papers   # the table is analysis, above the run: imported only when asked for
    paper = papers.xen_net_paper()
    if constants.get("DBNET"):
        raise ValueError("seed 000's figure compares the split path's modes; DBNet's comparison (split path, "
                         "DBNet, native Linux) is `vmexit run dbnet --paper`")
    size = constants.get(paper["constant"], ENTRY.defaults.get(paper["constant"], 4096))
    if size not in paper["message_sizes"]:
        raise ValueError(f"the paper measured {paper['constant']} "
                         f"{', '.join(map(str, paper['message_sizes']))}, not {size}")
    throughput = {}
    for system in paper["systems"]:
        trace = run(dict(constants, **{paper["constant"]: size, paper["switch"]: paper["modes"][system]}))
        throughput[system] = float((trace.meta.get("host") or {}).get("throughput_mbit_s", 0.0))
    return papers.beside_xen_net_paper(paper, size, throughput, "xennet")


ENTRY = Scenario("xennet", "Xen split-driver networking: dom0 netback with the RTL8139 and the TCP peer, "
                           "domU netfront; event channels, grant tables, shared rings", "xen-pv-q9550", xennet,
                 xennet_sources, paper=beside_paper)
