"""The host: one physical CPU running one or more domains on one virtual clock.

One domain is today's run: it runs to its end. Several share the CPU: the host runs the domain whose
turn it is until its time slice ends, it halts waiting for an event, or it ends; then the next ready
domain in turn (round robin), and a switch from one domain to another costs `switch_cycles` of virtual
time. A halted domain is ready again when its next event is due or an interrupt is pending for it;
when no domain is ready, time jumps to the earliest event. Each domain keeps its own view of the clock
(instructions, exit costs, idle), moved on by the time the others ran while it waited.

The default time slice is the Xen credit scheduler's, 30 ms (xen/common/sched/credit.c,
CSCHED_DEFAULT_TSLICE_MS). The switch cost is the caller's (0 unless a profile or model gives one).
"""
from __future__ import annotations

from typing import Callable

from .vcpu import RunEnd

DEFAULT_SLICE_S = 0.030


class Host:
    def __init__(self, domains: list, switch_cycles: int = 0, slice_cycles: int | None = None):
        if not domains:
            raise ValueError("a host needs at least one domain")
        self.domains = list(domains)
        self.switch_cycles = switch_cycles
        self.slice_cycles = slice_cycles or int(DEFAULT_SLICE_S * self.domains[0].clock.freq_hz)
        self.now = 0          # virtual time on the host's CPU, in cycles
        self.switches = 0     # domain switches charged

    def run(self, max_instructions: int | None = None, max_cycles: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> list[RunEnd]:
        """Run every domain to its end; max_instructions is per domain, max_cycles the host's."""
        if len(self.domains) == 1:
            domain = self.domains[0]
            try:
                domain.run(max_instructions, max_cycles, progress)
            except KeyboardInterrupt:
                domain.interrupted()
            self.now = domain.clock.now()
            return [domain.ending.end]
        try:
            self._share(max_instructions, max_cycles, progress)
        except KeyboardInterrupt:
            for d in self.domains:
                d.interrupted()
        return [d.ending.end for d in self.domains]

    def _share(self, max_instructions, max_cycles, progress) -> None:
        current = None
        while True:
            live = [d for d in self.domains if d.ending.end is None]
            if not live:
                return
            ready = [d for d in live if not d.vcpu.halted or self._wakes(d)]
            if not ready:
                ready = self._idle(live, max_cycles)
            d = self._next(ready, current)
            if current is not None and d is not current:
                self.now += self.switch_cycles
                self.switches += 1
            d.clock.catch_up(self.now)
            d.vcpu.resume()
            d.run(max_instructions, max_cycles, progress, until=self.now + self.slice_cycles)
            self.now = max(self.now, d.clock.now())
            current = d

    def _wakes(self, domain) -> bool:
        if domain.vcpu.irqs.pending():
            return True
        due = domain.vcpu.next_due()
        return due is not None and due <= self.now

    def _idle(self, live: list, max_cycles: int | None) -> list:
        """No domain is ready: time jumps to the earliest event. A domain with none never wakes; when only
        such domains are left (or the next event lies past the budget), they are resumed to end."""
        dues = [due for due in (d.vcpu.next_due() for d in live) if due is not None]
        if not dues or (max_cycles is not None and min(dues) > max_cycles):
            return live
        self.now = max(self.now, min(dues))
        return [d for d in live if self._wakes(d)]

    def _next(self, ready: list, current):
        """Round robin: the first ready domain after the current one, in the host's order."""
        if current is None:
            return ready[0]
        order = self.domains
        start = order.index(current) + 1
        for i in range(len(order)):
            candidate = order[(start + i) % len(order)]
            if candidate in ready:
                return candidate
        return ready[0]
