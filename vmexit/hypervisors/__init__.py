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
    builder: str                     # "module:function" building the exit model, imported on first use
    hypercalls: dict[int, str] = field(default_factory=dict)
    subops: dict[int, dict[int, str]] = field(default_factory=dict)   # multiplexed calls' sub-operations
    stats: str | None = None         # the meta key under which the model's run statistics are kept
    hook_points: tuple[str, ...] = ("io_exit", "timer_load")   # where optimizations can attach
    records: bool = True             # whether its exits are recorded (native: nothing exits)
    #: the guest timers the host runs as its own timers (--host-timer-hz): KVM's in-kernel PIT and LAPIC
    #: timer are hrtimers of the host (arch/x86/kvm/i8254.c, lapic.c); natively there is no host
    host_timers: tuple[str, ...] = ("pit", "lapic")
    #: the guest runs on the host's real KVM (domain.HwDomain, hwvcpu.py) rather than on an exit model
    #: over the emulator: `builder` is then unused
    hardware: bool = False

    def build(self, ctx):
        """The exit model for one domain (ctx: model.ModelContext)."""
        module, _, fn = self.builder.partition(":")
        return getattr(importlib.import_module(module, __name__), fn)(ctx)

    def hypercall_name(self, nr: int) -> str:
        return hypercalls.name(self.hypercalls, nr)

    def hypercall_full_name(self, nr: int, subop: int) -> str:
        """`grant_table_op:copy` for a multiplexed call, the plain name for any other."""
        return hypercalls.full_name(self.hypercalls, self.subops, nr, subop)


#: Every hypervisor model, explicitly.
HYPERVISORS: dict[str, Hypervisor] = {
    "kvm": Hypervisor("kvm", "KVM-76: port, MMIO, CPUID, MSR, HLT, hypercall and interrupt exits",
                      "kvm76-q9550", ".kvm:build", hypercalls.KVM),
    "xen-pv": Hypervisor("xen-pv", "Xen paravirtual domain: hypercalls, guarded page tables, bounced faults",
                         "xen-pv-q9550", ".xen:build", hypercalls.XEN, hypercalls.XEN_SUBOPS, stats="xen",
                         hook_points=("io_exit", "timer_load", "page_fault")),
    "native": Hypervisor("native", "no hypervisor: nothing exits (the baseline)", "kvm76-q9550", ".native:build",
                         records=False, host_timers=()),
    # The host's own KVM through /dev/kvm, with vmexit's devices in user space (hwvcpu.py). Its default
    # profile is `calibrated`, what `vmexit calibrate` measured on this host, and the paper's host
    # (kvm76-q9550) until there is one (costs.FALLBACKS); no optimization has a hook point here.
    "kvm-hw": Hypervisor("kvm-hw", "the host's real KVM (/dev/kvm): port, MMIO and HLT exits measured, "
                         "devices in vmexit", "calibrated", "", hypercalls.KVM, stats="kvm_hw", hook_points=(),
                         host_timers=(), hardware=True),
}
