"""The KVM exit model: which guest actions exit, where KVM handles them, what they cost, and the vCPU
run loop that injects interrupts.

Where each device is handled follows KVM-76 (the paper's version): the PIT (arch/x86/kvm/i8254.c,
"KVM: In kernel PIT model", Jan 2008) and the PIC (i8259.c) are in the kernel; the UART, the IDE disk,
the ACPI PM timer and isa-debug-exit are QEMU devices in user space. Ports nobody claims still exit and
go to QEMU, which returns all ones (hw: an empty ISA bus floats high).

Exits modeled (VMX basic exit reasons, perf kvm stat names):
- IO_INSTRUCTION: every in/out; a rep ins/outs exits once per 1,024 bytes moved, the size of KVM's
  string-PIO buffer (arch/x86/kvm/emulate.c, struct read_cache data[1024]);
- VMCALL: KVM hypercall ABI (Documentation/virt/kvm/x86/hypercalls.rst): nr in EAX, args in EBX, ECX,
  EDX, ESI, result in EAX; an unknown nr returns -KVM_ENOSYS (-1000). The paper's XKVM_IO_COALESCE
  (optimizations/coalesce_static.py) runs a guest's array of port accesses inside the one exit;
- CPUID, HLT, MSR_READ, MSR_WRITE;
- EXTERNAL_INTERRUPT: a timer or device interrupt that fires while the guest runs;
- INTERRUPT_WINDOW: an interrupt is pending while IF=0; the guest exits at the instruction that opens
  the window (sti, popf, iret), then the interrupt is injected (after sti's one-instruction shadow);
- EXCEPTION_NMI: guest exceptions in the profile's trapped set (update_exception_bitmap());
- TRIPLE_FAULT: the end of a guest that faulted with no usable handler.

rdmsr/wrmsr cannot be hooked through Unicorn 2.1.4's binding, so the model finds them in the loaded
image (the two opcode bytes at an instruction start can only be that instruction) and hooks those
addresses; MSR instructions in code the guest generates at run time execute without an exit.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Callable

from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR
from unicorn.unicorn_const import UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED
from unicorn.unicorn_py3.arch.intel import HOOK_INSN_IN_CFUNC, HOOK_INSN_OUT_CFUNC
from unicorn.x86_const import (
    UC_X86_INS_CPUID, UC_X86_INS_IN, UC_X86_INS_OUT, UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CS, UC_X86_REG_EAX,
    UC_X86_REG_EBP, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EIP, UC_X86_REG_ESI,
)

from ..clock import Clock
from ..costs import Profile
from ..exits import Direction, ExitReason, ExitRecorder, Place
from ..loader import Image
from .._uc import CpuState, RegisterReader, RegisterWriter, add_insn_hook
from ..machine import ERROR_CODE_VECTORS, GuestCrash, X86Machine
from ..optimizations import coalesce_static

#: Where KVM-76 handles each device (see module docstring).
DEVICE_PLACES: dict[str, Place] = {
    "pit": Place.KERNEL,
    "pic": Place.KERNEL,
    "uart": Place.USER,
    "pmtimer": Place.USER,
    "ide": Place.USER,
    "bmdma": Place.USER,
    "pci": Place.USER,
    "rtl8139": Place.USER,
    "debugexit": Place.USER,
    "unassigned": Place.USER,
    "cmos": Place.USER,             # QEMU's mc146818rtc
    "cga": Place.USER,              # QEMU's VGA
    "kbd": Place.USER,              # QEMU's i8042
    "lapic": Place.KERNEL,
    "ioapic": Place.KERNEL,
}
#: The LAPIC page: accesses to it exit as APIC_ACCESS (handled in KVM), other MMIO as EPT_VIOLATION.
APIC_PAGE = 0xFEE00000

KVM_ENOSYS = 1000
STRING_PIO_CHUNK = 1024

#: KVM hypercalls (include/uapi/linux/kvm_para.h). Handlers get (args) and return EAX.
HYPERCALLS: dict[int, tuple[str, Callable[[tuple[int, int, int, int]], int]]] = {
    1: ("KVM_HC_VAPIC_POLL_IRQ", lambda args: 0),
    5: ("KVM_HC_KICK_CPU", lambda args: 0),
    11: ("KVM_HC_SCHED_YIELD", lambda args: 0),
}

#: MSRs the vCPU has, with their reset values (Intel SDM vol. 4; KVM's msrs_to_save / emulated_msrs).
#: Any other index raises #GP in the guest, as KVM does with ignore_msrs=0. TSC (0x10) reads the
#: virtual clock. 0x11/0x12 and 0x4b564d00-0x4b564dff are KVM's paravirtual clock MSRs.
MSRS: dict[int, int] = {
    0x10: 0,                      # IA32_TIME_STAMP_COUNTER
    0x11: 0, 0x12: 0,             # MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME (old numbers)
    0x17: 0,                      # IA32_PLATFORM_ID
    0x1B: 0xFEE00900,             # IA32_APIC_BASE: BSP, enabled, base 0xfee00000
    0x3A: 0x1,                    # IA32_FEATURE_CONTROL: locked, VMX off
    0x8B: 0,                      # IA32_BIOS_SIGN_ID
    0xFE: 0x508,                  # IA32_MTRRCAP: 8 variable ranges, fixed ranges, WC
    0x174: 0, 0x175: 0, 0x176: 0,  # IA32_SYSENTER_CS / ESP / EIP
    0x1A0: 0x1,                   # IA32_MISC_ENABLE: fast strings
    0x277: 0x0007040600070406,    # IA32_PAT reset value
    0x2FF: 0,                     # IA32_MTRR_DEF_TYPE
    0xC0000080: 0,                # IA32_EFER
}
MSRS.update({0x200 + i: 0 for i in range(16)})                 # variable-range MTRRs
MSRS.update({m: 0 for m in (0x250, 0x258, 0x259) + tuple(range(0x268, 0x270))})  # fixed MTRRs
READ_ONLY_MSRS = frozenset({0x17, 0xFE})

_UNSEEN = object()

#: String I/O opcodes: ins (6c/6d) and outs (6e/6f).
_STRING_IO = {0x6C: Direction.IN, 0x6D: Direction.IN, 0x6E: Direction.OUT, 0x6F: Direction.OUT}
_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF2, 0xF3})


@dataclass
class RunEnd:
    status: str          # exited | halted | console | budget | crashed | interrupted
    detail: str
    guest_value: int | None = None
    address: int | None = None


class _Stop(Exception):
    pass


class KVM:
    """One vCPU under the KVM model, with its devices on the port bus."""

    name = "kvm"
    cpuid_signature = "KVMKVMKVM\0\0\0"

    def __init__(self, machine: X86Machine, image: Image, clock: Clock, profile: Profile,
                 recorder: ExitRecorder, port_devices: list, timed_devices: list, pic,
                 mmio_devices: list = (), msr_init: dict[int, int] | None = None, lookahead=None):
        self.m = machine
        self.uc = machine.uc
        self.clock = clock
        self.profile = profile
        self.rec = recorder
        self.pic = pic
        self.timed = timed_devices
        self._ports: list = [None] * 0x10000
        self._places = bytearray([Place.USER]) * 0x10000
        self._timer_ports = [False] * 0x10000
        for dev in port_devices:
            for p in dev.ports:
                self._ports[p] = dev
                self._places[p] = DEVICE_PLACES.get(dev.name, Place.USER)
                self._timer_ports[p] = self._changes_timers(dev)
        self._due: int | None = None  # next device event, cached for the current slice
        self._costs = {(r, p, d): profile.cost(r, p, d)
                       for r in ExitReason for p in Place for d in Direction}
        self._per_items = {(r, p, d): profile.per_item(r, p, d)
                           for r in (ExitReason.VMCALL, ExitReason.EXCEPTION_NMI) for p in Place for d in Direction}
        self.msrs: dict[int, int] = dict(MSRS)
        self.msrs.update(msr_init or {})
        self._slice_base = 0
        self._end: RunEnd | None = None
        self._string_io: dict[int, tuple[Direction, bool] | None] = {}
        self._str_state = (-1, -1, 0)  # (eip, next icount, bytes in the current exit)
        self._caller_paging = False
        self._window_hook = None
        self._window_stepping = False
        self._if_setter_index: dict[tuple[int, int], int] = {}
        # EIP and EBP at every exit: straight from the CPU state when it can be located, else through
        # libunicorn; both give the same numbers (tests/hypervisors/test_kvm.py checks the traces).
        self._eip_ebp = CpuState.locate(self.uc) or RegisterReader(self.uc, [UC_X86_REG_EIP, UC_X86_REG_EBP])
        self._counter = machine.counter
        self._current = machine.counter.current
        self._io_costs = [[self._costs[(ExitReason.IO_INSTRUCTION, p, d)] for d in Direction] for p in Place]
        self._emulation_costs = [[profile.emulation_cost(p, d) for d in Direction] for p in Place]
        # hook point io_exit (optimizations/coalesce_dynamic.py): the look-ahead, and the run it
        # planned at the last exit (exit count, that exit's icount, {address: instructions after})
        self._lookahead = lookahead
        self._merge: tuple[int, int, dict[int, int]] | None = None
        self._hypercall_args = RegisterReader(self.uc, [UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX,
                                                        UC_X86_REG_EDX, UC_X86_REG_ESI])
        self._hypercall_return = RegisterWriter(self.uc, [UC_X86_REG_EAX, UC_X86_REG_EIP])
        self._ram = machine.ram
        self._mmio_callbacks: list = []  # the binding does not keep mmio_map's callbacks alive
        self._install(image)
        for dev in mmio_devices:
            self._install_mmio(dev)

    # setup -----------------------------------------------------------------------------------------
    def _changes_timers(self, dev) -> bool:
        """Whether a write to this device can move the next device event (then the cached due time
        is recomputed after the exit): a timed device itself, or one that feeds one (the NIC)."""
        return dev in self.timed or getattr(dev, "affects_timers", False)

    def _install(self, image: Image) -> None:
        uc = self.uc
        add_insn_hook(uc, UC_X86_INS_IN, HOOK_INSN_IN_CFUNC, self._on_in)
        add_insn_hook(uc, UC_X86_INS_OUT, HOOK_INSN_OUT_CFUNC, self._on_out)
        uc.hook_add(UC_HOOK_INSN, self._on_cpuid, None, 1, 0, UC_X86_INS_CPUID)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        for seg in image.segments:
            if not seg.executable:
                continue
            for opcode, cb in ((b"\x0f\x32", self._on_rdmsr), (b"\x0f\x30", self._on_wrmsr)):
                at = seg.data.find(opcode)
                while at >= 0:
                    addr = seg.address + at
                    uc.hook_add(UC_HOOK_CODE, cb, None, addr, addr)
                    at = seg.data.find(opcode, at + 1)

    def _install_mmio(self, dev) -> None:
        """Map an MMIO device. A (no-op) memory hook on its range makes Unicorn keep EIP exact in the
        MMIO callbacks, so exits get the address of the accessing instruction."""
        base = dev.base
        is_apic = base <= APIC_PAGE < base + dev.size

        def reason_place(addr: int) -> tuple[int, int]:
            if is_apic and APIC_PAGE <= addr < APIC_PAGE + 0x1000:
                return ExitReason.APIC_ACCESS, Place.KERNEL
            return ExitReason.EPT_VIOLATION, DEVICE_PLACES.get(dev.name, Place.USER)

        def on_read(uc, offset, size, _data):
            icount = self._now_icount()  # the device reads the clock
            value = dev.read(offset, size)
            reason, place = reason_place(base + offset)
            eip, ebp = self._eip_ebp()
            self._exit(reason, place, Direction.IN, eip, base + offset, size, value, ebp, icount)
            self._reschedule()
            return value

        def on_write(uc, offset, size, value, _data):
            reason, place = reason_place(base + offset)
            eip, ebp = self._eip_ebp()
            self._exit(reason, place, Direction.OUT, eip, base + offset, size, value, ebp)
            dev.write(offset, size, value)
            self._reschedule(timers_changed=timed)

        timed = self._changes_timers(dev)
        self.uc.mmio_map(base, dev.size, on_read, None, on_write, None)
        self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, _no_op, None, base, base + dev.size - 1)
        self._mmio_callbacks += [on_read, on_write]

    # the exit path ----------------------------------------------------------------------------------
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

    def _string_kind(self, eip: int) -> tuple[Direction, bool] | None:
        raw = self.m.read_virtual(eip, 8) or b""
        kind, rep = None, False
        for b in raw:
            if b in (0xF2, 0xF3):
                rep = True
            if b not in _PREFIXES:
                if b in _STRING_IO:
                    kind = (_STRING_IO[b], rep)
                break
        self._string_io[eip] = kind
        return kind

    def _port_exit(self, icount: int, port: int, size: int, value: int, direction: int) -> bool:
        """Record an I/O exit unless this is a further element of a rep string exit; True if recorded.
        The hottest path of all: everything is read once, into locals."""
        eip, ebp = self._eip_ebp()
        kind = self._string_io.get(eip, _UNSEEN)
        if kind is _UNSEEN:
            kind = self._string_kind(eip)
        if kind is not None and kind[1]:
            last_eip, next_icount, used = self._str_state
            if eip == last_eip and icount == next_icount and used + size <= STRING_PIO_CHUNK:
                self._str_state = (eip, icount + 1, used + size)
                self.rec.add_size(size)
                return False
            self._str_state = (eip, icount + 1, size)
        clock = self.clock
        place = self._places[port]
        merge = self._merge
        if merge is not None:
            if merge[0] == self.rec.count and merge[2].get(eip, -1) == icount - merge[1] \
                    and not self.pic.pending():
                cost = self._emulation_costs[place][direction]
                self.rec.emulate(eip, place, direction, port, size, value, cost)
                clock.extra += cost
                return True
            self._merge = None
        cost = self._io_costs[place][direction]
        self.rec.append(icount, icount * clock.cpi_num // clock.cpi_den + clock.extra, eip,
                        ExitReason.IO_INSTRUCTION, place, direction, port, size, value, cost,
                        self._caller(ebp) if ebp else 0)
        clock.extra += cost
        if self._lookahead is not None:
            plan = self._lookahead.plan(eip)
            if plan:
                self._merge = (self.rec.count, icount, plan)
        return True

    def _on_in(self, port, size, _key):
        icount = self._slice_base + self._current.value
        self.clock.icount = icount  # the device reads the clock
        dev = self._ports[port]
        value = dev.read(port, size) if dev is not None else (1 << (8 * size)) - 1
        if self._port_exit(icount, port, size, value, Direction.IN):
            self._reschedule(timers_changed=self._timer_ports[port])  # a read may schedule (UART RBR)
        return value

    def _on_out(self, port, size, value, _key):
        icount = self._slice_base + self._current.value
        self.clock.icount = icount
        value &= (1 << (8 * size)) - 1
        recorded = self._port_exit(icount, port, size, value, Direction.OUT)
        dev = self._ports[port]
        if dev is not None:
            dev.write(port, size, value)
        if recorded or self._end is not None or self.pic.pending():
            self._reschedule(timers_changed=self._timer_ports[port])

    def _on_cpuid(self, uc, _data):
        eip, ebp, leaf, sub = uc.reg_read_batch([UC_X86_REG_EIP, UC_X86_REG_EBP, UC_X86_REG_EAX, UC_X86_REG_ECX])
        regs = self._cpuid(leaf, sub)
        self._exit(ExitReason.CPUID, Place.KERNEL, Direction.NONE, eip, leaf, 0, regs[0], ebp)
        uc.reg_write_batch([(UC_X86_REG_EAX, regs[0]), (UC_X86_REG_EBX, regs[1]),
                            (UC_X86_REG_ECX, regs[2]), (UC_X86_REG_EDX, regs[3])])
        self._reschedule()
        return 1

    def _cpuid(self, leaf: int, sub: int) -> tuple[int, int, int, int]:
        def s(text: str) -> tuple[int, ...]:
            return struct.unpack("<3I", text.encode())
        if leaf == 0:
            b, d, c = s("GenuineIntel")
            return 1, b, c, d
        if leaf == 1:
            # edx 0x0781abfd: FPU DE PSE TSC MSR PAE MCE CX8 APIC SEP PGE CMOV PAT MMX FXSR SSE SSE2
            # (no MTRR, MCA, VME, ...); ecx bit 31: a hypervisor is present
            return self.profile.cpuid_signature, 0x00010800, 0x80000000, 0x0781ABFD
        if leaf == 0x40000000:
            b, c, d = s(self.cpuid_signature)
            return 0x40000001, b, c, d
        if leaf == 0x80000000:
            return 0x80000000, 0, 0, 0
        return 0, 0, 0, 0

    def _on_invalid(self, uc, _data):
        eip, ebp = self._eip_ebp()
        raw = self.m.read_virtual(eip, 3) if self._caller_paging else self._ram[eip:eip + 3]
        if raw in (b"\x0f\x01\xc1", b"\x0f\x01\xd9"):  # vmcall (Intel), vmmcall (AMD; KVM accepts both)
            nr, b, c, d, si = self._hypercall_args()
            if nr == coalesce_static.XKVM_IO_COALESCE:
                self._io_coalesce(eip, ebp, b, c)
                return True
            entry = HYPERCALLS.get(nr)
            result = (entry[1]((b, c, d, si)) if entry else -KVM_ENOSYS) & 0xFFFFFFFF
            self._exit(ExitReason.VMCALL, Place.KERNEL, Direction.NONE, eip, nr, 0, result, ebp)
            self._hypercall_return(result, eip + 3)
            self._reschedule()
            return True
        return self._exception(6, eip, None, ebp)  # #UD

    def _io_coalesce(self, eip: int, ebp: int, gpa: int, count: int) -> None:
        """XKVM_IO_COALESCE: one VMCALL exit, then each entry through the port bus, in order."""
        entries = coalesce_static.decode(self.m.read_physical, gpa, count)
        result = entries if isinstance(entries, int) else 0
        self._exit(ExitReason.VMCALL, Place.KERNEL, Direction.NONE, eip, coalesce_static.XKVM_IO_COALESCE, 0,
                   result & 0xFFFFFFFF, ebp)
        timers_changed = False
        if not isinstance(entries, int):
            for index, (direction, port, size, value) in enumerate(entries):
                dev = self._ports[port]
                if direction == Direction.IN:
                    value = dev.read(port, size) if dev is not None else (1 << (8 * size)) - 1
                    self.m.write_physical(coalesce_static.value_address(gpa, index), value.to_bytes(4, "little"))
                elif dev is not None:
                    dev.write(port, size, value)
                    timers_changed = timers_changed or self._timer_ports[port]
                place = self._places[port]
                cost = self._emulation_costs[place][direction]
                self.rec.emulate(eip, place, direction, port, size, value, cost)
                self.clock.extra += cost
        self._hypercall_return(result & 0xFFFFFFFF, eip + 3)
        self._reschedule(timers_changed=timers_changed)

    def _on_rdmsr(self, uc, address, size, _data):
        ecx, ebp = uc.reg_read_batch([UC_X86_REG_ECX, UC_X86_REG_EBP])
        value = self._read_msr(ecx)
        self._exit(ExitReason.MSR_READ, Place.KERNEL, Direction.IN, address, ecx, 8, value or 0, ebp)
        if value is None:
            self._exception(13, address, 0, ebp, recorded=True)
            return
        uc.reg_write_batch([(UC_X86_REG_EAX, value & 0xFFFFFFFF), (UC_X86_REG_EDX, value >> 32)])
        uc.reg_write(UC_X86_REG_EIP, address + 2)
        self._reschedule()

    def _on_wrmsr(self, uc, address, size, _data):
        ecx, eax, edx, ebp = uc.reg_read_batch([UC_X86_REG_ECX, UC_X86_REG_EAX, UC_X86_REG_EDX, UC_X86_REG_EBP])
        value = (edx << 32) | eax
        self._exit(ExitReason.MSR_WRITE, Place.KERNEL, Direction.OUT, address, ecx, 8, value, ebp)
        if (ecx not in self.msrs or ecx in READ_ONLY_MSRS) and not 0x4B564D00 <= ecx <= 0x4B564DFF:
            self._exception(13, address, 0, ebp, recorded=True)
            return
        if ecx != 0x10:
            self.msrs[ecx] = value
        uc.reg_write(UC_X86_REG_EIP, address + 2)
        self._reschedule()

    def _read_msr(self, index: int) -> int | None:
        if index == 0x10:  # TSC: the virtual clock
            return self.clock.now() & 0xFFFFFFFFFFFFFFFF
        if 0x4B564D00 <= index <= 0x4B564DFF:  # KVM paravirtual MSRs
            return self.msrs.get(index, 0)
        return self.msrs.get(index)

    def _on_intr(self, uc, intno, _data):
        eip, ebp = uc.reg_read_batch([UC_X86_REG_EIP, UC_X86_REG_EBP])
        if intno == 3 and self.m.read_virtual(eip - 1, 1) == b"\xcc":
            software = 1  # int3: EIP is already past the one-byte instruction
        elif intno >= 32 or self.m.read_virtual(eip - 2, 2) == bytes((0xCD, intno)):
            software = 2  # int n
        else:
            software = 0
        error = None
        if not software and intno in ERROR_CODE_VECTORS:
            error = self._page_fault_code(eip) if intno == 14 else 0
        self._exception(intno, eip, error, ebp, software=software)

    def _page_fault_code(self, eip: int) -> int:
        cr2 = self.uc.reg_read(UC_X86_REG_CR2)
        present = 1 if self.m.translate(cr2) is not None else 0
        user = 4 if self.uc.reg_read(UC_X86_REG_CS) & 3 else 0
        return present | user | (2 if self._writes_memory(eip) else 0)

    def _writes_memory(self, eip: int) -> bool:
        from capstone.x86 import X86_OP_MEM
        code = self.m.read_virtual(eip, 15)
        if not code:
            return False
        for insn in disasm_detail().disasm(code, eip, 1):
            for op in insn.operands:
                if op.type == X86_OP_MEM and op.access & 2:
                    return True
        return False

    def _exception(self, vector: int, eip: int, error: int | None, ebp: int, software: int = 0,
                   recorded: bool = False) -> bool:
        if not software and not recorded and vector in self.profile.trapped_exceptions:
            self._exit(ExitReason.EXCEPTION_NMI, Place.KERNEL, Direction.NONE, eip, vector, 0, error or 0, ebp)
        try:
            try:
                self.m.deliver(vector, eip, error, software=software)
            except GuestCrash:
                if software or vector == 8:
                    raise
                self.m.deliver(8, eip, 0)  # double fault
        except GuestCrash as crash:
            self._crash(f"triple fault: {crash.cause} (exception {vector})", eip)
            return True
        self._reschedule()
        return True

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

    # the run loop -------------------------------------------------------------------------------------
    def _next_due(self) -> int | None:
        due = None
        for dev in self.timed:
            t = dev.next_event()
            if t is not None and (due is None or t < due):
                due = t
        return due

    def _advance_devices(self, running: bool) -> None:
        """Fire every device event that is due. An event that fires while the guest runs is a host
        interrupt arriving in guest mode: an EXTERNAL_INTERRUPT exit at the current EIP."""
        now = self.clock.now()
        for dev in self.timed:
            fired = dev.advance(now)
            if fired and running:
                eip, ebp = self._eip_ebp()
                vector = dev.timer_vector() if hasattr(dev, "timer_vector") else self.pic.vector_of(dev.irq)
                for _ in range(fired):
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


def _no_op(*_args) -> None:
    return None


@functools.lru_cache(maxsize=1)
def _disasm():
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    return Cs(CS_ARCH_X86, CS_MODE_32)


@functools.lru_cache(maxsize=1)
def disasm_detail():
    """One capstone decoder with operand details, for the exits that need to decode an instruction."""
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    md = Cs(CS_ARCH_X86, CS_MODE_32)
    md.detail = True
    return md
