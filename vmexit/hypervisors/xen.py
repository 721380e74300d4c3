"""The Xen PV memory model (after the Chang Gung University research report on Xen page faults): page
tables the guest may not write, hypercalls that update them one by one or in batches, and page faults
that go through Xen first. Built from the same components as KVM's model (model.py: ports, MSRs, MMIO, exceptions), with:

- Hypercalls (Xen's 32-bit ABI, xen/include/public/xen.h): nr in EAX, arguments in EBX, ECX, EDX, ESI,
  EDI, result in EAX; entered with `int 0x82` (32-bit PV, the hypercall page's stubs) or `vmcall`
  (HVM/PVH style). Each is one VMCALL exit with the hypercall number as qualifier; for the batched ones
  the exit's `size` holds the number of requests (priced per request by the profile). Implemented:
  set_trap_table (0), mmu_update (1), memory_op (12: XENMEM_add_to_physmap of the shared info page
  and grant-table frames), multicall (13), update_va_mapping (14), console_io (18), mmuext_op (26),
  sched_op (29); split-driver I/O's calls in xen_io.py, physdev_op set_iopl in xen_physdev.py.
  Others return -ENOSYS; bad arguments -EINVAL / -EFAULT, never a crashed run.
- The page-table manager (xen_mm.py). The guest maps its tables read-only, so a direct store into one
  faults: Xen emulates it (writable page tables, "ptwr"): one EXCEPTION_NMI exit, the store decoded,
  validated as an mmu_update request and applied.
- A page fault that is not such a store goes to Xen (one EXCEPTION_NMI exit, place GUEST) and is bounced
  to the guest's handler (set_trap_table, else its IDT); the faulting address is in the shared info
  page's vcpu_info[0].arch.cr2, where a PV guest reads it.
- Hook point `page_fault` (optimizations/pf_offload.py, `--opt xen-pf-offload`): demand-zero and
  copy-on-write faults in the range a guest registered are fixed in Xen: one EXCEPTION_NMI exit handled
  in Xen (direction IN: a page given; size 1: one page zeroed or copied) and no bounce.
- CPUID leaf 0x40000000 says "XenVMMXenVMM", so a guest picks its Xen paths as Linux's pv_ops do.
- Split-driver I/O (xen_io.py): set_callbacks (4), xen_version (17), grant_table_op (20),
  event_channel_op (32), sched_op block / poll / yield, memory_op XENMAPSPACE_grant_table, and the
  event upcall after every hypercall and when the host gives the domain the CPU. The event channels and
  grant tables are the host's (xen_host.py); their counts join the run statistics only on a host of
  several domains (a domain run alone keeps today's statistics).
- DBNet (seed 002, dbnet.py), when the host has one: dbnet_op (49, ours), the front end's way into the
  NIC driver the hypervisor runs, and dom0's control operations on it.
- A multiplexed call's command is its exit's `subop`, priced by the profile's `VMCALL/<name>:<subop>`
  where it has one.
"""
from __future__ import annotations

import struct

from ..exits import Direction, ExitReason, Place
from ..machine import GuestCrash
from ..vcpu import RunEnd
from . import hypercalls as names
from . import kvm
from .calls import Handled, HypercallTable
from .model import ExitModel, disasm_detail
from .xen_host import XenHost
from .xen_io import XenIO
from .xen_mm import PageTables
from .xen_physdev import PhysDev

HYPERCALL_VECTOR = 0x82
EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38
SIGNATURE = "XenVMMXenVMM"

MMU_NORMAL_PT_UPDATE = 0
MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_UNPIN_TABLE = 0, 1, 4
MMUEXT_NEW_BASEPTR, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL = 5, 6, 7
XENMEM_ADD_TO_PHYSMAP, XENMAPSPACE_SHARED_INFO, XENMAPSPACE_GRANT_TABLE = 7, 0, 1
CONSOLEIO_WRITE = 0
SCHEDOP_YIELD, SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_POLL = 0, 1, 2, 3
MAX_BATCH = 512          # requests per mmu_update / mmuext_op / multicall call (ours: a page's worth)
VCPU0_CR2 = 8            # offsetof(shared_info, vcpu_info[0].arch.cr2) on x86_32
PAGE = 0x1000

# mov r/m32, r32 (89) and mov r/m32, imm32 (c7 /0): the stores a guest writes a PTE with
_STORE_OPCODES = {0x89, 0xC7}
_REGISTERS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp")


def build(ctx) -> ExitModel:
    tables = PageTables(ctx.machine, ctx.vcpu.paging_changed)
    io = XenIO(ctx.domid, ctx.vcpu, ctx.machine, ctx.clock, ctx.profile, ctx.xen_host or XenHost(),
               privileged=ctx.domid == 0)
    xen = Xen(ctx.vcpu, ctx.machine, tables, ctx.console, ctx.hooks.get("page_fault"), io,
              report_io=ctx.xen_host is not None)
    bus = kvm.port_bus(ctx)
    physdev = PhysDev(ctx.machine, privileged=ctx.domid == 0, go_direct=bus.direct)
    handlers = {**xen.handlers(), **physdev.handlers()}
    dbnet = getattr(ctx.xen_host, "dbnet", None)
    if dbnet is not None:   # seed 002: the NIC driver in the hypervisor (dbnet.py)
        handlers[names.DBNET_OP] = dbnet.handler(ctx.domid, ctx.machine, ctx.clock, privileged=ctx.domid == 0)
        xen.more_stats = lambda: dbnet.domain_stats(ctx.domid)
    xen.table = HypercallTable(ctx.vcpu, ctx.machine.engine, handlers, -ENOSYS,
                               ("eax", "ebx", "ecx", "edx", "esi", "edi"), subops=frozenset(names.XEN_SUBOPS),
                               prices=subop_prices(ctx.profile))
    xen.table.after = io.deliver
    ctx.vcpu.on_entry = io.deliver
    model = ExitModel("xen-pv", ctx, bus, kvm.cpuid(ctx.profile, SIGNATURE, 0x40000002), xen.table,
                      stats=xen.stats)
    faults = Faults(xen, model)
    model.entries = {HYPERCALL_VECTOR: faults.hypercall, 14: faults.page_fault}
    model.install(kvm.mmio(ctx))
    return model


def subop_prices(profile) -> dict[tuple[int, int], tuple[int, int]]:
    """(hypercall nr, subop) -> (cycles, per item) for the sub-operations the profile prices apart."""
    prices = {}
    for nr, ops in names.XEN_SUBOPS.items():
        for subop in ops:
            price = profile.call_price(names.full_name(names.XEN, names.XEN_SUBOPS, nr, subop))
            if price is not None:
                prices[nr, subop] = price
    return prices


class Xen:
    """Xen's side of one PV domain: its page tables, trap table, shared info page and hypercalls."""

    def __init__(self, vcpu, machine, tables: PageTables, console=None, offload=None, io: XenIO | None = None,
                 report_io: bool = False):
        self.io = io
        self.report_io = report_io
        self.vcpu = vcpu
        self.m = machine
        self.tables = tables
        self.console = console
        self.offload = offload
        self.table: HypercallTable | None = None
        self.more_stats = None    # a component's per-domain counts (DBNet's), merged into stats()
        self.shared_info: int | None = None  # guest-physical address of the shared info page
        self.traps: dict[int, tuple[int, int]] = {}   # vector -> (cs, handler address)
        self.counts = {"pt_writes_emulated": 0, "faults_bounced": 0, "faults_offloaded": 0}

    def stats(self) -> dict:
        stats = {"pt_updates": self.tables.updates, **self.counts}
        if self.report_io:
            stats.update(self.io.stats())
        if self.more_stats is not None:
            stats.update(self.more_stats())
        return stats

    def handlers(self) -> dict:
        """Hypercall handlers by number (explicit; names in hypercalls.XEN)."""
        return {0: self.set_trap_table, 1: self.mmu_update, 12: self.memory_op, 13: self.multicall,
                14: self.update_va_mapping, 18: self.console_io, 26: self.mmuext_op, 29: self.sched_op,
                names.PF_OFFLOAD_REGISTER: self.pf_offload_register, **self.io.handlers()}

    def _batch(self, addr: int, count: int, done_ptr: int, fmt: str, apply) -> tuple[int, int, int]:
        """A batched hypercall's frame (mmu_update, mmuext_op): 1..MAX_BATCH requests of `fmt` read from
        guest memory, applied in order until one fails, the number done written to done_ptr.
        Returns (result, requests priced, requests done)."""
        if not 1 <= count <= MAX_BATCH:
            return -EINVAL, 0, 0
        raw = self.m.read_virtual(addr, struct.calcsize(fmt) * count)
        if raw is None:
            return -EFAULT, 0, 0
        done = result = 0
        for request in struct.iter_unpack(fmt, raw):
            result = apply(*request)
            if result:
                break
            done += 1
        if done_ptr:
            self.m.write_virtual(done_ptr, struct.pack("<I", done))
        return result, count, done

    def mmu_update(self, args) -> Handled:
        def update(ptr: int, val: int) -> int:
            if ptr & 3 != MMU_NORMAL_PT_UPDATE or ptr >> 32 or val >> 32:
                return -EINVAL
            return self.tables.update(ptr, val, flush=False)
        result, count, done = self._batch(args[0], args[1], args[2], "<QQ", update)
        if done:
            self.tables.flush()
        return Handled(result, count)

    def update_va_mapping(self, args) -> Handled:
        # the flags (UVMF_INVLPG, UVMF_TLB_FLUSH) need no handling: an update always drops the cached
        # translations, which a guest cannot tell from the flush it asked for
        va, lo, hi = args[0], args[1], args[2]
        entry = self.tables.entry_of(va)
        if hi or entry is None:
            return Handled(-EINVAL, 1)
        return Handled(self.tables.update(entry, lo), 1)

    def mmuext_op(self, args) -> Handled:
        result, count, _ = self._batch(args[0], args[1], args[2], "<III", self._mmuext)
        return Handled(result, count)

    def _mmuext(self, cmd: int, arg1: int, _arg2: int) -> int:
        if cmd in (MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE):
            return self.tables.pin(arg1, 1 if cmd == MMUEXT_PIN_L1_TABLE else 2)
        if cmd == MMUEXT_UNPIN_TABLE:
            return self.tables.unpin(arg1)
        if cmd == MMUEXT_NEW_BASEPTR:
            return self.tables.new_baseptr(arg1)
        if cmd in (MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL):
            self.tables.flush()
            return 0
        return -EINVAL

    def multicall(self, args) -> Handled:
        calls, count = args[0], args[1]
        if not 1 <= count <= MAX_BATCH:
            return Handled(-EINVAL)
        raw = self.m.read_virtual(calls, 32 * count)
        if raw is None:
            return Handled(-EFAULT)
        for i, entry in enumerate(struct.iter_unpack("<8I", raw)):
            op, _result, *call_args = entry
            # a multicall may not nest
            result = -ENOSYS if op == 13 else self.table.call(op, tuple(call_args[:5])).result
            self.m.write_virtual(calls + 32 * i + 4, struct.pack("<I", result & 0xFFFFFFFF))
        return Handled(0, count)

    def set_trap_table(self, args) -> Handled:
        table = args[0]
        for i in range(256):
            raw = self.m.read_virtual(table + 8 * i, 8)
            if raw is None:
                return Handled(-EFAULT, i)
            vector, _flags, cs, address = struct.unpack("<BBHI", raw)
            if address == 0:
                return Handled(0, i)
            self.traps[vector] = (cs, address)
        return Handled(-EINVAL, 256)

    def memory_op(self, args) -> Handled:
        cmd, arg = args[0], args[1]
        if cmd != XENMEM_ADD_TO_PHYSMAP:
            return Handled(-ENOSYS, 1)
        raw = self.m.read_virtual(arg, 16)
        if raw is None:
            return Handled(-EFAULT, 1)
        _domid, _size, space, idx, gpfn = struct.unpack("<HHIII", raw)
        if space == XENMAPSPACE_GRANT_TABLE:
            return Handled(0 if self.io.grants_place(idx, gpfn) else -EINVAL, 1)
        if space != XENMAPSPACE_SHARED_INFO or not self.m.in_ram(gpfn << 12, PAGE):
            return Handled(-EINVAL, 1)
        self.shared_info = gpfn << 12
        self.io.events.shared.place(self.shared_info)   # the event state so far (zeros before any event)
        return Handled(0, 1)

    def console_io(self, args) -> Handled:
        cmd, count, buf = args[0], args[1], args[2]
        if cmd != CONSOLEIO_WRITE:
            return Handled(-ENOSYS, 1)
        data = self.m.read_virtual(buf, count) if count <= 4096 else None
        if data is None:
            return Handled(-EFAULT, 1)
        if self.console is not None:
            self.console(data)
        return Handled(count, 1)

    def pf_offload_register(self, args) -> Handled:
        if self.offload is None:
            return Handled(-ENOSYS)
        return Handled(self.offload.register(args[0]), 1)

    def sched_op(self, args) -> Handled:
        cmd, arg = args[0], args[1]
        if cmd == SCHEDOP_YIELD:
            return self.io.yield_()
        if cmd == SCHEDOP_BLOCK:
            return self.io.block()
        if cmd == SCHEDOP_POLL:
            return self.io.poll(arg)
        if cmd == SCHEDOP_SHUTDOWN:
            raw = self.m.read_virtual(arg, 4)
            if raw is None:
                return Handled(-EFAULT, 1)
            reason = struct.unpack("<I", raw)[0]
            self.vcpu.ending.finish(RunEnd("exited", f"domain shut down with reason {reason} (sched_op "
                                                     "SCHEDOP_shutdown)", guest_value=reason))
            return Handled(0, 1)
        return Handled(-ENOSYS, 1)


class Faults:
    """What enters Xen through the IDT vectors it owns: int 0x82 hypercalls and page faults."""

    def __init__(self, xen: Xen, model: ExitModel):
        self.xen = xen
        self.model = model
        self.vcpu = model.vcpu
        self.m = model.m
        self.engine = model.engine

    def hypercall(self, eip: int, ebp: int) -> None:
        self.xen.table.enter(eip - 2, ebp, eip)  # EIP is past the int 0x82
        self.m.reset_exception_state()

    def page_fault(self, eip: int, ebp: int) -> None:
        cr2 = self.engine.reg("cr2")
        error = self.model.page_fault_error(eip)
        paddr = self.m.translate(cr2)
        if paddr is not None and error & 2 and self.xen.tables.is_table(paddr >> 12) \
                and self._emulate_pt_store(eip, ebp, paddr):
            return
        if self.xen.offload is not None and self._offload(eip, ebp, cr2, error):
            return
        self.vcpu.exit(ExitReason.EXCEPTION_NMI, Place.GUEST, Direction.NONE, eip, 14, 0, error, ebp)
        self.xen.counts["faults_bounced"] += 1
        if self.xen.shared_info is not None:
            self.m.write_physical(self.xen.shared_info + VCPU0_CR2, struct.pack("<I", cr2))
        self._bounce(14, eip, error)

    def _offload(self, eip: int, ebp: int, cr2: int, error: int) -> bool:
        """Enhanced Xen: fix a demand-zero or copy-on-write fault here; the instruction then retries.
        One exit handled in Xen, direction IN (a page given to the guest), size 1 (one page filled)."""
        pte_addr = self.xen.tables.entry_of(cr2)
        raw = self.m.read_physical(pte_addr, 4) if pte_addr is not None else None
        if raw is None:
            return False
        fixed = self.xen.offload.resolve(cr2, bool(error & 2), pte_addr, struct.unpack("<I", raw)[0])
        if fixed is None:
            return False
        _kind, ptr, pte = fixed
        if self.xen.tables.update(ptr, pte) != 0:
            return False
        self.vcpu.exit(ExitReason.EXCEPTION_NMI, Place.KERNEL, Direction.IN, eip, 14, 1, cr2, ebp)
        self.xen.counts["faults_offloaded"] += 1
        self.m.reset_exception_state()
        self.vcpu.reschedule()
        return True

    def _bounce(self, vector: int, eip: int, error: int | None) -> None:
        """Enter the guest's handler: the one set_trap_table registered, else the IDT's."""
        traps = self.xen.traps
        try:
            if vector in traps:
                self.m.deliver_to(traps[vector][1], traps[vector][0], eip, error)
            else:
                self.m.deliver(vector, eip, error)
        except GuestCrash as crash:
            self.vcpu.crash(f"triple fault: {crash.cause} (exception {vector})", eip)
            return
        self.vcpu.reschedule()

    def _emulate_pt_store(self, eip: int, ebp: int, paddr: int) -> bool:
        """A store into a page table: decode it, validate it as an update, apply it, skip it."""
        decoded = self._decode_store(eip)
        if decoded is None:
            return False
        length, value = decoded
        self.vcpu.exit(ExitReason.EXCEPTION_NMI, Place.KERNEL, Direction.OUT, eip, 14, 1, value, ebp)
        if self.xen.tables.update(paddr & ~3, value) != 0:
            return False  # Xen refuses it: the guest gets the fault
        self.xen.counts["pt_writes_emulated"] += 1
        self.engine.set_reg("eip", eip + length)
        self.m.reset_exception_state()
        self.vcpu.reschedule()
        return True

    def _decode_store(self, eip: int) -> tuple[int, int] | None:
        from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_OP_REG
        code = self.m.read_virtual(eip, 15)
        if not code:
            return None
        insn = next(disasm_detail().disasm(code, eip, 1), None)
        if insn is None or insn.mnemonic != "mov" or insn.opcode[0] not in _STORE_OPCODES:
            return None
        dst, src = insn.operands
        if dst.type != X86_OP_MEM or dst.size != 4:
            return None
        if src.type == X86_OP_IMM:
            return insn.size, src.imm & 0xFFFFFFFF
        name = insn.reg_name(src.reg)
        if src.type == X86_OP_REG and name in _REGISTERS:
            return insn.size, self.engine.reg(name) & 0xFFFFFFFF
        return None
