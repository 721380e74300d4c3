"""Exit reasons and the exit record.

Reason numbers are the VMX basic exit reasons (Intel SDM vol. 3C, appendix C) and the names are the
ones `perf kvm stat` prints (arch/x86/include/uapi/asm/vmx.h, VMX_EXIT_REASONS), so our tables read
like theirs. UNKNOWN (0xffff) is ours: an exit the model cannot classify is kept as such, never dropped.

One exit is one row of EXIT_DTYPE: a fixed-width record so that every aggregation is numpy.
"""
from __future__ import annotations

import enum

import numpy as np


class ExitReason(enum.IntEnum):
    EXCEPTION_NMI = 0
    EXTERNAL_INTERRUPT = 1
    TRIPLE_FAULT = 2
    INTERRUPT_WINDOW = 7
    CPUID = 10
    HLT = 12
    VMCALL = 18
    IO_INSTRUCTION = 30
    MSR_READ = 31
    MSR_WRITE = 32
    APIC_ACCESS = 44
    EPT_VIOLATION = 48
    UNKNOWN = 0xFFFF


class Place(enum.IntEnum):
    """Where the hypervisor handles the exit: it decides the cost (KVM vs a trip to QEMU)."""

    KERNEL = 0
    USER = 1


class Direction(enum.IntEnum):
    NONE = 0
    IN = 1  # port in / MMIO read / MSR read
    OUT = 2  # port out / MMIO write / MSR write


EXIT_DTYPE = np.dtype([
    ("seq", "<u8"),        # position in the run, from 0
    ("icount", "<u8"),     # guest instructions executed when the exit happened
    ("cycles", "<u8"),     # virtual time of the exit in CPU cycles (see clock.py)
    ("rip", "<u4"),        # guest address of the exiting instruction (interrupted one for interrupts)
    ("reason", "<u2"),     # ExitReason
    ("place", "u1"),       # Place
    ("direction", "u1"),   # Direction
    ("qualifier", "<u4"),  # port / vector / hypercall nr / MMIO address / MSR index
    ("size", "<u4"),       # access size in bytes (string I/O: bytes moved by this exit)
    ("value", "<u8"),      # value written or read (first element for string I/O)
    ("cost", "<u4"),       # modeled cycles the exit cost (profile-dependent, see costs.py)
    ("caller", "<u4"),     # return address at [EBP+4] when the exit happened; 0 when unknown
])


class ExitRecorder:
    """Append-only buffer of exit records, grown by doubling; rows are written field by field."""

    def __init__(self, capacity: int = 1 << 14):
        self._rows = np.zeros(capacity, dtype=EXIT_DTYPE)
        self.count = 0

    def append(self, icount: int, cycles: int, rip: int, reason: int, place: int, direction: int,
               qualifier: int, size: int, value: int, cost: int, caller: int) -> None:
        n = self.count
        if n == len(self._rows):
            grown = np.zeros(2 * n, dtype=EXIT_DTYPE)
            grown[:n] = self._rows
            self._rows = grown
        self._rows[n] = (n, icount, cycles, rip & 0xFFFFFFFF, reason, place, direction,
                         qualifier & 0xFFFFFFFF, size, value & 0xFFFFFFFFFFFFFFFF, cost, caller & 0xFFFFFFFF)
        self.count = n + 1

    def add_size(self, size: int) -> None:
        """Grow the last exit's size (further elements of a rep string I/O exit)."""
        self._rows[self.count - 1]["size"] += size

    def records(self) -> np.ndarray:
        return self._rows[: self.count].copy()


def reason_name(code: int) -> str:
    try:
        return ExitReason(code).name
    except ValueError:
        return f"UNKNOWN({code})"
