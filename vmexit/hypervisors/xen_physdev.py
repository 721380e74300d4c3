"""physdev_op (33), the one sub-operation a driver domain needs here: PHYSDEVOP_set_iopl (6).

A 32-bit PV kernel runs below ring 0, so its in/out instructions fault into Xen, which emulates each one
for a domain allowed that port (xen/arch/x86/pv/emul-priv-op.c): one exit per access, as the port bus
records by default. A driver domain asks for an I/O privilege level instead -- Linux's
xen_start_kernel does `set_iopl.iopl = 1; HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, ...)` when it is
the initial domain (arch/x86/xen/enlighten.c, 2.6.2x) -- after which its kernel's port accesses run on
the hardware without Xen: no exit. Xen accepts any iopl 0..3 (struct physdev_set_iopl {uint32_t iopl},
xen/include/public/physdev.h); the ports stay trapped unless the domain may use them, which among our
domains only the privileged one (dom0, which owns the NIC) may.
"""
from __future__ import annotations

import struct
from typing import Callable

from .calls import Handled

PHYSDEVOP_set_iopl = 6
EFAULT, EINVAL, ENOSYS = 14, 22, 38


class PhysDev:
    def __init__(self, machine, privileged: bool, go_direct: Callable[[], None]):
        """go_direct: make this domain's port accesses reach its devices without exits."""
        self.m = machine
        self.privileged = privileged
        self._go_direct = go_direct
        self.iopl = 0

    def handlers(self) -> dict:
        return {33: self.physdev_op}

    def physdev_op(self, args) -> Handled:
        cmd, arg = args[0], args[1]
        if cmd != PHYSDEVOP_set_iopl:
            return Handled(-ENOSYS, 1)
        raw = self.m.read_virtual(arg, 4)
        if raw is None:
            return Handled(-EFAULT, 1)
        iopl = struct.unpack("<I", raw)[0]
        if iopl > 3:
            return Handled(-EINVAL, 1)
        self.iopl = iopl
        if iopl >= 1 and self.privileged:
            self._go_direct()
        return Handled(0, 1)
