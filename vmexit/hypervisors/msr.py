"""The MSRs a vCPU has, and the MSR_READ / MSR_WRITE exits.

The table is the architectural reset values (Intel SDM vol. 4) of what KVM saves and emulates
(msrs_to_save / emulated_msrs in arch/x86/kvm/x86.c); any other index raises #GP in the guest, as KVM
does with ignore_msrs=0. The TSC (0x10) reads the virtual clock. 0x11/0x12 and 0x4b564d00-0x4b564dff
are KVM's paravirtual clock MSRs.

rdmsr/wrmsr cannot be trapped through Unicorn 2.1.4's binding; the code scanner (codescan.py) finds them
in every block of code the guest runs, its own image or code it writes at run time.
"""
from __future__ import annotations

from ..codescan import Trap
from ..exits import Direction, ExitReason, Place

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
KVM_PV_MSRS = range(0x4B564D00, 0x4B564E00)


class MSRFile:
    """MSR exits for one vCPU; `exception(vector, eip, error, ebp)` raises #GP in the guest."""

    def __init__(self, vcpu, engine, clock, exception):
        self.vcpu = vcpu
        self._engine = engine
        self._clock = clock
        self._exception = exception
        self.msrs: dict[int, int] = dict(MSRS)
        self._read_args = engine.reader(["ecx", "ebp"])
        self._write_args = engine.reader(["ecx", "eax", "edx", "ebp"])

    def install(self, scanner) -> None:
        """The code scanner ends a slice before every rdmsr/wrmsr the guest runs; the vCPU then counts
        the instruction and calls these handlers, which act for it."""
        scanner.add(Trap("rdmsr", frozenset({"rdmsr"}), handle=self._on_rdmsr))
        scanner.add(Trap("wrmsr", frozenset({"wrmsr"}), handle=self._on_wrmsr))

    def _on_rdmsr(self, address: int) -> None:
        ecx, ebp = self._read_args()
        value = self.read(ecx)
        self.vcpu.exit(ExitReason.MSR_READ, Place.KERNEL, Direction.IN, address, ecx, 8, value or 0, ebp)
        if value is None:
            self._exception(13, address, 0, ebp, recorded=True)
            return
        e = self._engine
        e.set_reg("eax", value & 0xFFFFFFFF)
        e.set_reg("edx", value >> 32)
        e.set_reg("eip", address + 2)
        self.vcpu.reschedule()

    def _on_wrmsr(self, address: int) -> None:
        ecx, eax, edx, ebp = self._write_args()
        value = (edx << 32) | eax
        self.vcpu.exit(ExitReason.MSR_WRITE, Place.KERNEL, Direction.OUT, address, ecx, 8, value, ebp)
        if (ecx not in self.msrs or ecx in READ_ONLY_MSRS) and ecx not in KVM_PV_MSRS:
            self._exception(13, address, 0, ebp, recorded=True)
            return
        if ecx != 0x10:
            self.msrs[ecx] = value
        self._engine.set_reg("eip", address + 2)
        self.vcpu.reschedule()

    def read(self, index: int) -> int | None:
        if index == 0x10:  # TSC: the virtual clock
            return self._clock.now() & 0xFFFFFFFFFFFFFFFF
        if index in KVM_PV_MSRS:
            return self.msrs.get(index, 0)
        return self.msrs.get(index)
