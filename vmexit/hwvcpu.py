"""The run loop of a guest on the host's real KVM (`--hypervisor kvm-hw`), beside vcpu.py's emulated one.

The guest runs on the CPU through KVM_RUN (engine/kvm.py) with no in-kernel PIT, PIC or local APIC, so
every port access, MMIO access and HLT returns here. Each is handled by vmexit's own devices (the port
bus of ports.py, the MMIO devices and unassigned ranges of devices/) and recorded through the domain's
ExitRecorder with its guest address, its caller and stack (FrameWalker, from guest memory), reason,
qualifier and cost, so the trace has the format of a modeled run and every report works on it.

Time is real here, and not deterministic:
- the clock (RealClock) is the host's monotonic clock since the run began, in the profile's cycles;
  devices read it, so the PIT, the PM timer, the UART's character time and the network peer follow
  real time; an exit's `cycles` is when KVM_RUN returned with it;
- an exit's `cost` is measured: the time from KVM_RUN's return to the end of vmexit's handling of it
  (the user-space part, Python included), plus the kernel part of that kind of exit, which a process
  cannot see per exit and which `vmexit calibrate` measured (the profile's host costs
  `kvm_hw_kernel/<REASON>`: the round trip seen from inside the guest minus its user-space part); a
  profile without them adds nothing;
- `icount` is 0 in every record and the run's `instructions` is 0: KVM counts no guest instructions.
Exits KVM handles inside the kernel (CPUID, the MSRs it knows, hypercalls, the guest's own exceptions)
never come back to user space, so they are not in the trace.

Device events (timers, the network peer) need the guest to come back when they are due: a real-time
timer signal (SIGALRM, ITIMER_REAL) kicks KVM_RUN out at the next event or at the --max-seconds budget,
as QEMU kicks its vCPU threads; it repeats every KICK_REPEAT until re-armed, so a kick that arrives
just before KVM_RUN is entered is not lost for long. An event that fires on a kick is an
EXTERNAL_INTERRUPT exit, as in the model. Interrupts are injected with KVM_INTERRUPT when KVM says the
guest can take one, else KVM is asked for an interrupt-window exit (INTERRUPT_WINDOW). HLT with IF set
sleeps (real time) until the next device event. Off the main thread there is no timer signal: events
and the budget are then looked at only when the guest exits.

Addresses: KVM leaves RIP at an IN or MMIO-read instruction (it needs the data) but past an OUT or
an MMIO write (both completed before the exit, as measured here), and past HLT. The instruction that
ends at RIP is found by decoding backwards: an OUT by its opcode and the port (immediate or DX), an
MMIO write as the longest instruction that ends at RIP and writes memory (capstone), remembered per
RIP. A string OUTS exits with RIP at it.

Ending: the guest's own (debug-exit port, HLT with IF clear), the budget, a triple fault (KVM_EXIT_
SHUTDOWN: crashed), or an instruction this host's KVM cannot run (KVM_EXIT_INTERNAL_ERROR, emulation
failure: status `unsupported`, naming the instruction and its address) -- the trace so far kept.
"""
from __future__ import annotations

import errno
import gc
import os
import signal
import threading
import time
from typing import Callable

from .clock import Clock
from .exits import Direction, ExitReason, Place
from .hypervisors.model import APIC_PAGE, disasm_detail
from .stacks import FrameWalker
from .vcpu import RunEnd

KICK_REPEAT = 0.001          # seconds between repeated kicks once the deadline passed
IF_FLAG = 1 << 9
_IN, _OUT = int(Direction.IN), int(Direction.OUT)
_OUT_IMM = {0xE6: 1, 0xE7: 4}  # out imm8, al / eax (a 0x66 prefix makes eax ax)
_OUT_DX = {0xEE: 1, 0xEF: 4}


class RealClock(Clock):
    """Real time since the run began, in the profile's cycles (the devices' clock under kvm-hw)."""
    __slots__ = ("t0", "_frozen")

    def __init__(self, freq_hz: int, cpi_num: int = 1, cpi_den: int = 1):
        super().__init__(freq_hz, cpi_num, cpi_den)
        self.t0 = time.perf_counter_ns()
        self._frozen: int | None = 0   # time stands at 0 while the machine is built and loaded

    def start(self) -> None:
        """The guest is about to run: time begins (once)."""
        if self._frozen == 0 and self.icount == 0 and not self.idle:
            self.t0 = time.perf_counter_ns()
            self._frozen = None

    def cycles_of(self, ns: int) -> int:
        return ns * self.freq_hz // 1_000_000_000

    def now(self) -> int:
        if self._frozen is not None:
            return self._frozen
        return self.cycles_of(time.perf_counter_ns() - self.t0)

    def freeze(self) -> None:
        """The run is over: its length stays what it was."""
        if self._frozen is None:
            self._frozen = max(self.now(), 1)


class Kicker:
    """The timer signal that brings the guest back to user space at a deadline (module docstring)."""

    def __init__(self) -> None:
        self.enabled = threading.current_thread() is threading.main_thread()
        self.armed: int | None = None
        self._previous = None

    def __enter__(self) -> "Kicker":
        if self.enabled:
            self._previous = signal.signal(signal.SIGALRM, _kicked)
        return self

    def arm(self, deadline: int | None, now: int, freq: int) -> None:
        if not self.enabled or deadline == self.armed:
            return
        self.armed = deadline
        delay = 0.0 if deadline is None else max((deadline - now) / freq, 1e-5)
        signal.setitimer(signal.ITIMER_REAL, delay, KICK_REPEAT if deadline is not None else 0.0)

    def __exit__(self, *_exc) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
            signal.signal(signal.SIGALRM, self._previous if self._previous is not None else signal.SIG_DFL)


def _kicked(_signum, _frame) -> None:
    """SIGALRM's handler: nothing to do; the signal's work is to interrupt KVM_RUN (EINTR)."""


class HwVCPU:
    def __init__(self, machine, clock: RealClock, profile, recorder, irqs, timed: list, ending, bus_factory,
                 mmio: list[tuple[object, bool]]):
        """timed: vcpu.TimedDevice entries; bus_factory(vcpu) -> the port bus (ports.PortBus, not
        recording: this loop records each KVM exit itself); mmio: (device, whether a write to it can
        move a device event)."""
        self.m, self.engine, self.clock, self.rec = machine, machine.engine, clock, recorder
        self.vm, self.run_state = self.engine.vm, self.engine.vm.run
        self.irqs, self.timed, self.ending = irqs, timed, ending
        self.bus = bus_factory(self)
        self.mmio = sorted(((dev.base, dev.base + dev.size, dev, moves) for dev, moves in mmio), key=lambda r: r[0])
        self.frames = FrameWalker(machine.ram, recorder.stacks, machine.translate)
        self._kernel = {(int(r), int(d)): _kernel_part(profile, r, d) for r in ExitReason for d in Direction}
        self._kernel_parts = {k: c for k, c in profile.host_costs.items() if k.startswith("kvm_hw_kernel/")}
        self._due_stale, self._due, self._kick = True, None, False
        self._starts: dict[tuple[int, int], int] = {}   # (exit RIP, kind) -> the instruction's address
        self.counts: dict[str, int] = {}                # KVM exits by KVM's name, for the run's meta
        self._handlers: dict[int, Callable[[int], None]] = {
            2: self._io, 6: self._mmio, 5: self._hlt, 7: self._window, 10: self._interrupted,
            8: self._shutdown, 17: self._internal_error, 9: self._fail_entry}
        self._max_cycles: int | None = None
        disasm_detail()   # loaded now, so that its import is not measured as the first decoding exit's cost

    # what the port bus asks of a vCPU ------------------------------------------------------------------
    def icount_in_trap(self) -> int:
        return 0

    now_icount = icount_in_trap

    def reschedule(self, timers_changed: bool = False) -> None:
        if timers_changed:
            self._due_stale = True

    # the run loop ----------------------------------------------------------------------------------------
    def run(self, max_cycles: int | None = None) -> RunEnd | None:
        self._max_cycles = max_cycles
        self.clock.start()
        vm, handlers = self.vm, self._handlers
        collecting = gc.isenabled()
        gc.disable()   # a collection inside an exit's handling would be measured as that exit's cost
        try:
            with Kicker() as kicker:
                while self.ending.end is None and self._before_entry(kicker):
                    err = vm.enter()
                    t_exit = time.perf_counter_ns()
                    if err < 0 and err != -errno.EINTR:
                        self._crash(f"KVM_RUN failed: {os.strerror(-err)}", self.engine.eip_ebp()[0])
                        break
                    reason = self.run_state.exit_reason if err == 0 else 10
                    self.counts[_KVM_EXITS.get(reason, str(reason))] = self.counts.get(
                        _KVM_EXITS.get(reason, str(reason)), 0) + 1
                    handlers.get(reason, self._unexpected)(t_exit)
        finally:
            self.clock.freeze()
            if collecting:
                gc.enable()
        return self.ending.end

    def _before_entry(self, kicker: Kicker) -> bool:
        """Fire what is due, check the budget, inject a pending interrupt, arm the kick; False to stop."""
        self._advance_devices(running=self._kick)
        self._kick = False
        if self.ending.end is not None:
            return False
        now, budget = self.clock.now(), self._max_cycles
        if budget is not None and now >= budget:
            self.ending.finish(RunEnd("budget", f"real-time budget of {budget / self.clock.freq_hz:g} s reached"))
            return False
        self._inject()
        due = self.next_due()
        deadline = budget if due is None or (budget is not None and budget < due) else due
        kicker.arm(deadline, now, self.clock.freq_hz)
        return True

    def next_due(self) -> int | None:
        if self._due_stale:
            dues = [t for t in (timed.device.next_event() for timed in self.timed) if t is not None]
            self._due, self._due_stale = min(dues, default=None), False
        return self._due

    def _advance_devices(self, running: bool) -> None:
        """Fire every device event that is due; on a kick they are EXTERNAL_INTERRUPT exits (vcpu.py)."""
        now = self.clock.now()
        if not self._due_stale and (self._due is None or now < self._due):
            return   # nothing can be due: skip asking every device
        t_exit = time.perf_counter_ns()
        for timed in self.timed:
            fired = timed.device.advance(now)
            if fired:
                self._due_stale = True
                if running:
                    eip = self.engine.eip_ebp()[0]
                    for _ in range(fired):
                        self._record(ExitReason.EXTERNAL_INTERRUPT, Direction.NONE, eip, timed.vector(), 0, 0,
                                     t_exit)

    def _inject(self) -> None:
        run = self.run_state
        if not self.irqs.pending():
            run.request_interrupt_window = 0
            return
        if run.ready_for_interrupt_injection and run.if_flag:
            vector = self.irqs.acknowledge()
            if vector is not None:
                self.vm.interrupt(vector)
            self._due_stale = True
            run.request_interrupt_window = 1 if self.irqs.pending() else 0
        else:
            run.request_interrupt_window = 1

    # the exits ------------------------------------------------------------------------------------------
    def _io(self, t_exit: int) -> None:
        io = self.run_state.exit.io
        port, size, count = io.port, io.size, io.count
        data, bus = self.engine.io_data(), self.bus
        rip = self.engine.eip_ebp()[0]
        if io.direction == 1:
            values = [int.from_bytes(data[i * size:(i + 1) * size], "little") for i in range(count)]
            for value in values:
                bus.on_out(port, size, value)
            direction, rip = _OUT, self._out_start(rip, port, size)
        else:
            values = [bus.on_in(port, size) for _ in range(count)]
            for i, value in enumerate(values):
                data[i * size:(i + 1) * size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
            direction = _IN
        self._record(ExitReason.IO_INSTRUCTION, direction, rip, port, size * count, values[0], t_exit)

    def _mmio(self, t_exit: int) -> None:
        m = self.run_state.exit.mmio
        address, length = m.phys_addr, m.len
        dev, moves = self._mmio_device(address)
        rip = self.engine.eip_ebp()[0]
        if m.is_write:
            value = int.from_bytes(bytes(m.data[:length]), "little")
            if dev is not None:
                dev.write(address - dev.base, length, value)
            direction, rip = _OUT, self._write_start(rip)
            self._due_stale = self._due_stale or moves
        else:
            value = dev.read(address - dev.base, length) if dev is not None else (1 << 8 * length) - 1
            m.data[:length] = list(value.to_bytes(length, "little"))
            direction = _IN
        reason = ExitReason.APIC_ACCESS if APIC_PAGE <= address < APIC_PAGE + 0x1000 else ExitReason.EPT_VIOLATION
        self._record(reason, direction, rip, address, length, value, t_exit)

    def _mmio_device(self, address: int):
        for base, end, dev, moves in self.mmio:
            if base <= address < end:
                return dev, moves
        return None, False   # no device and no RAM: reads float high, writes go nowhere

    def _hlt(self, t_exit: int) -> None:
        rip = self.engine.eip_ebp()[0] - 1   # KVM leaves RIP past the one-byte HLT
        self._record(ExitReason.HLT, Direction.NONE, rip, 0, 0, 0, t_exit)
        if not self.vm.regs().rflags & IF_FLAG:
            self.ending.finish(RunEnd("halted", f"HLT with interrupts off at 0x{rip:x}", address=rip))
            return
        self._sleep()

    def _sleep(self) -> None:
        """HLT with IF set: wait (real time) for the next device event or interrupt."""
        clock, budget = self.clock, self._max_cycles
        while not self.irqs.pending():
            due, now = self.next_due(), clock.now()
            if due is None:
                self.ending.finish(RunEnd("halted", "HLT with no interrupt source armed: the guest sleeps forever"))
                return
            wake = due if budget is None else min(due, budget)
            if wake > now:
                time.sleep((wake - now) / clock.freq_hz)
                clock.idle += max(clock.now() - now, 0)
            if budget is not None and clock.now() >= budget and due > budget:
                self.ending.finish(RunEnd("budget", "real-time budget reached while halted"))
                return
            self._advance_devices(running=False)

    def _window(self, t_exit: int) -> None:
        self._record(ExitReason.INTERRUPT_WINDOW, Direction.NONE, self.engine.eip_ebp()[0], 0, 0, 0, t_exit)

    def _interrupted(self, _t_exit: int) -> None:
        self._kick = True   # the timer signal (or Ctrl-C, which Python raises as soon as it can)

    def _shutdown(self, _t_exit: int) -> None:
        self._crash("triple fault (KVM_EXIT_SHUTDOWN)", self.engine.eip_ebp()[0])

    def _fail_entry(self, _t_exit: int) -> None:
        why = self.run_state.exit.fail_entry.hardware_entry_failure_reason
        self._crash(f"this host's KVM refused to enter the guest (hardware entry failure 0x{why:x})",
                    self.engine.eip_ebp()[0])

    def _unexpected(self, _t_exit: int) -> None:
        self._crash(f"unexpected KVM exit {self.run_state.exit_reason}", self.engine.eip_ebp()[0])

    def _internal_error(self, _t_exit: int) -> None:
        rip = self.engine.eip_ebp()[0]
        suberror = self.run_state.exit.internal.suberror
        if suberror != 1:   # KVM_INTERNAL_ERROR_EMULATION is the one a guest instruction causes
            self._crash(f"KVM internal error (suberror {suberror})", rip)
            return
        self.ending.finish(RunEnd("unsupported", f"this host's KVM cannot run `{self._disassemble(rip)}` at "
                                                 f"0x{rip:x} (KVM emulation failure)", address=rip))

    def _crash(self, cause: str, rip: int) -> None:
        if self.ending.end is None:
            self._record(ExitReason.TRIPLE_FAULT, Direction.NONE, rip, 0, 0, 0, time.perf_counter_ns())
        self.ending.finish(RunEnd("crashed", cause, address=rip))

    # recording -------------------------------------------------------------------------------------------
    def _record(self, reason: int, direction: int, rip: int, qualifier: int, size: int, value: int,
                t_exit: int, place: int = Place.USER) -> None:
        ebp = self.vm.regs().rbp & 0xFFFFFFFF
        if ebp:
            paging = self.vm.sregs().cr0 & 0x80000000
            caller, stack = self.frames.walk_virtual(ebp) if paging else self.frames.walk(ebp)
        else:
            caller = stack = 0
        clock = self.clock
        cost = clock.cycles_of(time.perf_counter_ns() - t_exit) + self._kernel[int(reason), int(direction)]
        self.rec.append(0, clock.cycles_of(t_exit - clock.t0), rip, int(reason), int(place), int(direction),
                        qualifier, size, value & 0xFFFFFFFFFFFFFFFF, cost, caller, 0, stack)

    def stats(self) -> dict:
        """The run's meta under `kvm_hw`: what was counted and what could not be."""
        return {"kvm_exits": dict(sorted(self.counts.items())), "sync_regs": bool(self.vm.sync),
                "kicks": self.counts.get("INTR", 0), "icount": "not counted (KVM counts no guest instructions)",
                "kernel_cycles": dict(self._kernel_parts)}

    # instruction addresses ---------------------------------------------------------------------------------
    def _code(self, address: int, size: int) -> bytes:
        return self.m.read_virtual(address, size) or b""

    def _out_start(self, rip: int, port: int, size: int) -> int:
        """The OUT that ends at RIP (its immediate or DX is the port), or RIP itself (a string OUTS)."""
        key = (rip, port)
        start = self._starts.get(key)
        if start is None:
            before = self._code(rip - 3, 3) if rip >= 3 else b""
            dx = self.vm.regs().rdx & 0xFFFF
            start = rip
            if len(before) == 3 and before[2] in _OUT_DX and dx == port:
                start = rip - 2 if before[1] == 0x66 else rip - 1
            elif len(before) == 3 and before[1] in _OUT_IMM and before[2] == port:
                start = rip - 3 if before[0] == 0x66 else rip - 2
            self._starts[key] = start
        return start

    def _write_start(self, rip: int) -> int:
        """The longest instruction that ends at RIP and writes memory (an MMIO write KVM completed)."""
        key = (rip, -1)
        start = self._starts.get(key)
        if start is None:
            start = rip
            code = self._code(rip - 15, 15) if rip >= 15 else b""
            md = disasm_detail()
            for length in range(len(code), 0, -1):
                insn = next(md.disasm(code[-length:], rip - length, 1), None)
                if insn is not None and insn.size == length and _writes_memory(insn):
                    start = rip - length
                    break
            self._starts[key] = start
        return start

    def _disassemble(self, rip: int) -> str:
        code = self._code(rip, 15)
        insn = next(disasm_detail().disasm(code, rip, 1), None) if code else None
        if insn is None:
            return f"the instruction {code[:4].hex(' ')}" if code else "an instruction outside guest RAM"
        return f"{insn.mnemonic} {insn.op_str}".strip()


def _kernel_part(profile, reason: ExitReason, direction: Direction) -> int:
    """The calibrated kernel part of an exit (the profile's host cost kvm_hw_kernel/REASON[/in|out]; 0
    in a profile that has none)."""
    key = f"kvm_hw_kernel/{reason.name}"
    if direction != Direction.NONE and f"{key}/{direction.name.lower()}" in profile.host_costs:
        return profile.host_cost(f"{key}/{direction.name.lower()}")
    return profile.host_cost(key)


def _writes_memory(insn) -> bool:
    from capstone.x86 import X86_OP_MEM
    return any(op.type == X86_OP_MEM and op.access & 2 for op in insn.operands)


#: KVM_EXIT_* names for the run's meta (include/uapi/linux/kvm.h).
_KVM_EXITS = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
              7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR",
              24: "SYSTEM_EVENT"}
