"""`xenidc`: a shared-memory channel between two co-resident domUs (seed 004; the XenSocket design,
Middleware 2007). dom0 (domid 0, guests/xenidc/dom0.S) keeps the directory of domain ids and MACs; the
receiver (domid 1, guests/xenidc/receiver.S, XenSocket's "server") grants a descriptor page and a ring
of 2^RING_ORDER data pages (32 = 128 KiB by default, XenSocket's buffer_order 5) and allocates an event
port for its peer; the sender (domid 2, guests/xenidc/sender.S, the "client") checks that the peer's
MAC is on this host, maps the descriptor and the ring (map_grant_ref), binds the port
(bind_interdomain) and sends STREAM_BYTES in sends of BUF bytes: one notification per send; when the
ring is full it raises sender_is_blocking, notifies and blocks (sched_op block) until the receiver,
which notifies after each chunk it takes while that flag is up, makes room.

What XenStore and the toolstack do on a real host is done here before boot: every domain's start_info
page carries its domid and MAC at +0x800 (+0x1c), as xennet's wiring does, and at +0xc00 the
directory -- what a read of dom0's XenStore directory /local/domain would give: a count, then one
16-byte entry per domain {u32 domid, 6-byte MAC, u16 pad, u32 the grant ref of its channel's
descriptor (XenSocket's CM_SET_GREF table)}. The host fills it; dom0 owns it (its own start_info has
it too) and is not on the data path.

-D BUF (256, 1024, 16384, 65536, 131072 in the seed's table), STREAM_BYTES (default 4 MiB),
RING_ORDER, BOOST (1: an event that wakes a blocked domain preempts the running one, as Xen's credit
scheduler boosts a waking vCPU -- csched_vcpu_wake gives it BOOST priority and tickles the CPU; the same
as --wake-preempts; 0, the default as in xennet: a domain runs until it blocks, yields or its 30 ms
slice ends), and SHM: 1 the shared-memory channel; 0 the split-driver path (sender -> netfront -> dom0
netback -> bridge -> netback -> netfront -> receiver: guests/xennet/ with netback's VIFS=2 and each
netfront's peer MAC the other domU's; see xenidc_split). The receiver is the workload: its end
stops the others. The host facts carry the stream: stream_bytes (what the receiver took),
stream_cycles (from the sender's last connect map to the receiver's shutdown) and throughput_mbit_s
over that window; the setup before it (grants, 33 maps) is in the run's time but not the stream's.
"""
from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..costs import Profile
from ..domain import Domain
from ..exits import ExitReason
from ..guests import build_source, guests_dir
from ..hypervisors.xen_host import XenHost
from ..loader import Image, LoadError
from ..trace import Trace
from .base import NET_WIRING, SIF_INITDOMAIN, SIF_PRIVILEGED, START_INFO, Scenario, ScenarioRun, build_images, \
    run_domains, start_info, write_vif_table

DIRECTORY = 0xC00                       # offset of the directory in the start_info page
DIR_ENTRY = struct.Struct("<I6sxxI")    # domid, MAC, pad, descriptor grant ref
DESC_REF = 8                            # the ref under which a channel's descriptor is granted
XEN_OUI = bytes.fromhex("00163e")
ROLES = {0: "dom0", 1: "receiver", 2: "sender"}
# hypercall numbers and sub-operations the stream facts look for (xen.h, grant_table.h, sched.h)
GRANT_TABLE_OP, SCHED_OP, EVENT_CHANNEL_OP = 20, 29, 32
MAP_GRANT_REF, SCHEDOP_SHUTDOWN, EVTCHNOP_SEND = 0, 2, 4
PEER_MAC = 0x24                         # SHM=0: a netfront's peer MAC in its wiring (PEER_MAC_WIRED)


def mac(domid: int) -> bytes:
    """A domain's MAC: Xen's OUI, then the domid (00:16:3e:00:00:<domid>)."""
    return XEN_OUI + bytes((0, 0, domid))


def xenidc_sources() -> dict[int, Path]:
    base = guests_dir() / "xenidc"
    return {0: base / "dom0.S", 1: base / "receiver.S", 2: base / "sender.S"}


def write_start_info(domain: Domain, directory: list[tuple[int, bytes]], flags: int = 0) -> None:
    """The domain's start_info page (base.start_info's header and wiring, our MAC) with the directory."""
    page = bytearray(0x1000)
    page[0:32] = b"xen-3.0-x86_32".ljust(32, b"\0")
    struct.pack_into("<I", page, 32, domain.machine.ram_size // 0x1000)
    struct.pack_into("<I", page, 40, flags)
    struct.pack_into("<I", page, NET_WIRING, domain.domid)
    page[NET_WIRING + 0x1C:NET_WIRING + 0x22] = mac(domain.domid)
    struct.pack_into("<I", page, DIRECTORY, len(directory))
    for i, (domid, address) in enumerate(directory):
        DIR_ENTRY.pack_into(page, DIRECTORY + 4 + i * DIR_ENTRY.size, domid, address, DESC_REF)
    domain.machine.write_physical(START_INFO, bytes(page))
    domain.machine.engine.set_reg("esi", START_INFO)


def xenidc(constants: dict, profile: Profile, options, progress=None) -> ScenarioRun:
    constants = dict(constants)
    shm = constants.pop("SHM", 1)
    if shm not in (0, 1):
        raise LoadError(f"xenidc: SHM is 1 (shared memory) or 0 (the split-driver path), not {shm}")
    boost = constants.pop("BOOST", 0)
    if boost not in (0, 1):
        raise LoadError(f"xenidc: BOOST is 0 or 1, not {boost}")
    options = replace(options, wake_preempts=bool(options.wake_preempts or boost))
    if shm == 0:
        return xenidc_split(constants, profile, options, progress)
    images = build_images(xenidc_sources(), constants, {domid: f"xenidc-{role}" for domid, role in ROLES.items()})
    return run_xenidc(images, profile, options, progress)


def run_xenidc(images: dict[int, Image], profile: Profile, options, progress=None) -> ScenarioRun:
    """dom0 = images[0], the receiver images[1], the sender images[2], wired as the module docstring
    says, run to the receiver's end."""
    xen = XenHost()
    opts = replace(options, hypervisor="xen-pv", nic=False)
    domains = [Domain(images[d], profile, opts, domid=d, xen_host=xen) for d in sorted(images)]
    directory = [(d.domid, mac(d.domid)) for d in domains if d.domid]
    for d in domains:
        write_start_info(d, directory, SIF_PRIVILEGED | SIF_INITDOMAIN if d.domid == 0 else 0)
    run = run_domains(domains, profile, options, progress, workload=domains[1])
    run.host.update(stream_facts(run.traces, profile.freq_hz))
    return run


def xenidc_split(constants: dict, profile: Profile, options, progress=None) -> ScenarioRun:
    """SHM=0: the same stream of BUF-byte sends from domid 2 to domid 1 through the split-driver path:
    sender netfront (RECEIVE=0) -> dom0's netback (VIFS=2) -> its bridge -> netback -> receiver netfront
    (RECEIVE=1), each netfront's peer MAC the other domU's (PEER_MAC_WIRED). MESSAGES = STREAM_BYTES /
    BUF messages of MSG_SIZE = BUF bytes, cut into MSS segments under the sender's SOCKBUF window; the
    receiver ACKs every second segment back the same way. Native page flipping (SHARED_BUFFERS=0)."""
    from .xennet import LINK_RATE_BPS, xennet_sources
    defaults = ENTRY.defaults
    buf = constants.pop("BUF", defaults.get("BUF", 16384))
    stream = constants.pop("STREAM_BYTES", defaults.get("STREAM_BYTES", 4 << 20))
    extra = sorted(set(constants) - {"SOCKBUF"})
    if extra:
        raise LoadError(f"xenidc: SHM=0 takes BUF, STREAM_BYTES, BOOST and SOCKBUF, not {', '.join(extra)}")
    if buf <= 0 or stream <= 0 or stream % buf:
        raise LoadError(f"xenidc: STREAM_BYTES ({stream}) must be a positive multiple of BUF ({buf})")
    net = xennet_sources()
    front = dict(constants, MSG_SIZE=buf, MESSAGES=stream // buf, PEER_MAC_WIRED=1)
    images = {0: build_source(net[0], {"VIFS": 2}),
              1: build_source(net[1], dict(front, RECEIVE=1)),
              2: build_source(net[1], dict(front, RECEIVE=0))}
    for domid, image in images.items():
        image.name = f"xenidc-split-{ROLES[domid]}"
    xen = XenHost()
    dom0_options = replace(options, hypervisor="xen-pv", nic=True, net_peer_sends=False, net_peer_waits=True,
                           net_rate_bps=options.net_rate_bps or LINK_RATE_BPS, net_window=1)
    domu_options = replace(options, hypervisor="xen-pv", nic=False)
    domains = [Domain(images[0], profile, dom0_options, domid=0, xen_host=xen)] + \
              [Domain(images[d], profile, domu_options, domid=d, xen_host=xen) for d in (1, 2)]
    ports = {d: xen.events.alloc_unbound(None, d, 0) for d in (1, 2)}   # the toolstack's vif channels
    start_info(domains[0], peer=1, port=ports[1], flags=SIF_PRIVILEGED | SIF_INITDOMAIN)
    write_vif_table(domains[0], [(d, ports[d], mac(d)) for d in (1, 2)])
    for d in (1, 2):
        start_info(domains[d], peer=0, port=ports[d], mac=mac(d))
        domains[d].machine.write_physical(START_INFO + NET_WIRING + PEER_MAC, mac(3 - d))
    run = run_domains(domains, profile, options, progress, workload=domains[1])
    run.host.update(stream_facts(run.traces, profile.freq_hz, split=True))
    return run


def _first_cycles(trace: Trace, nr: int, subop: int) -> int | None:
    e = trace.exits
    hit = e[(e["reason"] == int(ExitReason.VMCALL)) & (e["qualifier"] == nr) & (e["subop"] == subop)]
    return int(hit["cycles"].min()) if len(hit) else None


def _last_cycles(trace: Trace, nr: int, subop: int) -> int | None:
    e = trace.exits
    hit = e[(e["reason"] == int(ExitReason.VMCALL)) & (e["qualifier"] == nr) & (e["subop"] == subop)]
    return int(hit["cycles"].max()) if len(hit) else None


def stream_facts(traces: list[Trace], freq_hz: float, split: bool = False) -> dict:
    """The stream the receiver took, over the window from the sender's last connect map (split: its
    first notification, the netfront's "connected") to the receiver's shutdown (both exits' virtual
    times)."""
    receiver, sender = traces[1], traces[2]
    console = str(receiver.meta.get("console", ""))
    taken = int(console.split("received ")[1].split()[0]) if "received " in console else 0
    start = _first_cycles(sender, EVENT_CHANNEL_OP, EVTCHNOP_SEND) if split else \
        _last_cycles(sender, GRANT_TABLE_OP, MAP_GRANT_REF)
    end = _last_cycles(receiver, SCHED_OP, SCHEDOP_SHUTDOWN)
    cycles = end - start if start is not None and end is not None and end > start else 0
    return {"stream_bytes": taken, "stream_cycles": cycles,
            "throughput_mbit_s": taken * 8 * freq_hz / cycles / 1e6 if cycles else 0.0}


def beside_paper(constants: dict, run: Callable[[dict], Trace]):
    """Seed 004's Table 1 beside ours: one run per buffer size of the table (SHM=1), without and with
    the waking domain preempting (BOOST=0 / 1), and through the split-driver path (SHM=0)."""
    from .. import papers   # the table is analysis, above the run: imported only when asked for
    paper = papers.xen_idc_paper()
    traces = {(size, mode): run(dict(constants, **{paper["constant"]: size, "SHM": 1, "BOOST": boost}))
              for mode, boost in papers.XEN_IDC_MODES.items() for size in paper["buffer_sizes"]}
    split = {k: v for k, v in constants.items() if k in ("STREAM_BYTES", "SOCKBUF")}
    traces.update({(size, papers.XEN_IDC_SPLIT): run(dict(split, **{paper["constant"]: size, "SHM": 0}))
                   for size in paper["buffer_sizes"]})
    return papers.beside_xen_idc_paper(paper, traces)


ENTRY = Scenario("xenidc", "Shared-memory channel between two co-resident domUs (seed 004, XenSocket): a "
                           "granted descriptor page and data ring, an event channel, dom0's directory of "
                           "domain ids and MACs", "xen-pv-q9550", xenidc, xenidc_sources, paper=beside_paper)
