"""CMOS/RTC, CGA CRTC, i8042 status, and the UART's receive side."""
from vmexit.devices.cmos import CMOS
from vmexit.devices.legacy import CGA, KeyboardController
from vmexit.devices.uart import BITS_PER_CHAR, UART16550, UART_CLOCK_HZ

FREQ = 1_000_000


def test_rtc_reads_the_virtual_clock_from_the_fixed_epoch_in_bcd_then_binary():
    now = [0]
    rtc = CMOS(lambda: now[0], FREQ, 64 << 20)

    def reg(r):
        rtc.write(0x70, 1, r)
        return rtc.read(0x71, 1)
    assert [reg(r) for r in (0x09, 0x08, 0x07, 0x04, 0x02, 0x00, 0x32)] == [0x00, 0x01, 0x01, 0, 0, 0, 0x20]
    now[0] = (3600 + 62) * FREQ                       # 01:01:02
    assert (reg(0x04), reg(0x02), reg(0x00)) == (0x01, 0x01, 0x02)
    rtc.write(0x70, 1, 0x0B)
    rtc.write(0x71, 1, 0x06)                          # binary
    assert reg(0x00) == 2 and reg(0x0A) == 0x26 and reg(0x0D) == 0x80
    assert reg(0x30) | reg(0x31) << 8 == (64 << 10) - 1024     # extended memory KiB


def test_cga_registers_and_keyboard_status():
    cga = CGA()
    cga.write(0x3D4, 1, 0x0E)
    cga.write(0x3D5, 1, 0x12)
    cga.write(0x3D4, 1, 0x0F)
    cga.write(0x3D5, 1, 0x34)
    cga.write(0x3D4, 1, 0x0E)
    assert cga.read(0x3D5, 1) == 0x12
    kbd = KeyboardController()
    assert kbd.read(0x64, 1) & 0x01 == 0 and kbd.read(0x64, 1) != 0xFF


def test_uart_receive_paced_by_the_character_time():
    now = [0]
    irqs = []
    u = UART16550(now=lambda: now[0], freq_hz=FREQ, raise_irq=lambda: irqs.append(now[0]), input_data=b"hi")
    assert u.next_event() is None                     # waits until the guest looks at the port
    assert u.read(0x3FD, 1) == 0x60                   # LSR: no data yet, never 0xff
    char = BITS_PER_CHAR * FREQ // UART_CLOCK_HZ       # divisor 1
    assert u.next_event() == char
    u.write(0x3F9, 1, 0x01)                           # IER: received data interrupt
    now[0] = char
    assert u.advance(now[0]) == 1 and irqs == [char]
    assert u.read(0x3FD, 1) & 1 and u.read(0x3FA, 1) == 0x04
    assert u.read(0x3F8, 1) == ord("h")
    assert u.next_event() == 2 * char and u.read(0x3FA, 1) == 0x01
    now[0] = 2 * char
    u.advance(now[0])
    assert u.read(0x3F8, 1) == ord("i") and u.consumed == 2
    assert u.next_event() is None and not u.read(0x3FD, 1) & 1
