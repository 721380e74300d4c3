"""Scenarios: several domains on one host, run as one (a bundled scenario is an entry of the registry
in scenarios/__init__.py). What they share: the entry type, how -D constants reach the domains' sources,
the Xen start_info page a host fills before boot, and running the domains to their ends.

- `-D` constants go to each domain's source that defines them (`.ifndef NAME`); one that no source
  defines is an error.
- The start_info page at START_INFO (ESI at entry, Xen's PV convention): magic "xen-3.0-x86_32",
  nr_pages, flags (SIF_PRIVILEGED | SIF_INITDOMAIN for dom0), and at +0x800 the net wiring that stands
  in for the XenStore vif keys: domid, peer domid, event port, tx/rx ring grant refs, first shared-
  buffer ref and count, the frontend's MAC.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from ..costs import Profile
from ..domain import Domain
from ..guests import build_source, read_source, source_defaults
from ..host import Host
from ..loader import Image, LoadError
from ..trace import Trace

START_INFO = 0x9000
NET_WIRING = 0x800                      # offset of vmexit's net wiring in the start_info page
SIF_PRIVILEGED, SIF_INITDOMAIN = 1, 2
TX_RING_REF, RX_RING_REF, BUFS_REF = 8, 9, 16   # refs 0..7 are reserved in Linux (GNTTAB_NR_RESERVED_ENTRIES)
DOMU_MAC = bytes.fromhex("00163e000001")        # Xen's OUI 00:16:3e


class ScenarioRun(NamedTuple):
    traces: list[Trace]     # one per domain, in domid order
    host: dict              # Host.facts() plus "ends": each domain's status and detail


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    profile: str                        # the cost profile it defaults to (costs.PROFILES)
    run: Callable[..., ScenarioRun]     # (constants, profile, options, progress=None)
    sources: Callable[[], dict[int, Path]] | None = None   # domid -> its guest source
    hypervisor: str = "xen-pv"          # every domain's
    #: beside its paper: (constants, run) -> analysis.Report, where run(constants) -> the merged Trace of
    #: one run; raises ValueError for constants the paper did not measure
    paper: Callable[[dict, Callable[[dict], Trace]], object] | None = None

    @property
    def defaults(self) -> dict[str, int]:
        """The -D constants its sources default (`.ifndef NAME`), for reports; {} without sources."""
        out: dict[str, int] = {}
        for path in (self.sources() if self.sources else {}).values():
            if path.is_file():
                for name, value in source_defaults(read_source(path)).items():
                    out.setdefault(name, value)
        return out


def route_constants(constants: dict[str, int], texts: dict[int, str]) -> dict[int, dict[str, int]]:
    """Each -D constant to every domain whose source defines it; one that none defines is an error."""
    defined = {domid: source_defaults(text) for domid, text in texts.items()}
    unknown = sorted(k for k in constants if not any(k in d for d in defined.values()))
    if unknown:
        known = sorted(set().union(*defined.values()))
        raise LoadError(f"-D {', '.join(unknown)}: no domain's source defines it (known: {', '.join(known)})")
    return {domid: {k: v for k, v in constants.items() if k in d} for domid, d in defined.items()}


def build_images(sources: dict[int, Path], constants: dict[str, int], names: dict[int, str]) -> dict[int, Image]:
    """Each domain's guest built from its source with the -D constants it defines (route_constants),
    named names[domid]."""
    texts = {domid: read_source(path) for domid, path in sources.items()}
    routed = route_constants(constants, texts)
    images = {domid: build_source(path, routed[domid]) for domid, path in sources.items()}
    for domid, image in images.items():
        image.name = names[domid]
    return images


def start_info(domain: Domain, peer: int, port: int, bufs: int = 0, flags: int = 0,
               mac: bytes = DOMU_MAC) -> None:
    """Fill the domain's start_info page (module docstring) and point ESI at it; `mac` is the
    frontend's (DBNet's several guests each have their own)."""
    page = bytearray(0x1000)
    page[0:32] = b"xen-3.0-x86_32".ljust(32, b"\0")
    struct.pack_into("<I", page, 32, domain.machine.ram_size // 0x1000)
    struct.pack_into("<I", page, 40, flags)
    struct.pack_into("<8I", page, NET_WIRING, domain.domid, peer, port, TX_RING_REF, RX_RING_REF, BUFS_REF,
                     bufs, 0)
    page[NET_WIRING + 0x1C:NET_WIRING + 0x22] = mac
    domain.machine.write_physical(START_INFO, bytes(page))
    domain.machine.engine.set_reg("esi", START_INFO)


VIF_TABLE = NET_WIRING + 0x100          # dom0's vifs when netback serves several (netback_vifs.S)


def write_vif_table(dom0: Domain, vifs: list[tuple[int, int, bytes]]) -> None:
    """dom0's vif table in its start_info page (netback with VIFS > 1): per frontend {u32 domid, u32
    its event port, 6-byte MAC, u16 pad} -- the XenStore vif keys of each frontend."""
    table = b"".join(struct.pack("<II", domid, port) + mac + b"\0\0" for domid, port, mac in vifs)
    dom0.machine.write_physical(START_INFO + VIF_TABLE, table)


def run_domains(domains: list[Domain], profile: Profile, options, progress=None, workload=None,
                roaming: list | None = None, on_hold=None) -> ScenarioRun:
    """Run domains on one host (the profile's domain_switch per switch) to their ends or the budget
    (options.max_instructions per domain, options.max_seconds of host time); the workload domain's end
    (all of them, for a list), if named, stops the others; `roaming` timed devices follow the CPU
    (host.py)."""
    freq = profile.freq_hz
    max_cycles = None if options.max_seconds is None else int(options.max_seconds * freq)
    host = Host(domains, switch_cycles=profile.host_cost("domain_switch"), workload=workload, roaming=roaming,
                on_hold=on_hold)
    if options.wake_preempts:
        for xen in {id(d.xen_host): d.xen_host for d in domains if d.xen_host is not None}.values():
            xen.on_wake = host.preempt
    host.run(options.max_instructions, max_cycles, progress)
    for d in domains:
        d.close()
    facts = host.facts()
    facts["ends"] = {d.domid: {"status": d.ending.end.status, "detail": d.ending.end.detail} for d in domains}
    return ScenarioRun([d.trace() for d in domains], facts)
