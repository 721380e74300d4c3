"""Real exits into a vmexit trace: the text `perf script` or `trace-cmd report` prints for the kvm
tracepoints of a real host (kvm:kvm_exit with the guest RIP and reason; kvm:kvm_pio, kvm:kvm_mmio,
kvm:kvm_msr for the port, address or MSR; kvm:kvm_entry for the time each exit took;
kvm:kvm_userspace_exit for exits that went on to QEMU), so that a real server's exits get the same
hot-function table, reports and `vmexit compare` as a modeled run.

Formats are one explicit table (FORMATS): a format's module splits its lines' headers (perf.py,
tracecmd.py); the tracepoints' texts are the same in both (events.py); the trace is built in numpy
(build.py); names come from --symbols (symbolfile.py: System.map, an ELF such as vmlinux, or a JSON map).

Addresses: the trace keeps 32-bit addresses (exits.EXIT_DTYPE). A 64-bit kernel's RIPs and symbols
(0xffffffff81000000 and up: the top 4 GiB, where the kernel's text and its modules are) keep their
lower 32 bits, which are unique there; 32-bit addresses are kept as they are; any other RIP (a 64-bit
process in the guest's user space) is stored as 0, the unknown address, and counted in
meta["import"]["rips_not_kept"], never named after a kernel function. An MMIO address above 4 GiB keeps
its lower 32 bits too (the qualifier field's width).

Clock: timestamps become cycles at the cost profile's frequency (--profile, default the KVM one's) from
the file's first event; the file's own first and last timestamps stay in meta["import"] in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from .. import __version__
from ..costs import DEFAULT_PROFILE, load_profile
from ..exits import ExitReason
from ..trace import Trace
from . import perf, tracecmd
from .build import exit_records, reason_counts, select, source_sha256, vm_keys
from .events import Events, ImportFormatError, read
from .reasons import classify
from .symbolfile import SymbolFileError, load as load_symbols


@dataclass(frozen=True)
class Format:
    name: str
    module: ModuleType     # split(line), TOOL
    records: str           # how to record a file of this format, for the help and the README


FORMATS: dict[str, Format] = {
    "perf": Format("perf", perf, "perf record -e 'kvm:kvm_exit' -e 'kvm:kvm_entry' -e 'kvm:kvm_pio' "
                   "-e 'kvm:kvm_mmio' -a; perf script -F +pid --ns > FILE"),
    "trace-cmd": Format("trace-cmd", tracecmd, "trace-cmd record -e kvm:kvm_exit -e kvm:kvm_entry -e kvm:kvm_pio "
                        "-e kvm:kvm_mmio; trace-cmd report > FILE"),
}

__all__ = ["FORMATS", "ImportFormatError", "SymbolFileError", "import_file", "notes"]


def import_file(fmt: str, path: str | Path, symbols: str | Path | None = None, pid: int | None = None,
                profile=None) -> Trace:
    """The trace of a perf script / trace-cmd report text file (see the module docstring)."""
    if fmt not in FORMATS:
        raise ImportFormatError(f"unknown import format {fmt!r} (choose from {', '.join(FORMATS)})")
    module = FORMATS[fmt].module
    path = Path(path)
    profile = profile if profile is not None else load_profile(DEFAULT_PROFILE)
    names, sha = load_symbols(symbols) if symbols is not None else ({}, None)
    events = read(path, module.split, module.TOOL)
    rows = select(events, pid, path)
    exits, counts = exit_records(rows, events.names, profile)
    domains, pids = vm_keys(rows)
    exits["domain"] = domains
    ns = rows["ns"]
    span = int(exits["cycles"].max()) if len(exits) else 0
    span = max(span, int((ns.max() - ns.min()) * profile.freq_hz // 1_000_000_000))
    meta = _meta(path, module.TOOL, events, rows, profile, span, exits, counts, symbols, sha, pid)
    if len(pids) > 1:
        meta["domains"] = [_domain(meta, d, p, events.comms.get(p, "?"), exits) for d, p in enumerate(pids)]
        meta["host"] = {"cycles": span, "switches": 0, "switch_cycles": 0, "switch_total_cycles": 0}
        names = {f"d{d}:{n}": a for d in range(len(pids)) for n, a in names.items()}
    return Trace(exits=exits, meta=meta, symbols=names)


def _meta(path: Path, tool: str, events: Events, rows: np.ndarray, profile, span: int, exits, counts: dict,
          symbols, sha, pid) -> dict:
    cost = int(exits["cost"].sum(dtype=np.uint64))
    reasons = reason_counts(rows, events.names)
    isas = sorted({isa for n in reasons if (isa := classify(n)[1]) is not None})
    first, last = int(rows["ns"].min()), int(rows["ns"].max())
    detail = (f"{tool} of {path.name}: {len(exits):,} kvm_exit, {counts['costs_measured']:,} timed to their "
              f"kvm_entry, {counts['costs_priced']:,} priced by {profile.name}")
    return {
        "vmexit_version": __version__, "guest": path.name, "guest_kind": "import", "guest_sha256": sha,
        "constants": {}, "options": {"hypervisor": "kvm"}, "profile": profile.name, "hypervisor": "kvm",
        "freq_hz": profile.freq_hz, "cpi": list(profile.cpi), "instructions": 0, "cycles": span,
        "virtual_seconds": span / profile.freq_hz, "idle_cycles": max(span - cost, 0),
        "status": "imported", "detail": detail, "end_address": None, "optimizations": {},
        "import": {
            "source": path.name, "source_sha256": source_sha256(path), "tool": tool, "lines": events.lines,
            "pid": pid, "symbols": Path(symbols).name if symbols is not None else None,
            "kernel_reasons": reasons, "isa": isas, "first_timestamp_s": f"{first / 1e9:.9f}",
            "last_timestamp_s": f"{last / 1e9:.9f}", "skipped_events": dict(sorted(events.skipped.items())),
            **counts,
        },
    }


def _domain(meta: dict, domid: int, pid: int, comm: str, exits) -> dict:
    """One VM (process) of a file of several, as trace.merge_domains describes a domain."""
    mine = exits["domain"] == domid
    return {"domid": domid, "name": f"pid {pid} ({comm})", "pid": pid, "guest": meta["guest"],
            "guest_sha256": meta["guest_sha256"], "instructions": 0, "cpi": meta["cpi"], "freq_hz": meta["freq_hz"],
            "cpu_cycles": int(exits["cost"][mine].sum(dtype=np.uint64)), "status": "imported",
            "detail": f"{int(mine.sum()):,} kvm_exit of process {pid}", "constants": {}}


def notes(meta: dict) -> list[str]:
    """What a reader of an imported trace's report should know that the report does not show."""
    imp = meta["import"]
    out = []
    unknown = {n: c for n, c in imp["kernel_reasons"].items() if classify(n)[0] == ExitReason.UNKNOWN}
    if unknown:
        out.append(f"{sum(unknown.values()):,} exits of reasons vmexit has no row for count as UNKNOWN: "
                   + ", ".join(f"{n} {c:,}" for n, c in sorted(unknown.items(), key=lambda kv: -kv[1])))
    if imp["rips_not_kept"]:
        out.append(f"{imp['rips_not_kept']:,} exits at 64-bit addresses outside the kernel's top 4 GiB (guest user "
                   f"space) are at the unknown address 0")
    if not imp["costs_measured"]:
        out.append(f"no kvm_exit has a kvm_entry after it: every exit is priced by {meta['profile']} "
                   f"(record kvm:kvm_entry to measure them)")
    return out
