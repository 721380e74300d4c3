"""The host's KVM as a CPU engine (`--hypervisor kvm-hw`): the guest runs on the real CPU through
/dev/kvm (kvmapi.py), with no in-kernel PIT, PIC or local APIC, so that every port access, every MMIO
access and every HLT returns to vmexit in user space, where vmexit's own devices answer it.

What this engine gives is the part of the engine interface (engine/__init__.py) the machine and the
multiboot loader use -- guest RAM (`ram`: the anonymous shared mapping KVM runs the guest in, slot 0 at
guest-physical 0, so the loader, the devices' DMA and the stack walker read and write the very bytes
the guest sees), `write`, registers by name (`reg`, `set_reg`, `register`, `reader`, `writer`,
`eip_ebp`) -- plus what the kvm-hw run loop (hwvcpu.py) needs: `vm` (enter, interrupt, the kvm_run
page), `map_mmio` ranges, and string-I/O data. There is no instruction counter (KVM counts nothing the
run loop could use) and no per-instruction trap: `counter` only carries `stop_after_current`, which ends
the run loop at the next return from the guest; `flush_tlb` is nothing (KVM walks the guest's page
tables itself).

Boot state: the vCPU is put in 32-bit protected mode (CR0 = PE | ET, paging off, EFER 0), TR a busy
32-bit TSS and LDTR unusable (VM entry checks them), and every segment loaded by selector is given the
descriptor the guest's GDT holds for it (machine.boot_multiboot writes GRUB's flat GDT first), as a
CPU's segment load does.
"""
from __future__ import annotations

import struct

from . import kvmapi

#: General registers by vmexit's names -> kvm_regs fields (32-bit views of the 64-bit fields).
GENERAL = {"eax": "rax", "ebx": "rbx", "ecx": "rcx", "edx": "rdx", "esi": "rsi", "edi": "rdi", "esp": "rsp",
           "ebp": "rbp", "eip": "rip", "eflags": "rflags"}
CONTROL = ("cr0", "cr2", "cr3", "cr4")
SEGMENT_REGS = ("cs", "ds", "es", "ss", "fs", "gs")
CR0_PE, CR0_ET = 1, 1 << 4
TSS_BUSY_32 = 11


class _Counter:
    """No instructions are counted under KVM: this carries only the request to stop (vcpu.Ending)."""

    def __init__(self) -> None:
        self.stop = False

    def stop_after_current(self) -> None:
        self.stop = True

    def executed(self) -> int:
        return 0


class KvmEngine:
    name = "kvm"

    def __init__(self, ram_size: int, irqchip: bool = False):
        """irqchip: KVM's in-kernel PIC, I/O APIC and local APIC (calibration of in-kernel exits only)."""
        self.system = kvmapi.System()
        try:
            self.vm = kvmapi.VirtualMachine(self.system, ram_size, irqchip)
        except BaseException:
            self.system.close()
            raise
        self.ram = self.vm.ram
        self.run_state = self.vm.run
        self.counter = _Counter()
        self.mmio: list[tuple[int, int, object, object]] = []   # (base, end, on_read, on_write)
        self.vm.fetch_registers()
        self._protected_mode()

    def _protected_mode(self) -> None:
        s = self.vm.sregs()
        s.cr0 = CR0_PE | CR0_ET
        s.cr3 = s.cr4 = s.efer = 0
        s.tr.selector, s.tr.base, s.tr.limit = 0, 0, 0xFFFF
        s.tr.type, s.tr.present, s.tr.s, s.tr.unusable = TSS_BUSY_32, 1, 0, 0
        s.ldt.unusable, s.ldt.present = 1, 0
        self.vm.put_sregs(s)

    def reset_exception_state(self) -> None:
        """Nothing to reset: KVM delivers exceptions itself."""

    # registers ---------------------------------------------------------------------------------------
    def reg(self, name: str):
        field = GENERAL.get(name)
        if field is not None:
            return getattr(self.vm.regs(), field) & 0xFFFFFFFF
        s = self.vm.sregs()
        if name in CONTROL:
            return getattr(s, name) & 0xFFFFFFFF
        if name in SEGMENT_REGS:
            return getattr(s, name).selector
        if name in ("gdtr", "idtr"):
            table = s.gdt if name == "gdtr" else s.idt
            return 0, table.base, table.limit, 0
        if name == "tr":
            return s.tr.selector, s.tr.base, s.tr.limit, 0
        raise KeyError(f"no register {name!r} in the KVM engine")

    def register(self, name: str):
        return lambda: self.reg(name)

    def reader(self, names: list[str]):
        return lambda: tuple(self.reg(n) for n in names)

    def writer(self, names: list[str]):
        def write(*values) -> None:
            for name, value in zip(names, values):
                self.set_reg(name, value)
        return write

    def eip_ebp(self) -> tuple[int, int]:
        regs = self.vm.regs()
        return regs.rip & 0xFFFFFFFF, regs.rbp & 0xFFFFFFFF

    def set_reg(self, name: str, value) -> None:
        field = GENERAL.get(name)
        if field is not None:
            regs = self.vm.regs()
            setattr(regs, field, value & 0xFFFFFFFF)
            self.vm.put_regs(regs)
            return
        s = self.vm.sregs()
        if name in CONTROL:
            setattr(s, name, value & 0xFFFFFFFF)
        elif name in SEGMENT_REGS:
            self._load_segment(getattr(s, name), value, s.gdt.base)
        elif name in ("gdtr", "idtr"):
            table = s.gdt if name == "gdtr" else s.idt
            table.base, table.limit = value[1], value[2]
        else:
            raise KeyError(f"cannot set register {name!r} in the KVM engine")
        self.vm.put_sregs(s)

    def _load_segment(self, seg, selector: int, gdt_base: int) -> None:
        """The descriptor of `selector` from the guest's GDT into the segment cache (SDM vol. 3A, 3.4.5)."""
        low, high = struct.unpack_from("<II", self.ram, gdt_base + (selector & ~7))
        limit = (low & 0xFFFF) | (high & 0xF0000)
        seg.selector = selector
        seg.base = (low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF000000)
        seg.g = (high >> 23) & 1
        seg.limit = (limit << 12) | 0xFFF if seg.g else limit
        seg.type, seg.s, seg.dpl, seg.present = (high >> 8) & 0xF, (high >> 12) & 1, (high >> 13) & 3, (high >> 15) & 1
        seg.avl, seg.l, seg.db = (high >> 20) & 1, (high >> 21) & 1, (high >> 22) & 1
        seg.unusable = 0 if seg.present else 1

    def enter_ring0(self, ss: int, cs: int) -> None:
        self.set_reg("ss", ss)
        self.set_reg("cs", cs)

    # memory ------------------------------------------------------------------------------------------
    def write(self, paddr: int, data: bytes) -> None:
        self.ram[paddr:paddr + len(data)] = bytes(data)

    def flush_tlb(self) -> None:
        """Nothing: KVM walks the guest's page tables itself."""

    def map_mmio(self, base: int, size: int, on_read, on_write) -> None:
        """on_read(offset, size) -> value, on_write(offset, size, value): called by the run loop for the
        MMIO exits KVM returns in [base, base + size) (no memory slot there, so every access exits)."""
        self.mmio.append((base, base + size, on_read, on_write))

    def io_data(self) -> memoryview:
        """The data of the current KVM_EXIT_IO (count elements of size bytes, in the kvm_run page)."""
        io = self.run_state.exit.io
        start = io.data_offset
        return memoryview(self.vm.run_page)[start:start + io.count * io.size]

    def close(self) -> None:
        self.vm.close()
        self.system.close()


class KvmIrqchipEngine(KvmEngine):
    """The KVM engine with KVM's in-kernel PIC, I/O APIC and local APIC: `vmexit calibrate` measures
    the exits those handle inside the kernel with it (a kvm-hw run never has them)."""

    def __init__(self, ram_size: int):
        super().__init__(ram_size, irqchip=True)
