"""8254 PIT: programming, periods, read-back."""
from vmexit.devices.pit import PIT8254

FREQ = 3579545 * 100  # 100 CPU cycles per PIT input cycle x 3: easy numbers


class Clock:
    now = 0


def make():
    clock = Clock()
    fired = []
    pit = PIT8254(lambda: clock.now, FREQ, lambda: fired.append(clock.now))
    return pit, clock, fired


def program(pit, mode, count):
    pit.write(0x43, 1, 0x30 | (mode << 1))
    pit.write(0x40, 1, count & 0xFF)
    pit.write(0x40, 1, count >> 8)


def test_mode2_period_and_events():
    pit, clock, fired = make()
    assert pit.next_event() is None
    program(pit, 2, 1193)
    period = 1193 * 300  # 300 CPU cycles per PIT tick at this frequency
    assert pit.next_event() == period
    clock.now = 3 * period + 5
    assert pit.advance(clock.now) == 3
    assert pit.next_event() == 4 * period
    assert pit.loads == 1


def test_mode0_fires_once():
    pit, clock, fired = make()
    program(pit, 0, 100)
    clock.now = 10 ** 9
    assert pit.advance(clock.now) == 1 and pit.next_event() is None


def test_counter_latch_and_readback():
    pit, clock, fired = make()
    program(pit, 2, 1000)
    clock.now = 250 * 300
    pit.write(0x43, 1, 0x00)  # latch channel 0
    clock.now = 400 * 300     # the latched value does not move
    lo, hi = pit.read(0x40, 1), pit.read(0x40, 1)
    assert lo | (hi << 8) == 750
    lo, hi = pit.read(0x40, 1), pit.read(0x40, 1)
    assert lo | (hi << 8) == 600


def test_reload_zero_means_65536():
    pit, clock, fired = make()
    program(pit, 2, 0)
    assert pit.next_event() == 65536 * 300
