"""No hypervisor: the baseline the Xen and KVM models are compared against.

The same vCPU, devices and run loop, but nothing exits: port and MMIO accesses go straight to the
devices, faults and interrupts to the guest's IDT, and nothing is recorded or charged. CPUID shows no
hypervisor (leaf 1 ECX bit 31 clear, leaf 0x40000000 empty), so a guest takes its native paths, and
`vmcall` is an invalid instruction (#UD to the guest) as on bare metal. Virtual time is the
instructions at the profile's CPI plus idle time.
"""
from __future__ import annotations

from .kvm import KVM


class Native(KVM):
    name = "native"

    def __init__(self, *args, host_timer_hz: int = 0, **kw):
        super().__init__(*args, host_timer_hz=0, **kw)  # no host: timers fire when due

    def _exit(self, *args, **kw) -> None:
        return None

    def _port_exit(self, icount: int, port: int, size: int, value: int, direction: int) -> bool:
        return True  # not an exit; True so that a write that moves a timer is still rescheduled

    def _on_invalid(self, uc, _data):
        eip, ebp = self._eip_ebp()
        return self._exception(6, eip, None, ebp)

    def _cpuid(self, leaf: int, sub: int) -> tuple[int, int, int, int]:
        if leaf == 0x40000000:
            return 0, 0, 0, 0
        a, b, c, d = super()._cpuid(leaf, sub)
        if leaf == 1:
            c &= ~0x80000000
        return a, b, c, d
