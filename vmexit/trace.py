"""Trace: the exit records of one run plus its metadata, saved as a .npz file.

The file holds `exits` (EXIT_DTYPE; since format 3 with the `domain` and `subop` columns, which
older files read as 0), `emulated` (EMULATED_DTYPE, since format 2), `symbol_names` / `symbol_addresses` (so reports name functions
without the guest), and `meta`, a JSON document (format version, vmexit version, guest name and
sha256, options, profile, CPU frequency, instruction count, virtual time, end status, console output).
Files are compressed and written atomically (temporary file in the same directory, then rename), so an
interrupted write never leaves a half trace behind. Each array is streamed into its member of the zip
archive (zip64, fixed timestamps, so that equal traces are equal bytes) SAVE_ROWS records at a time:
saving holds no second copy of the records, compressed or not.

A run of several domains (host.py) is one trace too: `merge_domains` puts every domain's exits in
virtual-time order, keeps each domain's run facts in meta["domains"] and its symbols under names
prefixed `d<domid>:` (an address means different code in different domains, so a symbol belongs to
its domain); `domain_view` restricts such a trace to one domain's exits and symbols, as a trace of
its own, so that every report works on it unchanged.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .errors import VmexitError
from .exits import EMULATED_DTYPE, EXIT_DTYPE
from .stacks import Stacks

FORMAT = "vmexit-trace"
FORMAT_VERSION = 5  # 5: seq 32-bit; 4: exits gain stack, the stack table; 3: domain and subop; 2: emulated
SAVE_ROWS = 1 << 16  # records compressed at a time when saving (3.5 MiB of exits)


class TraceError(VmexitError):
    """A file that is not a usable vmexit trace."""


@dataclass
class Trace:
    exits: np.ndarray
    meta: dict
    symbols: dict[str, int] = field(default_factory=dict)
    emulated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=EMULATED_DTYPE))
    stacks: Stacks | None = None   # the stack table the exits' `stack` ids point into; None: not recorded

    @property
    def freq_hz(self) -> int:
        return int(self.meta["freq_hz"])

    def members(self) -> list[tuple[str, np.ndarray]]:
        """The arrays of the file, in its order."""
        names = sorted(self.symbols, key=lambda n: (self.symbols[n], n))
        meta = dict(self.meta, format=FORMAT, format_version=FORMAT_VERSION)
        return [
            ("exits", self.exits),
            ("emulated", self.emulated),
            ("symbol_names", np.array(names, dtype=np.str_) if names else np.zeros(0, dtype="<U1")),
            ("symbol_addresses", np.array([self.symbols[n] for n in names], dtype=np.uint32)),
            ("meta", np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)),
        ] + ([] if self.stacks is None else [("stack_frames", self.stacks.frames),
                                             ("stack_starts", self.stacks.starts)])

    def write(self, f: BinaryIO, rows: int = SAVE_ROWS) -> None:
        """The .npz file into a binary file object, `rows` records at a time."""
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in self.members():
                _write_member(archive, name, array, rows)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), self.write)


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray, rows: int) -> None:
    """One array as the member NAME.npy, as np.save writes it, compressed as it is written."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with archive.open(info, "w", force_zip64=True) as out:  # zip64: members may pass 4 GiB
        np.lib.format.write_array_header_1_0(out, np.lib.format.header_data_from_array_1_0(array))
        for start in range(0, len(array), rows):
            out.write(array[start:start + rows].tobytes())


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function writing into the open file) to a temporary file in the same
    directory, then rename it to `path`: readers see the old file or the whole new one."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OSError(f"{directory}: no such directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: The exit record before the domain and subop columns (issue 15): such traces load with both 0.
_EXIT_DTYPE_56 = np.dtype([("seq", "<u8")] + [(n, EXIT_DTYPE.fields[n][0]) for n in EXIT_DTYPE.names
                                              if n not in ("seq", "domain", "subop", "stack")])
#: The exit record of format 3, before the stack column (issue 17): such traces load with stack 0.
EXIT_DTYPE_60 = np.dtype([("seq", "<u8")] + [(n, EXIT_DTYPE.fields[n][0]) for n in EXIT_DTYPE.names
                                             if n not in ("seq", "stack")])
#: The exit record of format 4, seq 64-bit: its rows hold the same values.
EXIT_DTYPE_64 = np.dtype([("seq", "<u8")] + [(n, EXIT_DTYPE.fields[n][0]) for n in EXIT_DTYPE.names if n != "seq"])


def _upgrade(exits: np.ndarray) -> np.ndarray:
    if exits.dtype not in (_EXIT_DTYPE_56, EXIT_DTYPE_60, EXIT_DTYPE_64):
        return exits
    out = np.zeros(len(exits), dtype=EXIT_DTYPE)
    for name in exits.dtype.names:
        out[name] = exits[name]
    return out


def _stacks(z, names: set[str]) -> Stacks | None:
    """The stack table of a file (format 4), None for older files (their reports are caller-only)."""
    if "stack_frames" not in names or "stack_starts" not in names:
        return None
    frames, starts = z["stack_frames"], z["stack_starts"]
    if frames.dtype != np.uint32 or starts.dtype != np.uint64 or not len(starts) or int(starts[-1]) != len(frames):
        raise TraceError("the stack table has an unexpected layout")
    return Stacks(frames, starts)


def load(path: str | Path | BinaryIO) -> Trace:
    """A trace from its file, or from a binary file object holding a file's bytes (from_bytes)."""
    source, path = (path, "trace bytes") if hasattr(path, "read") else (Path(path), Path(path))
    try:
        with np.load(source, allow_pickle=False) as z:
            names = set(z.files)
            if "meta" not in names or "exits" not in names:
                raise TraceError(f"{path}: not a vmexit trace (no exits/meta arrays)")
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise TraceError(f"{path}: not a vmexit trace")
            version = meta.get("format_version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise TraceError(f"{path}: trace format version {version} is newer than this vmexit "
                                 f"reads ({FORMAT_VERSION}); upgrade vmexit")
            exits = _upgrade(z["exits"])
            if exits.dtype != EXIT_DTYPE:
                raise TraceError(f"{path}: exit records have an unexpected layout")
            emulated = z["emulated"] if "emulated" in names else np.zeros(0, dtype=EMULATED_DTYPE)
            if emulated.dtype != EMULATED_DTYPE:
                raise TraceError(f"{path}: emulated-access records have an unexpected layout")
            symbols = {str(n): int(a) for n, a in zip(z["symbol_names"], z["symbol_addresses"])}
            stacks = _stacks(z, names)
    except TraceError as e:
        if str(e).startswith(str(path)):
            raise
        raise TraceError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a trace") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError,
            UnicodeDecodeError) as e:
        raise TraceError(f"{path}: not a readable vmexit trace ({type(e).__name__}: {e})") from None
    if version < 3:
        meta["subops_recorded"] = False  # a run recorded without sub-operations: hypercalls go by plain name
    if stacks is not None and len(exits) and int(exits["stack"].max()) >= len(stacks):
        raise TraceError(f"{path}: an exit points past the stack table")
    return Trace(exits=exits, meta=meta, symbols=symbols, emulated=emulated, stacks=stacks)


def from_bytes(data: bytes) -> Trace:
    """The trace whose file is `data` (Trace.to_bytes): a run done in another process or on another machine."""
    return load(io.BytesIO(data))


# runs of several domains ----------------------------------------------------------------------------
#: The exit records of formats 1 and 2 (56 B), by a public name.
OLD_EXIT_DTYPE = _EXIT_DTYPE_56
#: How bad a domain's ending is: a merged run ends as its worst domain did.
_SEVERITY = ("stopped", "exited", "halted", "console", "budget", "interrupted", "crashed")


def merge_domains(traces: list[Trace], host: dict) -> Trace:
    """One trace of a run of several domains: every domain's exits in virtual-time order (cycles; ties
    by domid, then by the domain's own order), `seq` renumbered from 0, emulated accesses re-pointed to
    their exits' new rows, symbols named `d<domid>:<name>`, meta["domains"] each domain's meta (with
    its domid and name) and meta["host"] the host's facts. `host` gives `cycles` (host time at the end)
    and may give `switches`, `switch_cycles` (per switch), `name` (the run's), `constants`."""
    if not traces:
        raise ValueError("merging needs at least one domain's trace")
    domids = [int(t.meta.get("domid", i)) for i, t in enumerate(traces)]
    if len(set(domids)) != len(domids) or not all(0 <= d < 1 << 16 for d in domids):
        raise ValueError(f"domain ids must be distinct and fit 16 bits: {domids}")
    sizes = [len(t.exits) for t in traces]
    starts = np.cumsum([0] + sizes)
    exits = np.concatenate([t.exits for t in traces]) if traces else np.zeros(0, dtype=EXIT_DTYPE)
    exits["domain"] = np.repeat(np.array(domids, dtype=np.uint16), sizes)
    stacks = _merged_stacks(traces, exits)
    order = np.lexsort((exits["seq"], exits["domain"], exits["cycles"]))
    merged = exits[order]
    merged["seq"] = np.arange(len(merged), dtype=np.uint32)
    row = np.empty(len(order), dtype=np.int64)
    row[order] = np.arange(len(order))
    emulated = []
    for t, start in zip(traces, starts):
        em = t.emulated.copy()
        em["exit"] = row[start + em["exit"].astype(np.int64)]
        emulated.append(em)
    emulated = np.concatenate(emulated)
    emulated = emulated[np.argsort(emulated["exit"], kind="stable")]
    symbols = {f"d{d}:{name}": addr for d, t in zip(domids, traces) for name, addr in t.symbols.items()}
    meta = _merged_meta(traces, domids, host, merged)
    return Trace(exits=merged, meta=meta, symbols=symbols, emulated=emulated, stacks=stacks)


def _merged_stacks(traces: list[Trace], exits: np.ndarray) -> Stacks | None:
    """The domains' stack tables as one (ids above 0 moved past the earlier domains'), the exits'
    `stack` ids (in the domains' order, before sorting) moved with them; None if a domain has none."""
    if any(t.stacks is None for t in traces):
        exits["stack"] = 0
        return None
    table, offsets = Stacks.concat([t.stacks for t in traces])
    shift = np.repeat(np.array(offsets, dtype=np.uint32), [len(t.exits) for t in traces])
    exits["stack"] += np.where(exits["stack"] != 0, shift, 0).astype(np.uint32)
    return table


def cpu_cycles(meta: dict, exit_cycles: int) -> int:
    """A domain's virtual CPU time in cycles: meta["cpu_cycles"] when the run recorded it, else its
    instructions at its CPI, plus its exits' cost and the upcalls Xen entered (xen stats
    `upcall_cycles`, 0 when not recorded) and the work Xen's DBNet driver did on its time (xen stats
    `dbnet_cycles`)."""
    if "cpu_cycles" in meta:
        return int(meta["cpu_cycles"])
    num, den = meta.get("cpi", (1, 1))
    xen = meta.get("xen") or {}
    upcalls = int(xen.get("upcall_cycles", 0)) + int(xen.get("dbnet_cycles", 0))
    return int(meta.get("instructions", 0)) * num // den + int(exit_cycles) + upcalls


def _merged_meta(traces: list[Trace], domids: list[int], host: dict, exits: np.ndarray) -> dict:
    """The run's meta: the first domain's settings, the domains' totals, the host's time and facts."""
    first = traces[0].meta
    freq = int(first["freq_hz"])
    cycles = int(host.get("cycles", max(int(t.meta.get("cycles", 0)) for t in traces)))
    switches, per_switch = int(host.get("switches", 0)), int(host.get("switch_cycles", 0))
    exit_cycles = np.bincount(exits["domain"], weights=exits["cost"], minlength=max(domids) + 1)
    domains = [dict(t.meta, domid=d, name=t.meta.get("name") or f"dom{d}") for d, t in zip(domids, traces)]
    busy = sum(cpu_cycles(m, int(exit_cycles[m["domid"]])) for m in domains)
    worst = max(domains, key=lambda m: _SEVERITY.index(m.get("status")) if m.get("status") in _SEVERITY else 0)
    nic = next((m["nic"] for m in domains if (m.get("nic") or {}).get("tx_frames") or
                (m.get("nic") or {}).get("rx_frames")), first.get("nic"))
    constants = host.get("constants") or {k: v for m in domains for k, v in (m.get("constants") or {}).items()}
    return {
        "vmexit_version": first.get("vmexit_version"), "guest_kind": "domains",
        "guest": host.get("name") or "+".join(str(m.get("guest", "?")) for m in domains),
        "guest_sha256": hashlib.sha256(" ".join(str(m.get("guest_sha256")) for m in domains).encode()).hexdigest(),
        "constants": constants, "options": first.get("options"), "profile": first.get("profile"),
        "hypervisor": first.get("hypervisor"), "freq_hz": freq, "cpi": first.get("cpi", [1, 1]),
        "instructions": sum(int(m.get("instructions", 0)) for m in domains), "cycles": cycles,
        "virtual_seconds": cycles / freq, "idle_cycles": max(cycles - switches * per_switch - busy, 0),
        "status": worst.get("status", "unknown"),
        "detail": f"{worst['name']} (domain {worst['domid']}): {worst.get('detail', '')}",
        "end_address": worst.get("end_address"), "nic": nic, "optimizations": first.get("optimizations") or {},
        "domains": domains,
        "host": dict(host, cycles=cycles, switches=switches, switch_cycles=per_switch,
                     switch_total_cycles=switches * per_switch),
    }


def domains_of(trace: Trace) -> list[dict]:
    """Each domain's meta: meta["domains"] of a merged run, the one domain of a domain_view, or the
    one domain (domid 0) of a run of one."""
    if "domains" in trace.meta:
        return trace.meta["domains"]
    if "domain" in trace.meta:
        return [trace.meta["domain"]]
    return [dict(trace.meta, domid=0, name=trace.meta.get("name", "dom0"))]


def domain_view(trace: Trace, domid: int) -> Trace:
    """The exits of one domain of a run as a trace of their own: its rows (seq renumbered, emulated
    accesses re-pointed), its symbols under their own names, its guest, instructions and devices; the
    run's time stays the host's, and all time the domain did not spend on its CPU counts as idle."""
    entry = next((m for m in domains_of(trace) if int(m["domid"]) == domid), None)
    if entry is None:
        known = ", ".join(str(m["domid"]) for m in domains_of(trace))
        raise TraceError(f"the trace has no domain {domid} (its domains: {known})")
    if "domains" not in trace.meta:
        return trace
    mask = trace.exits["domain"] == domid
    rows = np.flatnonzero(mask)
    exits = trace.exits[rows]
    exits["seq"] = np.arange(len(exits), dtype=np.uint32)
    em = trace.emulated[mask[trace.emulated["exit"].astype(np.int64)]] if len(trace.emulated) else trace.emulated
    em = em.copy()
    em["exit"] = np.searchsorted(rows, em["exit"].astype(np.int64))
    prefix = f"d{domid}:"
    symbols = {n[len(prefix):]: a for n, a in trace.symbols.items() if n.startswith(prefix)}
    meta = {k: v for k, v in trace.meta.items() if k not in ("domains", "host")}
    busy = cpu_cycles(entry, int(exits["cost"].sum(dtype=np.uint64)))
    meta.update({k: entry.get(k) for k in ("guest", "guest_sha256", "constants", "nic", "xen", "console", "status",
                                           "detail", "end_address")},
                instructions=int(entry.get("instructions", 0)), domain=entry,
                idle_cycles=max(int(trace.meta.get("cycles", 0)) - busy, 0))
    return Trace(exits=exits, meta=meta, symbols=symbols, emulated=em, stacks=trace.stacks)
