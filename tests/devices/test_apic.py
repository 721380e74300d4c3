"""Local APIC and I/O APIC: registers, priorities, the timer, routing and level-triggered EOI."""
from vmexit.devices.ioapic import IOAPIC
from vmexit.devices.irq import InterruptRouter
from vmexit.devices.lapic import APIC_BUS_HZ, LocalAPIC
from vmexit.devices.pic import PIC8259

FREQ = 2_000_000_000  # two CPU cycles per APIC bus cycle


class Clock:
    now = 0


def enabled_lapic(clock=None, on_eoi=None):
    clock = clock or Clock()
    lapic = LocalAPIC(lambda: clock.now, FREQ, on_eoi)
    lapic.write(0xF0, 4, 0x1FF)  # SVR: enable, spurious vector 0xff
    return lapic, clock


def test_identity_registers():
    lapic, _ = enabled_lapic()
    assert lapic.read(0x30, 4) == 0x00050014
    assert lapic.read(0x20, 4) == 0
    assert lapic.read(0x300, 4) & (1 << 12) == 0  # ICR delivery status idle


def test_priority_and_eoi():
    lapic, _ = enabled_lapic()
    lapic.accept(0x31)
    lapic.accept(0x52)
    assert lapic.acknowledge() == 0x52
    assert lapic.pending_vector() is None  # 0x31's class is below the in-service 0x52
    lapic.write(0xB0, 4, 0)
    assert lapic.acknowledge() == 0x31
    lapic.write(0xB0, 4, 0)
    lapic.write(0x80, 4, 0x40)  # TPR class 4 blocks class 3
    lapic.accept(0x35)
    assert lapic.pending_vector() is None
    lapic.write(0x80, 4, 0)
    assert lapic.pending_vector() == 0x35
    assert lapic.read(0x200 + 0x10, 4) == 1 << (0x35 - 32)  # IRR bits 32-63


def test_disabled_apic_delivers_nothing():
    lapic = LocalAPIC(lambda: 0, FREQ)
    lapic.accept(0x40)
    assert lapic.pending_vector() is None
    lapic.write(0x320, 4, 0x20)
    assert lapic.read(0x320, 4) & (1 << 16)  # LVT writes stay masked while disabled


def test_periodic_timer():
    lapic, clock = enabled_lapic()
    lapic.write(0x3E0, 4, 0x3)        # divide by 16
    lapic.write(0x320, 4, 0x20020)    # periodic, vector 0x20
    lapic.write(0x380, 4, 1000)       # 1000 x 16 bus cycles = 16 us = 32,000 CPU cycles
    period = 1000 * 16 * FREQ // APIC_BUS_HZ
    assert lapic.next_event() == period
    clock.now = period // 2
    assert lapic.read(0x390, 4) == 500
    clock.now = 3 * period
    assert lapic.advance(clock.now) == 3
    assert lapic.acknowledge() == 0x20 and lapic.timer_vector() == 0x20


def test_one_shot_timer_and_mask():
    lapic, clock = enabled_lapic()
    lapic.write(0x3E0, 4, 0xB)        # divide by 1
    lapic.write(0x320, 4, 0x30)
    lapic.write(0x380, 4, 100)
    clock.now = 10 ** 6
    assert lapic.advance(clock.now) == 1 and lapic.next_event() is None
    assert lapic.read(0x390, 4) == 0
    lapic.write(0x320, 4, 0x10030)
    lapic.write(0x380, 4, 100)
    assert lapic.next_event() is None


def test_self_ipi():
    lapic, _ = enabled_lapic()
    lapic.write(0x300, 4, (1 << 18) | 0x44)  # shorthand self, fixed, vector 0x44
    assert lapic.pending_vector() == 0x44


def test_ioapic_redirection_and_level_eoi():
    lapic, _ = enabled_lapic()
    ioapic = IOAPIC(lapic.accept)
    lapic._on_eoi = ioapic.eoi
    ioapic.write(0x00, 4, 0x01)
    assert ioapic.read(0x10, 4) == (23 << 16) | 0x11
    ioapic.write(0x00, 4, 0x10 + 2 * 5)
    ioapic.write(0x10, 4, 0x8000 | 0x45)   # pin 5: level, vector 0x45, unmasked
    ioapic.raise_pin(5)
    assert lapic.acknowledge() == 0x45
    assert ioapic.read(0x10, 4) & (1 << 14)  # remote IRR until the EOI
    ioapic.raise_pin(5)
    assert lapic.pending_vector() is None    # not re-delivered while remote IRR is set
    lapic.write(0xB0, 4, 0)                  # EOI of a level vector reaches the I/O APIC ...
    assert lapic.pending_vector() == 0x45    # ... and the still-high line delivers again
    assert lapic.acknowledge() == 0x45
    ioapic.lower_pin(5)
    lapic.write(0xB0, 4, 0)
    assert not ioapic.read(0x10, 4) & (1 << 14) and lapic.pending_vector() is None


def test_router_pit_reaches_pin2_and_pic():
    pic = PIC8259()
    lapic, _ = enabled_lapic()
    ioapic = IOAPIC(lapic.accept)
    router = InterruptRouter(pic, lapic, ioapic)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE)):
        pic.write(port, 1, value)
    router.raise_isa_irq(0)
    assert router.vector_of(0) == 0x20 and router.acknowledge() == 0x20  # via the PIC: pin 2 masked
    ioapic.write(0x00, 4, 0x10 + 2 * 2)
    ioapic.write(0x10, 4, 0x31)
    pic.write(0x20, 1, 0x20)
    pic.write(0x21, 1, 0xFF)
    router.raise_isa_irq(0)
    assert router.vector_of(0) == 0x31 and router.acknowledge() == 0x31
