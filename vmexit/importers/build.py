"""Events of a real host (events.read) -> a vmexit Trace, all in numpy: no loop over exits.

Which events belong to which exit: the events of one thread (a vCPU) in file order; a kvm_pio,
kvm_mmio, kvm_msr or kvm_userspace_exit belongs to the last kvm_exit before it on its thread unless a
kvm_entry came between (the vCPU went back into the guest), and that first kvm_entry closes the exit.
So per exit: its reason (reasons.py), its guest RIP, its time (the perf / trace-cmd timestamp, from
the file's first event, in cycles of the profile's frequency: meta["freq_hz"]); from its first
kvm_pio the port, direction and value, and as size the bytes of all its kvm_pio (size x count: string
I/O); from its first kvm_mmio the guest-physical address, direction, length and value; from its first
kvm_msr the MSR (ECX), direction and data; place USER when a kvm_userspace_exit says it went on to QEMU,
else KERNEL (so without that event recorded every exit counts as handled in the kernel).

Cost: with a closing kvm_entry, the exit-to-entry time, measured on the real host (at the timestamps'
resolution: microseconds for perf script, nanoseconds with --ns), in cycles of the profile's frequency
and capped at the field's 2**32 - 1; without one (kvm_entry not recorded, or the file ends first), the
profile's modeled price of that exit kind and place, as `vmexit run` would charge it. meta["import"]
counts both. The trace has no instruction counts (0), no callers (0: a tracepoint sees no frame
pointer) and no stacks.

VMs: where the file names each thread's process (perf script -F +pid), each process is a domain
(domid 0, 1, ... in order of first appearance, named `pid N (COMM)`), as a vmexit run of several
domains; every domain gets the --symbols file's symbols (all VMs are taken to run that kernel).
Otherwise the whole file is one domain. --pid N keeps the events of process N, or of thread N.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..exits import EXIT_DTYPE, Direction, ExitReason, Place
from .events import ENTRY, EXIT, MMIO, MSR, PIO, USERSPACE, Events, ImportFormatError
from .reasons import classify
from .symbolfile import fold

_U32 = np.uint64(0xFFFFFFFF)
_IO_REASONS = (ExitReason.IO_INSTRUCTION,)
_MMIO_REASONS = (ExitReason.EPT_VIOLATION, ExitReason.APIC_ACCESS)
_MSR_REASONS = (ExitReason.MSR_READ, ExitReason.MSR_WRITE)


def select(events: Events, pid: int | None, path: Path) -> np.ndarray:
    """The events of process or thread `pid` (all when None)."""
    rows = events.rows
    if pid is None:
        return rows
    rows = rows[(rows["pid"] == pid) | (rows["tid"] == pid)]
    if not int((rows["kind"] == EXIT).sum()):
        exits = events.rows[events.rows["kind"] == EXIT]
        known = np.unique(np.where(exits["pid"] >= 0, exits["pid"], exits["tid"]))
        raise ImportFormatError(f"{path}: no kvm_exit of process or thread {pid} (its exits are of "
                                f"{', '.join(str(int(k)) for k in known[:10])}{' ...' if len(known) > 10 else ''})")
    return rows


def attach(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every event, the number of the exit it belongs to (exits counted in file order; -1: none),
    and which events are the first kvm_entry after their exit. Events are grouped by thread."""
    n = len(rows)
    is_exit = rows["kind"] == EXIT
    exit_no = np.cumsum(is_exit) - 1                     # an exit's number, in file order
    order = np.lexsort((np.arange(n), rows["tid"]))      # by thread, then file order
    kind, tid = rows["kind"][order], rows["tid"][order]
    pos = np.arange(n)
    group_start = np.maximum.accumulate(np.where(np.r_[True, tid[1:] != tid[:-1]], pos, 0))
    last_exit = np.maximum.accumulate(np.where(kind == EXIT, pos, -1))
    entries = np.maximum.accumulate(np.where(kind == ENTRY, pos, -1))
    entry_before = np.r_[-1, entries[:-1]]               # the last kvm_entry strictly before
    attached = (kind != EXIT) & (last_exit >= group_start) & (last_exit > entry_before)
    owner = np.full(n, -1, dtype=np.int64)
    owner[order[attached]] = exit_no[order[last_exit[attached]]]
    return owner, attached[np.argsort(order)] & (rows["kind"] == ENTRY)


def first_of(rows: np.ndarray, owner: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """(exit numbers, their first event of `kind`): file order is thread order within an exit."""
    idx = np.flatnonzero((rows["kind"] == kind) & (owner >= 0))
    exits, first = np.unique(owner[idx], return_index=True)
    return exits, rows[idx[first]]


def to_cycles(ns: np.ndarray, freq: int) -> np.ndarray:
    """Non-negative nanoseconds as cycles at `freq`, exactly (integer arithmetic, no overflow below 584 years)."""
    ns = ns.astype(np.uint64)
    second = np.uint64(1_000_000_000)
    return (ns // second) * np.uint64(freq) + (ns % second) * np.uint64(freq) // second


def exit_records(rows: np.ndarray, names: list[str], profile) -> tuple[np.ndarray, dict]:
    """The EXIT_DTYPE records of `rows` (domain 0) and the import's counts for meta."""
    owner, closing = attach(rows)
    ex = rows[rows["kind"] == EXIT]
    out = np.zeros(len(ex), dtype=EXIT_DTYPE)
    out["seq"] = np.arange(len(ex), dtype=np.uint32)
    t0 = int(rows["ns"].min())
    out["cycles"] = to_cycles(ex["ns"] - t0, profile.freq_hz)
    out["rip"], rips_lost = fold(ex["address"])
    table = np.array([int(classify(n)[0]) for n in names] or [0], dtype=np.uint16)
    out["reason"] = table[ex["name"]]
    _devices(rows, owner, out, names, ex)
    users, _ = first_of(rows, owner, USERSPACE)
    out["place"][users] = Place.USER
    entry_exits, entry_rows = owner[closing], rows[closing]
    measured = to_cycles(entry_rows["ns"] - ex["ns"][entry_exits], profile.freq_hz)
    priced = np.ones(len(ex), dtype=bool)
    priced[entry_exits] = False
    out["cost"][priced] = np.minimum(profile.price(out[priced]), _U32)
    out["cost"][entry_exits] = np.minimum(measured, _U32)
    counts = {"costs_measured": int(len(entry_exits)), "costs_priced": int(priced.sum()),
              "costs_capped": int((measured > _U32).sum()), "rips_not_kept": rips_lost}
    return out, counts


def _devices(rows, owner, out, names, ex) -> None:
    """Port, MMIO and MSR accesses of each exit from its kvm_pio / kvm_mmio / kvm_msr events."""
    reason = out["reason"]
    exits, pio = first_of(rows, owner, PIO)
    io = exits[np.isin(reason[exits], _IO_REASONS)]
    pio = pio[np.isin(reason[exits], _IO_REASONS)]
    sizes = np.zeros(len(out), dtype=np.uint64)
    every = np.flatnonzero((rows["kind"] == PIO) & (owner >= 0))
    np.add.at(sizes, owner[every], rows["size"][every])
    out["qualifier"][io] = pio["address"] & _U32
    out["direction"][io] = np.where(pio["write"] == 1, Direction.OUT, Direction.IN)
    out["size"][io] = np.minimum(sizes[io], _U32)
    out["value"][io] = pio["value"]
    exits, mmio = first_of(rows, owner, MMIO)
    keep = np.isin(reason[exits], _MMIO_REASONS)
    exits, mmio = exits[keep], mmio[keep]
    out["qualifier"][exits] = mmio["address"] & _U32
    out["direction"][exits] = np.where(mmio["write"] == 1, Direction.OUT, Direction.IN)
    out["size"][exits] = mmio["size"]
    out["value"][exits] = mmio["value"]
    _msrs(rows, owner, out, names, ex)


def _msrs(rows, owner, out, names, ex) -> None:
    """MSR exits: VMX says read or write by reason; AMD's one `msr` exit by its kvm_msr, else EXITINFO1."""
    svm_msr = np.array([n == "msr" for n in names] or [False])[ex["name"]]
    write = svm_msr & (ex["write"] == 1)                 # EXITINFO1 == 1: WRMSR
    exits, msr = first_of(rows, owner, MSR)
    keep = np.isin(out["reason"][exits], _MSR_REASONS)
    exits, msr = exits[keep], msr[keep]
    write[exits] = np.where(svm_msr[exits], msr["write"] == 1, write[exits])
    out["reason"][svm_msr] = np.where(write[svm_msr], ExitReason.MSR_WRITE, ExitReason.MSR_READ)
    out["qualifier"][exits] = msr["address"] & _U32
    out["value"][exits] = msr["value"]
    is_msr = np.isin(out["reason"], _MSR_REASONS)
    out["direction"][is_msr] = np.where(out["reason"][is_msr] == ExitReason.MSR_WRITE, Direction.OUT, Direction.IN)


def reason_counts(rows: np.ndarray, names: list[str]) -> dict[str, int]:
    """kvm_exit reasons by the kernel's own names, and how many exits each."""
    ex = rows[rows["kind"] == EXIT]
    counts = np.bincount(ex["name"], minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts) if c}


def source_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vm_keys(rows: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Each exit's domain (its process's rank of first appearance) and the processes; one domain, [-1],
    when the file does not name processes."""
    ex = rows[rows["kind"] == EXIT]
    if (ex["pid"] < 0).any():
        return np.zeros(len(ex), dtype=np.uint16), [-1]
    pids, first, inverse = np.unique(ex["pid"], return_index=True, return_inverse=True)
    rank = np.empty(len(pids), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(pids))
    if len(pids) > 0xFFFF:
        raise ImportFormatError(f"{len(pids)} processes in one file: at most 65535 VMs")
    return rank[inverse].astype(np.uint16), [int(p) for p in pids[np.argsort(first, kind="stable")]]
