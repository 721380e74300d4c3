"""The ways to group a trace's exits into rows: one explicit table (VIEWS) that serves both `vmexit report
--by` and `vmexit compare --by`, after perf's kvm_events_ops (tools/perf/arch/x86/util/kvm-stat.c: one
record per event kind, one aggregator, one printer).

A view says which exits it selects (by exit reason), what a row is keyed by (one integer per exit,
computed with numpy from the exit records), how a key decodes into the row's fields and into its label
in a comparison, and the header of its key column. The layouts are the sources' own: "sites" is the
KVM paper's hot-function table (Zhang et al., Chinese Journal of Computers 2010, Tables 1-3), "stat" is
`perf kvm stat report`, whose port and MMIO keys (`0x1f7:PIN`, `0xfee000b0:W`) are written here once.
Grouping (`group_by`) is one numpy pass; Python loops run over groups, never over exits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .exits import Direction, ExitReason, reason_name
from .hypervisors import HYPERVISORS, hypercalls
from .symbols import SymbolTable
from .trace import Trace


@dataclass(frozen=True)
class Context:
    """What decoding a key needs besides the key: the trace's symbols and its hypervisor's hypercall names."""
    symbols: SymbolTable
    hypercall_name: Callable[[int], str]

    @classmethod
    def of(cls, trace: Trace) -> "Context":
        entry = HYPERVISORS.get(str(trace.meta.get("hypervisor", "kvm")))
        name = entry.hypercall_name if entry is not None else (lambda nr: hypercalls.name({}, nr))
        return cls(SymbolTable(trace.symbols), name)


@dataclass(frozen=True)
class View:
    name: str                                  # what --by takes
    layout: str                                # "sites" (the paper's hot-function table) | "stat" (perf kvm stat)
    title: str                                 # the report's title; {guest} is the trace's guest
    column: str                                # the row field that names a row
    header: str                                # that column's header (stat reports, comparisons)
    reasons: tuple[int, ...] | None            # the exits it selects; None: every exit
    key: Callable[[np.ndarray, Context], np.ndarray]   # selected exit records -> one int64 key each
    decode: Callable[[int, Context], dict]     # a key -> the row's fields
    label: str                                 # a row's name in a comparison: str.format of its fields
    matched_by: str                            # how a comparison matches rows, in words
    sums: tuple[tuple[str, str, str], ...] = ()  # per-row sums shown: (row field, exit field, header)
    every_row: bool = False                    # --top does not cut it (perf lists every exit reason)
    comparable: bool = True                    # `vmexit compare --by` offers it
    across_images: str | None = None           # the view a comparison of two different images falls back to


# keys -------------------------------------------------------------------------------------------------
def _field(name: str) -> Callable[[np.ndarray, Context], np.ndarray]:
    return lambda ex, ctx: ex[name].astype(np.int64)


def _symbol_of(name: str) -> Callable[[np.ndarray, Context], np.ndarray]:
    return lambda ex, ctx: ctx.symbols.index(ex[name])


def _access_key(ex: np.ndarray, ctx: Context) -> np.ndarray:
    """perf's (address, direction) key of a port or MMIO access, packed into one integer."""
    return (ex["qualifier"].astype(np.int64) << 2) | ex["direction"].astype(np.int64)


# decoders ---------------------------------------------------------------------------------------------
def _access(where: str, words: tuple[str, str], marks: tuple[str, str]) -> Callable[[int, Context], dict]:
    """Fields of an `_access_key`: the address (as `where`), the direction word, perf's key `0x1f7:PIN`."""
    def decode(k: int, ctx: Context) -> dict:
        value, i = k >> 2, 0 if (k & 3) == Direction.IN else 1
        return {where: f"0x{value:x}", "direction": words[i], "key": f"0x{value:x}:{marks[i]}"}
    return decode


def _function(k: int, ctx: Context) -> dict:
    return {"function": str(ctx.symbols.names[k])}


def _address(k: int, ctx: Context) -> dict:
    return {"address": f"0x{k:08x}", "function": ctx.symbols.name(k)}


def _caller(k: int, ctx: Context) -> dict:
    return {"caller": str(ctx.symbols.names[k])}


def _reason(k: int, ctx: Context) -> dict:
    return {"reason": reason_name(k)}


def _hypercall(k: int, ctx: Context) -> dict:
    return {"hypercall": ctx.hypercall_name(k), "nr": k}


_PERF = "Analyze events for all VMs, all VCPUs"
_MMIO = (ExitReason.EPT_VIOLATION, ExitReason.APIC_ACCESS)

#: Every view, explicitly; `--by` offers them in this order.
VIEWS: dict[str, View] = {
    "function": View("function", "sites", "Hot functions ({guest})", "function", "site", None,
                     _symbol_of("rip"), _function, "{function}", "function name"),
    "address": View("address", "sites", "Hot exit addresses ({guest})", "address", "site", None,
                    _field("rip"), _address, "{address} {function}", "address", across_images="function"),
    "caller": View("caller", "sites", "Hot callers ({guest})", "caller", "caller", None,
                   _symbol_of("caller"), _caller, "{caller}", "caller", comparable=False),
    "reason": View("reason", "stat", _PERF, "reason", "VM-EXIT", None,
                   _field("reason"), _reason, "{reason}", "reason", every_row=True),
    "port": View("port", "stat", _PERF + " (ioport)", "key", "IO Port Access", (ExitReason.IO_INSTRUCTION,),
                 _access_key, _access("port", ("in", "out"), ("PIN", "POUT")), "{key}", "port"),
    "mmio": View("mmio", "stat", _PERF + " (mmio)", "key", "MMIO Access", _MMIO,
                 _access_key, _access("address", ("read", "write"), ("R", "W")), "{key}", "mmio",
                 comparable=False),
    "hypercall": View("hypercall", "stat", "Analyze hypercalls for all VMs, all VCPUs", "hypercall", "HYPERCALL",
                      (ExitReason.VMCALL,), _field("qualifier"), _hypercall, "{hypercall}", "hypercall",
                      sums=(("requests", "size", "Requests"),), comparable=False),
}


# the one aggregator -----------------------------------------------------------------------------------
DENSE_RANGE = 1 << 24


def group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys, inverse, counts) of non-negative integer keys. A bincount over the key range when
    it is small (exit addresses of one image, symbol indices, reasons), else np.unique (a sort)."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return keys, keys, keys
    lo = int(keys.min())
    span = int(keys.max()) - lo + 1
    if span > DENSE_RANGE:
        return np.unique(keys, return_inverse=True, return_counts=True)
    shifted = keys - lo
    full = np.bincount(shifted, minlength=span)
    present = np.flatnonzero(full)
    remap = np.zeros(span, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return present + lo, remap[shifted], full[present]


@dataclass(frozen=True)
class Groups:
    """A view's rows before decoding: one group per distinct key, ascending."""
    view: View
    keys: np.ndarray        # the key of each group
    inverse: np.ndarray     # the group of each selected exit
    counts: np.ndarray      # exits per group
    mask: np.ndarray | None  # the selected exits (None: all)

    @property
    def selected(self) -> int:
        return int(self.counts.sum())

    def pick(self, values: np.ndarray) -> np.ndarray:
        """A per-exit array restricted to the selected exits."""
        return values if self.mask is None else values[self.mask]

    def sum(self, values: np.ndarray) -> np.ndarray:
        """A per-exit array (over all exits) summed per group."""
        return np.bincount(self.inverse, weights=self.pick(values), minlength=len(self.keys))

    def fields(self, g: int, ctx: Context) -> dict:
        return self.view.decode(int(self.keys[g]), ctx)

    def label(self, g: int, ctx: Context) -> str:
        return self.view.label.format(**self.fields(g, ctx))


def group_by(view: View, exits: np.ndarray, ctx: Context) -> Groups:
    mask = None if view.reasons is None else np.isin(exits["reason"], view.reasons)
    keys, inverse, counts = group(view.key(exits if mask is None else exits[mask], ctx))
    return Groups(view, keys, inverse, counts, mask)
