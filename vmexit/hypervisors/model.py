"""An exit model: which guest actions exit, where each is handled and what the guest sees -- built by
each hypervisor (kvm.py, xen.py, native.py) from components, not by subclassing:

- the port bus (ports.py): in/out, string I/O, the io_exit hook point;
- the MSR file (msr.py): rdmsr/wrmsr;
- the hypercall table (calls.py), entered by vmcall/vmmcall (Intel/AMD) and by any `int n` vector the
  hypervisor claims (Xen's int 0x82); without one, vmcall is an invalid opcode (#UD), as on bare metal;
- CPUID, answered by the hypervisor's function;
- exception entries the hypervisor claims (Xen takes #PF through its page-table manager); the rest go
  to the guest's IDT, exiting first (EXCEPTION_NMI) when the profile traps the vector
  (KVM's update_exception_bitmap());
- MMIO: the LAPIC page (0xfee00000) exits as APIC_ACCESS, handled in the kernel; other MMIO as
  EPT_VIOLATION, handled where the device's place says.
Every exit is recorded through the vCPU's one path (vcpu.exit).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from ..exits import Direction, ExitReason, Place
from ..machine import ERROR_CODE_VECTORS, GuestCrash
from .msr import MSRFile

APIC_PAGE = 0xFEE00000
#: Instructions that write the stack with no memory operand in capstone's view: their page fault is a
#: write (a user stack page still copy-on-write after fork faults "present, write"; Linux kills a
#: process whose fault on a present page says "read", as busybox's init showed).
STACK_WRITERS = frozenset({"push", "pushal", "pushfd", "pushf", "call", "lcall", "enter"})
_VMCALLS = (b"\x0f\x01\xc1", b"\x0f\x01\xd9")  # vmcall (Intel), vmmcall (AMD; KVM accepts both)


@dataclass
class ModelContext:
    """What a domain hands the hypervisor's builder for its exit model."""
    vcpu: object
    machine: object
    clock: object
    profile: object
    image: object
    ports: list            # (device, whether a write to it can move a device event), in bus order
    mmio: list             # likewise, for memory-mapped devices
    scanner: object = None  # codescan.CodeScanner: traps in the code the guest runs
    hooks: dict = field(default_factory=dict)   # hook point -> the optimization attached there
    console: Callable[[bytes], None] | None = None   # where a console hypercall writes
    domid: int = 0          # the domain's id on its host
    xen_host: object = None  # xen_host.XenHost: what Xen shares between the domains of one host


class ExitModel:
    def __init__(self, name: str, ctx: ModelContext, bus, cpuid: Callable[[int, int], tuple],
                 hypercalls=None, stats: Callable[[], dict] | None = None):
        self.name = name
        self.vcpu = ctx.vcpu
        self.m = ctx.machine
        self.engine = ctx.machine.engine
        self.profile = ctx.profile
        self.bus = bus
        self.msrs = MSRFile(ctx.vcpu, self.engine, ctx.clock, self.exception)
        self._scanner = ctx.scanner
        self.cpuid = cpuid
        self.hypercalls = hypercalls
        #: vector -> handler(eip, ebp) for the interrupts and exceptions the hypervisor takes itself
        self.entries: dict[int, Callable[[int, int], None]] = {}
        self._stats = stats
        self._cpuid_in = self.engine.reader(["eip", "ebp", "eax", "ecx"])
        self._cpuid_out = self.engine.writer(["eax", "ebx", "ecx", "edx"])
        self._eip_ebp = self.engine.reader(["eip", "ebp"])

    def stats(self) -> dict | None:
        """The model's run statistics (the registry says under which meta key they go)."""
        return self._stats() if self._stats is not None else None

    def install(self, mmio: list[tuple[object, int, bool]]) -> None:
        """Trap on the engine what this model exits on; mmio: (device, Place, moves device events)."""
        e = self.engine
        e.trap_port_in(self.bus.on_in)
        e.trap_port_out(self.bus.on_out)
        e.trap_cpuid(self._on_cpuid)
        e.trap_invalid(self._on_invalid)
        e.trap_interrupt(self._on_interrupt)
        self.msrs.install(self._scanner)
        for dev, place, moves_timers in mmio:
            self._map_mmio(dev, place, moves_timers)

    # CPUID, hypercalls -------------------------------------------------------------------------------
    def _on_cpuid(self) -> None:
        eip, ebp, leaf, sub = self._cpuid_in()
        regs = self.cpuid(leaf, sub)
        self.vcpu.exit(ExitReason.CPUID, Place.KERNEL, Direction.NONE, eip, leaf, 0, regs[0], ebp)
        self._cpuid_out(*regs)
        self.vcpu.reschedule()

    def _on_invalid(self) -> bool:
        eip, ebp = self.vcpu.eip_ebp()
        if self.hypercalls is not None and self.vcpu.code(eip, 3) in _VMCALLS:
            self.hypercalls.enter(eip, ebp, eip + 3)
            return True
        return self.exception(6, eip, None, ebp)  # #UD

    # interrupts and exceptions ---------------------------------------------------------------------
    def _on_interrupt(self, intno: int) -> None:
        eip, ebp = self._eip_ebp()
        entry = self.entries.get(intno)
        if entry is not None:
            entry(eip, ebp)
            return
        if intno == 3 and self.m.read_virtual(eip - 1, 1) == b"\xcc":
            software = 1  # int3: EIP is already past the one-byte instruction
        elif intno >= 32 or self.m.read_virtual(eip - 2, 2) == bytes((0xCD, intno)):
            software = 2  # int n
        else:
            software = 0
        error = None
        if not software and intno in ERROR_CODE_VECTORS:
            error = self.page_fault_error(eip) if intno == 14 else 0
        self.exception(intno, eip, error, ebp, software=software)

    def page_fault_error(self, eip: int) -> int:
        """The #PF error code: present from a page walk, write from the faulting instruction's operands."""
        cr2 = self.engine.reg("cr2")
        present = 1 if self.m.translate(cr2) is not None else 0
        user = 4 if self.engine.reg("cs") & 3 else 0
        return present | user | (2 if self._writes_memory(eip) else 0)

    def _writes_memory(self, eip: int) -> bool:
        from capstone.x86 import X86_OP_MEM
        code = self.m.read_virtual(eip, 15)
        if not code:
            return False
        for insn in disasm_detail().disasm(code, eip, 1):
            if insn.mnemonic in STACK_WRITERS:
                return True
            for op in insn.operands:
                if op.type == X86_OP_MEM and op.access & 2:
                    return True
        return False

    def exception(self, vector: int, eip: int, error: int | None, ebp: int, software: int = 0,
                  recorded: bool = False) -> bool:
        """Deliver an exception to the guest's IDT (a double fault if that fails, the end of the run
        if that fails too), exiting first when the profile traps it."""
        if not software and not recorded and vector in self.profile.trapped_exceptions:
            self.vcpu.exit(ExitReason.EXCEPTION_NMI, Place.KERNEL, Direction.NONE, eip, vector, 0, error or 0, ebp)
        try:
            try:
                self.m.deliver(vector, eip, error, software=software)
            except GuestCrash:
                if software or vector == 8:
                    raise
                self.m.deliver(8, eip, 0)  # double fault
        except GuestCrash as crash:
            self.vcpu.crash(f"triple fault: {crash.cause} (exception {vector})", eip)
            return True
        self.vcpu.reschedule()
        return True

    # MMIO ------------------------------------------------------------------------------------------
    def _map_mmio(self, dev, place: int, moves_timers: bool) -> None:
        base = dev.base
        vcpu = self.vcpu
        is_apic = base <= APIC_PAGE < base + dev.size

        def reason_place(addr: int) -> tuple[int, int]:
            if is_apic and APIC_PAGE <= addr < APIC_PAGE + 0x1000:
                return ExitReason.APIC_ACCESS, Place.KERNEL
            return ExitReason.EPT_VIOLATION, place

        def on_read(offset: int, size: int) -> int:
            icount = vcpu.now_icount()  # the device reads the clock
            value = dev.read(offset, size)
            reason, where = reason_place(base + offset)
            eip, ebp = vcpu.eip_ebp()
            vcpu.exit(reason, where, Direction.IN, eip, base + offset, size, value, ebp, icount)
            vcpu.reschedule()
            return value

        def on_write(offset: int, size: int, value: int) -> None:
            reason, where = reason_place(base + offset)
            eip, ebp = vcpu.eip_ebp()
            vcpu.exit(reason, where, Direction.OUT, eip, base + offset, size, value, ebp)
            dev.write(offset, size, value)
            vcpu.reschedule(timers_changed=moves_timers)

        self.engine.map_mmio(base, dev.size, on_read, on_write)


@functools.lru_cache(maxsize=1)
def disasm_detail():
    """One capstone decoder with operand details, for the exits that need to decode an instruction."""
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    md = Cs(CS_ARCH_X86, CS_MODE_32)
    md.detail = True
    return md
