"""Hypervisor models, by the name `--hypervisor` takes, with the cost profile each defaults to."""
from __future__ import annotations

from .kvm import KVM
from .native import Native
from .xen import XenPV

#: name -> (model, default cost profile)
HYPERVISORS: dict[str, tuple[type, str]] = {
    "kvm": (KVM, "kvm76-q9550"),
    "xen-pv": (XenPV, "xen-pv-q9550"),
    "native": (Native, "kvm76-q9550"),
}
