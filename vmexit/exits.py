"""Exit reasons and the exit record.

Reason numbers are the VMX basic exit reasons (Intel SDM vol. 3C, appendix C) and the names are the
ones `perf kvm stat` prints (arch/x86/include/uapi/asm/vmx.h, VMX_EXIT_REASONS), so our tables read
like theirs. UNKNOWN (0xffff) is ours: an exit the model cannot classify is kept as such, never dropped.

One exit is one row of EXIT_DTYPE: a fixed-width record so that every aggregation is numpy. Work the
hypervisor does inside an exit on the guest's behalf without an exit of its own -- the port accesses of
a coalesced I/O hypercall, or those a look-ahead emulated -- is one row of EMULATED_DTYPE each, tied to
its exit by the exit's seq; its cost is included in that exit's cost.
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
    GUEST = 2  # reflected into the guest's own handler (a Xen PV page fault bounced to the guest)


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


EMULATED_DTYPE = np.dtype([
    ("exit", "<u8"),       # seq of the exit inside which the access was emulated
    ("rip", "<u4"),        # guest address of the emulated instruction (the hypercall's, for static)
    ("place", "u1"),       # Place of the device
    ("direction", "u1"),   # Direction
    ("size", "<u2"),       # access size in bytes
    ("port", "<u4"),
    ("value", "<u8"),      # value written or read
    ("cost", "<u4"),       # modeled cycles of the handling (no exit round trip, see costs.py)
])


class ExitRecorder:
    """Append-only exit records. Rows arrive as tuples (cheap on the exit path) and are packed into
    EXIT_DTYPE chunks every CHUNK rows, so memory stays at the packed size (64 B a row)."""

    CHUNK = 1 << 16
    FIELDS = EXIT_DTYPE.names[1:]  # seq is the row number, filled in when packed

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._packed = 0
        self._rows: list[tuple] = []
        self._emulated: list[tuple] = []

    @property
    def count(self) -> int:
        return self._packed + len(self._rows)

    def append(self, icount: int, cycles: int, rip: int, reason: int, place: int, direction: int,
               qualifier: int, size: int, value: int, cost: int, caller: int) -> None:
        rows = self._rows
        rows.append((icount, cycles, rip, reason, place, direction, qualifier, size, value, cost, caller))
        if len(rows) >= self.CHUNK:
            self._pack()

    def add_size(self, size: int) -> None:
        """Grow the last exit's size (further elements of a rep string I/O exit)."""
        if not self._rows:
            self._chunks[-1][-1]["size"] += size
            return
        last = list(self._rows[-1])
        last[7] += size
        self._rows[-1] = tuple(last)

    def emulate(self, rip: int, place: int, direction: int, port: int, size: int, value: int,
                cost: int) -> None:
        """A port access emulated inside the last exit: recorded, and its cost added to that exit's."""
        self._emulated.append((self.count - 1, rip, place, direction, size, port, value, cost))
        if not self._rows:
            self._chunks[-1][-1]["cost"] += cost
            return
        last = list(self._rows[-1])
        last[9] += cost
        self._rows[-1] = tuple(last)

    def emulated(self) -> np.ndarray:
        out = np.zeros(len(self._emulated), dtype=EMULATED_DTYPE)
        if self._emulated:
            for name, values in zip(EMULATED_DTYPE.names, zip(*self._emulated)):
                out[name] = np.array(values, dtype=np.uint64).astype(EMULATED_DTYPE[name], copy=False)
        return out

    def _pack(self) -> None:
        if not self._rows:
            return
        chunk = np.zeros(len(self._rows), dtype=EXIT_DTYPE)
        columns = list(zip(*self._rows))
        chunk["seq"] = np.arange(self._packed, self._packed + len(self._rows), dtype=np.uint64)
        for name, values in zip(self.FIELDS, columns):
            chunk[name] = np.array(values, dtype=np.uint64).astype(EXIT_DTYPE[name], copy=False)
        self._chunks.append(chunk)
        self._packed += len(self._rows)
        self._rows = []

    def records(self) -> np.ndarray:
        self._pack()
        if not self._chunks:
            return np.zeros(0, dtype=EXIT_DTYPE)
        return np.concatenate(self._chunks)


def reason_name(code: int) -> str:
    try:
        return ExitReason(code).name
    except ValueError:
        return f"UNKNOWN({code})"
