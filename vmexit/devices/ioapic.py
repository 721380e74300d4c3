"""I/O APIC at 0xfec00000: IOREGSEL (0x00) / IOWIN (0x10) indirect registers -- ID, version,
arbitration and 24 redirection entries (vector, delivery mode, destination mode, polarity, remote
IRR, trigger mode, mask, destination) -- and the EOI register at 0x40 (version 0x20 and later).

Layout: Intel 82093AA I/O APIC datasheet (order no. 290566). Version 0x11 with 24 pins, as KVM's
in-kernel IOAPIC reports (virt/kvm/ioapic.h: IOAPIC_VERSION_ID 0x11, IOAPIC_NUM_PINS 24).
Fixed and lowest-priority deliveries go to the single local APIC; a level-triggered pin stays
"remote IRR" busy until the local APIC's EOI for its vector comes back.
"""
from __future__ import annotations

from typing import Callable

BASE = 0xFEC00000
SIZE = 0x1000
PINS = 24
VERSION = 0x11
MASKED = 1 << 16
LEVEL = 1 << 15
REMOTE_IRR = 1 << 14


class IOAPIC:
    name = "ioapic"
    base = BASE
    size = SIZE

    def __init__(self, deliver: Callable[[int, bool], None]):
        self._deliver = deliver
        self.select = 0
        self.ioapic_id = 0
        self.redirection = [MASKED] * PINS  # 64-bit entries, masked at reset
        self.level = [False] * PINS         # current input level of each pin (level-triggered)
        self.delivered = 0

    def raise_pin(self, pin: int) -> None:
        """An edge (or the start of a level) on a pin."""
        if not 0 <= pin < PINS:
            return
        self.level[pin] = True
        self._service(pin)
        entry = self.redirection[pin]
        if not entry & LEVEL:
            self.level[pin] = False

    def lower_pin(self, pin: int) -> None:
        if 0 <= pin < PINS:
            self.level[pin] = False

    def _service(self, pin: int) -> None:
        entry = self.redirection[pin]
        if entry & MASKED or not self.level[pin]:
            return
        level = bool(entry & LEVEL)
        if level and entry & REMOTE_IRR:
            return
        mode = (entry >> 8) & 7
        if mode not in (0, 1):  # only fixed and lowest-priority deliveries reach the CPU here
            return
        if level:
            self.redirection[pin] = entry | REMOTE_IRR
        self.delivered += 1
        self._deliver(entry & 0xFF, level)

    def eoi(self, vector: int) -> None:
        """The local APIC's EOI for a level-triggered vector (or a write to the EOI register)."""
        for pin, entry in enumerate(self.redirection):
            if entry & 0xFF == vector and entry & REMOTE_IRR:
                self.redirection[pin] = entry & ~REMOTE_IRR
                self._service(pin)

    def read(self, offset: int, size: int) -> int:
        if offset == 0x00:
            return self.select
        if offset != 0x10:
            return 0
        reg = self.select
        if reg == 0x00:
            return self.ioapic_id << 24
        if reg == 0x01:
            return ((PINS - 1) << 16) | VERSION
        if reg == 0x02:
            return self.ioapic_id << 24
        if 0x10 <= reg < 0x10 + 2 * PINS:
            entry = self.redirection[(reg - 0x10) >> 1]
            return entry >> 32 if reg & 1 else entry & 0xFFFFFFFF
        return 0xFFFFFFFF

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset == 0x00:
            self.select = value & 0xFF
            return
        if offset == 0x40:
            self.eoi(value & 0xFF)
            return
        if offset != 0x10:
            return
        reg = self.select
        if reg == 0x00:
            self.ioapic_id = (value >> 24) & 0xF
        elif 0x10 <= reg < 0x10 + 2 * PINS:
            pin = (reg - 0x10) >> 1
            entry = self.redirection[pin]
            if reg & 1:
                entry = (entry & 0xFFFFFFFF) | (value << 32)
            else:
                # delivery status and remote IRR are read-only
                keep = entry & (REMOTE_IRR | (1 << 12))
                entry = (entry & ~0xFFFFFFFF) | (value & ~(REMOTE_IRR | (1 << 12))) | keep
            self.redirection[pin] = entry
            self._service(pin)
