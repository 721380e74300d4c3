"""Bundled scenarios: several domains on one host, each entry wired explicitly (SCENARIOS), one module
per scenario (xennet.py: Xen split-driver networking; dbnet.py: seed 002's DBNet on that host, and the
`dbnet` entry with its paper), what they share in base.py.

run_scenario(name, constants, profile, options) runs one and returns ScenarioRun(traces, host): one
Trace per domain (Domain.trace(), exits tagged with the domid) and the host's facts (host.Host.facts(),
each domain's end, and what the scenario measures, e.g. xennet's stream on dom0's wire).
"""
from __future__ import annotations

from typing import Callable

from ..costs import Profile
from ..loader import LoadError
from . import dbnet, xenidc, xennet
from .base import (BUFS_REF, DOMU_MAC, NET_WIRING, RX_RING_REF, SIF_INITDOMAIN, SIF_PRIVILEGED, START_INFO,
                   TX_RING_REF, Scenario, ScenarioRun, route_constants, run_domains, start_info)
from .xennet import run_xennet, xennet_sources

__all__ = ["SCENARIOS", "Scenario", "ScenarioRun", "run_scenario", "run_domains", "start_info", "route_constants",
           "xennet_sources", "run_xennet", "START_INFO", "NET_WIRING", "SIF_PRIVILEGED", "SIF_INITDOMAIN", "TX_RING_REF",
           "RX_RING_REF", "BUFS_REF", "DOMU_MAC"]

#: Every bundled scenario, explicitly: name -> entry with its own wiring.
SCENARIOS: dict[str, Scenario] = {
    "xennet": xennet.ENTRY,
    "xenidc": xenidc.ENTRY,     # seed 004: shared-memory channel between co-resident domUs
    "dbnet": dbnet.ENTRY,
}


def run_scenario(name: str, constants: dict[str, int], profile: Profile, options,
                 progress: Callable[[int, int], None] | None = None) -> ScenarioRun:
    """Run the bundled scenario `name` (a key of SCENARIOS) with -D constants, a cost profile and
    session.RunOptions (budgets, peer settings; the hypervisor and NIC are the scenario's). Bad input
    (an unknown scenario or constant, a source that does not assemble) is a LoadError."""
    if name not in SCENARIOS:
        raise LoadError(f"unknown scenario {name!r} (bundled: {', '.join(SCENARIOS)})")
    return SCENARIOS[name].run(dict(constants), profile, options, progress)
