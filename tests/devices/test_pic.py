"""8259A pair: initialisation, priority, masking, EOI, poll, cascade."""
from vmexit.devices.pic import PIC8259


def init(pic, master=0x20, slave=0x28, auto_eoi=False):
    icw4 = 0x03 if auto_eoi else 0x01
    for port, base, icw3 in ((0x20, master, 0x04), (0xA0, slave, 0x02)):
        pic.write(port, 1, 0x11)
        pic.write(port + 1, 1, base)
        pic.write(port + 1, 1, icw3)
        pic.write(port + 1, 1, icw4)
    pic.write(0x21, 1, 0x00)
    pic.write(0xA1, 1, 0x00)


def test_vectors_and_priority():
    pic = PIC8259()
    init(pic)
    pic.raise_irq(3)
    pic.raise_irq(1)
    assert pic.acknowledge() == 0x21
    # IRQ3 waits: lower priority than IRQ1 in service
    assert not pic.pending()
    pic.write(0x20, 1, 0x20)  # non-specific EOI
    assert pic.acknowledge() == 0x23


def test_mask_and_specific_eoi():
    pic = PIC8259()
    init(pic)
    pic.write(0x21, 1, 0x01)
    pic.raise_irq(0)
    assert not pic.pending()
    assert pic.read(0x21, 1) == 0x01
    pic.write(0x21, 1, 0x00)
    assert pic.acknowledge() == 0x20
    assert pic.master.isr == 1
    pic.write(0x20, 1, 0x60)
    assert pic.master.isr == 0


def test_cascade_to_slave():
    pic = PIC8259()
    init(pic)
    pic.raise_irq(14)
    assert pic.pending()
    assert pic.acknowledge() == 0x2E
    assert pic.vector_of(14) == 0x2E and pic.vector_of(0) == 0x20


def test_poll_mode_acks():
    pic = PIC8259()
    init(pic)
    pic.raise_irq(5)
    pic.write(0x20, 1, 0x0C)
    assert pic.read(0x20, 1) == 0x85
    assert pic.master.isr == 1 << 5 and pic.master.irr == 0
    pic.write(0x20, 1, 0x0C)
    assert pic.read(0x20, 1) == 0


def test_auto_eoi_and_read_isr():
    pic = PIC8259()
    init(pic, auto_eoi=True)
    pic.raise_irq(2 + 0)  # the cascade line itself, nothing on the slave: spurious IRQ15
    assert pic.acknowledge() == 0x2F
    pic.raise_irq(0)
    assert pic.acknowledge() == 0x20 and pic.master.isr == 0
    pic.write(0x20, 1, 0x0B)
    assert pic.read(0x20, 1) == 0
