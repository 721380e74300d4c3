"""Hypercall numbers and names, as data: the models that handle hypercalls and the reports that name
them both import this, so that analysing a trace needs no emulator.

KVM's numbers are include/uapi/linux/kvm_para.h; XKVM_IO_COALESCE is the KVM paper's static I/O
coalescing hypercall (Zhang et al., Chinese Journal of Computers 2010; the number is ours, see
optimizations/coalesce_static.py). Xen's are xen/include/public/xen.h (__HYPERVISOR_*), plus ours for
the page-fault offload of the Chang Gung University report's "Enhanced Xen" (optimizations/pf_offload.py).
"""
from __future__ import annotations

XKVM_IO_COALESCE = 0x100
PF_OFFLOAD_REGISTER = 48

KVM: dict[int, str] = {
    1: "KVM_HC_VAPIC_POLL_IRQ",
    5: "KVM_HC_KICK_CPU",
    11: "KVM_HC_SCHED_YIELD",
    XKVM_IO_COALESCE: "XKVM_IO_COALESCE",
}

XEN: dict[int, str] = {
    0: "set_trap_table", 1: "mmu_update", 12: "memory_op", 13: "multicall", 14: "update_va_mapping",
    18: "console_io", 26: "mmuext_op", 29: "sched_op", PF_OFFLOAD_REGISTER: "pf_offload_register",
}


def name(table: dict[int, str], nr: int) -> str:
    return table.get(nr, f"hypercall {nr}")
