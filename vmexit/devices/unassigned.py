"""Unassigned MMIO: the chipset window 0xfec00000-0xfeffffff (IOAPIC, HPET, LAPIC on a PC) with no
device behind it. Reads return all ones and writes are dropped, as QEMU's unassigned_mem_ops do; every
access is still an exit, so a guest probing for an APIC or HPET shows up in the reports.
"""
from __future__ import annotations

CHIPSET_BASE = 0xFEC00000
CHIPSET_SIZE = 0x00400000


class UnassignedMMIO:
    name = "unassigned"

    def __init__(self, base: int = CHIPSET_BASE, size: int = CHIPSET_SIZE):
        self.base = base
        self.size = size

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        pass


def unassigned_gaps(devices: list, base: int = CHIPSET_BASE, size: int = CHIPSET_SIZE) -> list[UnassignedMMIO]:
    """Unassigned regions covering the chipset window around the modeled MMIO devices."""
    gaps, at = [], base
    for dev in sorted(devices, key=lambda d: d.base):
        if dev.base > at:
            gaps.append(UnassignedMMIO(at, dev.base - at))
        at = max(at, dev.base + dev.size)
    if at < base + size:
        gaps.append(UnassignedMMIO(at, base + size - at))
    return gaps
