"""The host: one physical CPU running one or more domains on one virtual clock.

One domain is today's run: it runs to its end. Several share the CPU: the host runs the domain whose
turn it is until its time slice ends, it halts waiting for an event, or it ends; then the next ready
domain in turn (round robin), and a switch from one domain to another costs `switch_cycles` of virtual
time. A halted domain is ready again when its next event is due or an interrupt is pending for it;
when no domain is ready, time jumps to the earliest event. Each domain keeps its own view of the clock
(instructions, exit costs, idle), moved on by the time the others ran while it waited.

A domain may also sleep inside its hypervisor (Xen's sched_op block / poll: vcpu.block): it is ready
again when the hypervisor says it was woken (an event), an interrupt for it is pending, or its poll
timeout or next device event is due. A yield ends its slice, and so, if asked (preempt()), does waking
another domain with an event. When every live domain waits and nothing is due, the run is deadlocked:
each domain blocked in its hypervisor ends `halted` saying so (a domain halted in HLT ends as it does
alone). A budget ends them all by budget, their traces kept. With a workload domain (the one a scenario
measures), its end stops the others (`stopped`): they serve it and have no end of their own.

Devices the hypervisor owns rather than one domain (`roaming`, e.g. the NIC's peer under DBNet, whose
interrupt Xen takes on whatever CPU context is current) follow the CPU: before a domain runs they are
handed to its vCPU (`on_hold(domain)` is told), and when the one holding them has ended they go to a
live domain, the workloads first. With a list of workload domains, the run ends when all of them have.

The default time slice is the Xen credit scheduler's, 30 ms (xen/common/sched/credit.c,
CSCHED_DEFAULT_TSLICE_MS). The switch cost is the caller's (0 unless a profile or model gives one: the
xennet scenario takes the profile's host cost `domain_switch`).
"""
from __future__ import annotations

from typing import Callable

from .vcpu import RunEnd

DEFAULT_SLICE_S = 0.030


class Host:
    def __init__(self, domains: list, switch_cycles: int = 0, slice_cycles: int | None = None,
                 workload=None, roaming: list | None = None, on_hold: Callable | None = None):
        """workload: the domain (or list of domains) whose end ends the run (the others serve it: a
        driver domain has no end of its own), or None to run every domain to its end. roaming: timed
        device entries (vcpu.TimedDevice) that follow the CPU (module docstring)."""
        if not domains:
            raise ValueError("a host needs at least one domain")
        self.domains = list(domains)
        self.workload = workload
        self._workloads = [] if workload is None else list(workload) if isinstance(workload, (list, tuple)) \
            else [workload]
        self.roaming = list(roaming or [])
        self.on_hold = on_hold
        self._holder = None
        self.switch_cycles = switch_cycles
        self.slice_cycles = slice_cycles or int(DEFAULT_SLICE_S * self.domains[0].clock.freq_hz)
        self.now = 0          # virtual time on the host's CPU, in cycles
        self.switches = 0     # domain switches charged
        self._running = None  # the domain on the CPU while the host runs several

    def run(self, max_instructions: int | None = None, max_cycles: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> list[RunEnd]:
        """Run every domain to its end; max_instructions is per domain, max_cycles the host's."""
        if len(self.domains) == 1:
            domain = self.domains[0]
            try:
                domain.run(max_instructions, max_cycles, progress)
            except KeyboardInterrupt as e:   # Ctrl-C, or SIGTERM / SIGHUP (stopsignals.py)
                domain.interrupted(str(e) or None)
            self.now = domain.clock.now()
            return [domain.ending.end]
        try:
            self._share(max_instructions, max_cycles, progress)
        except KeyboardInterrupt as e:
            for d in self.domains:
                d.interrupted(str(e) or None)
        return [d.ending.end for d in self.domains]

    def _share(self, max_instructions, max_cycles, progress) -> None:
        current = None
        while True:
            live = [d for d in self.domains if d.ending.end is None]
            if not live:
                return
            if self.roaming and (self._holder is None or self._holder.ending.end is not None):
                self._hand([d for d in live if d in self._workloads] or live)
            ready = [d for d in live if not d.vcpu.halted or self._wakes(d)]
            if not ready:
                ready = self._idle(live, max_cycles)
                if not ready:
                    continue
            d = self._next(ready, current)
            if current is not None and d is not current:
                self.now += self.switch_cycles
                self.switches += 1
            d.clock.catch_up(self.now)
            if self.roaming:
                self._hand([d])
            d.vcpu.resume()
            self._running = d
            d.run(max_instructions, max_cycles, progress, until=self.now + self.slice_cycles)
            self._running = None
            self.now = max(self.now, d.clock.now())
            current = d
            if self._workloads and all(w.ending.end is not None for w in self._workloads):
                self._stop_others()

    def _stop_others(self) -> None:
        """The workload domain ended: the domains serving it stop with it, at the host's time (on a
        real host dom0 lives on and the toolstack tears the guest down)."""
        ws = self._workloads
        why = (f"the workload domain {ws[0].domid} ended ({ws[0].ending.end.status})" if len(ws) == 1 else
               f"the workload domains {', '.join(str(w.domid) for w in ws)} ended")
        for d in self.domains:
            if d.ending.end is None:
                d.clock.catch_up(self.now)
                d.ending.finish(RunEnd("stopped", why))

    def _hand(self, candidates: list) -> None:
        """The roaming devices to the first candidate's vCPU (the domain about to run, or a live one)."""
        d = candidates[0]
        if d is self._holder:
            return
        for t in self.roaming:
            if self._holder is not None and t in self._holder.vcpu.timed:
                self._holder.vcpu.timed.remove(t)
            if t not in d.vcpu.timed:
                d.vcpu.timed.append(t)
        self._holder = d
        if self.on_hold is not None:
            self.on_hold(d)

    def preempt(self, _woken_domid: int | None = None) -> None:
        """A domain woke (an event): the running one's slice ends after its current instruction, so
        the woken one runs next in turn (Xen credit's BOOST of a waking vCPU; the xennet option)."""
        if self._running is not None:
            self._running.vcpu.yield_slice()

    def facts(self) -> dict:
        """What the host did: its virtual time, domain switches and what they cost, the slice."""
        return {"cycles": self.now, "switches": self.switches, "switch_cycles": self.switch_cycles,
                "slice_cycles": self.slice_cycles, "domains": len(self.domains)}

    def _wakes(self, domain) -> bool:
        vcpu = domain.vcpu
        if vcpu.woken():
            return True
        due = vcpu.wake_time()
        return due is not None and due <= self.now

    def _idle(self, live: list, max_cycles: int | None) -> list:
        """No domain is ready: time jumps to the earliest event. A domain with none never wakes; when only
        such domains are left (or the next event lies past the budget), they are resumed to end; those
        blocked in their hypervisor end here, deadlocked (a budget reached ends them by budget)."""
        dues = [due for due in (d.vcpu.wake_time() for d in live) if due is not None]
        over = max_cycles is not None and (self.now >= max_cycles or (dues and min(dues) > max_cycles))
        if not dues and not over:
            self._deadlock(live)
            return [d for d in live if d.ending.end is None]
        if over:
            self.now = max(self.now, max_cycles)   # nothing runs before the budget: every domain ends by it
            return live
        if not dues:
            return live
        self.now = max(self.now, min(dues))
        return [d for d in live if self._wakes(d)]

    def _deadlock(self, live: list) -> None:
        waiting = ", ".join(str(d.domid) for d in live)
        ended = ", ".join(str(d.domid) for d in self.domains if d not in live)
        why = (f"no domain is left to send it an event (ended: {ended})" if len(live) == 1 and ended else
               f"deadlock: every live domain ({waiting}) waits and no event is due")
        for d in live:
            if d.vcpu.blocked is not None:
                d.clock.catch_up(self.now)
                d.ending.finish(RunEnd("halted", f"blocked in sched_op block/poll; {why}"))

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
