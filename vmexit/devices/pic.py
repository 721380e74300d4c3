"""Intel 8259A programmable interrupt controller pair (master 0x20/0x21, slave 0xa0/0xa1, cascade on
master IRQ2), as wired on every PC/AT.

Supported: ICW1-ICW4 initialisation (vector base, single/cascade, auto-EOI), OCW1 mask, OCW2
non-specific and specific EOI, OCW3 IRR/ISR read select and poll mode (Linux's timer_interrupt acks
the timer by `outb 0x0c, 0x20; inb 0x20`), fixed priority (IRQ0 highest), edge-triggered inputs.
Register semantics: Intel 8259A datasheet (order no. 231468).
"""
from __future__ import annotations

PORTS = (0x20, 0x21, 0xA0, 0xA1)


class _Chip:
    def __init__(self, base: int):
        self.base = base
        self.irr = 0
        self.isr = 0
        self.imr = 0xFF
        self.init_step = 0      # 0 = initialised; 2..4 = expecting ICW2..ICW4
        self.icw4_needed = False
        self.single = False
        self.auto_eoi = False
        self.read_isr = False
        self.poll = False

    def highest(self, bits: int) -> int | None:
        for i in range(8):
            if bits >> i & 1:
                return i
        return None

    def pending_irq(self) -> int | None:
        bits = self.irr & ~self.imr
        if not bits:
            return None
        req = self.highest(bits)
        served = self.highest(self.isr)
        if served is not None and served <= req:
            return None
        return req

    def write_command(self, value: int) -> None:
        if value & 0x10:  # ICW1
            self.init_step = 2
            self.icw4_needed = bool(value & 1)
            self.single = bool(value & 2)
            self.imr = 0
            self.isr = 0
            self.irr = 0
            self.auto_eoi = False
            self.read_isr = False
        elif value & 0x08:  # OCW3
            if value & 0x04:
                self.poll = True
            if value & 0x02:
                self.read_isr = bool(value & 1)
        else:  # OCW2
            cmd = value >> 5
            if cmd == 1:  # non-specific EOI
                top = self.highest(self.isr)
                if top is not None:
                    self.isr &= ~(1 << top)
            elif cmd == 3:  # specific EOI
                self.isr &= ~(1 << (value & 7))

    def write_data(self, value: int) -> None:
        if self.init_step == 2:
            self.base = value & 0xF8
            self.init_step = 0 if (self.single and not self.icw4_needed) else (4 if self.single else 3)
        elif self.init_step == 3:
            self.init_step = 4 if self.icw4_needed else 0
        elif self.init_step == 4:
            self.auto_eoi = bool(value & 2)
            self.init_step = 0
        else:
            self.imr = value & 0xFF

    def ack(self, irq: int) -> None:
        self.irr &= ~(1 << irq)
        if not self.auto_eoi:
            self.isr |= 1 << irq


class PIC8259:
    name = "pic"
    ports = PORTS

    def __init__(self) -> None:
        self.master = _Chip(0x08)   # BIOS defaults: master at 0x08, slave at 0x70
        self.slave = _Chip(0x70)

    def raise_irq(self, irq: int) -> None:
        if irq >= 8:
            self.slave.irr |= 1 << (irq - 8)
            self._cascade()
        else:
            self.master.irr |= 1 << irq

    def _cascade(self) -> None:
        if self.slave.pending_irq() is not None:
            self.master.irr |= 1 << 2

    def vector_of(self, irq: int) -> int:
        return self.slave.base + irq - 8 if irq >= 8 else self.master.base + irq

    def pending(self) -> bool:
        return self.master.pending_irq() is not None

    def acknowledge(self) -> int | None:
        """INTA: the vector of the highest-priority pending IRQ, now in service; None if spurious."""
        irq = self.master.pending_irq()
        if irq is None:
            return None
        self.master.ack(irq)
        if irq == 2 and not self.master.single:
            sirq = self.slave.pending_irq()
            if sirq is None:
                return self.slave.base + 7  # spurious IRQ15
            self.slave.ack(sirq)
            self._cascade()
            return self.slave.base + sirq
        return self.master.base + irq

    def read(self, port: int, size: int) -> int:
        chip = self.master if port < 0xA0 else self.slave
        if port & 1:
            return chip.imr
        if chip.poll:
            chip.poll = False
            irq = chip.pending_irq()
            if irq is None:
                return 0
            chip.ack(irq)
            return 0x80 | irq
        return chip.isr if chip.read_isr else chip.irr

    def write(self, port: int, size: int, value: int) -> None:
        chip = self.master if port < 0xA0 else self.slave
        if port & 1:
            chip.write_data(value & 0xFF)
        else:
            chip.write_command(value & 0xFF)
        if chip is self.slave:
            if self.slave.pending_irq() is None:
                self.master.irr &= ~(1 << 2)
            else:
                self._cascade()
