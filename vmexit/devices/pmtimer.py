"""ACPI power-management timer at port 0x608 (PM1 timer block of QEMU's PIIX4 PM device,
PMBASE 0x600 + 8).

A free-running 24-bit counter at 3.579545 MHz (ACPI spec 6.5, section 4.8.3.3), computed from the
virtual clock: floor(cycles x 3,579,545 / cpu_freq) mod 2^24. Linux reads it from acpi_pm_read(),
and verify_pmtmr_rate() reads it in a loop at boot (the KVM paper, Zhang et al. 2010, Table 3).
"""
from __future__ import annotations

from typing import Callable

PORT = 0x608
PORTS = (0x608, 0x609, 0x60A, 0x60B)
PM_TIMER_HZ = 3579545


class PMTimer:
    name = "pmtimer"
    ports = PORTS

    def __init__(self, now: Callable[[], int], freq_hz: int):
        self._now = now
        self._freq = freq_hz

    def value(self) -> int:
        return (self._now() * PM_TIMER_HZ // self._freq) & 0xFFFFFF

    def read(self, port: int, size: int) -> int:
        shift = 8 * (port - PORT)
        mask = (1 << (8 * size)) - 1
        return (self.value() >> shift) & mask

    def write(self, port: int, size: int, value: int) -> None:
        pass  # read-only
