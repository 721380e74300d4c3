"""Hypervisor models, by the name `--hypervisor` takes: one explicit table whose entries carry their
wiring -- the exit model, the cost profile it defaults to, its hypercall names (for reports) and the
run statistics it records. Importing this table does not import the emulator: the model is loaded only
when a run builds one, so analysis and renderers can name hypercalls from a saved trace alone.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from . import hypercalls


@dataclass(frozen=True)
class Hypervisor:
    name: str
    summary: str
    profile: str                     # default cost profile (costs.PROFILES)
    model_path: str                  # "module:Class" of the exit model, imported on first use
    hypercalls: dict[int, str] = field(default_factory=dict)
    stats: str | None = None         # the meta key under which the model's run statistics are kept

    def model(self) -> type:
        module, _, cls = self.model_path.partition(":")
        return getattr(importlib.import_module(module, __name__), cls)

    def hypercall_name(self, nr: int) -> str:
        return hypercalls.name(self.hypercalls, nr)


#: Every hypervisor model, explicitly.
HYPERVISORS: dict[str, Hypervisor] = {
    "kvm": Hypervisor("kvm", "KVM-76: port, MMIO, CPUID, MSR, HLT, hypercall and interrupt exits",
                      "kvm76-q9550", ".kvm:KVM", hypercalls.KVM),
    "xen-pv": Hypervisor("xen-pv", "Xen paravirtual domain: hypercalls, guarded page tables, bounced faults",
                         "xen-pv-q9550", ".xen:XenPV", hypercalls.XEN, stats="xen"),
    "native": Hypervisor("native", "no hypervisor: nothing exits (the baseline)", "kvm76-q9550", ".native:Native"),
}
