"""Virtual time.

cycles = guest instructions x CPI + modeled exit costs + idle cycles (HLT waiting for the next event).
Everything is integer cycles at the profile's CPU frequency; no host clock is ever read, so the same
run gives the same times. CPI is a rational number (cpi_num / cpi_den) so that no float rounding
enters the arithmetic.
"""
from __future__ import annotations


class Clock:
    __slots__ = ("freq_hz", "cpi_num", "cpi_den", "icount", "extra", "idle")

    def __init__(self, freq_hz: int, cpi_num: int = 1, cpi_den: int = 1):
        if freq_hz <= 0 or cpi_num <= 0 or cpi_den <= 0:
            raise ValueError("clock frequency and CPI must be positive")
        self.freq_hz = int(freq_hz)
        self.cpi_num = int(cpi_num)
        self.cpi_den = int(cpi_den)
        self.icount = 0   # instructions retired before the current slice
        self.extra = 0    # exit costs + idle cycles so far
        self.idle = 0     # the idle part of extra (HLT waiting for an event)

    def cycles_at(self, icount: int) -> int:
        return icount * self.cpi_num // self.cpi_den + self.extra

    def now(self) -> int:
        return self.cycles_at(self.icount)

    def icount_when(self, cycles: int) -> int:
        """The smallest instruction count, not below the current one, at which cycles_at() >= cycles."""
        need = cycles - self.extra
        k = 0 if need <= 0 else -(-need * self.cpi_den // self.cpi_num)
        return max(k, self.icount)

    def catch_up(self, cycles: int) -> None:
        """Another domain ran on the CPU until `cycles` (host.py): this domain's view of time moves on."""
        self.extra += max(cycles - self.now(), 0)

    def idle_until(self, cycles: int) -> None:
        """HLT: time jumps to `cycles` without executing anything."""
        gap = max(cycles - self.now(), 0)
        self.extra += gap
        self.idle += gap
