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
import mmap
from array import array

import numpy as np

from .stacks import StackTable


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
    ("seq", "<u4"),        # position in the run, from 0 (a run holds at most 2**32 - 1 exits)
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
    ("domain", "<u2"),     # the domain the exit came from (its domid; 0 for a run of one domain)
    ("subop", "<u2"),      # a multiplexed hypercall's sub-operation (Xen: the command in EBX), else 0
    ("stack", "<u4"),      # the exit's frame-pointer chain: an id in the trace's stack table (0: empty)
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


class _Mapping:
    """Room for fixed-width records in one anonymous private memory mapping that grows in place
    (mremap, through mmap.resize): the records stay one contiguous array, so handing them out needs no
    copy and growing needs no second copy; room not yet written is never resident. The owner counts
    the records; rows past its count are free space."""

    GROWTH = 5, 4  # room grows by a quarter: address space only, so a modest factor is enough

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self._map: mmap.mmap | None = None

    def rows(self, start: int, n: int) -> np.ndarray:
        """A writable view of rows [start, start + n), growing the room to hold them."""
        size = self.dtype.itemsize
        need = (start + n) * size
        if self._map is None or len(self._map) < need:
            self._grow(need, start * size)
        return np.frombuffer(self._map, self.dtype, n, start * size)

    def array(self, count: int) -> np.ndarray:
        """The first `count` rows as one array sharing the mapping (no copy)."""
        if self._map is None:
            return np.zeros(0, dtype=self.dtype)
        return np.frombuffer(self._map, self.dtype, count)

    def _grow(self, need: int, used: int) -> None:
        num, den = self.GROWTH
        size = max(need, len(self._map) * num // den if self._map is not None else 0)
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        if self._map is not None:
            try:
                self._map.resize(size)
                return
            except (BufferError, OSError, SystemError, ValueError):
                pass  # records handed out before the run ended hold the mapping, or no mremap: copy once
        fresh = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        if used:
            with memoryview(fresh) as dst, memoryview(self._map) as src:
                dst[:used] = src[:used]
        self._map = fresh


# an exit's buffered values: seq is the row number and domain the recorder's, both filled in when packed
_FIELDS = tuple(n for n in EXIT_DTYPE.names if n not in ("seq", "domain"))
_WIDTH = len(_FIELDS)
_SIZE = _FIELDS.index("size") - _WIDTH  # places in the last buffered row, counted from its end
_COST = _FIELDS.index("cost") - _WIDTH
_EMULATED_WIDTH = len(EMULATED_DTYPE.names)


class ExitRecorder:
    """Append-only exit records. The exit path only extends a flat buffer of unsigned 64-bit values
    (array('Q'): one C call, no Python object kept per exit); every CHUNK rows the buffer is packed
    column by column into EXIT_DTYPE records in one growing mapping (_Mapping). Memory is the packed
    size, EXIT_DTYPE.itemsize (60 B) a row, plus the buffer (CHUNK rows of 104 B) and the stack
    table (unique stacks only); `records()` hands
    the rows out without a copy. Emulated accesses go the same way into EMULATED_DTYPE records.

    Packing writes the rows into free space first; the count and the emptied buffer then change with
    no call between them, so an interrupt (Ctrl-C) anywhere in a pack loses and repeats no row."""

    CHUNK = 1 << 13
    FIELDS = _FIELDS

    def __init__(self, chunk: int | None = None, domain: int = 0) -> None:
        """chunk: rows buffered between packs (CHUNK; tests pack more often, with the same records);
        domain: the domid every exit of this recorder comes from."""
        self.domain = domain
        self._exits = _Mapping(EXIT_DTYPE)
        self._emulated = _Mapping(EMULATED_DTYPE)
        self._packed = 0            # exits in the mapping
        self._emulated_packed = 0
        self._rows = array("Q")     # exits not packed yet, _WIDTH values each
        self._emulated_rows = array("Q")
        self._full = (chunk or self.CHUNK) * _WIDTH
        self.stacks = StackTable()  # the unique stacks the exits' `stack` ids point into

    @property
    def count(self) -> int:
        return self._packed + len(self._rows) // _WIDTH

    def append(self, icount: int, cycles: int, rip: int, reason: int, place: int, direction: int,
               qualifier: int, size: int, value: int, cost: int, caller: int, subop: int = 0,
               stack: int = 0) -> None:
        rows = self._rows
        try:
            rows.extend((icount, cycles, rip, reason, place, direction, qualifier, size, value, cost, caller,
                         subop, stack))
        except (OverflowError, TypeError):
            del rows[len(rows) - len(rows) % _WIDTH:]  # a value that is no u64 leaves no partial row
            raise
        if len(rows) >= self._full:
            self._pack()

    def add_size(self, size: int) -> None:
        """Grow the last exit's size (further elements of a rep string I/O exit)."""
        if self._rows:
            self._rows[_SIZE] += size
        else:
            self._exits.rows(self._packed - 1, 1)["size"] += size

    def emulate(self, rip: int, place: int, direction: int, port: int, size: int, value: int,
                cost: int) -> None:
        """A port access emulated inside the last exit: recorded, and its cost added to that exit's."""
        exits, rows = self._rows, self._emulated_rows
        try:
            rows.extend((self._packed + len(exits) // _WIDTH - 1, rip, place, direction, size, port, value, cost))
        except (OverflowError, TypeError):
            del rows[len(rows) - len(rows) % _EMULATED_WIDTH:]
            raise
        if len(rows) >= self._full:
            self._pack_emulated()
        if exits:
            exits[_COST] += cost
        else:
            self._exits.rows(self._packed - 1, 1)["cost"] += cost

    def emulated(self) -> np.ndarray:
        """Every emulated access so far, in the order of their exits (a view, no copy)."""
        self._pack_emulated()
        return self._emulated.array(self._emulated_packed)

    def records(self) -> np.ndarray:
        """Every exit so far (a view of the recorder's mapping, no copy)."""
        self._pack()
        return self._exits.array(self._packed)

    def _pack(self) -> None:
        rows, start = self._rows, self._packed
        n = len(rows) // _WIDTH
        if n:
            out = self._exits.rows(start, n)
            out["seq"] = np.arange(start, start + n, dtype=np.uint32)
            out["domain"] = self.domain
            _write(out, rows, _FIELDS)
            self._packed += n
            del rows[:]

    def _pack_emulated(self) -> None:
        rows = self._emulated_rows
        n = len(rows) // _EMULATED_WIDTH
        if n:
            _write(self._emulated.rows(self._emulated_packed, n), rows, EMULATED_DTYPE.names)
            self._emulated_packed += n
            del rows[:]


def _write(out: np.ndarray, rows: array, names: tuple[str, ...]) -> None:
    """Buffered rows (len(names) values each) into the fields `names` of the records `out`."""
    flat = np.frombuffer(rows, dtype=np.uint64).reshape(len(out), len(names))
    for i, name in enumerate(names):
        out[name] = flat[:, i]  # an unsafe cast, like astype: a value wider than its field wraps as before
    del flat  # the buffer can be emptied only once no view of it is left


def reason_name(code: int) -> str:
    try:
        return ExitReason(code).name
    except ValueError:
        return f"UNKNOWN({code})"
