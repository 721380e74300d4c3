"""The kernel's exit-reason names, as kvm:kvm_exit prints them, mapped to vmexit's ExitReason.

kvm_exit prints the reason by name (arch/x86/kvm/trace.h, __print_symbolic): on Intel from
VMX_EXIT_REASONS (arch/x86/include/uapi/asm/vmx.h: the VMX basic exit reasons, the names `perf kvm
stat` shows and ExitReason uses), on AMD from SVM_EXIT_REASONS (arch/x86/include/uapi/asm/svm.h:
lower-case names of SVM exit codes: io, msr, hlt, npf, vmmcall...). A VMX name that is an ExitReason
is that reason; the rest of both tables map here to the VMX reason that means the same exit, one
explicit row each. A name in neither (a reason this table does not know, a newer kernel's, or the
hexadecimal number __print_symbolic prints for a code it has no name for) is UNKNOWN: kept as a row,
never dropped, and counted by its own name in the trace's meta.

Two rows are choices rather than renames, said where they stand: EPT_MISCONFIG is how KVM on Intel sees
emulated MMIO (it marks MMIO pages' EPT entries misconfigured, arch/x86/kvm/mmu/spte.h), so it counts
as EPT_VIOLATION, the reason vmexit's KVM model gives an MMIO exit; AMD's single `msr` exit is
MSR_WRITE when EXITINFO1 is 1 (AMD APM vol. 2, "MSR Intercepts": 0 for RDMSR, 1 for WRMSR) or a kvm_msr
event of the exit says msr_write, MSR_READ otherwise.
"""
from __future__ import annotations

from ..exits import ExitReason

R = ExitReason

#: Intel names that are not ExitReason members but mean one (older kernels' names included).
VMX_ALIASES: dict[str, ExitReason] = {
    "PENDING_INTERRUPT": R.INTERRUPT_WINDOW,   # vmx.h's name for reason 7 before it became INTERRUPT_WINDOW
    "EPT_MISCONFIG": R.EPT_VIOLATION,          # emulated MMIO on Intel (see the module docstring)
    # with APIC virtualization the guest's LAPIC writes exit after the fact (Intel SDM vol. 3C, 29.4.3.3
    # APIC-write VM exits; 29.1.4 EOI virtualization): the LAPIC accesses vmexit's model calls APIC_ACCESS
    "APIC_WRITE": R.APIC_ACCESS,
    "EOI_INDUCED": R.APIC_ACCESS,
}

#: AMD names (svm.h, SVM_EXIT_REASONS) -> the VMX reason of the same exit.
SVM_NAMES: dict[str, ExitReason] = {
    "io": R.IO_INSTRUCTION,
    "hlt": R.HLT,
    "cpuid": R.CPUID,
    "msr": R.MSR_READ,            # or MSR_WRITE: decided per exit (module docstring)
    "npf": R.EPT_VIOLATION,       # nested page fault: AMD's EPT violation, MMIO included
    "interrupt": R.EXTERNAL_INTERRUPT,
    "nmi": R.EXCEPTION_NMI,
    "vintr": R.INTERRUPT_WINDOW,  # virtual interrupt intercept: KVM's interrupt window on AMD
    "vmmcall": R.VMCALL,          # older svm.h
    "hypercall": R.VMCALL,        # svm.h since VMMCALL was renamed in its table
    "shutdown": R.TRIPLE_FAULT,
    "avic_unaccelerated_access": R.APIC_ACCESS,  # an APIC register access AVIC leaves to KVM
}
#: AMD exception intercepts print as "<mnemonic> excp" ("PF excp", "UD excp"): VMX's EXCEPTION_NMI.
SVM_EXCEPTION_SUFFIX = " excp"

VMX, SVM = "VMX", "SVM"


def classify(name: str) -> tuple[ExitReason, str | None]:
    """(reason, isa) of a kvm_exit reason name; isa is None for a name in neither table (UNKNOWN)."""
    if name in ExitReason.__members__ and name != "UNKNOWN":
        return ExitReason[name], VMX
    if name in VMX_ALIASES:
        return VMX_ALIASES[name], VMX
    if name in SVM_NAMES:
        return SVM_NAMES[name], SVM
    if name.endswith(SVM_EXCEPTION_SUFFIX):
        return R.EXCEPTION_NMI, SVM
    return R.UNKNOWN, None
