"""The Xen PV memory model (PAPERS.md section 2, seeds/001): page tables the guest may not write,
hypercalls that update them one by one or in batches, and page faults that go through Xen first.

Same vCPU and run loop (vcpu.py), devices, and port and MSR exits as the KVM model (kvm.py); what
differs:
- Hypercalls (Xen's 32-bit ABI, xen/include/public/xen.h): nr in EAX, arguments in EBX, ECX, EDX,
  ESI, EDI, result in EAX; entered with `int 0x82` (32-bit PV, the hypercall page's stubs) or `vmcall`
  (HVM/PVH style). Each is one VMCALL exit with the hypercall number as qualifier; for the batched ones
  the exit's `size` field holds the number of requests (priced per request by the profile).
  Implemented: set_trap_table (0), mmu_update (1), memory_op (12: XENMEM_add_to_physmap of the shared
  info page only), multicall (13), update_va_mapping (14), console_io (18), mmuext_op (26), sched_op
  (29: shutdown). Others return -ENOSYS; bad arguments -EINVAL / -EFAULT, never a crashed run.
- Page tables (two-level, non-PAE, 32-bit): a frame becomes a page table when pinned (mmuext_op
  PIN_L1/L2_TABLE) or installed as the base (NEW_BASEPTR), which also validates it: every L1 it points
  to becomes a page table, and no present entry may map a page-table frame writable (Xen's rule that
  keeps the guest from writing its tables behind Xen's back). The guest maps its tables read-only, so
  a direct store into one faults: Xen emulates it (writable page tables, "ptwr"): one EXCEPTION_NMI
  exit, the store decoded, validated as an mmu_update request and applied.
- A page fault that is not such a store goes to Xen (one EXCEPTION_NMI exit, handled in the guest:
  place GUEST) and is bounced to the guest's handler (set_trap_table, else its IDT); the faulting
  address is in the shared info page's vcpu_info[0].arch.cr2, where a PV guest reads it.
- With `--opt xen-pf-offload` (optimizations/pf_offload.py, hook point `page_fault`), demand-zero and
  copy-on-write faults in the range a guest registered are fixed in Xen: one EXCEPTION_NMI exit handled
  in Xen (direction IN: a page given; size 1: one page zeroed or copied) and no bounce.
- CPUID leaf 0x40000000 says "XenVMMXenVMM", so a guest picks its Xen paths as Linux's pv_ops do.
Guest-physical addresses are machine addresses here (an identity physical-to-machine map).
"""
from __future__ import annotations

import struct

from unicorn.x86_const import (UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3, UC_X86_REG_EAX, UC_X86_REG_EBP,
                               UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDI, UC_X86_REG_EDX, UC_X86_REG_EIP,
                               UC_X86_REG_ESI)

from .._uc import flush_tlb
from ..exits import Direction, ExitReason, Place
from ..machine import GuestCrash
from .kvm import KVM, disasm_detail

HYPERCALL_VECTOR = 0x82
EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38

#: Xen's hypercall numbers (public/xen.h) for the ones modeled; names for reports.
HYPERCALL_NAMES: dict[int, str] = {
    0: "set_trap_table", 1: "mmu_update", 12: "memory_op", 13: "multicall", 14: "update_va_mapping",
    18: "console_io", 26: "mmuext_op", 29: "sched_op", 48: "pf_offload_register",
}
MMU_NORMAL_PT_UPDATE = 0
MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_UNPIN_TABLE = 0, 1, 4
MMUEXT_NEW_BASEPTR, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL = 5, 6, 7
UVMF_INVLPG = 2
XENMEM_ADD_TO_PHYSMAP, XENMAPSPACE_SHARED_INFO = 7, 0
CONSOLEIO_WRITE = 0
SCHEDOP_YIELD, SCHEDOP_SHUTDOWN = 0, 2
MAX_BATCH = 512          # requests per mmu_update / mmuext_op / multicall call (ours: a page's worth)
VCPU0_CR2 = 8            # offsetof(shared_info, vcpu_info[0].arch.cr2) on x86_32
PTE_PRESENT, PTE_RW = 0x1, 0x2
PAGE = 0x1000

# mov r/m32, r32 (89) and mov r/m32, imm32 (c7 /0): the stores a guest writes a PTE with
_STORE_OPCODES = {0x89, 0xC7}


class XenPV(KVM):
    """One vCPU of a Xen PV domain (see the module docstring)."""

    name = "xen-pv"
    cpuid_signature = "XenVMMXenVMM"

    def __init__(self, *args, console=None, offload=None, **kw):
        super().__init__(*args, **kw)
        self._console = console
        self._offload = offload  # optimizations/pf_offload.py (--opt xen-pf-offload), hook point page_fault
        self.pt_level: dict[int, int] = {}   # frame number -> 1 (L1) or 2 (L2)
        self.pinned: set[int] = set()
        self.shared_info: int | None = None  # guest-physical address of the shared info page
        self.traps: dict[int, tuple[int, int]] = {}   # vector -> (cs, handler address)
        self.stats = {"pt_updates": 0, "pt_writes_emulated": 0, "faults_bounced": 0, "faults_offloaded": 0}

    # CPUID: the Xen signature -------------------------------------------------------------------
    def _cpuid(self, leaf: int, sub: int) -> tuple[int, int, int, int]:
        if leaf == 0x40000000:
            b, c, d = struct.unpack("<3I", self.cpuid_signature.encode())
            return 0x40000002, b, c, d
        return super()._cpuid(leaf, sub)

    # entry points ------------------------------------------------------------------------------
    def _on_invalid(self, uc, _data):
        eip, ebp = self._eip_ebp()
        raw = self.m.read_virtual(eip, 3)
        if raw in (b"\x0f\x01\xc1", b"\x0f\x01\xd9"):
            self._hypercall(eip, ebp, eip + 3)
            return True
        return self._exception(6, eip, None, ebp)

    def _on_intr(self, uc, intno, _data):
        if intno == HYPERCALL_VECTOR:
            eip, ebp = uc.reg_read_batch([UC_X86_REG_EIP, UC_X86_REG_EBP])  # past the int 0x82
            self._hypercall(eip - 2, ebp, eip)
            self.m.reset_exception_state()
            return
        if intno == 14:
            eip, ebp = uc.reg_read_batch([UC_X86_REG_EIP, UC_X86_REG_EBP])
            self._page_fault(eip, ebp)
            return
        super()._on_intr(uc, intno, _data)

    # page faults -------------------------------------------------------------------------------
    def _page_fault(self, eip: int, ebp: int) -> None:
        cr2 = self.uc.reg_read(UC_X86_REG_CR2)
        error = self._page_fault_code(eip)
        paddr = self.m.translate(cr2)
        if paddr is not None and error & 2 and (paddr >> 12) in self.pt_level and self._emulate_pt_store(eip, ebp, paddr):
            return
        if self._offload is not None and self._offload_fault(eip, ebp, cr2, error):
            return
        self._exit(ExitReason.EXCEPTION_NMI, Place.GUEST, Direction.NONE, eip, 14, 0, error, ebp)
        self.stats["faults_bounced"] += 1
        if self.shared_info is not None:
            self.m.write_physical(self.shared_info + VCPU0_CR2, struct.pack("<I", cr2))
        self._bounce(14, eip, error)

    def _offload_fault(self, eip: int, ebp: int, cr2: int, error: int) -> bool:
        """Enhanced Xen: fix a demand-zero or copy-on-write fault here; the instruction then retries.
        One exit handled in Xen, direction IN (a page given to the guest), size 1 (one page filled)."""
        cr3 = self.uc.reg_read(UC_X86_REG_CR3) & ~0xFFF
        pde = struct.unpack("<I", self.m.read_physical(cr3 + (cr2 >> 22) * 4, 4) or b"\0\0\0\0")[0]
        if not pde & PTE_PRESENT:
            return False
        pte_addr = (pde & ~0xFFF) + ((cr2 >> 12) & 0x3FF) * 4
        raw = self.m.read_physical(pte_addr, 4)
        if raw is None:
            return False
        fixed = self._offload.resolve(cr2, bool(error & 2), pte_addr, struct.unpack("<I", raw)[0])
        if fixed is None:
            return False
        _kind, ptr, pte = fixed
        if self._pt_update(ptr, pte) != 0:
            return False
        self._exit(ExitReason.EXCEPTION_NMI, Place.KERNEL, Direction.IN, eip, 14, 1, cr2, ebp)
        self.stats["faults_offloaded"] += 1
        self.m.reset_exception_state()
        self._reschedule()
        return True

    def _bounce(self, vector: int, eip: int, error: int | None) -> None:
        """Enter the guest's handler: the one set_trap_table registered, else the IDT's."""
        try:
            if vector in self.traps:
                self.m.deliver_to(self.traps[vector][1], self.traps[vector][0], eip, error)
            else:
                self.m.deliver(vector, eip, error)
        except GuestCrash as crash:
            self._crash(f"triple fault: {crash.cause} (exception {vector})", eip)
            return
        self._reschedule()

    def _emulate_pt_store(self, eip: int, ebp: int, paddr: int) -> bool:
        """A store into a page table: decode it, validate it as an update, apply it, skip it."""
        decoded = self._decode_store(eip)
        if decoded is None:
            return False
        length, value = decoded
        self._exit(ExitReason.EXCEPTION_NMI, Place.KERNEL, Direction.OUT, eip, 14, 1, value, ebp)
        if self._pt_update(paddr & ~3, value) != 0:
            return False  # Xen refuses it: the guest gets the fault
        self.stats["pt_writes_emulated"] += 1
        self.uc.reg_write(UC_X86_REG_EIP, eip + length)
        self.m.reset_exception_state()
        self._reschedule()
        return True

    def _decode_store(self, eip: int) -> tuple[int, int] | None:
        from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_OP_REG
        code = self.m.read_virtual(eip, 15)
        if not code:
            return None
        md = disasm_detail()
        insn = next(md.disasm(code, eip, 1), None)
        if insn is None or insn.mnemonic != "mov" or insn.opcode[0] not in _STORE_OPCODES:
            return None
        dst, src = insn.operands
        if dst.type != X86_OP_MEM or dst.size != 4:
            return None
        if src.type == X86_OP_IMM:
            return insn.size, src.imm & 0xFFFFFFFF
        if src.type == X86_OP_REG:
            return insn.size, self.uc.reg_read(_capstone_reg(insn.reg_name(src.reg))) & 0xFFFFFFFF
        return None

    # page tables -------------------------------------------------------------------------------
    def _pt_update(self, ptr: int, val: int, flush: bool = True) -> int:
        """One MMU_NORMAL_PT_UPDATE: 0, or -errno (nothing changed). Unicorn's cached translations are
        dropped after it (or, for a batch, once after the batch: flush=False)."""
        frame = ptr >> 12
        if ptr & 3 or frame not in self.pt_level or not self.m.in_ram(ptr, 4):
            return -EINVAL
        if val & PTE_PRESENT:
            target = val >> 12
            if not self.m.in_ram(target << 12, PAGE):
                return -EINVAL
            level = self.pt_level[frame]
            if level == 1 and target in self.pt_level and val & PTE_RW:
                return -EINVAL  # a page table mapped writable
            if level == 2:
                if target in self.pt_level and self.pt_level[target] == 2:
                    return -EINVAL
                if not self._validate_l1(target):
                    return -EINVAL
                self.pt_level[target] = 1
        self.m.write_physical(ptr, struct.pack("<I", val))
        self.stats["pt_updates"] += 1
        if flush:
            flush_tlb(self.uc)
        return 0

    def _validate_l1(self, frame: int) -> bool:
        entries = struct.unpack("<1024I", self.m.read_physical(frame << 12, PAGE))
        for e in entries:
            if e & PTE_PRESENT and (e >> 12) in self.pt_level and e & PTE_RW:
                return False
            if e & PTE_PRESENT and not self.m.in_ram(e & ~0xFFF, PAGE):
                return False
        return True

    def _pin(self, frame: int, level: int) -> int:
        if not self.m.in_ram(frame << 12, PAGE):
            return -EINVAL
        if level == 2:
            entries = struct.unpack("<1024I", self.m.read_physical(frame << 12, PAGE))
            l1s = {e >> 12 for e in entries if e & PTE_PRESENT}
            if frame in l1s or not all(self._validate_l1(f) for f in l1s):
                return -EINVAL
            for f in l1s:
                self.pt_level.setdefault(f, 1)
            self.pt_level[frame] = 2
        else:
            if self.pt_level.get(frame) == 2 or not self._validate_l1(frame):
                return -EINVAL
            self.pt_level[frame] = 1
        # tables already installed must not map this frame writable now that it is one
        for f, lvl in list(self.pt_level.items()):
            if lvl == 1 and not self._validate_l1(f):
                return -EINVAL
        self.pinned.add(frame)
        return 0

    # hypercalls --------------------------------------------------------------------------------
    def _hypercall(self, eip: int, ebp: int, return_eip: int) -> None:
        nr, b, c, d, si = self._hypercall_args()
        di = self.uc.reg_read(UC_X86_REG_EDI)
        handler = _HANDLERS.get(nr)
        result, items = (handler(self, (b, c, d, si, di)) if handler else (-ENOSYS, 0))
        self._exit(ExitReason.VMCALL, Place.KERNEL, Direction.NONE, eip, nr, items, result & 0xFFFFFFFF, ebp)
        if self._end is None:
            self._hypercall_return(result & 0xFFFFFFFF, return_eip)
        self._reschedule()

    def _one(self, nr: int, args: tuple) -> tuple[int, int]:
        handler = _HANDLERS.get(nr)
        if handler is None or nr == 13:   # a multicall may not nest
            return -ENOSYS, 0
        return handler(self, args)

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

    def hc_mmu_update(self, args) -> tuple[int, int]:
        def update(ptr: int, val: int) -> int:
            if ptr & 3 != MMU_NORMAL_PT_UPDATE or ptr >> 32 or val >> 32:
                return -EINVAL
            return self._pt_update(ptr, val, flush=False)
        result, count, done = self._batch(args[0], args[1], args[2], "<QQ", update)
        if done:
            flush_tlb(self.uc)
        return result, count

    def hc_update_va_mapping(self, args) -> tuple[int, int]:
        # the flags (UVMF_INVLPG, UVMF_TLB_FLUSH) need no handling: _pt_update always drops Unicorn's
        # translation cache, which a guest cannot tell from the flush it asked for
        va, lo, hi = args[0], args[1], args[2]
        if hi:
            return -EINVAL, 1
        cr3 = self.uc.reg_read(UC_X86_REG_CR3) & ~0xFFF
        pde = struct.unpack("<I", self.m.read_physical(cr3 + (va >> 22) * 4, 4) or b"\0\0\0\0")[0]
        if not pde & PTE_PRESENT:
            return -EINVAL, 1
        result = self._pt_update((pde & ~0xFFF) + ((va >> 12) & 0x3FF) * 4, lo)
        return result, 1

    def hc_mmuext_op(self, args) -> tuple[int, int]:
        result, count, _ = self._batch(args[0], args[1], args[2], "<III", self._mmuext)
        return result, count

    def _mmuext(self, cmd: int, arg1: int, _arg2: int) -> int:
        if cmd in (MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE):
            return self._pin(arg1, 1 if cmd == MMUEXT_PIN_L1_TABLE else 2)
        if cmd == MMUEXT_UNPIN_TABLE:
            result = 0 if arg1 in self.pinned else -EINVAL
            self.pinned.discard(arg1)
            return result
        if cmd == MMUEXT_NEW_BASEPTR:
            return self._new_baseptr(arg1)
        if cmd in (MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL):
            flush_tlb(self.uc)
            return 0
        return -EINVAL

    def _new_baseptr(self, frame: int) -> int:
        if self.pt_level.get(frame) != 2 or frame not in self.pinned:
            return -EINVAL
        self.uc.reg_write(UC_X86_REG_CR3, frame << 12)
        cr0 = self.uc.reg_read(UC_X86_REG_CR0)
        if not cr0 & 0x80000000:  # the domain builder's job: the domain runs paged from its first table
            self.uc.reg_write(UC_X86_REG_CR0, cr0 | 0x80010000)  # PG | WP
        flush_tlb(self.uc)
        self._caller_paging = True
        return 0

    def hc_multicall(self, args) -> tuple[int, int]:
        calls, count = args[0], args[1]
        if not 1 <= count <= MAX_BATCH:
            return -EINVAL, 0
        raw = self.m.read_virtual(calls, 32 * count)
        if raw is None:
            return -EFAULT, 0
        for i, entry in enumerate(struct.iter_unpack("<8I", raw)):
            op, _result, *call_args = entry
            result, _ = self._one(op, tuple(call_args[:5]))
            self.m.write_virtual(calls + 32 * i + 4, struct.pack("<I", result & 0xFFFFFFFF))
        return 0, count

    def hc_set_trap_table(self, args) -> tuple[int, int]:
        table = args[0]
        for i in range(256):
            raw = self.m.read_virtual(table + 8 * i, 8)
            if raw is None:
                return -EFAULT, i
            vector, _flags, cs, address = struct.unpack("<BBHI", raw)
            if address == 0:
                return 0, i
            self.traps[vector] = (cs, address)
        return -EINVAL, 256

    def hc_memory_op(self, args) -> tuple[int, int]:
        cmd, arg = args[0], args[1]
        if cmd != XENMEM_ADD_TO_PHYSMAP:
            return -ENOSYS, 1
        raw = self.m.read_virtual(arg, 16)
        if raw is None:
            return -EFAULT, 1
        _domid, _size, space, _idx, gpfn = struct.unpack("<HHIII", raw)
        if space != XENMAPSPACE_SHARED_INFO or not self.m.in_ram(gpfn << 12, PAGE):
            return -EINVAL, 1
        self.shared_info = gpfn << 12
        self.m.write_physical(self.shared_info, bytes(PAGE))
        return 0, 1

    def hc_console_io(self, args) -> tuple[int, int]:
        cmd, count, buf = args[0], args[1], args[2]
        if cmd != CONSOLEIO_WRITE:
            return -ENOSYS, 1
        data = self.m.read_virtual(buf, count) if count <= 4096 else None
        if data is None:
            return -EFAULT, 1
        if self._console is not None:
            self._console(data)
        return count, 1

    def hc_pf_offload_register(self, args) -> tuple[int, int]:
        if self._offload is None:
            return -ENOSYS, 0
        return self._offload.register(args[0]), 1

    def hc_sched_op(self, args) -> tuple[int, int]:
        cmd, arg = args[0], args[1]
        if cmd == SCHEDOP_YIELD:
            return 0, 1
        if cmd == SCHEDOP_SHUTDOWN:
            raw = self.m.read_virtual(arg, 4)
            if raw is None:
                return -EFAULT, 1
            reason = struct.unpack("<I", raw)[0]
            self.guest_exit(reason)
            self._end.detail = f"domain shut down with reason {reason} (sched_op SCHEDOP_shutdown)"
            return 0, 1
        return -ENOSYS, 1


#: Hypercall handlers by number (explicit).
_HANDLERS = {
    0: XenPV.hc_set_trap_table, 1: XenPV.hc_mmu_update, 12: XenPV.hc_memory_op, 13: XenPV.hc_multicall,
    14: XenPV.hc_update_va_mapping, 18: XenPV.hc_console_io, 26: XenPV.hc_mmuext_op, 29: XenPV.hc_sched_op,
    48: XenPV.hc_pf_offload_register,
}


_CAPSTONE_REGS = {"eax": UC_X86_REG_EAX, "ebx": UC_X86_REG_EBX, "ecx": UC_X86_REG_ECX, "edx": UC_X86_REG_EDX,
                  "esi": UC_X86_REG_ESI, "edi": UC_X86_REG_EDI, "ebp": UC_X86_REG_EBP}


def _capstone_reg(name: str) -> int:
    return _CAPSTONE_REGS[name]
