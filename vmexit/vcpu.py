"""One virtual CPU and its run loop, whatever hypervisor is modeled.

The loop runs the guest in slices that end where the next device event is due (virtual time is
instructions at the profile's CPI plus the cost of every exit so far: clock.py), fires the events that
are due (an event that fires while the guest runs is a host interrupt arriving in guest mode: an
EXTERNAL_INTERRUPT exit), injects the interrupt controller's pending interrupt through the guest IDT,
honours sti's one-instruction shadow, finds the instruction that opens an interrupt window when an
interrupt is pending with IF=0 (an INTERRUPT_WINDOW exit, as on VMX with interrupt-window exiting), and
sleeps through HLT to the next event. With a host timer rate (--host-timer-hz) the timers the model
names as host timers fire on the host's tick grid instead, as on a host whose hrtimers run at its tick. Runs end from hooks or counts only, never from Unicorn's
wall-clock timeout (not deterministic; it corrupted a real kernel in 10 of 44 boots here).

What exits, where it is handled and what the guest sees is the hypervisor model's (hypervisors/):
a model subclasses VCPU, installs its hooks and records exits with `_exit`, priced by the profile.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Callable

from unicorn import UC_HOOK_BLOCK
from unicorn.unicorn_const import UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED
from unicorn.x86_const import UC_X86_REG_CR0, UC_X86_REG_EBP, UC_X86_REG_EIP

from ._uc import CpuState, RegisterReader
from .clock import Clock
from .costs import Profile
from .exits import Direction, ExitReason, ExitRecorder, Place
from .machine import GuestCrash, X86Machine


@dataclass
class RunEnd:
    status: str          # exited | halted | console | budget | crashed | interrupted
    detail: str
    guest_value: int | None = None
    address: int | None = None



class VCPU:
    """One vCPU: the run loop and the exit bookkeeping every hypervisor model shares."""

    name = "vcpu"

    def __init__(self, machine: X86Machine, clock: Clock, profile: Profile, recorder: ExitRecorder,
                 timed_devices: list, pic, host_timers: tuple = (), host_timer_hz: int = 0):
        self.m = machine
        self.uc = machine.uc
        self.clock = clock
        self.profile = profile
        self.rec = recorder
        self.pic = pic
        self.timed = timed_devices
        # Host timer resolution (--host-timer-hz): the devices whose events are host timers fire on the
        # host's tick grid (cycle multiples of freq / HZ) instead of when due; 0: when due.
        self._host_timers = frozenset(host_timers) if host_timer_hz else frozenset()
        self._host_tick = clock.freq_hz // host_timer_hz if host_timer_hz else 0
        self._due: int | None = None  # next device event, cached for the current slice
        self._costs = {(r, p, d): profile.cost(r, p, d)
                       for r in ExitReason for p in Place for d in Direction}
        self._per_items = {(r, p, d): profile.per_item(r, p, d)
                           for r in (ExitReason.VMCALL, ExitReason.EXCEPTION_NMI) for p in Place for d in Direction}
        self._slice_base = 0
        self._end: RunEnd | None = None
        self._caller_paging = False
        self._window_hook = None
        self._window_stepping = False
        self._if_setter_index: dict[tuple[int, int], int] = {}
        # EIP and EBP at every exit: straight from the CPU state when it can be located, else through
        # libunicorn; both give the same numbers (tests/hypervisors/test_kvm.py checks the traces).
        self._eip_ebp = CpuState.locate(self.uc) or RegisterReader(self.uc, [UC_X86_REG_EIP, UC_X86_REG_EBP])
        self._counter = machine.counter
        self._current = machine.counter.current
        self._ram = machine.ram

    # recording exits ---------------------------------------------------------------------------------
    def _now_icount(self) -> int:
        """Instructions so far: inside a hook the hooked one included; between slices, those run.
        (Between slices the raw counter can be one past the limit, hence executed(), not current.)"""
        icount = self._slice_base + self._counter.executed()
        self.clock.icount = icount
        return icount

    def _caller(self, ebp: int) -> int:
        if not ebp:
            return 0
        if self._caller_paging:
            raw = self.m.read_virtual(ebp + 4, 4)
            return struct.unpack("<I", raw)[0] if raw else 0
        ram = self._ram
        return int.from_bytes(ram[ebp + 4:ebp + 8], "little") if ebp + 8 <= len(ram) else 0

    def _exit(self, reason: int, place: int, direction: int, rip: int, qualifier: int, size: int,
              value: int, ebp: int, icount: int | None = None) -> None:
        if icount is None:
            icount = self._now_icount()
        cost = self._costs[(reason, place, direction)]
        if size and reason in (ExitReason.VMCALL, ExitReason.EXCEPTION_NMI):
            cost += self._per_items[(reason, place, direction)] * size
        self.rec.append(icount, self.clock.cycles_at(icount), rip, reason, place, direction, qualifier,
                        size, value, cost, self._caller(ebp))
        self.clock.extra += cost

    def _reschedule(self, timers_changed: bool = False) -> None:
        """After an exit inside a slice: end the slice where the next event is now due. The due time
        itself is cached per slice and recomputed only when the exit wrote to a timer device; the
        exit's cost still moves the instruction at which it falls."""
        if self._end is not None or self.pic.pending():
            self._counter.stop_after_current()
            return
        if timers_changed:
            self._due = self._next_due()
        due = self._due
        if due is not None:
            k = self.clock.icount_when(due)
            counter = self._counter
            counter.set_limit(min(k - self._slice_base, counter.limit()))


    # how a run ends -----------------------------------------------------------------------------------
    def _crash(self, cause: str, eip: int) -> None:
        if self._end is None:
            self._now_icount()
            self.rec.append(self.clock.icount, self.clock.now(), eip, ExitReason.TRIPLE_FAULT, Place.KERNEL,
                            Direction.NONE, 0, 0, 0, 0, 0)
            self._end = RunEnd("crashed", cause, address=eip)
        self.m.counter.stop_after_current()

    def console_matched(self, text: str) -> None:
        """--until-console: the console printed what the user waits for."""
        if self._end is None:
            self._end = RunEnd("console", f"the console printed {text!r}")
        self.m.counter.stop_after_current()

    def guest_exit(self, value: int) -> None:
        """isa-debug-exit callback."""
        if self._end is None:
            self._end = RunEnd("exited", f"guest wrote {value} to port 0xf4 (QEMU exit code {(value << 1) | 1})",
                               guest_value=value)
        self.m.counter.stop_after_current()

    # device events, stepping, HLT -----------------------------------------------------------------------
    def _next_due(self) -> int | None:
        due = None
        tick, host_timers = self._host_tick, self._host_timers
        for dev in self.timed:
            t = dev.next_event()
            if t is not None and dev in host_timers:
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
        host_now = now - now % self._host_tick if self._host_tick else now
        host_fired, host_vector = 0, 0
        for dev in self.timed:
            host = dev in self._host_timers
            fired = dev.advance(host_now if host else now)
            if fired and running:
                vector = dev.timer_vector() if hasattr(dev, "timer_vector") else self.pic.vector_of(dev.irq)
                if host:
                    if fired > host_fired:
                        host_fired, host_vector = fired, vector
                    continue
                self._external_interrupts(fired, vector)
        if host_fired:
            self._external_interrupts(host_fired, host_vector)

    def _external_interrupts(self, count: int, vector: int) -> None:
        eip, ebp = self._eip_ebp()
        for _ in range(count):
            self._exit(ExitReason.EXTERNAL_INTERRUPT, Place.KERNEL, Direction.NONE, eip, vector, 0, 0, ebp)

    def _inject(self) -> None:
        """Deliver the PIC's highest-priority interrupt through the guest IDT (no exit of its own)."""
        vector = self.pic.acknowledge()
        if vector is None:
            return
        eip = self.m.eip()
        try:
            self.m.deliver(vector, eip)
        except GuestCrash as crash:
            self._crash(f"triple fault: {crash.cause} (interrupt vector {vector})", eip)

    def _step(self) -> tuple[int, bool]:
        """Execute one instruction; returns (its address, whether it was a HLT)."""
        eip = self.m.eip()
        self._slice_base = self.clock.icount
        end = self.m.run_slice(1)
        self.clock.icount = self._slice_base + end.executed
        if end.error is not None:
            self._unicorn_error(end.error)
        halted = not end.exhausted and self._end is None and end.executed == 1
        return eip, halted

    def _unicorn_error(self, err) -> None:
        eip = self.m.eip()
        if err.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_FETCH_PROT):
            self._crash(f"jump into unmapped memory at 0x{eip:x}", eip)
        else:
            self._crash(f"{err} at 0x{eip:x}", eip)

    def _halt(self, hlt_eip: int) -> bool:
        """The guest executed HLT (EIP is past it). Returns False when the run ends."""
        ebp = self.uc.reg_read(UC_X86_REG_EBP)
        self._exit(ExitReason.HLT, Place.KERNEL, Direction.NONE, hlt_eip, 0, 0, 0, ebp)
        if not self.m.interrupts_enabled():
            self._end = RunEnd("halted", f"HLT with interrupts off at 0x{hlt_eip:x}", address=hlt_eip)
            return False
        return True

    def _wait_for_event(self, max_cycles: int | None) -> bool:
        """Idle until the next device event (virtual time jumps). False when nothing will ever come."""
        if self.pic.pending():
            return True
        due = self._next_due()
        if due is None:
            self._end = RunEnd("halted", "HLT with no interrupt source armed: the guest sleeps forever")
            return False
        if max_cycles is not None and due > max_cycles:
            self.clock.idle_until(max_cycles)
            self._end = RunEnd("budget", "virtual time budget reached while halted")
            return False
        self.clock.idle_until(due)
        self._advance_devices(running=False)
        return True

    # interrupt windows ---------------------------------------------------------------------------
    # While an interrupt is pending with IF=0, a block hook (installed only then) finds the next
    # instruction that can set IF (sti, popf, iret) and ends the slice just before it; that one
    # instruction is then single-stepped and IF checked. Adding or removing a block hook needs a
    # translation-cache flush (cached blocks were generated without the hook), so it stays armed for
    # the whole window.
    _IF_SETTERS = frozenset({0xFB, 0x9D, 0xCF})

    def _arm_window(self) -> None:
        if self._window_hook is None:
            self.uc.ctl_flush_tb()
            self._window_hook = self.uc.hook_add(UC_HOOK_BLOCK, self._on_window_block)

    def _disarm_window(self) -> None:
        if self._window_hook is not None:
            self.uc.hook_del(self._window_hook)
            self._window_hook = None
            self.uc.ctl_flush_tb()

    def _on_window_block(self, uc, address, size, _data):
        if self._window_stepping:
            return
        key = (address, size)
        index = self._if_setter_index.get(key)
        if index is None:
            index = -1
            code = self.m.read_virtual(address, size) or b""
            for i, (_, _, mnemonic, _) in enumerate(_disasm().disasm_lite(code, address)):
                if mnemonic in ("sti", "popf", "popfd", "iret", "iretd"):
                    index = i
                    break
            self._if_setter_index[key] = index
        if index >= 0:
            self.m.counter.set_limit(self.m.counter.executed() + index)

    def _open_window(self) -> bool:
        """EIP may be at an IF-setting instruction: step it; True if it opened the window."""
        raw = self.m.read_virtual(self.m.eip(), 2) or b""
        opcode = raw[1] if raw[:1] == b"\x66" and len(raw) > 1 else (raw[0] if raw else 0)
        if opcode not in self._IF_SETTERS:
            return False
        self._window_stepping = True
        try:
            eip, halted = self._step()
        finally:
            self._window_stepping = False
        if self._end is not None or not self.m.interrupts_enabled():
            return False
        ebp = self.uc.reg_read(UC_X86_REG_EBP)
        self._exit(ExitReason.INTERRUPT_WINDOW, Place.KERNEL, Direction.NONE, eip, 0, 0, 0, ebp)
        return True

    # the run loop ----------------------------------------------------------------------------------
    def run(self, max_instructions: int | None = None, max_cycles: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> RunEnd:
        clock = self.clock
        try:
            while self._end is None:
                self._advance_devices(running=True)
                if self._end is not None:
                    break
                if max_instructions is not None and clock.icount >= max_instructions:
                    self._end = RunEnd("budget", f"instruction budget of {max_instructions} reached")
                    break
                if max_cycles is not None and clock.now() >= max_cycles:
                    self._end = RunEnd("budget", "virtual time budget reached")
                    break
                if self.pic.pending():
                    if self.m.interrupts_enabled():
                        self._disarm_window()
                        if self.m.read_virtual(self.m.eip() - 1, 1) == b"\xfb":
                            # STI shadow: the instruction after sti runs before the interrupt
                            _, halted = self._step()
                            if halted and (not self._halt(self.m.eip() - 1)):
                                break
                            continue
                        self._inject()
                        continue
                    self._arm_window()
                    if self._open_window():
                        continue
                    if self._end is not None:
                        break
                else:
                    self._disarm_window()
                limit = 1 << 62
                due = self._next_due()
                if due is not None:
                    limit = clock.icount_when(due) - clock.icount
                if max_cycles is not None:
                    limit = min(limit, clock.icount_when(max_cycles) - clock.icount)
                if max_instructions is not None:
                    limit = min(limit, max_instructions - clock.icount)
                self._caller_paging = self._paging_on()
                self._due = due
                self._slice_base = clock.icount
                end = self.m.run_slice(max(limit, 1))
                clock.icount = self._slice_base + end.executed
                if progress is not None:
                    progress(clock.icount, clock.now())
                if end.error is not None:
                    self._unicorn_error(end.error)
                    break
                if self._end is not None or end.exhausted:
                    continue
                eip = self.m.eip()
                if self.m.read_virtual(eip - 1, 1) != b"\xf4":
                    self._crash(f"emulation stopped unexpectedly at 0x{eip:x}", eip)
                    break
                if not self._halt(eip - 1) or not self._wait_for_event(max_cycles):
                    break
                if self.pic.pending():
                    self._disarm_window()
                    self._inject()
        finally:
            self._disarm_window()
        return self._end

    def _paging_on(self) -> bool:
        return bool(self.uc.reg_read(UC_X86_REG_CR0) & 0x80000000)



@functools.lru_cache(maxsize=1)
def _disasm():
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    return Cs(CS_ARCH_X86, CS_MODE_32)
