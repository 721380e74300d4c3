"""Interrupt routing of a PC with an APIC: ISA IRQ n drives 8259A input n and I/O APIC pin n, except
IRQ0 (the PIT) which reaches I/O APIC pin 2 -- the interrupt source override every PC firmware
reports (ACPI MADT / MP table). The CPU takes the local APIC's highest deliverable vector first and
otherwise the 8259A's (ExtINT, virtual-wire mode), which is how a guest that never enables its
APIC still gets PIC interrupts.
"""
from __future__ import annotations

from .ioapic import IOAPIC
from .lapic import LocalAPIC
from .pic import PIC8259

ISA_TO_IOAPIC = {0: 2}


class InterruptRouter:
    def __init__(self, pic: PIC8259, lapic: LocalAPIC | None = None, ioapic: IOAPIC | None = None):
        self.pic = pic
        self.lapic = lapic
        self.ioapic = ioapic

    def raise_isa_irq(self, irq: int) -> None:
        self.pic.raise_irq(irq)
        if self.ioapic is not None:
            self.ioapic.raise_pin(ISA_TO_IOAPIC.get(irq, irq))

    def pending(self) -> bool:
        # asked after every exit: the common case (nothing requested anywhere) returns at once
        lapic = self.lapic
        if lapic is not None and lapic.irr and lapic.pending_vector() is not None:
            return True
        master = self.pic.master
        return bool(master.irr & ~master.imr) and self.pic.pending()

    def acknowledge(self) -> int | None:
        if self.lapic is not None:
            vector = self.lapic.acknowledge()
            if vector is not None:
                return vector
        return self.pic.acknowledge()

    def vector_of(self, irq: int) -> int:
        """The vector an ISA IRQ arrives as: through the I/O APIC when its pin is unmasked, else the PIC."""
        if self.ioapic is not None:
            entry = self.ioapic.redirection[ISA_TO_IOAPIC.get(irq, irq)]
            if not entry & (1 << 16):
                return entry & 0xFF
        return self.pic.vector_of(irq)
