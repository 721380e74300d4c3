"""One virtual CPU: the run loop and the one recording path every exit model shares.

The loop runs the guest in slices on the CPU engine (engine/), each ending where the next device event
is due (virtual time is instructions at the profile's CPI plus the cost of every exit so far:
clock.py), fires the events that are due (an event that fires while the guest runs is a host
interrupt arriving in guest mode: an EXTERNAL_INTERRUPT exit), injects the pending interrupt through
the guest IDT, honours sti's one-instruction shadow, finds the instruction that opens an interrupt
window when an interrupt is pending with IF=0 (an INTERRUPT_WINDOW exit, as on VMX with
interrupt-window exiting), and sleeps through HLT to the next event. With a host timer rate
(--host-timer-hz) the timers the model names as host timers fire on the host's tick grid instead, as
on a host whose hrtimers run at its tick. Runs end from callbacks or counts only, never from a
wall-clock timeout (not deterministic; it corrupted a real kernel in 10 of 44 boots here).

What exits, where it is handled and what the guest sees is the exit model's (hypervisors/): a
component that traps guest actions on the engine and records each exit through `exit`, priced by the
profile. A model whose exits are not recorded (native) goes through the same path.

Under a host of several domains (host.py) `run(until=...)` returns at that virtual time, or when the
guest halts waiting for an event (`halted`, `next_due()`); the next call resumes it.

Two hooks serve a hypervisor that has events of its own (Xen's event channels): `on_entry`, called
whenever the guest is about to run again after the host gave it the CPU (where Xen delivers a pending
event upcall), and `block(woken, deadline)`: the guest sleeps inside a hypercall (sched_op block/poll)
until `woken()` says an event came, an interrupt for it is pending, or the deadline passes (`halted`
and `blocked` are set; the host asks `woken()` and `wake_time()`). `yield_slice()` ends the host's
time slice after the current instruction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import stopsignals
from .clock import Clock
from .codescan import CodeScanner, Trap
from .costs import Profile
from .exits import Direction, ExitReason, ExitRecorder, Place
from .frames import FrameAnalysis, FramelessExits
from .stacks import FrameWalker

#: The instructions that can open an interrupt window (set IF), as capstone names them: the slice
#: stops before sti and iret; popf is looked at after it ran (codescan.Trap.after).
IF_SETTERS = ("sti", "iret", "iretd")
POPF = ("popf", "popfd")
from .machine import IF_FLAG, GuestCrash, X86Machine

#: The longest slice, in guest instructions: the run loop returns to Python at least this often, so that
#: Ctrl-C, SIGTERM and SIGHUP (stopsignals.py) end even a guest that never exits and has no timer armed
#: (a count, not a clock: where a slice ends never depends on the host's speed).
MAX_SLICE = 1 << 24


@dataclass
class RunEnd:
    status: str          # exited | halted | console | budget | crashed | interrupted | stopped (host.py)
    detail: str
    guest_value: int | None = None
    address: int | None = None


class Ending:
    """How the run ends, reported once by whoever sees it first (a device, the model, the loop): the
    slice stops after the current instruction."""

    def __init__(self, counter):
        self.end: RunEnd | None = None
        self._counter = counter

    def finish(self, end: RunEnd) -> None:
        if self.end is None:
            self.end = end
        self._counter.stop_after_current()

    def guest_exit(self, value: int) -> None:
        """isa-debug-exit."""
        self.finish(RunEnd("exited", f"guest wrote {value} to port 0xf4 (QEMU exit code {(value << 1) | 1})",
                           guest_value=value))

    def console_matched(self, text: str) -> None:
        """--until-console: the console printed what the user waits for."""
        self.finish(RunEnd("console", f"the console printed {text!r}"))


@dataclass(frozen=True)
class TimedDevice:
    """A device with events in virtual time, and the vector its interrupt arrives as."""
    device: object
    vector: Callable[[], int]
    host_timer: bool = False    # a timer the host runs for the guest (see --host-timer-hz)


class VCPU:
    def __init__(self, machine: X86Machine, clock: Clock, profile: Profile, recorder: ExitRecorder,
                 irqs, timed: list[TimedDevice], ending: Ending, scanner: CodeScanner, records: bool = True,
                 host_timer_hz: int = 0, function_starts=()):
        self.m = machine
        self.engine = machine.engine
        self.clock = clock
        self.rec = recorder
        self.irqs = irqs
        self.ending = ending
        self.timed = timed
        # Host timer resolution (--host-timer-hz): host timers fire on the host's tick grid (cycle
        # multiples of freq / HZ) instead of when due; 0: when due.
        self._host_tick = clock.freq_hz // host_timer_hz if host_timer_hz else 0
        self._due: int | None = None  # when the current slice ends (next device event), cached
        self._until: int | None = None  # the end of the host's time slice, if it gives one
        # reason -> place -> direction -> (cycles, cycles per item), keyed by plain ints: an enum key
        # would hash through Python code on every exit
        self._prices = {int(r): [[(profile.cost(r, p, d), profile.per_item(r, p, d)) for d in Direction]
                                 for p in Place] for r in ExitReason}
        self.exit = self._record if records else self._unrecorded
        self.on_entry: Callable[[], None] | None = None   # see the module docstring
        self.blocked: Callable[[], bool] | None = None    # asleep in the hypervisor until this says woken
        self.block_deadline: int | None = None            # ... or until this virtual time (a poll timeout)
        self._yielded = False
        self._slice_base = 0
        self._exhausted = False
        self.paging = False   # whether the guest pages (frame pointers are then virtual)
        self._cr0 = machine.engine.register("cr0")
        self.halted = False
        # an interrupt waits while IF=0: catch the instruction that opens the window (an engine flag,
        # so that the look after each popf is skipped without a call into Python while it is clear)
        self._wanted = self.engine.flag()
        self.scanner = scanner
        scanner.add(Trap("interrupt window", frozenset(IF_SETTERS), wanted=lambda: self._window_wanted))
        scanner.add(Trap("interrupt window after popf", frozenset(POPF), after=self._after_popf,
                         after_only_if=self._wanted, after_eflags=IF_FLAG))
        self._eflags = self.engine.register("eflags")
        scanner.add(Trap("time stamp counter", frozenset({"rdtsc", "rdtscp"}), handle=self._rdtsc))
        self.eip_ebp = self.engine.eip_ebp
        self.counter = self.engine.counter
        self._current = self.counter.current
        self._ram = machine.ram
        self.frames = FrameWalker(machine.ram, recorder.stacks, machine.translate)  # exit stacks (stacks.py)
        # exits where the function's frame is not set up (frames.py): only with the guest's function starts
        self.frameless = FramelessExits(FrameAnalysis(function_starts, self.code), self.frames,
                                        self.engine.register("esp"), machine.ram, machine.read_virtual) \
            if function_starts else None

    @property
    def _window_wanted(self) -> bool:
        return bool(self._wanted.value)

    @_window_wanted.setter
    def _window_wanted(self, wanted: bool) -> None:
        self._wanted.value = wanted

    # the one recording path ------------------------------------------------------------------------
    def now_icount(self) -> int:
        """Instructions so far: inside a callback the trapped one included; between slices, those run.
        (Between slices the raw counter can be one past the limit, hence executed(), not current.)"""
        icount = self._slice_base + self.counter.executed()
        self.clock.icount = icount
        return icount

    def icount_in_trap(self) -> int:
        """now_icount() for the hottest traps (port I/O), where the counter is never past the limit."""
        icount = self._slice_base + self._current.value
        self.clock.icount = icount
        return icount

    def code(self, eip: int, size: int) -> bytes | None:
        """Guest bytes at a linear address (read straight from RAM while the guest does not page). CR0 is
        read afresh while `paging` says no: the guest may have switched paging on inside the slice, and
        the code scanner sees each block once (a block read as physical bytes at a virtual address is
        empty, and would never have its traps: every rdtsc of a Linux boot ran untrapped that way). CR0
        is a field read (~0.1 us); bytes within one page take one walk, as read_virtual would."""
        if self.paging or self._cr0() & 0x80000000:
            if 0 < size <= 0x1000 - (eip & 0xFFF):
                paddr = self.m.translate(eip)
                return None if paddr is None or not self.m.in_ram(paddr, size) else self._ram[paddr:paddr + size]
            return self.m.read_virtual(eip, size)
        return self._ram[eip:eip + size]

    def _record(self, reason: int, place: int, direction: int, rip: int, qualifier: int, size: int,
                value: int, ebp: int, icount: int | None = None, subop: int = 0,
                price: tuple[int, int] | None = None) -> None:
        """Record one exit, priced by the profile (per item of `size` where the profile says so); a
        hypercall's sub-operation comes with its own price (cycles, per item) when the profile has one."""
        if icount is None:
            icount = self.now_icount()
        base, per_item = price or self._prices[reason][place][direction]
        cost = base + per_item * size if per_item else base
        clock = self.clock
        frameless = self.frameless
        if ebp:
            if frameless is None or rip in frameless.framed:
                caller, stack = self.frames.walk_virtual(ebp) if self.paging else self.frames.walk(ebp)
            else:
                caller, stack = frameless.walk(rip, ebp, self.paging)
        else:
            caller = stack = 0
        self.rec.append(icount, icount * clock.cpi_num // clock.cpi_den + clock.extra, rip, reason, place,
                        direction, qualifier, size, value, cost, caller, subop, stack)
        clock.extra += cost

    def _unrecorded(self, *_args, **_kw) -> None:
        return None

    def emulated(self, rip: int, place: int, direction: int, port: int, size: int, value: int, cost: int) -> None:
        """A port access handled inside the last exit: recorded with it, its cost added to it."""
        self.rec.emulate(rip, place, direction, port, size, value, cost)
        self.clock.extra += cost

    def reschedule(self, timers_changed: bool = False) -> None:
        """After an exit inside a slice: end the slice where the next event is now due. The due time
        itself is cached per slice and recomputed only when the exit wrote to a timer device; the
        exit's cost still moves the instruction at which it falls."""
        if self.ending.end is not None or self.irqs.pending():
            self.counter.stop_after_current()
            return
        if timers_changed:
            self._due = self._slice_end(self.next_due())
        due = self._due
        if due is not None:
            k = self.clock.icount_when(due)
            counter = self.counter
            counter.set_limit(min(k - self._slice_base, counter.limit()))

    def paging_changed(self) -> None:
        """The host switched paging on behind the guest (a Xen base-pointer load)."""
        self.paging = True

    def crash(self, cause: str, eip: int) -> None:
        if self.ending.end is None:
            self.now_icount()
            self.rec.append(self.clock.icount, self.clock.now(), eip, ExitReason.TRIPLE_FAULT, Place.KERNEL,
                            Direction.NONE, 0, 0, 0, 0, 0)
        self.ending.finish(RunEnd("crashed", cause, address=eip))

    # device events, stepping, HLT -----------------------------------------------------------------
    def next_due(self) -> int | None:
        due = None
        tick = self._host_tick
        for timed in self.timed:
            t = timed.device.next_event()
            if t is not None and tick and timed.host_timer:
                t = -(-t // tick) * tick  # the host tick at or after the expiry
            if t is not None and (due is None or t < due):
                due = t
        return due

    def _advance_devices(self, running: bool) -> None:
        """Fire every device event that is due. An event that fires while the guest runs is a host
        interrupt arriving in guest mode: an EXTERNAL_INTERRUPT exit at the current EIP. Host timers
        (see __init__) fire at the last host tick, and all of them that expire at one tick share its
        one interrupt: one exit, with the vector of the first of them (in device order)."""
        now = self.clock.now()
        tick = self._host_tick
        host_now = now - now % tick if tick else now
        host_fired, host_vector = 0, 0
        for timed in self.timed:
            host = tick and timed.host_timer
            fired = timed.device.advance(host_now if host else now)
            if fired and running:
                vector = timed.vector()
                if host:
                    if fired > host_fired:
                        host_fired, host_vector = fired, vector
                    continue
                self._external_interrupts(fired, vector)
        if host_fired:
            self._external_interrupts(host_fired, host_vector)

    # sleeping in the hypervisor (sched_op block / poll), yielding -----------------------------------
    def block(self, woken: Callable[[], bool], deadline: int | None = None) -> None:
        """Called inside a hypercall: once it returns, the guest sleeps until woken (see run)."""
        self.blocked = woken
        self.block_deadline = deadline
        self.halted = True
        self.counter.stop_after_current()

    def woken(self) -> bool:
        """Whether a sleeping guest has a reason to run: an event, an interrupt, its deadline passed."""
        if self.irqs.pending():
            return True
        if self.blocked is None:
            return False
        deadline = self.block_deadline
        return self.blocked() or (deadline is not None and deadline <= self.clock.now())

    def wake_time(self) -> int | None:
        """The earliest virtual time something due may wake the guest: a device event or the deadline."""
        due, deadline = self.next_due(), self.block_deadline if self.blocked is not None else None
        if due is None or (deadline is not None and deadline < due):
            return deadline
        return due

    def yield_slice(self) -> None:
        """sched_op yield: on a host of several domains the slice ends after this instruction."""
        if self._until is not None:
            self._yielded = True
            self.counter.stop_after_current()

    def _unblock(self) -> None:
        self.blocked = None
        self.block_deadline = None
        self.halted = False

    def _resume_from_block(self, max_cycles: int | None, until: int | None) -> bool:
        """The guest sleeps in the hypervisor: True once it is woken, False while it sleeps on (a host
        of several domains decides who runs meanwhile) or when the run ends."""
        while not self.woken():
            wake = self.wake_time()
            if max_cycles is not None and self.clock.now() >= max_cycles:
                self.ending.finish(RunEnd("budget", "virtual time budget reached while blocked in sched_op"))
                return False
            if wake is None and until is not None:
                return False   # another domain may send the event: the host decides (a deadlock it ends)
            if wake is None:
                self.ending.finish(RunEnd("halted", "blocked in sched_op with no event, interrupt or "
                                                    "timeout that could wake it: it sleeps forever"))
                return False
            if max_cycles is not None and wake > max_cycles:
                self.clock.idle_until(max(max_cycles, self.clock.now()))
                self.ending.finish(RunEnd("budget", "virtual time budget reached while blocked in sched_op"))
                return False
            if wake > self.clock.now():
                if until is not None:
                    return False
                self.clock.idle_until(wake)
            self._advance_devices(running=False)
            if until is not None and not self.woken():
                return False
        self._unblock()
        if self.irqs.pending() and self.m.interrupts_enabled():
            self._inject()
        return True

    def resume(self) -> None:
        """The host gives the CPU back after another domain ran: the events that came due meanwhile fire
        now, without exits (this guest was not running when they came)."""
        self._advance_devices(running=False)

    def _external_interrupts(self, count: int, vector: int) -> None:
        eip, ebp = self.eip_ebp()
        for _ in range(count):
            self.exit(ExitReason.EXTERNAL_INTERRUPT, Place.KERNEL, Direction.NONE, eip, vector, 0, 0, ebp)

    def _inject(self) -> None:
        """Deliver the highest-priority pending interrupt through the guest IDT (no exit of its own)."""
        vector = self.irqs.acknowledge()
        if vector is None:
            return
        eip = self.m.eip()
        try:
            self.m.deliver(vector, eip)
        except GuestCrash as crash:
            self.crash(f"triple fault: {crash.cause} (interrupt vector {vector})", eip)

    def _run_engine(self, count: int) -> bool:
        """One slice of at most `count` instructions; False when it ended on a fault (the run crashed)."""
        self._slice_base = self.clock.icount
        end = self.engine.run(count)
        self.clock.icount = self._slice_base + end.executed
        self._exhausted = end.exhausted
        if end.fault is not None:
            eip = self.m.eip()
            cause = (f"jump into unmapped memory at 0x{eip:x}" if end.fault.kind == "fetch"
                     else f"{end.fault.message} at 0x{eip:x}")
            self.crash(cause, eip)
            return False
        return True

    def _step(self) -> tuple[int, bool]:
        """Execute one instruction; returns (its address, whether it was a HLT)."""
        eip = self.m.eip()
        trap = self.scanner.at.get(eip)
        if trap is not None and trap.handle is not None:
            self._emulate(trap, eip)
            return eip, False
        self.scanner.paused = True
        try:
            executed = self._run_engine(1) and not self._exhausted and self.ending.end is None
        finally:
            self.scanner.paused = False
        return eip, executed and self.clock.icount == self._slice_base + 1

    def _halt(self, hlt_eip: int) -> bool:
        """The guest executed HLT (EIP is past it). Returns False when the run ends."""
        self.exit(ExitReason.HLT, Place.KERNEL, Direction.NONE, hlt_eip, 0, 0, 0, self.engine.reg("ebp"))
        if not self.m.interrupts_enabled():
            self.ending.finish(RunEnd("halted", f"HLT with interrupts off at 0x{hlt_eip:x}", address=hlt_eip))
            return False
        return True

    def _wait_for_event(self, max_cycles: int | None) -> bool:
        """Idle until the next device event (virtual time jumps). False when nothing will ever come."""
        self.halted = False
        if self.irqs.pending():
            return True
        due = self.next_due()
        if due is None:
            self.ending.finish(RunEnd("halted", "HLT with no interrupt source armed: the guest sleeps forever"))
            return False
        if max_cycles is not None and due > max_cycles:
            self.clock.idle_until(max_cycles)
            self.ending.finish(RunEnd("budget", "virtual time budget reached while halted"))
            return False
        self.clock.idle_until(due)
        self._advance_devices(running=False)
        return True

    # interrupt windows and emulated instructions -----------------------------------------------------
    # While an interrupt waits with IF=0, the code scanner (codescan.py) ends the slice right before the
    # next instruction that can set IF (sti, popf, iret): only the blocks that hold one have a callback.
    # That one instruction is then single-stepped and IF checked. rdtsc/rdtscp (and the model's MSR
    # instructions) always end the slice before them and are emulated between slices.
    _IF_OPCODES = frozenset({0xFB, 0xCF})  # sti, iret: a popf is looked at after it ran (_after_popf)

    def _open_window(self) -> bool:
        """EIP may be at sti or iret: step it; True if it opened the window. An iret whose EFLAGS image
        on the stack has IF clear cannot open it (IF is 0 now): it is not stepped but runs in the next
        slice, which does not stop before it again."""
        eip = self.eip_ebp()[0]
        raw = self.code(eip, 2) or b""
        wide = raw[:1] == b"\x66"
        opcode = raw[1] if wide and len(raw) > 1 else (raw[0] if raw else 0)
        if opcode not in self._IF_OPCODES:
            return False
        if opcode == 0xCF and not self._iret_sets_if(wide):
            self.scanner.skip = eip
            return False
        eip, _ = self._step()
        if self.ending.end is not None or not self.m.interrupts_enabled():
            return False
        self.exit(ExitReason.INTERRUPT_WINDOW, Place.KERNEL, Direction.NONE, eip, 0, 0, 0, self.engine.reg("ebp"))
        return True

    def _after_popf(self, address: int) -> None:
        """The block after a popf starts: if an interrupt waits and that popf set IF, the window opened
        there; the slice ends before this block's first instruction. (Called only while an interrupt
        waits and IF is set: the engine checks both first, in C where its helper is there.)"""
        if not self._window_wanted or not self._eflags() & IF_FLAG:
            return
        self._window_wanted = False
        self.exit(ExitReason.INTERRUPT_WINDOW, Place.KERNEL, Direction.NONE, address, 0, 0, 0, self.eip_ebp()[1])
        self.counter.stop_after_current()

    def _iret_sets_if(self, wide: bool) -> bool:
        """Whether the EFLAGS image iret is about to load has IF set (when unsure: True)."""
        raw = self.m.read_virtual(self.engine.reg("esp") + (4 if wide else 8), 2)
        return raw is None or bool(int.from_bytes(raw, "little") & IF_FLAG)

    def _emulate(self, trap: Trap, address: int) -> None:
        """Execute a trapped instruction the slice ended before: it counts as one guest instruction."""
        self._slice_base += 1
        self.clock.icount += 1
        trap.handle(address)

    def _rdtsc(self, address: int) -> None:
        """RDTSC / RDTSCP read the virtual clock's cycles (this instruction included), as MSR 0x10 does:
        the same run reads the same values. RDTSCP also loads TSC_AUX (0) into ECX."""
        tsc = self.clock.now() & 0xFFFFFFFFFFFFFFFF
        e = self.engine
        e.set_reg("eax", tsc & 0xFFFFFFFF)
        e.set_reg("edx", tsc >> 32)
        length = 2
        if self.code(address, 3) == b"\x0f\x01\xf9":  # rdtscp
            e.set_reg("ecx", 0)
            length = 3
        e.set_reg("eip", address + length)

    # the run loop ----------------------------------------------------------------------------------
    def run(self, max_instructions: int | None = None, max_cycles: int | None = None,
            progress: Callable[[int, int], None] | None = None, until: int | None = None) -> RunEnd | None:
        """Run to the end of the guest or a budget. With `until` (a host of several domains): return
        None when virtual time reaches it or the guest halts waiting for an event."""
        self._until = until
        try:
            if self.blocked is None and self.halted and not self._resume_from_halt(max_cycles):
                return self.ending.end
            entering = True
            while self.ending.end is None:
                if self.blocked is not None:
                    if not self._resume_from_block(max_cycles, until):
                        break
                    entering = True
                if entering and self.on_entry is not None:
                    self.on_entry()
                entering = False
                if not self._before_slice(max_instructions, max_cycles, until):
                    break
                self._window_wanted = False
                if self.irqs.pending():
                    if self._deliver_pending():
                        continue
                    if self.ending.end is not None:
                        break
                self._slice(self._slice_limit(max_instructions, max_cycles), progress)
                if self.ending.end is not None:
                    continue
                if self._exhausted:
                    self._after_stop()
                    continue
                if not self._after_halt(max_cycles, until):
                    break
        finally:
            self._window_wanted = False
            self._yielded = False
        return self.ending.end

    def _before_slice(self, max_instructions: int | None, max_cycles: int | None, until: int | None) -> bool:
        """Fire what is due and check the budgets; False when the loop stops here."""
        clock = self.clock
        self._advance_devices(running=True)
        if self.ending.end is not None:
            return False
        if max_instructions is not None and clock.icount >= max_instructions:
            self.ending.finish(RunEnd("budget", f"instruction budget of {max_instructions} reached"))
            return False
        if max_cycles is not None and clock.now() >= max_cycles:
            self.ending.finish(RunEnd("budget", "virtual time budget reached"))
            return False
        if self._yielded:
            return False
        return until is None or clock.now() < until

    def _deliver_pending(self) -> bool:
        """An interrupt is pending: inject it, or find the window it waits for. True to loop again."""
        if self.m.interrupts_enabled():
            if self.m.read_virtual(self.m.eip() - 1, 1) == b"\xfb":
                # STI shadow: the instruction after sti runs before the interrupt
                _, halted = self._step()
                if halted:
                    self._halt(self.m.eip() - 1)
                return True
            self._inject()
            return True
        self._window_wanted = True
        return self._open_window()

    def _slice_end(self, due: int | None) -> int | None:
        """The virtual time the current slice ends at: the next device event, or the end of the host's
        time slice (a host of several domains) if that comes first."""
        until = self._until
        return due if until is None or (due is not None and due < until) else until

    def _slice_limit(self, max_instructions: int | None, max_cycles: int | None) -> int:
        clock = self.clock
        self._due = due = self._slice_end(self.next_due())
        limit = MAX_SLICE
        for cycles in (due, max_cycles):
            if cycles is not None:
                limit = min(limit, clock.icount_when(cycles) - clock.icount)
        if max_instructions is not None:
            limit = min(limit, max_instructions - clock.icount)
        return max(limit, 1)

    def _slice(self, limit: int, progress) -> None:
        skip = self.scanner.skip
        if skip is not None and skip != self.eip_ebp()[0]:
            self.scanner.skip = None  # the window check it was for did not run first
        self.paging = bool(self.engine.reg("cr0") & 0x80000000)
        self._run_engine(limit)
        stopsignals.check()
        if progress is not None:
            progress(self.clock.icount, self.clock.now())

    def _after_stop(self) -> None:
        """The slice ran out: at its count, or right before an instruction the scanner stopped it for,
        which is emulated now (an IF-setter is left to the loop's window check)."""
        eip = self.m.eip()
        trap = self.scanner.take(eip)
        if trap is not None and trap.handle is not None:
            self._emulate(trap, eip)

    def _after_halt(self, max_cycles: int | None, until: int | None) -> bool:
        """The slice ended before its count without an end: the guest executed HLT."""
        eip = self.m.eip()
        if self.m.read_virtual(eip - 1, 1) != b"\xf4":
            self.crash(f"emulation stopped unexpectedly at 0x{eip:x}", eip)
            return False
        if not self._halt(eip - 1):
            return False
        if until is not None:  # a host of several domains decides who runs while this one waits
            self.halted = True
            return False
        return self._resume_from_halt(max_cycles)

    def _resume_from_halt(self, max_cycles: int | None) -> bool:
        if not self._wait_for_event(max_cycles):
            return False
        if self.irqs.pending():
            self._inject()
        return True
