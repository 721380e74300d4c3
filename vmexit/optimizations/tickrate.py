"""Transparent tick-rate reduction (`--opt tick-hz=HZ`): the KVM paper's timer-frequency optimization
(Zhang et al., "Modifying Guest OS to Optimize I/O Virtualization in KVM", Chinese Journal of
Computers, 2010, section 3.1.2).

KVM's virtual PIT changed, in pit_load_count(), the count a guest loads into channel 0, so that a
HZ=1000 guest (count 1193) ticks at 100 Hz (count 11932 = 1,193,182 / 100). Here the same happens when
the guest starts a periodic timer faster than HZ: the PIT's channel 0 in mode 2 or 3, and the local
APIC timer in periodic mode (same trick on its initial count; the paper's kernel used both timers).
Counter read-backs are scaled back into the guest's units, so a guest reading the count mid-period
sees it run from its own reload value down to 0. One-shot timers are left alone.

The price is time: the guest counts a tick as 1/HZ_guest seconds, so its clock (jiffies) runs slow by
the ratio. The report gives the guest's and the real tick rate and the drift over the run.
"""
from __future__ import annotations

from fractions import Fraction

from ..devices.lapic import APIC_BUS_HZ
from ..devices.pit import PIT_HZ

MIN_HZ, MAX_HZ = 1, 100000


class TickRate:
    def __init__(self, target_hz: int):
        self.target_hz = target_hz
        self.scaled: dict[str, tuple[int, int]] = {}   # timer -> (guest count, actual count)

    def reload(self, timer: str, count: int, input_hz: Fraction) -> int:
        """The count to run for a guest's periodic `count` on a timer whose input clock is input_hz."""
        if count <= 0 or input_hz / count <= self.target_hz:
            self.scaled.pop(timer, None)
            return count
        actual = round(input_hz / self.target_hz)
        self.scaled[timer] = (count, actual)
        return actual

    def report(self, timers: dict[str, tuple[int, Fraction]], virtual_seconds: float) -> dict:
        """timers: name -> (interrupts raised, input clock in Hz)."""
        out: dict = {"target_hz": self.target_hz, "timers": {}}
        for name, (interrupts, input_hz) in timers.items():
            if name not in self.scaled:
                continue
            guest, actual = self.scaled[name]
            guest_seconds = float(interrupts * guest / input_hz)
            out["timers"][name] = {
                "guest_count": guest, "actual_count": actual,
                "guest_hz": float(input_hz / guest), "actual_hz": float(input_hz / actual),
                "interrupts": interrupts, "guest_seconds": guest_seconds,
                "virtual_seconds": virtual_seconds, "drift_s": guest_seconds - virtual_seconds,
            }
        if not out["timers"]:
            out["note"] = "no-op: the guest started no periodic timer faster than the target"
        return out


def run_report(tick: TickRate, devices: dict, seconds: float) -> dict:
    """The report for a PC's two periodic timers at the end of a run."""
    pit, lapic = devices["pit"], devices["lapic"]
    return tick.report({"pit": (pit.interrupts, PIT_HZ),
                        "lapic": (lapic.fired_total, Fraction(APIC_BUS_HZ, lapic.divisor()))}, seconds)


def describe(entry: dict) -> str:
    parts = []
    for timer, x in entry["timers"].items():
        parts.append(f"{timer} {x['guest_hz']:.1f} Hz -> {x['actual_hz']:.1f} Hz "
                     f"(count {x['guest_count']} -> {x['actual_count']}), {x['interrupts']:,} interrupts, "
                     f"guest clock {x['guest_seconds']:.6f} s vs {x['virtual_seconds']:.6f} s virtual "
                     f"(drift {x['drift_s']:+.6f} s)")
    return "; ".join(parts)
