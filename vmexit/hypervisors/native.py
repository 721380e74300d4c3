"""No hypervisor: the baseline the Xen and KVM models are compared against.

The same vCPU, devices and components as KVM's model, but nothing is recorded or charged: port and
MMIO accesses go straight to the devices, faults and interrupts to the guest's IDT. CPUID shows no
hypervisor (leaf 1 ECX bit 31 clear, leaf 0x40000000 empty), so a guest takes its native paths, and
`vmcall` is an invalid instruction (#UD to the guest) as on bare metal. Virtual time is the
instructions at the profile's CPI plus idle time; there is no host, so timers fire when due.
"""
from __future__ import annotations

from . import kvm
from .model import ExitModel


def cpuid(profile):
    kvm_answer = kvm.cpuid(profile, kvm.SIGNATURE, 0x40000001)

    def answer(leaf: int, sub: int) -> tuple[int, int, int, int]:
        if leaf == 0x40000000:
            return 0, 0, 0, 0
        a, b, c, d = kvm_answer(leaf, sub)
        if leaf == 1:
            c &= ~0x80000000
        return a, b, c, d
    return answer


def build(ctx) -> ExitModel:
    model = ExitModel("native", ctx, kvm.port_bus(ctx, records=False), cpuid(ctx.profile))
    model.install(kvm.mmio(ctx))
    return model
