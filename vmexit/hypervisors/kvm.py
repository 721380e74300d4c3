"""The KVM exit model: which guest actions exit, where KVM handles them and what the guest sees (the
run loop they share with the other models is vcpu.py).

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
from typing import Callable

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR
from unicorn.unicorn_py3.arch.intel import HOOK_INSN_IN_CFUNC, HOOK_INSN_OUT_CFUNC
from unicorn.x86_const import (
    UC_X86_INS_CPUID, UC_X86_INS_IN, UC_X86_INS_OUT, UC_X86_REG_CR2, UC_X86_REG_CS, UC_X86_REG_EAX,
    UC_X86_REG_EBP, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EIP, UC_X86_REG_ESI,
)

from ..clock import Clock
from ..costs import Profile
from ..exits import Direction, ExitReason, ExitRecorder, Place
from ..loader import Image
from .._uc import RegisterReader, RegisterWriter, add_insn_hook
from ..machine import ERROR_CODE_VECTORS, GuestCrash, X86Machine
from ..optimizations import coalesce_static
from ..vcpu import VCPU

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


class KVM(VCPU):
    """One vCPU under the KVM model, with its devices on the port bus."""

    name = "kvm"
    cpuid_signature = "KVMKVMKVM\0\0\0"

    def __init__(self, machine: X86Machine, image: Image, clock: Clock, profile: Profile,
                 recorder: ExitRecorder, port_devices: list, timed_devices: list, pic,
                 mmio_devices: list = (), msr_init: dict[int, int] | None = None, lookahead=None,
                 host_timer_hz: int = 0):
        # the guest's timers that KVM runs as host hrtimers: the in-kernel ones (PIT, LAPIC timer)
        host_timers = tuple(d for d in timed_devices if DEVICE_PLACES.get(d.name) == Place.KERNEL)
        super().__init__(machine, clock, profile, recorder, timed_devices, pic, host_timers, host_timer_hz)
        self._ports: list = [None] * 0x10000
        self._places = bytearray([Place.USER]) * 0x10000
        self._timer_ports = [False] * 0x10000
        for dev in port_devices:
            for p in dev.ports:
                self._ports[p] = dev
                self._places[p] = DEVICE_PLACES.get(dev.name, Place.USER)
                self._timer_ports[p] = self._changes_timers(dev)
        self.msrs: dict[int, int] = dict(MSRS)
        self.msrs.update(msr_init or {})
        self._string_io: dict[int, tuple[Direction, bool] | None] = {}
        self._str_state = (-1, -1, 0)  # (eip, next icount, bytes in the current exit)
        self._io_costs = [[self._costs[(ExitReason.IO_INSTRUCTION, p, d)] for d in Direction] for p in Place]
        self._emulation_costs = [[profile.emulation_cost(p, d) for d in Direction] for p in Place]
        # hook point io_exit (optimizations/coalesce_dynamic.py): the look-ahead, and the run it
        # planned at the last exit (exit count, that exit's icount, {address: instructions after})
        self._lookahead = lookahead
        self._merge: tuple[int, int, dict[int, int]] | None = None
        self._hypercall_args = RegisterReader(self.uc, [UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX,
                                                        UC_X86_REG_EDX, UC_X86_REG_ESI])
        self._hypercall_return = RegisterWriter(self.uc, [UC_X86_REG_EAX, UC_X86_REG_EIP])
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

    # the exit path: port I/O, CPUID, hypercalls, MSRs, exceptions ---------------------------------
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

def _no_op(*_args) -> None:
    return None


@functools.lru_cache(maxsize=1)
def disasm_detail():
    """One capstone decoder with operand details, for the exits that need to decode an instruction."""
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    md = Cs(CS_ARCH_X86, CS_MODE_32)
    md.detail = True
    return md
