"""Xen's page-table manager for a 32-bit PV domain (two-level, non-PAE): which frames are page tables,
and the validated updates that are the only way a guest may change them (xen/arch/x86/mm.c's rules, as
far as the model needs them).

A frame becomes a page table when pinned (mmuext_op PIN_L1/L2_TABLE) or installed as the base
(NEW_BASEPTR), which also validates it: every L1 it points to becomes a page table, and no present
entry may map a page-table frame writable (the rule that keeps the guest from writing its tables
behind Xen's back). Every update is checked: it must target an entry of a page table of the guest, may
not map a page table writable, may not point outside the guest; a bad one returns -EINVAL and changes
nothing. Guest-physical addresses are machine addresses here (an identity physical-to-machine map).
After an update the engine's cached translations are dropped, as the guest's TLB flush would.
"""
from __future__ import annotations

import struct

EINVAL = 22
PTE_PRESENT, PTE_RW = 0x1, 0x2
PAGE = 0x1000


class PageTables:
    def __init__(self, machine, on_paging):
        """on_paging(): called when a base-pointer load turns paging on for the domain."""
        self.m = machine
        self.engine = machine.engine
        self._on_paging = on_paging
        self.level: dict[int, int] = {}   # frame number -> 1 (L1) or 2 (L2)
        self.pinned: set[int] = set()
        self.updates = 0

    def is_table(self, frame: int) -> bool:
        return frame in self.level

    def update(self, ptr: int, val: int, flush: bool = True) -> int:
        """One MMU_NORMAL_PT_UPDATE: 0, or -errno (nothing changed). With flush=False (a batch) the
        caller drops the cached translations once after the batch."""
        frame = ptr >> 12
        if ptr & 3 or frame not in self.level or not self.m.in_ram(ptr, 4):
            return -EINVAL
        if val & PTE_PRESENT:
            target = val >> 12
            if not self.m.in_ram(target << 12, PAGE):
                return -EINVAL
            level = self.level[frame]
            if level == 1 and target in self.level and val & PTE_RW:
                return -EINVAL  # a page table mapped writable
            if level == 2:
                if target in self.level and self.level[target] == 2:
                    return -EINVAL
                if not self._valid_l1(target):
                    return -EINVAL
                self.level[target] = 1
        self.m.write_physical(ptr, struct.pack("<I", val))
        self.updates += 1
        if flush:
            self.engine.flush_tlb()
        return 0

    def entry_of(self, va: int) -> int | None:
        """Physical address of the L1 entry mapping va under the current base, if its L2 entry is present."""
        cr3 = self.engine.reg("cr3") & ~0xFFF
        pde = struct.unpack("<I", self.m.read_physical(cr3 + (va >> 22) * 4, 4) or b"\0\0\0\0")[0]
        if not pde & PTE_PRESENT:
            return None
        return (pde & ~0xFFF) + ((va >> 12) & 0x3FF) * 4

    def _valid_l1(self, frame: int) -> bool:
        entries = struct.unpack("<1024I", self.m.read_physical(frame << 12, PAGE))
        for e in entries:
            if e & PTE_PRESENT and (e >> 12) in self.level and e & PTE_RW:
                return False
            if e & PTE_PRESENT and not self.m.in_ram(e & ~0xFFF, PAGE):
                return False
        return True

    def pin(self, frame: int, level: int) -> int:
        if not self.m.in_ram(frame << 12, PAGE):
            return -EINVAL
        if level == 2:
            entries = struct.unpack("<1024I", self.m.read_physical(frame << 12, PAGE))
            l1s = {e >> 12 for e in entries if e & PTE_PRESENT}
            if frame in l1s or not all(self._valid_l1(f) for f in l1s):
                return -EINVAL
            for f in l1s:
                self.level.setdefault(f, 1)
            self.level[frame] = 2
        else:
            if self.level.get(frame) == 2 or not self._valid_l1(frame):
                return -EINVAL
            self.level[frame] = 1
        # tables already installed must not map this frame writable now that it is one
        for f, lvl in list(self.level.items()):
            if lvl == 1 and not self._valid_l1(f):
                return -EINVAL
        self.pinned.add(frame)
        return 0

    def unpin(self, frame: int) -> int:
        result = 0 if frame in self.pinned else -EINVAL
        self.pinned.discard(frame)
        return result

    def new_baseptr(self, frame: int) -> int:
        if self.level.get(frame) != 2 or frame not in self.pinned:
            return -EINVAL
        e = self.engine
        e.set_reg("cr3", frame << 12)
        cr0 = e.reg("cr0")
        if not cr0 & 0x80000000:  # the domain builder's job: the domain runs paged from its first table
            e.set_reg("cr0", cr0 | 0x80010000)  # PG | WP
        e.flush_tlb()
        self._on_paging()
        return 0

    def flush(self) -> None:
        self.engine.flush_tlb()
