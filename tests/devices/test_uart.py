"""The 16550's transmitter-empty interrupt (IER.ETBEI): raised on enabling and after each byte,
reported by IIR 0x02 below received data, cleared by reading IIR."""
from vmexit.devices.uart import BASE, UART16550

IER, IIR = BASE + 1, BASE + 2


def test_thr_empty_interrupt_on_enable_and_after_each_byte():
    raised = []
    u = UART16550(raise_irq=lambda: raised.append(1))
    assert u.read(IIR, 1) == 0x01                 # nothing pending
    u.write(IER, 1, 0x02)                         # ETBEI with THR empty: one interrupt at once
    assert len(raised) == 1 and u.read(IIR, 1) == 0x02
    assert u.read(IIR, 1) == 0x01                 # reading IIR cleared it
    for byte in b"abc":
        u.write(BASE, 1, byte)                    # each byte leaves THR empty again: one interrupt each
    assert len(raised) == 4 and u.output == b"abc"
    assert u.read(IIR, 1) == 0x02 and u.read(IIR, 1) == 0x01
    u.write(BASE, 1, ord("d"))
    u.write(IER, 1, 0x00)                         # disabling ETBEI drops the pending one
    assert u.read(IIR, 1) == 0x01 and len(raised) == 5


def test_received_data_comes_before_thr_empty():
    u = UART16550(raise_irq=lambda: None)
    u.write(IER, 1, 0x03)
    u.rbr = ord("x")
    assert u.read(IIR, 1) == 0x04                 # data ready first
    assert u.read(BASE, 1) == ord("x")
    assert u.read(IIR, 1) == 0x02 and u.read(IIR, 1) == 0x01
