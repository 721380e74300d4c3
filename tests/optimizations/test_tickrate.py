"""Transparent tick-rate reduction (--opt tick-hz): scaled PIT / LAPIC counts, read-backs, drift."""
from __future__ import annotations

from fractions import Fraction

import pytest

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.devices.pit import PIT8254, PIT_DEN, PIT_NUM
from vmexit.optimizations.tickrate import TickRate

FREQ = 2_830_000_000


def test_pit_load_count_becomes_the_papers_value_and_reads_back_in_guest_units():
    now = [0]
    tick = TickRate(100)
    pit = PIT8254(lambda: now[0], FREQ, lambda: None, reload_hook=tick.reload)
    pit.write(0x43, 1, 0x34)                      # channel 0, lobyte/hibyte, mode 2
    pit.write(0x40, 1, 1193 & 0xFF)
    pit.write(0x40, 1, 1193 >> 8)
    assert pit.channels[0].reload == 11932 and tick.scaled["pit"] == (1193, 11932)  # the KVM paper, section 3.1.2
    # half of the real period later, the guest's counter is half way down its own 1193
    now[0] = -(-5966 * PIT_DEN * FREQ // PIT_NUM)
    pit.write(0x43, 1, 0x00)                      # latch
    value = pit.read(0x40, 1) | (pit.read(0x40, 1) << 8)
    assert value == 1193 - 5966 * 1193 // 11932
    # a guest already at or below the target is left alone
    slow = TickRate(100)
    assert slow.reload("pit", 11932, Fraction(PIT_NUM, PIT_DEN)) == 11932 and "pit" not in slow.scaled


def _timer_run(name: str, opts: dict, seconds: float, **constants):
    state = {}

    def capture(machine, devices):
        ch = devices["pit"].channels[0]
        state.update(start=ch.start, reload=ch.reload, interrupts=devices["pit"].interrupts,
                     lapic=devices["lapic"].fired_total)

    t = session.run(guests.resolve(name, constants), load_profile(None),
                    session.RunOptions(max_seconds=seconds, optimizations=opts), on_end=capture)
    return t, state


def _expected(state, cycles: int) -> int:
    """PIT periods ended by the end of the run, from the load time and count (pit.py's arithmetic)."""
    k = 0
    while state["start"] + -(-(k + 1) * state["reload"] * PIT_DEN * FREQ // PIT_NUM) <= cycles:
        k += 1
    return k


def test_one_tenth_of_the_timer_interrupts_over_the_same_virtual_time():
    base, b = _timer_run("timer", {}, 0.2, TICKS=100000)
    opt, o = _timer_run("timer", {"tick-hz": 100}, 0.2, TICKS=100000)
    assert base.meta["status"] == opt.meta["status"] == "budget"
    # the PIT is loaded 0.29 ms into the run, so 0.2 s hold 199 periods of 1193 and 19 of 11932
    assert b["interrupts"] == _expected(b, base.meta["cycles"]) == 199
    assert o["interrupts"] == _expected(o, opt.meta["cycles"]) == 19
    rep = opt.meta["optimizations"]["tick-hz"]["timers"]["pit"]
    assert (rep["guest_count"], rep["actual_count"], rep["interrupts"]) == (1193, 11932, 19)
    # the guest counts 19 ticks of 1/1000.15 s: its clock says 0.019 s after 0.2 s of virtual time
    assert rep["guest_seconds"] == pytest.approx(19 * 1193 * 3 / 3579545)
    assert rep["drift_s"] == pytest.approx(rep["guest_seconds"] - opt.meta["virtual_seconds"])
    assert "tick-hz" not in base.meta["optimizations"]


def test_the_lapic_timer_is_scaled_too_and_a_guest_at_100_hz_is_left_alone():
    base, b = _timer_run("specjbb", {}, 0.1, TICKS=100000)
    opt, o = _timer_run("specjbb", {"tick-hz": 100}, 0.1, TICKS=100000)
    assert (b["lapic"], b["interrupts"]) == (99, 99)
    assert (o["lapic"], o["interrupts"]) == (9, 9)
    assert set(opt.meta["optimizations"]["tick-hz"]["timers"]) == {"pit", "lapic"}
    slow, s = _timer_run("timer", {"tick-hz": 100}, 0.1, TICKS=100000, HZ=100)
    assert s["interrupts"] == 9
    assert "no-op" in slow.meta["optimizations"]["tick-hz"]["note"]
