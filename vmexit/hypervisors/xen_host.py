"""What Xen keeps once per host and every domain's model shares: the event channels (evtchn.py) and the
grant tables (grant.py). A host of several domains (scenarios/) makes one and hands it to each
domain's model through its ModelContext; a domain run alone gets one of its own.

on_wake(domid), if set, is called when an event wakes a domain sleeping in sched_op: the scenario
uses it to preempt the running domain, as Xen's credit scheduler boosts a waking vCPU ahead of it.
dbnet, if set, is seed 002's NIC driver in the hypervisor: every domain's model then has dbnet_op."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .evtchn import EventChannels
from .grant import GrantTables


@dataclass
class XenHost:
    events: EventChannels = field(default_factory=EventChannels)
    grants: GrantTables = field(default_factory=GrantTables)
    on_wake: Callable[[int], None] | None = None
    dbnet: object | None = None     # DBNet's driver in the hypervisor (dbnet.py), when the scenario has one
