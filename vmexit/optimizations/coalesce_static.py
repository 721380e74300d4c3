"""Static I/O coalescing: the KVM paper's XKVM_IO_COALESCE hypercall (Zhang et al., "Modifying Guest OS
to Optimize I/O Virtualization in KVM", Chinese Journal of Computers, 2010, section 3.1.1, code
segment 2).

A modified guest fills an array of `struct io_insn {u32 type; u32 port; u32 val;}` and issues
`vmcall(XKVM_IO_COALESCE, guest-physical address of the array, count, 0)` instead of a run of in/out
instructions; the hypervisor emulates the entries in order, writing each IN result back into the
entry's `val`. The paper names the hypercall and the structure (code segment 2) but gives
no hypercall number or type encoding; ours are below. KVM's own hypercall numbers stop at 12
(KVM_HC_MAP_GPA_RANGE), so 0x100 cannot collide.

A request is checked whole before any entry runs: the array must lie in guest RAM, the count must be
1..MAX_ENTRIES and every type known; otherwise EAX gets -EINVAL (bad count or type) or -EFAULT (array
outside RAM) and no port is touched. On success EAX is 0.
"""
from __future__ import annotations

import struct
from typing import Callable

from ..exits import Direction

XKVM_IO_COALESCE = 0x100
#: At most this many entries per request: one 4 KiB page of io_insn (ours, as KVM bounds its
#: string-PIO buffer; the paper does not say).
MAX_ENTRIES = 4096 // 12
EINVAL = 22
EFAULT = 14

ENTRY = struct.Struct("<III")
#: io_insn.type: 0x10 set for IN, low nibble the access size in bytes.
TYPES: dict[int, tuple[Direction, int]] = {
    0x01: (Direction.OUT, 1), 0x02: (Direction.OUT, 2), 0x04: (Direction.OUT, 4),
    0x11: (Direction.IN, 1), 0x12: (Direction.IN, 2), 0x14: (Direction.IN, 4),
}


def decode(read_physical: Callable[[int, int], bytes | None], gpa: int,
           count: int) -> list[tuple[Direction, int, int, int]] | int:
    """The request's entries as (direction, port, size, value), or a negative errno."""
    if not 1 <= count <= MAX_ENTRIES:
        return -EINVAL
    raw = read_physical(gpa, count * ENTRY.size)
    if raw is None:
        return -EFAULT
    entries = []
    for kind, port, value in ENTRY.iter_unpack(bytes(raw)):
        if kind not in TYPES or port > 0xFFFF:
            return -EINVAL
        direction, size = TYPES[kind]
        entries.append((direction, port, size, value & ((1 << (8 * size)) - 1)))
    return entries


def value_address(gpa: int, index: int) -> int:
    """Where entry `index`'s val lies, for writing an IN result back."""
    return gpa + index * ENTRY.size + 8
