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
#: seed 002's DBNet (hypervisors/dbnet.py): the front end's way into the NIC driver in the hypervisor,
#: and dom0's control operations on it. Our number (the thesis gives no interface); EBX the command.
DBNET_OP = 49

KVM: dict[int, str] = {
    1: "KVM_HC_VAPIC_POLL_IRQ",
    5: "KVM_HC_KICK_CPU",
    11: "KVM_HC_SCHED_YIELD",
    XKVM_IO_COALESCE: "XKVM_IO_COALESCE",
}

XEN: dict[int, str] = {
    0: "set_trap_table", 1: "mmu_update", 4: "set_callbacks", 12: "memory_op", 13: "multicall",
    14: "update_va_mapping", 17: "xen_version", 18: "console_io", 20: "grant_table_op", 26: "mmuext_op",
    29: "sched_op", 32: "event_channel_op", 33: "physdev_op", PF_OFFLOAD_REGISTER: "pf_offload_register",
    DBNET_OP: "dbnet_op",
}

#: The sub-operations of Xen's multiplexed hypercalls (the command in EBX), by hypercall number: a trace
#: keeps the command in its `subop` column and reports name the call `grant_table_op:copy`.
#: xen/include/public/{grant_table.h (GNTTABOP_*), event_channel.h (EVTCHNOP_*), sched.h (SCHEDOP_*),
#: memory.h (XENMEM_*), physdev.h}.
XEN_SUBOPS: dict[int, dict[int, str]] = {
    20: {0: "map_grant_ref", 1: "unmap_grant_ref", 2: "setup_table", 3: "dump_table", 4: "transfer",
         5: "copy", 6: "query_size", 7: "unmap_and_replace"},
    32: {0: "bind_interdomain", 1: "bind_virq", 2: "bind_pirq", 3: "close", 4: "send", 5: "status",
         6: "alloc_unbound", 7: "bind_ipi", 8: "bind_vcpu", 9: "unmask", 10: "reset"},
    29: {0: "yield", 1: "block", 2: "shutdown", 3: "poll"},
    12: {7: "add_to_physmap"},
    33: {6: "set_iopl"},    # physdev.h (PHYSDEVOP_*)
    DBNET_OP: {0: "attach", 1: "set_mac", 2: "connect", 3: "xmit"},   # ours (hypervisors/dbnet.py)
}


#: Sub-operations whose exit `size` counts bytes, not requests (grant copy: the bytes copied). A profile
#: without a key of their own prices them as one VMCALL round trip, not its per-request price per byte.
SIZE_IN_BYTES: frozenset[str] = frozenset({"grant_table_op:copy"})


def name(table: dict[int, str], nr: int) -> str:
    return table.get(nr, f"hypercall {nr}")


def full_name(table: dict[int, str], subops: dict[int, dict[int, str]], nr: int, subop: int) -> str:
    """`grant_table_op:copy` for a multiplexed call, the plain name for any other."""
    ops = subops.get(nr)
    if ops is None:
        return name(table, nr)
    return f"{name(table, nr)}:{ops.get(subop, subop)}"
