"""Selecting a trace's exits by what users call them: `Trace.count(reason="io", function="putc", ...)`.

Each filter takes the names users think in — an exit reason by its perf name or a short alias
("IO_INSTRUCTION", "io", "hlt"), a function or caller by symbol name, a direction "in"/"out", a port
or address as an integer or hex text, a domain by domid or name — or a list of them (any of). The
filters are resolved once against the trace (names to numbers, symbol names to symbol-table indices)
and then applied with numpy to the exit records a chunk at a time: no Python loop over exits, and
temporaries of one chunk whatever the trace's length. A name that is not in the trace is an error
(VmexitError) that lists what is, rather than a silent 0.

Above the trace and the symbol table, below analysis (reports) and the API.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .errors import VmexitError
from .exits import Direction, ExitReason
from .symbols import DOMAIN_SHIFT, UNKNOWN, SymbolTable
from .trace import Trace, domains_of

CHUNK = 1 << 16
FILTERS = ("reason", "function", "address", "port", "direction", "caller", "within", "domain")

#: Short names for exit reasons (a name may stand for several: "mmio" is both MMIO exits).
REASON_ALIASES: dict[str, tuple[ExitReason, ...]] = {
    "io": (ExitReason.IO_INSTRUCTION,), "pio": (ExitReason.IO_INSTRUCTION,),
    "hypercall": (ExitReason.VMCALL,), "rdmsr": (ExitReason.MSR_READ,), "wrmsr": (ExitReason.MSR_WRITE,),
    "msr": (ExitReason.MSR_READ, ExitReason.MSR_WRITE), "apic": (ExitReason.APIC_ACCESS,),
    "ept": (ExitReason.EPT_VIOLATION,), "mmio": (ExitReason.APIC_ACCESS, ExitReason.EPT_VIOLATION),
    "interrupt": (ExitReason.EXTERNAL_INTERRUPT,), "window": (ExitReason.INTERRUPT_WINDOW,),
    "exception": (ExitReason.EXCEPTION_NMI,), "fault": (ExitReason.EXCEPTION_NMI,),
}
DIRECTIONS = {"in": Direction.IN, "read": Direction.IN, "out": Direction.OUT, "write": Direction.OUT,
              "none": Direction.NONE}


def _values(value: Any) -> list:
    """A filter's value as a list of the values it allows (a list, tuple or set: any of them)."""
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def _number(name: str, value: Any) -> int:
    """An integer, or integer text ("0x20", "32")."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise VmexitError(f"{name}={value!r}: give an integer (or text such as '0x20')")


def _reasons(value: Any) -> list[int]:
    out: list[int] = []
    for v in _values(value):
        if isinstance(v, str):
            key = v.strip()
            if key.upper() in ExitReason.__members__:
                out.append(int(ExitReason[key.upper()]))
            elif key.lower() in REASON_ALIASES:
                out.extend(int(r) for r in REASON_ALIASES[key.lower()])
            else:
                known = [*ExitReason.__members__, *REASON_ALIASES]
                raise VmexitError(f"reason={v!r}: no such exit reason (known: {', '.join(known)})")
        else:
            out.append(_number("reason", v))
    return out


def _directions(value: Any) -> list[int]:
    out = []
    for v in _values(value):
        if isinstance(v, str) and v.strip().lower() in DIRECTIONS:
            out.append(int(DIRECTIONS[v.strip().lower()]))
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and int(v) in (0, 1, 2):
            out.append(int(v))
        else:
            raise VmexitError(f"direction={v!r}: give 'in' or 'out' ('read'/'write' for MMIO and MSRs)")
    return out


def _domains(trace: Trace, value: Any) -> list[int]:
    entries = domains_of(trace)
    by_name = {str(m.get("name")): int(m["domid"]) for m in entries}
    out = []
    for v in _values(value):
        if isinstance(v, str) and v in by_name:
            out.append(by_name[v])
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and int(v) in by_name.values():
            out.append(int(v))
        else:
            known = ", ".join(f"{d} ({n})" for n, d in by_name.items())
            raise VmexitError(f"domain={v!r}: the trace has no such domain (its domains: {known})")
    return out


@dataclass(frozen=True)
class Symbols:
    """The trace's symbol table as reports see it (domain-qualified in a run of several domains)."""
    table: SymbolTable
    merged: bool

    @classmethod
    def of(cls, trace: Trace) -> "Symbols":
        merged = "domains" in trace.meta
        return cls(SymbolTable.of_domains(trace.symbols) if merged else SymbolTable(trace.symbols), merged)

    def where(self, ex: np.ndarray, field: str) -> np.ndarray:
        address = ex[field].astype(np.uint64)
        return (ex["domain"].astype(np.uint64) << np.uint64(DOMAIN_SHIFT)) | address if self.merged else address

    def indices(self, what: str, name: str) -> list[int]:
        """The table indices of a function name: `putc`, or in a run of several domains `d1:putc`
        (that domain's) or `putc` (every domain's). '[unknown]' is the exits outside any symbol."""
        names = self.table.names
        if name == UNKNOWN:
            return [len(names) - 1]
        found = [i for i, n in enumerate(names[:-1]) if n == name or (self.merged and n.split(":", 1)[-1] == name)]
        if not found:
            plain = sorted({str(n).split(":", 1)[-1] for n in names[:-1]} | {str(n) for n in names[:-1]})
            close = difflib.get_close_matches(name, plain, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise VmexitError(f"{what}={name!r}: the trace has no such function{hint}")
        return found


def _functions(symbols: Symbols, what: str, value: Any) -> list[int]:
    out: list[int] = []
    for v in _values(value):
        if not isinstance(v, str):
            raise VmexitError(f"{what}={v!r}: give a function's name (exit addresses: address=)")
        out.extend(symbols.indices(what, v))
    return out


Mask = Callable[[np.ndarray], np.ndarray]


def compile_filters(trace: Trace, **filters: Any) -> Mask:
    """A function from a chunk of exit records to the boolean mask of those the filters select.
    Filters (None: no condition): reason, function, address, port, direction, caller, domain."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        meant = [difflib.get_close_matches(name, FILTERS, n=1) for name in unknown]
        hint = "".join(f"; did you mean {m[0]!r}?" for m in meant if m)
        raise VmexitError(f"unknown filter {', '.join(map(repr, unknown))}{hint} (filters: {', '.join(FILTERS)})")
    given = {k: v for k, v in filters.items() if v is not None}
    tests: list[Mask] = []
    if "reason" in given:
        tests.append(_isin("reason", _reasons(given["reason"])))
    if "port" in given:
        ports = [_number("port", v) for v in _values(given["port"])]
        tests += [_isin("reason", [int(ExitReason.IO_INSTRUCTION)]), _isin("qualifier", ports)]
    if "address" in given:
        tests.append(_isin("rip", [_number("address", v) for v in _values(given["address"])]))
    if "direction" in given:
        tests.append(_isin("direction", _directions(given["direction"])))
    if "domain" in given:
        tests.append(_isin("domain", _domains(trace, given["domain"])))
    tests += _symbol_tests(trace, given)
    return lambda ex: _all(tests, ex)


def _symbol_tests(trace: Trace, given: dict) -> list[Mask]:
    """function= by the symbol holding the exit address; caller= by the symbol holding the return
    address (a name), or the return address itself (an integer); within= by the exit address or any
    return address of the exit's stack."""
    tests: list[Mask] = []
    if "function" not in given and "caller" not in given and "within" not in given:
        return tests
    symbols = Symbols.of(trace)
    if "within" in given:
        inside = _functions(symbols, "within", given["within"])
        under, wanted_w = _stacks_through(trace, symbols, inside), np.array(inside, dtype=np.int64)
        tests.append(lambda ex: under[ex["stack"].astype(np.int64)]
                     | np.isin(symbols.table.index(symbols.where(ex, "rip")), wanted_w))
    if "function" in given:
        wanted = np.array(_functions(symbols, "function", given["function"]), dtype=np.int64)
        tests.append(lambda ex: np.isin(symbols.table.index(symbols.where(ex, "rip")), wanted))
    if "caller" in given:
        values = _values(given["caller"])
        names = [v for v in values if isinstance(v, str) and not _is_hex(v)]
        numbers = [_number("caller", v) for v in values if not (isinstance(v, str) and not _is_hex(v))]
        wanted_c = np.array(_functions(symbols, "caller", names) if names else [], dtype=np.int64)
        tests.append(lambda ex: np.isin(symbols.table.index(symbols.where(ex, "caller")), wanted_c)
                     | np.isin(ex["caller"], np.array(numbers, dtype=np.uint32)))
    return tests


def _stacks_through(trace: Trace, symbols: Symbols, wanted: list[int]) -> np.ndarray:
    """Per stack id of the trace, whether one of its return addresses lies in a wanted function: the
    exits "within" it however deep (inlining and frameless leaves move the immediate caller, not this)."""
    stacks = trace.stacks
    if stacks is None:
        raise VmexitError("within=: the trace has no exit stacks (recorded since trace format 4)")
    n = len(stacks.starts) - 1
    frames = stacks.frames.astype(np.uint64)
    if symbols.merged:   # a stack belongs to one domain: the one of any exit that has it
        owner = np.zeros(max(n, 1), dtype=np.uint64)
        owner[trace.exits["stack"].astype(np.int64)] = trace.exits["domain"]
        frames |= np.repeat(owner[:n], np.diff(stacks.starts).astype(np.int64)) << np.uint64(DOMAIN_SHIFT)
    hit = np.isin(symbols.table.index(frames), np.array(wanted, dtype=np.int64)).astype(np.int64)
    per_stack = np.add.reduceat(np.append(hit, 0), stacks.starts[:-1].astype(np.int64)) if n else hit[:0]
    per_stack[np.diff(stacks.starts.astype(np.int64)) == 0] = 0
    return per_stack > 0


def _is_hex(text: str) -> bool:
    return text.lower().startswith("0x")


def _isin(field: str, values: Iterable[int]) -> Mask:
    wanted = np.array(sorted(set(values)), dtype=np.int64)
    return lambda ex: np.isin(ex[field].astype(np.int64), wanted)


def _all(tests: list[Mask], ex: np.ndarray) -> np.ndarray:
    mask = np.ones(len(ex), dtype=bool)
    for test in tests:
        mask &= test(ex)
    return mask


def count(trace: Trace, **filters: Any) -> int:
    """How many exits the filters select (compile_filters), a chunk of exits at a time."""
    select = compile_filters(trace, **filters)
    exits = trace.exits
    return sum(int(np.count_nonzero(select(exits[i:i + CHUNK]))) for i in range(0, len(exits), CHUNK))


def mask(trace: Trace, **filters: Any) -> np.ndarray:
    """The boolean mask, one per exit, of those the filters select."""
    select = compile_filters(trace, **filters)
    exits = trace.exits
    parts = [select(exits[i:i + CHUNK]) for i in range(0, len(exits), CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
