"""The ways to group a trace's exits into rows: one explicit table (VIEWS) that serves both `vmexit report
--by` and `vmexit compare --by`, after perf's kvm_events_ops (tools/perf/arch/x86/util/kvm-stat.c: one
record per event kind, one aggregator, one printer).

A view says which exits it selects (by exit reason), what a row is keyed by (one integer per exit,
computed with numpy from the exit records), how a key decodes into the row's fields and into its label
in a comparison, and the header of its key column. The layouts are the sources' own: "sites" is the
KVM paper's hot-function table (Zhang et al., Chinese Journal of Computers 2010, Tables 1-3), "stat" is
`perf kvm stat report`, whose port and MMIO keys (`0x1f7:PIN`, `0xfee000b0:W`) are written here once.
Grouping (`group_by`) runs over the exits CHUNK at a time, so a report on any trace needs temporaries of
one chunk, not of the trace: per group it keeps counts, float sums carried from chunk to chunk so that
they are bit for bit those of one pass, and exact counts per distinct value (`Pairs`: most frequent
addresses, order statistics of costs). Python loops run over chunks and groups, never over exits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .exits import Direction, ExitReason, reason_name
from .hypervisors import HYPERVISORS, hypercalls
from .stacks import Stacks
from .symbols import DOMAIN_SHIFT, SymbolTable
from .trace import Trace, domains_of


@dataclass(frozen=True)
class Context:
    """What decoding a key needs besides the key: the trace's symbols, its hypervisor's hypercall names
    (with their sub-operations), and, for a run of several domains, that addresses belong to a domain."""
    symbols: SymbolTable
    hypercall_name: Callable[[int, int], str]    # (hypercall nr, sub-operation) -> its name
    domains: bool = False                        # a merged run: addresses are qualified by domain
    domain_names: dict = field(default_factory=dict)   # domid -> the domain's name
    stacks: Stacks | None = None                 # the trace's stack table; None: caller-only (older traces)

    @classmethod
    def of(cls, trace: Trace) -> "Context":
        entry = HYPERVISORS.get(str(trace.meta.get("hypervisor", "kvm")))
        if entry is None:
            name = lambda nr, subop: hypercalls.name({}, nr)  # noqa: E731
        elif trace.meta.get("subops_recorded", True):
            name = entry.hypercall_full_name
        else:  # a trace of a format without the subop column: the plain names
            name = lambda nr, subop: entry.hypercall_name(nr)  # noqa: E731
        merged = "domains" in trace.meta
        symbols = SymbolTable.of_domains(trace.symbols) if merged else SymbolTable(trace.symbols)
        names = {int(m["domid"]): str(m.get("name", "")) for m in domains_of(trace)}
        return cls(symbols, name, merged, names, trace.stacks)

    def where(self, ex: np.ndarray, name: str) -> np.ndarray:
        """An address field of exit records as int64, qualified by its domain in a merged run."""
        address = ex[name].astype(np.int64)
        return (ex["domain"].astype(np.int64) << DOMAIN_SHIFT) | address if self.domains else address

    def address(self, k: int) -> str:
        """A (qualified) address as a report shows it: 0x00100a09, or d1:0x00100a09 in a merged run."""
        text = f"0x{k & 0xFFFFFFFF:08x}"
        return f"d{k >> DOMAIN_SHIFT}:{text}" if self.domains else text


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
    return lambda ex, ctx: ctx.symbols.index(ctx.where(ex, name))


def _address_of(name: str) -> Callable[[np.ndarray, Context], np.ndarray]:
    return lambda ex, ctx: ctx.where(ex, name)


def _hypercall_key(ex: np.ndarray, ctx: Context) -> np.ndarray:
    """A hypercall and its sub-operation, packed into one integer."""
    return (ex["qualifier"].astype(np.int64) << 16) | ex["subop"].astype(np.int64)


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
    return {"address": ctx.address(k), "function": ctx.symbols.name(k)}


def _caller(k: int, ctx: Context) -> dict:
    return {"caller": str(ctx.symbols.names[k])}


def _reason(k: int, ctx: Context) -> dict:
    return {"reason": reason_name(k)}


def _hypercall(k: int, ctx: Context) -> dict:
    nr, subop = k >> 16, k & 0xFFFF
    return {"hypercall": ctx.hypercall_name(nr, subop), "nr": nr, "subop": subop}


def _domain(k: int, ctx: Context) -> dict:
    return {"domain": k, "name": ctx.domain_names.get(k, f"dom{k}")}


def stack_key_width(ctx: Context) -> tuple[int, int]:
    """(domains, symbols) of a stack key: key = (chain * domains + domain) * symbols + the exit's symbol."""
    return (max(ctx.domain_names, default=0) + 1 if ctx.domains else 1), len(ctx.symbols.names)


def _stack_key(ex: np.ndarray, ctx: Context) -> np.ndarray:
    """An exit's stack: its chain (the stack id; for a trace without stacks, its caller address), its
    domain and the function of its own address, packed into one integer (stack_key_width)."""
    domains, width = stack_key_width(ctx)
    chain = (ex["stack"] if ctx.stacks is not None else ex["caller"]).astype(np.int64)
    domain = ex["domain"].astype(np.int64) if ctx.domains else 0
    return (chain * domains + domain) * width + ctx.symbols.index(ctx.where(ex, "rip"))


def _stack(k: int, ctx: Context) -> dict:
    """A stack key's frames as one string, outermost first (stackreport.py names many keys at once)."""
    domains, width = stack_key_width(ctx)
    rest, leaf = divmod(k, width)
    chain, domain = divmod(rest, domains)
    if ctx.stacks is not None:
        addresses = ctx.stacks.get(chain)
    else:
        addresses = (chain,) if chain else ()
    base = domain << DOMAIN_SHIFT if ctx.domains else 0
    names = [ctx.symbols.name(base | (a - 1)) for a in reversed(addresses)]  # the call instruction's function
    return {"stack": ";".join(names + [str(ctx.symbols.names[leaf])])}


_PERF = "Analyze events for all VMs, all VCPUs"
_MMIO = (ExitReason.EPT_VIOLATION, ExitReason.APIC_ACCESS)

#: Every view, explicitly; `--by` offers them in this order.
VIEWS: dict[str, View] = {
    "function": View("function", "sites", "Hot functions ({guest})", "function", "site", None,
                     _symbol_of("rip"), _function, "{function}", "function name"),
    "address": View("address", "sites", "Hot exit addresses ({guest})", "address", "site", None,
                    _address_of("rip"), _address, "{address} {function}", "address", across_images="function"),
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
                      (ExitReason.VMCALL,), _hypercall_key, _hypercall, "{hypercall}", "hypercall",
                      sums=(("requests", "size", "Requests"),), comparable=False),
    "domain": View("domain", "domains", "Domains ({guest})", "name", "domain", None,
                   _field("domain"), _domain, "{name}", "domain", comparable=False),
    "stack": View("stack", "stacks", "Hot stacks ({guest})", "stack", "stack", None,
                  _stack_key, _stack, "{stack}", "stack", comparable=False),
}


# the one aggregator -----------------------------------------------------------------------------------
DENSE_RANGE = 1 << 24
DENSE_MIN = 1 << 20  # a key range up to this long, or up to 8 keys a slot, is counted by bincount
CHUNK = 1 << 16  # exits aggregated at a time: every temporary is of this length, whatever the trace's

#: Values computed per exit: (a chunk of exit records, the index of its first exit) -> one value each.
Values = Callable[[np.ndarray, int], np.ndarray]


def chunks(exits: np.ndarray, size: int | None = None):
    """(index of the first exit, records) of consecutive slices of at most `size` (default CHUNK) exits:
    views of the trace, no copies."""
    size = size or CHUNK
    for start in range(0, len(exits), size):
        yield start, exits[start:start + size]


def group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys, inverse, counts) of non-negative integer keys. A bincount over the key range when
    it is small for the number of keys (exit addresses of one image, symbol indices, reasons), else
    np.unique (a sort)."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return keys, keys, keys
    lo = int(keys.min())
    span = int(keys.max()) - lo + 1
    if span > min(DENSE_RANGE, max(DENSE_MIN, 8 * len(keys))):
        return np.unique(keys, return_inverse=True, return_counts=True)
    shifted = keys - lo
    full = np.bincount(shifted, minlength=span)
    present = np.flatnonzero(full)
    remap = np.zeros(span, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return present + lo, remap[shifted], full[present]


@dataclass(frozen=True)
class Pairs:
    """How often each value occurs in each group: one row per distinct (group, value), sorted by both.
    Counts are exact, so whatever needs the distribution of a value in a group (its most frequent
    value, its order statistics) comes out the same however the exits were cut into chunks."""
    group: np.ndarray   # index of the group
    value: np.ndarray   # int64
    count: np.ndarray   # int64

    def starts(self, n_groups: int) -> np.ndarray:
        """Index of each group's first row (every group has one)."""
        return np.searchsorted(self.group, np.arange(n_groups))


@dataclass(frozen=True)
class Groups:
    """A view's rows before decoding: one group per distinct key, ascending, with what was tallied."""
    view: View
    keys: np.ndarray                # the key of each group
    counts: np.ndarray              # exits per group
    sums: dict[str, np.ndarray]     # per group, the float sum of each summed value
    pairs: dict[str, Pairs]         # per group, the exact distribution of each paired value

    @property
    def selected(self) -> int:
        return int(self.counts.sum())

    def most_frequent(self, name: str) -> np.ndarray:
        """Per group, the most frequent value of the paired value `name` (ties: the lowest)."""
        p = self.pairs[name]
        if len(p.value) == 0:
            return np.zeros(len(self.keys), dtype=np.int64)
        most = np.maximum.reduceat(p.count, p.starts(len(self.keys)))
        rows = np.flatnonzero(p.count == most[p.group])  # by group, then value: the first is the lowest
        return p.value[rows[np.searchsorted(p.group[rows], np.arange(len(self.keys)))]]

    def fields(self, g: int, ctx: Context) -> dict:
        return self.view.decode(int(self.keys[g]), ctx)

    def label(self, g: int, ctx: Context) -> str:
        return self.view.label.format(**self.fields(g, ctx))


def group_by(view: View, exits: np.ndarray, ctx: Context, sums: dict[str, Values] | None = None,
             pairs: dict[str, Values] | None = None, chunk: int | None = None,
             maxes: dict[str, Values] | None = None) -> Groups:
    """The exits a view selects, grouped by its key, CHUNK exits at a time: counts, the `sums` (float
    sums, added in exit order), the `pairs` (exact counts per distinct value) and the `maxes` (the
    largest value, put among the sums under its name) of each group."""
    tally = _Tally(sums or {}, pairs or {}, maxes or {})
    for start, part in chunks(exits, chunk):
        mask = None if view.reasons is None else np.isin(part["reason"], view.reasons)
        tally.add(view.key(part if mask is None else part[mask], ctx), part, start, mask)
    return Groups(view, tally.keys, tally.counts, {**tally.sums, **tally.maxes}, tally.pairs())


class _Tally:
    """Per-key accumulators, merged chunk after chunk. Sums carry over exactly: each group's running sum
    is the first weight np.bincount adds into its bin, the chunk's values after it in exit order, so
    the sums are those of one bincount over all exits, bit for bit. Pairs are exact integer counts,
    (key, value, count) tables merged (a sort) once the chunks' tables add up to the merged one's size,
    so each row is sorted a few times, not once a chunk."""

    def __init__(self, sums: dict[str, Values], pairs: dict[str, Values], maxes: dict[str, Values]) -> None:
        self._sum_of, self._pair_of, self._max_of = sums, pairs, maxes
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.sums = {name: np.zeros(0) for name in sums}
        self.maxes = {name: np.zeros(0) for name in maxes}
        self._pairs: dict[str, list[tuple]] = {name: [] for name in pairs}  # merged table first

    def add(self, keys: np.ndarray, part: np.ndarray, start: int, mask: np.ndarray | None) -> None:
        old = len(self.keys)
        uniq, inverse, _ = group(np.concatenate([self.keys, np.asarray(keys, dtype=np.int64)]))
        new = inverse[old:]
        counts = np.bincount(new, minlength=len(uniq))
        counts[inverse[:old]] += self.counts
        for name, values in self._sum_of.items():
            weights = np.concatenate([self.sums[name], _pick(values(part, start), mask)])
            self.sums[name] = np.bincount(inverse, weights=weights, minlength=len(uniq))
        for name, values in self._max_of.items():
            top = np.full(len(uniq), -np.inf)
            top[inverse[:old]] = self.maxes[name]
            np.maximum.at(top, new, _pick(values(part, start), mask))
            self.maxes[name] = top
        for name, values in self._pair_of.items():
            tables = self._pairs[name]
            tables.append(_chunk_pairs(uniq, new, _pick(values(part, start), mask)))
            if sum(len(t[0]) for t in tables[1:]) >= len(tables[0][0]):
                self._pairs[name] = [_merge(tables, uniq)]
        self.keys, self.counts = uniq, counts

    def pairs(self) -> dict[str, Pairs]:
        merged = {name: _merge(tables, self.keys) for name, tables in self._pairs.items()}
        return {name: Pairs(np.searchsorted(self.keys, k), v, c) for name, (k, v, c) in merged.items()}


def _pick(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return values if mask is None else values[mask]


def _chunk_pairs(keys: np.ndarray, inverse: np.ndarray, values: np.ndarray) -> tuple:
    """(key, value, count) of each distinct (group, value) of one chunk."""
    v_uniq, v_inv, v_counts = group(values)
    group_of_value = np.zeros(len(v_uniq), dtype=np.int64)
    group_of_value[v_inv] = inverse
    if np.array_equal(group_of_value[v_inv], inverse):
        return keys[group_of_value], v_uniq, v_counts  # each value in one group (an address in one function)
    width = max(len(v_uniq), 1)
    codes, _, counts = group(inverse * width + v_inv)
    return keys[codes // width], v_uniq[codes % width], counts


def _merge(tables: list[tuple], keys: np.ndarray) -> tuple:
    """(key, value, count) tables as one, sorted by key then value, counts of equal rows added; `keys`
    holds every key (sorted), so that a key and a value pack into one integer to sort by."""
    if not tables:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    k, v, c = (np.concatenate(columns) for columns in zip(*tables))
    if len(k) == 0:
        return k, v, c
    rank, top = np.searchsorted(keys, k), int(v.max()) + 1
    if (len(keys) + 1) * top < 1 << 62:
        order = np.argsort(rank * top + v, kind="stable")
    else:
        order = np.lexsort((v, k))
    k, v, c = k[order], v[order], c[order]
    first = np.flatnonzero(np.concatenate([[True], (k[1:] != k[:-1]) | (v[1:] != v[:-1])]))
    return k[first], v[first], np.add.reduceat(c, first)
