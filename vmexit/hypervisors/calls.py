"""A hypervisor's hypercall table: its calling convention, its handlers by number, and the one VMCALL
exit each call is.

A handler takes the argument registers and returns a Handled: the result for EAX, how many requests
the call carried (the exit's `size`, priced per request by the profile where it says so), and
optionally work that belongs inside the exit after it is recorded (the accesses of a coalesced I/O
request are recorded as part of their exit). An unknown number returns the table's `unknown` result
(-ENOSYS in the hypervisor's own numbering). Names are data in hypercalls.py.

A multiplexed call (one of `subops`: Xen's grant_table_op, event_channel_op, sched_op, memory_op) records
its command, the first argument, in the exit's `subop` column, and is priced by the profile's key for
that sub-operation where there is one (`prices`, (nr, subop) -> (cycles, per item)). `after`, if set,
runs once the guest's registers hold the result: where Xen delivers pending events on the way back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..exits import Direction, ExitReason, Place


@dataclass
class Handled:
    result: int
    items: int = 0
    then: Callable[[int], bool] | None = None   # work inside the exit, given its EIP: True if it
    #                                             may have moved a device event


class HypercallTable:
    def __init__(self, vcpu, engine, handlers: dict[int, Callable[[tuple], Handled]], unknown: int,
                 registers: tuple[str, ...], subops: frozenset[int] = frozenset(),
                 prices: dict[tuple[int, int], tuple[int, int]] | None = None):
        """registers: the ABI, the number's register first, then the arguments'."""
        self.vcpu = vcpu
        self.subops = subops
        self.prices = prices or {}
        self.after: Callable[[], None] | None = None
        self.handlers = handlers
        self._unknown = unknown
        self._args = engine.reader(list(registers))
        self._return = engine.writer(["eax", "eip"])

    def call(self, nr: int, args: tuple) -> Handled:
        """One call by number (a multicall's entries come through here too)."""
        handler = self.handlers.get(nr)
        return handler(args) if handler is not None else Handled(self._unknown)

    def enter(self, eip: int, ebp: int, return_eip: int) -> None:
        """The guest made a hypercall at eip; it resumes at return_eip with the result in EAX."""
        nr, *args = self._args()
        done = self.call(nr, tuple(args))
        result = done.result & 0xFFFFFFFF
        subop = args[0] & 0xFFFF if nr in self.subops else 0
        self.vcpu.exit(ExitReason.VMCALL, Place.KERNEL, Direction.NONE, eip, nr, done.items, result, ebp,
                       subop=subop, price=self.prices.get((nr, subop)))
        timers_changed = done.then(eip) if done.then is not None else False
        self._return(result, return_eip)
        if self.after is not None:
            self.after()
        self.vcpu.reschedule(timers_changed=timers_changed)
