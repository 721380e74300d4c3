"""Intel 8254 programmable interval timer at ports 0x40-0x43.

Input clock 1,193,181.67 Hz (= 3,579,545 / 3, the NTSC colour-burst crystal divided by 3: Intel 8254
datasheet and every PC since the 5150). Channel 0 drives IRQ0. Supported: command byte (channel,
access lobyte/hibyte/both, mode), counter latch, modes 0 (one-shot), 2 (rate generator) and 3 (square
wave), reading the counter back. Reload 0 means 65,536. Channels 1 and 2 keep their registers but
drive nothing (no DRAM refresh or speaker here).

Time is exact integer arithmetic on the virtual clock: PIT ticks since the count was loaded =
floor(cycles x 3,579,545 / (3 x cpu_freq)).

Hook point `timer_load` (optimizations/tickrate.py): a periodic count loaded into channel 0 may be
replaced by another; the counter then reads back in the guest's units.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable

PIT_NUM, PIT_DEN = 3579545, 3   # input clock in Hz as a fraction
PIT_HZ = Fraction(PIT_NUM, PIT_DEN)
PORTS = (0x40, 0x41, 0x42, 0x43)


class _Channel:
    def __init__(self) -> None:
        self.mode = 0
        self.access = 3
        self.reload = 0x10000
        self.guest_reload = 0x10000     # what the guest loaded (differs from reload under tick-hz)
        self.write_lsb_next = True
        self.read_lsb_next = True
        self.partial = 0
        self.latched: int | None = None
        self.start: int | None = None   # cycle when the count was loaded
        self.fired = 0                  # IRQ edges raised since start


class PIT8254:
    name = "pit"
    ports = PORTS
    irq = 0

    def __init__(self, now: Callable[[], int], freq_hz: int, irq0: Callable[[], None],
                 reload_hook: Callable[[str, int, Fraction], int] | None = None):
        self._now = now
        self._reload_hook = reload_hook
        self.interrupts = 0  # IRQ0 edges raised in the whole run
        self._freq = freq_hz
        self._irq0 = irq0
        self.channels = [_Channel(), _Channel(), _Channel()]
        self.loads = 0  # how many times the guest loaded channel 0 (optimizations watch this)
        self._next_key: tuple | None = None
        self._next = 0

    # time conversion -------------------------------------------------------------------------
    def _ticks(self, cycles: int) -> int:
        return cycles * PIT_NUM // (PIT_DEN * self._freq)

    def _cycles_for(self, ticks: int) -> int:
        return -(-ticks * PIT_DEN * self._freq // PIT_NUM)

    # port interface --------------------------------------------------------------------------
    def read(self, port: int, size: int) -> int:
        if port == 0x43:
            return 0xFF  # the command register is write-only
        ch = self.channels[port - 0x40]
        value = ch.latched if ch.latched is not None else self._count(ch)
        if ch.access == 1:
            out = value & 0xFF
        elif ch.access == 2:
            out = (value >> 8) & 0xFF
        else:
            out = value & 0xFF if ch.read_lsb_next else (value >> 8) & 0xFF
            ch.read_lsb_next = not ch.read_lsb_next
            if ch.read_lsb_next:
                ch.latched = None
            return out
        ch.latched = None
        return out

    def write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == 0x43:
            sel = value >> 6
            if sel == 3:
                return  # read-back command: not used by our guests, ignored
            ch = self.channels[sel]
            access = (value >> 4) & 3
            if access == 0:
                ch.latched = self._count(ch) & 0xFFFF
                ch.read_lsb_next = True
                return
            ch.access = access
            ch.mode = (value >> 1) & 7
            if ch.mode > 5:
                ch.mode -= 4  # modes 6 and 7 are aliases of 2 and 3
            ch.write_lsb_next = True
            ch.read_lsb_next = True
            if sel == 0:
                ch.start = None  # writing the mode stops the count until a new one is loaded
            return
        ch = self.channels[port - 0x40]
        if ch.access == 1:
            self._load(port - 0x40, value)
        elif ch.access == 2:
            self._load(port - 0x40, value << 8)
        elif ch.write_lsb_next:
            ch.partial = value
            ch.write_lsb_next = False
        else:
            ch.write_lsb_next = True
            self._load(port - 0x40, ch.partial | (value << 8))

    def _load(self, index: int, count: int) -> None:
        ch = self.channels[index]
        ch.reload = ch.guest_reload = count or 0x10000
        if index == 0 and ch.mode in (2, 3) and self._reload_hook is not None:
            ch.reload = self._reload_hook("pit", ch.guest_reload, PIT_HZ)
        ch.start = self._now()
        ch.fired = 0
        if index == 0:
            self.loads += 1

    def _count(self, ch: _Channel) -> int:
        if ch.start is None:
            return ch.guest_reload & 0xFFFF
        ticks = self._ticks(self._now() - ch.start)
        if ch.reload != ch.guest_reload:  # scaled period: read back in the guest's units
            ticks = ticks * ch.guest_reload // ch.reload
            ticks %= ch.guest_reload
            if ch.mode == 3:
                return (ch.guest_reload - (2 * ticks) % ch.guest_reload) & 0xFFFE
            return (ch.guest_reload - ticks) & 0xFFFF
        if ch.mode == 0:
            return max(ch.reload - ticks, 0) & 0xFFFF
        if ch.mode == 3:
            return (ch.reload - (2 * ticks) % ch.reload) & 0xFFFE
        return (ch.reload - ticks % ch.reload) & 0xFFFF

    # timed device interface ------------------------------------------------------------------
    def next_event(self) -> int | None:
        ch = self.channels[0]
        if ch.start is None or (ch.mode == 0 and ch.fired):
            return None
        key = (ch.start, ch.fired, ch.reload)
        if self._next_key != key:  # cached: this is asked after every exit
            self._next_key = key
            self._next = ch.start + self._cycles_for((ch.fired + 1) * ch.reload)
        return self._next

    def advance(self, now: int) -> int:
        """Raise IRQ0 for every period that ended by `now`; returns how many."""
        fired = 0
        due = self.next_event()
        while due is not None and due <= now:
            self.channels[0].fired += 1
            self.interrupts += 1
            self._irq0()
            fired += 1
            due = self.next_event()
        return fired
