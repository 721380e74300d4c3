"""Local APIC at 0xfee00000 (xAPIC MMIO mode): ID, version, TPR/PPR, EOI, SVR, ISR/TMR/IRR, ESR,
ICR (delivery status always reads idle), the LVT entries and the timer (one-shot and periodic, divide
configuration, initial and current count).

Register layout and priority rules: Intel SDM vol. 3A, chapter 11 (table 11-1; 11.8.3 for the
priority of vectors: a vector is delivered when its class, vector >> 4, is above the PPR's).
The timer counts at KVM's APIC bus clock of 1 GHz (arch/x86/kvm/lapic.c, APIC_BUS_CYCLE_NS = 1),
divided by the divide configuration, on the virtual clock. Version 0x14 with 6 LVT entries as KVM
reports (APIC_VERSION, max LVT index 5).

Hook point `timer_load` (optimizations/tickrate.py): a periodic initial count may be run as another;
the initial-count register keeps the guest's value and the current count reads in the guest's units.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable

BASE = 0xFEE00000
SIZE = 0x1000
APIC_BUS_HZ = 1_000_000_000
VERSION = 0x00050014  # max LVT entry 5, version 0x14
LVT_MASKED = 1 << 16
LVT_PERIODIC = 1 << 17

ID, VER, TPR, APR, PPR, EOI, LDR, DFR, SVR = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0
ISR, TMR, IRR, ESR, ICR_LO, ICR_HI = 0x100, 0x180, 0x200, 0x280, 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = 0x320, 0x330, 0x340, 0x350, 0x360, 0x370
TIMER_INIT, TIMER_CURRENT, TIMER_DIVIDE = 0x380, 0x390, 0x3E0


class LocalAPIC:
    name = "lapic"
    base = BASE
    size = SIZE

    def __init__(self, now: Callable[[], int], freq_hz: int, on_eoi: Callable[[int], None] | None = None,
                 reload_hook: Callable[[str, int, Fraction], int] | None = None):
        self._reload_hook = reload_hook
        self.period = 0  # the count the timer runs (the initial count unless tick-hz scaled it)
        self._now = now
        self._freq = freq_hz
        self._on_eoi = on_eoi
        self.apic_id = 0
        self.tpr = 0
        self.svr = 0xFF          # software-disabled at reset
        self.ldr = 0
        self.dfr = 0xFFFFFFFF
        self.esr = 0
        self.icr = 0
        self.lvt = {LVT_TIMER: LVT_MASKED, LVT_THERMAL: LVT_MASKED, LVT_PERF: LVT_MASKED,
                    LVT_LINT0: LVT_MASKED, LVT_LINT1: LVT_MASKED, LVT_ERROR: LVT_MASKED}
        self.irr = 0             # 256-bit vector sets as Python ints
        self.isr = 0
        self.tmr = 0
        self.divide_config = 0
        self.initial = 0
        self.start: int | None = None
        self.fired = 0
        self.fired_total = 0  # timer interrupts in the whole run
        self.eois = 0

    # interrupt acceptance ------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.svr & 0x100)

    def accept(self, vector: int, level: bool = False) -> None:
        """An interrupt message for this CPU (from the IOAPIC, an IPI or the LVT)."""
        if vector < 16:
            self.esr |= 1 << 6  # received illegal vector
            return
        self.irr |= 1 << vector
        if level:
            self.tmr |= 1 << vector
        else:
            self.tmr &= ~(1 << vector)

    def _ppr(self) -> int:
        isrv = self.isr.bit_length() - 1 if self.isr else 0
        return self.tpr if (self.tpr >> 4) >= (isrv >> 4) else isrv & 0xF0

    def pending_vector(self) -> int | None:
        if not self.irr or not self.svr & 0x100:
            return None
        vector = self.irr.bit_length() - 1
        return vector if (vector >> 4) > (self._ppr() >> 4) else None

    def acknowledge(self) -> int | None:
        vector = self.pending_vector()
        if vector is not None:
            self.irr &= ~(1 << vector)
            self.isr |= 1 << vector
        return vector

    def _eoi(self) -> None:
        if not self.isr:
            return
        vector = self.isr.bit_length() - 1
        self.isr &= ~(1 << vector)
        self.eois += 1
        if self.tmr >> vector & 1 and self._on_eoi is not None:
            self._on_eoi(vector)

    # timer ----------------------------------------------------------------------------------------
    def divisor(self) -> int:
        return self._divisor()

    def _divisor(self) -> int:
        v = (self.divide_config & 3) | ((self.divide_config & 8) >> 1)
        return 1 if v == 7 else 2 << v

    def _period_cycles(self) -> int:
        return -(-self.period * self._divisor() * self._freq // APIC_BUS_HZ)

    def timer_vector(self) -> int:
        return self.lvt[LVT_TIMER] & 0xFF

    def next_event(self) -> int | None:
        lvt = self.lvt[LVT_TIMER]
        if self.start is None or not self.period or lvt & LVT_MASKED:
            return None
        if not lvt & LVT_PERIODIC and self.fired:
            return None
        return self.start + (self.fired + 1) * self._period_cycles()

    def advance(self, now: int) -> int:
        fired = 0
        due = self.next_event()
        while due is not None and due <= now:
            self.fired += 1
            self.fired_total += 1
            self.accept(self.timer_vector())
            fired += 1
            due = self.next_event()
        return fired

    def _current_count(self) -> int:
        if self.start is None or not self.period:
            return 0
        ticks = (self._now() - self.start) * APIC_BUS_HZ // (self._freq * self._divisor())
        if self.lvt[LVT_TIMER] & LVT_PERIODIC:
            ticks %= self.period
            if self.period != self.initial:  # scaled period: read back in the guest's units
                ticks = ticks * self.initial // self.period
            return self.initial - ticks
        return max(self.initial - ticks, 0)

    # MMIO -------------------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        reg = offset & 0xFF0
        sub = offset & 0xF
        value = self._read_reg(reg)
        return (value >> (8 * sub)) & ((1 << (8 * size)) - 1)

    def _read_reg(self, reg: int) -> int:
        if reg == ID:
            return self.apic_id << 24
        if reg == VER:
            return VERSION
        if reg == TPR:
            return self.tpr
        if reg == PPR:
            return self._ppr()
        if reg == LDR:
            return self.ldr
        if reg == DFR:
            return self.dfr
        if reg == SVR:
            return self.svr
        if ISR <= reg < ISR + 0x80:
            return self.isr >> (32 * ((reg - ISR) >> 4)) & 0xFFFFFFFF
        if TMR <= reg < TMR + 0x80:
            return self.tmr >> (32 * ((reg - TMR) >> 4)) & 0xFFFFFFFF
        if IRR <= reg < IRR + 0x80:
            return self.irr >> (32 * ((reg - IRR) >> 4)) & 0xFFFFFFFF
        if reg == ESR:
            return self.esr
        if reg == ICR_LO:
            return self.icr & 0xFFFFFFFF & ~(1 << 12)  # delivery status: idle
        if reg == ICR_HI:
            return self.icr >> 32
        if reg in self.lvt:
            return self.lvt[reg]
        if reg == TIMER_INIT:
            return self.initial
        if reg == TIMER_CURRENT:
            return self._current_count()
        if reg == TIMER_DIVIDE:
            return self.divide_config
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        reg = offset & 0xFF0
        value &= 0xFFFFFFFF
        if reg == ID:
            self.apic_id = value >> 24
        elif reg == TPR:
            self.tpr = value & 0xFF
        elif reg == EOI:
            self._eoi()
        elif reg == LDR:
            self.ldr = value & 0xFF000000
        elif reg == DFR:
            self.dfr = value | 0x0FFFFFFF
        elif reg == SVR:
            self.svr = value & 0x13FF
            if not self.enabled:
                for r in self.lvt:
                    self.lvt[r] |= LVT_MASKED
        elif reg == ESR:
            self.esr = 0
        elif reg == ICR_LO:
            self.icr = (self.icr & ~0xFFFFFFFF) | value
            self._ipi(value)
        elif reg == ICR_HI:
            self.icr = (self.icr & 0xFFFFFFFF) | (value << 32)
        elif reg in self.lvt:
            if not self.enabled:
                value |= LVT_MASKED
            self.lvt[reg] = value & 0x000717FF if reg == LVT_TIMER else value & 0x0001F7FF
        elif reg == TIMER_INIT:
            self.initial = self.period = value
            if value and self.lvt[LVT_TIMER] & LVT_PERIODIC and self._reload_hook is not None:
                self.period = self._reload_hook("lapic", value, Fraction(APIC_BUS_HZ, self._divisor()))
            self.start = self._now()
            self.fired = 0
        elif reg == TIMER_DIVIDE:
            self.divide_config = value & 0xB

    def _ipi(self, icr: int) -> None:
        """A fixed-mode IPI to self (shorthand 01) or to all including self (10): the only CPU there is."""
        shorthand = (icr >> 18) & 3
        mode = (icr >> 8) & 7
        to_me = shorthand in (1, 2) or (shorthand == 0 and (self.icr >> 56) == self.apic_id)
        if mode == 0 and to_me:
            self.accept(icr & 0xFF)
