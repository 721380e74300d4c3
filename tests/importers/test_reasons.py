"""The kernel's reason names -> ExitReason: Intel's are ours, AMD's map to the same exit, others UNKNOWN."""
from __future__ import annotations

import pytest

from vmexit.exits import ExitReason as R
from vmexit.importers.reasons import SVM, VMX, classify


@pytest.mark.parametrize("name", [r.name for r in R if r != R.UNKNOWN])
def test_intel_names_are_ours(name):
    assert classify(name) == (R[name], VMX)


@pytest.mark.parametrize("name,reason", [
    ("io", R.IO_INSTRUCTION), ("npf", R.EPT_VIOLATION), ("hlt", R.HLT), ("cpuid", R.CPUID),
    ("msr", R.MSR_READ), ("interrupt", R.EXTERNAL_INTERRUPT), ("vintr", R.INTERRUPT_WINDOW),
    ("vmmcall", R.VMCALL), ("hypercall", R.VMCALL), ("shutdown", R.TRIPLE_FAULT), ("nmi", R.EXCEPTION_NMI),
    ("PF excp", R.EXCEPTION_NMI), ("UD excp", R.EXCEPTION_NMI), ("avic_unaccelerated_access", R.APIC_ACCESS),
])
def test_amd_names(name, reason):
    assert classify(name) == (reason, SVM)


@pytest.mark.parametrize("name,reason", [("EPT_MISCONFIG", R.EPT_VIOLATION), ("PENDING_INTERRUPT", R.INTERRUPT_WINDOW),
                                         ("APIC_WRITE", R.APIC_ACCESS), ("EOI_INDUCED", R.APIC_ACCESS)])
def test_intel_aliases(name, reason):
    assert classify(name) == (reason, VMX)


@pytest.mark.parametrize("name", ["CR_ACCESS", "PAUSE_INSTRUCTION", "pause", "0x4d", "UNKNOWN", "io excp2"])
def test_anything_else_is_unknown(name):
    assert classify(name) == (R.UNKNOWN, None)
