"""UART, PM timer, debug exit."""
from vmexit.devices.debugexit import DebugExit
from vmexit.devices.pmtimer import PMTimer
from vmexit.devices.uart import UART16550


def test_uart_transmit_and_lsr():
    out = []
    uart = UART16550(out.append)
    assert uart.read(0x3FD, 1) == 0x60
    uart.write(0x3F8, 1, ord("A"))
    uart.write(0x3FB, 1, 0x83)           # DLAB
    uart.write(0x3F8, 1, 0x0C)           # divisor, not a byte to send
    assert uart.read(0x3F8, 1) == 0x0C
    uart.write(0x3FB, 1, 0x03)
    assert bytes(uart.output) == b"A" and out == [b"A"]
    assert uart.read(0x3FA, 1) == 0x01


def test_pm_timer_counts_from_virtual_time():
    now = [0]
    pm = PMTimer(lambda: now[0], 3579545 * 2)
    now[0] = 2 * 1000
    assert pm.read(0x608, 4) == 1000
    now[0] = 2 * (1 << 24) + 2 * 5
    assert pm.read(0x608, 4) == 5      # 24-bit wrap
    assert pm.read(0x609, 1) == 0


def test_debug_exit():
    got = []
    dev = DebugExit(got.append)
    dev.write(0xF4, 1, 0x1FF)
    assert got == [0xFF] and dev.read(0xF4, 2) == 0xFFFF
