"""Page-fault offload (`--opt xen-pf-offload`): the "Enhanced Xen" of the Chang Gung University report
on Xen page faults, which moves the guest-OS-independent part of fault handling into Xen: demand-zero
faults and copy-on-write faults that need no I/O are fixed by the hypervisor -- a page allocated,
zeroed or copied, the PTE written -- and the guest resumes at the faulting instruction without a bounce into its handler.

The report does not give Xen's interface to the guest's memory management, so ours is the smallest one
that lets Xen act for the guest: one hypercall, PF_OFFLOAD_REGISTER (48, the first of Xen's
architecture-specific numbers), with a struct pf_offload {u32 start, end; u32 next_free, pool_end}: the
guest-virtual range of private anonymous memory, and the guest's page allocator for it (the virtual
address of its next-free-frame variable, and the physical end of the pool), which Xen advances itself.
Without the option the hypercall is -ENOSYS and the guest keeps handling its own faults. A fault Xen
cannot handle (outside the range, the pool empty, a read of a present page) is bounced as usual.
"""
from __future__ import annotations

import struct

PF_OFFLOAD_REGISTER = 48
PAGE = 0x1000
PTE_P, PTE_RW, PTE_U = 0x1, 0x2, 0x4


class FaultOffload:
    def __init__(self, read_virtual, write_virtual, read_physical, write_physical):
        self._rv, self._wv = read_virtual, write_virtual
        self._rp, self._wp = read_physical, write_physical
        self.region: tuple[int, int, int, int] | None = None
        self.resolved = {"zero": 0, "cow": 0}

    @classmethod
    def for_machine(cls, machine) -> "FaultOffload":
        return cls(machine.read_virtual, machine.write_virtual, machine.read_physical, machine.write_physical)

    def register(self, pointer: int) -> int:
        raw = self._rv(pointer, 16)
        if raw is None:
            return -14
        start, end, next_free, pool_end = struct.unpack("<4I", raw)
        if start & 0xFFF or end & 0xFFF or start >= end or self._rv(next_free, 4) is None:
            return -22
        self.region = (start, end, next_free, pool_end)
        return 0

    def _alloc(self) -> int | None:
        start, end, next_free, pool_end = self.region
        frame = struct.unpack("<I", self._rv(next_free, 4))[0]
        if frame & 0xFFF or frame + PAGE > pool_end or self._rp(frame, PAGE) is None:
            return None
        self._wv(next_free, struct.pack("<I", frame + PAGE))
        return frame

    def resolve(self, cr2: int, write: bool, pte_addr: int | None, pte: int) -> tuple[str, int, int] | None:
        """(kind, PTE address, new PTE) for a fault Xen can fix itself; None to bounce it. The caller
        writes the PTE (validated as any update) -- the page's contents are filled here."""
        if self.region is None or pte_addr is None:
            return None
        start, end, _, _ = self.region
        if not start <= cr2 < end:
            return None
        if not pte & PTE_P:
            kind = "zero"
        elif write and not pte & PTE_RW:
            kind = "cow"
        else:
            return None
        frame = self._alloc()
        if frame is None:
            return None
        if kind == "zero":
            self._wp(frame, bytes(PAGE))
        else:
            self._wp(frame, self._rp(pte & ~0xFFF, PAGE))
        self.resolved[kind] += 1
        return kind, pte_addr, frame | PTE_P | PTE_RW | PTE_U


def run_report(offload: FaultOffload | None, value: int, _run) -> dict:
    if not value:
        return {"note": "off"}
    if offload.region is None:
        return {"note": "no-op: the guest registered no range for Xen to handle"}
    return {"zero_faults": offload.resolved["zero"], "cow_faults": offload.resolved["cow"]}


def describe(entry: dict) -> str:
    return (f"{entry['cow_faults']:,} copy-on-write and {entry['zero_faults']:,} demand-zero faults fixed in Xen "
            f"without a bounce to the guest")
