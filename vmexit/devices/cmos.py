"""MC146818 CMOS RTC at ports 0x70 (index, bit 7 = NMI disable) and 0x71 (data).

The clock is the virtual clock from a fixed epoch, 2000-01-01 00:00:00 UTC, so every run reads the
same times (determinism); register B defaults to 0x02 (24-hour, BCD) as a PC BIOS leaves it, and a
guest that sets bit 2 gets binary. Registers A (update not in progress, 32.768 kHz divider), C and D
(valid RAM and time) read as the datasheet's idle values; the rest of the 128 bytes are plain CMOS
RAM, with the base/extended memory sizes a BIOS writes (0x15-0x18, 0x30-0x31, 0x34-0x35).
Register map: Motorola MC146818A datasheet; memory-size bytes: the IBM PC/AT technical reference.
"""
from __future__ import annotations

import datetime
from typing import Callable

PORTS = (0x70, 0x71)
EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


class CMOS:
    name = "cmos"
    ports = PORTS

    def __init__(self, now: Callable[[], int], freq_hz: int, ram_size: int):
        self._now = now
        self._freq = freq_hz
        self.index = 0
        self.ram = bytearray(128)
        self.ram[0x0A], self.ram[0x0B], self.ram[0x0D] = 0x26, 0x02, 0x80
        base_kib, ext_kib = 640, min(max(ram_size // 1024 - 1024, 0), 0xFFFF)
        self.ram[0x15:0x17] = base_kib.to_bytes(2, "little")
        self.ram[0x17:0x19] = ext_kib.to_bytes(2, "little")
        self.ram[0x30:0x32] = ext_kib.to_bytes(2, "little")
        above_16m = max(ram_size - (16 << 20), 0) // (64 << 10)
        self.ram[0x34:0x36] = min(above_16m, 0xFFFF).to_bytes(2, "little")

    def _time(self) -> dict[int, int]:
        t = EPOCH + datetime.timedelta(seconds=self._now() // self._freq)
        fields = {0x00: t.second, 0x02: t.minute, 0x04: t.hour, 0x06: t.isoweekday() % 7 + 1,
                  0x07: t.day, 0x08: t.month, 0x09: t.year % 100, 0x32: t.year // 100}
        if not self.ram[0x0B] & 0x04:  # BCD
            fields = {k: (v // 10) << 4 | v % 10 for k, v in fields.items()}
        return fields

    def read(self, port: int, size: int) -> int:
        if port == 0x70:
            return 0xFF  # the index register is write-only
        reg = self.index
        if reg in (0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32):
            return self._time()[reg]
        if reg == 0x0C:
            return 0x00  # no interrupt flags
        return self.ram[reg]

    def write(self, port: int, size: int, value: int) -> None:
        if port == 0x70:
            self.index = value & 0x7F
        elif self.index not in (0x0A, 0x0C, 0x0D):
            self.ram[self.index] = value & 0xFF
