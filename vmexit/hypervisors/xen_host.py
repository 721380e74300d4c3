"""What Xen keeps once per host and every domain's model shares: the event channels (evtchn.py) and the
grant tables (grant.py). A host of several domains (scenarios.py) makes one and hands it to each
domain's model through its ModelContext; a domain run alone gets one of its own."""
from __future__ import annotations

from dataclasses import dataclass, field

from .evtchn import EventChannels
from .grant import GrantTables


@dataclass
class XenHost:
    events: EventChannels = field(default_factory=EventChannels)
    grants: GrantTables = field(default_factory=GrantTables)
