"""Pure functions Trace -> Report. Every aggregation is numpy (unique / bincount / searchsorted).

Layouts follow the sources users already read:
- by function / address: the KVM paper's Tables 1-2 (rank, exit address, exits, time s / % of total
  run time, function), with --callers Table 3's caller address and caller (the most frequent [EBP+4]
  return address at that site, and the function that contains it);
- by reason, port, mmio: `perf kvm stat report` (tools/perf/arch/x86/util/kvm-stat.c): Samples,
  Samples%, Time% (of all exit handling time), Min, Max, Avg (+-stddev%), here with p50/p95 too, and
  the totals line "Total Samples:N, Total events handled time:Xus.".
Time is modeled cost: the trace's own costs, or a profile's prices when a report re-prices a trace.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .exits import Direction, ExitReason, reason_name
from .symbols import SymbolTable
from .trace import Trace


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str  # int | hex | str | seconds | pct | us | us_pm


@dataclass
class Report:
    by: str
    title: str
    columns: list[Column]
    rows: list[dict]
    totals: dict
    footer: str = ""
    meta: dict = field(default_factory=dict)


BY_CHOICES = ("function", "address", "caller", "reason", "port", "mmio")


@dataclass(frozen=True)
class Pricing:
    """Exit costs, clock and run length a report uses: the trace's own, or re-priced by a profile."""
    costs: np.ndarray      # cycles per exit (float64)
    freq: int
    run_seconds: float
    profile: str

    @classmethod
    def of(cls, trace: Trace, profile=None) -> "Pricing":
        m = trace.meta
        if profile is None:
            return cls(trace.exits["cost"].astype(np.float64), trace.freq_hz,
                       float(m.get("virtual_seconds", 0.0)), str(m.get("profile", "?")))
        # Re-pricing keeps the recorded exit sequence: instructions are re-timed with the new CPI and
        # frequency, exits with the new costs; idle time (waiting for timers) keeps its length in seconds.
        costs = profile.price(trace.exits).astype(np.float64)
        num, den = profile.cpi
        idle_s = float(m.get("idle_cycles", 0)) / trace.freq_hz
        run = (int(m.get("instructions", 0)) * num / den + costs.sum()) / profile.freq_hz + idle_s
        return cls(costs, profile.freq_hz, run, profile.name)


def _totals(trace: Trace, pricing: Pricing) -> dict:
    m = trace.meta
    return {
        "exits": int(len(trace.exits)),
        "time_s": float(pricing.costs.sum() / pricing.freq),
        "instructions": int(m.get("instructions", 0)),
        "virtual_seconds": float(pricing.run_seconds),
        "status": m.get("status", "unknown"),
        "detail": m.get("detail", ""),
        "profile": pricing.profile,
    }


def _group(keys: np.ndarray, weights: np.ndarray):
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=weights, minlength=len(uniq))
    return uniq, inverse, counts, sums


def _top_callers(site_idx: np.ndarray, callers: np.ndarray, n_sites: int):
    """Most frequent caller address per site (ties: the lowest address)."""
    pairs = np.stack([site_idx.astype(np.uint64), callers.astype(np.uint64)], axis=1)
    upairs, pcounts = np.unique(pairs, axis=0, return_counts=True)
    order = np.lexsort((upairs[:, 1], -pcounts, upairs[:, 0]))
    first_sites, first = np.unique(upairs[order, 0], return_index=True)
    best = np.zeros(n_sites, dtype=np.uint64)
    best[first_sites.astype(np.int64)] = upairs[order[first], 1]
    return best


def hot_sites(trace: Trace, by: str, top: int | None, callers: bool, pricing: Pricing) -> Report:
    """The paper's hot-function table, grouped by function, exit address or caller."""
    freq = pricing.freq
    cost = pricing.costs
    symtab = SymbolTable(trace.symbols)
    ex = trace.exits
    run_seconds = pricing.run_seconds or 1.0
    rows: list[dict] = []
    if by == "caller":
        key = symtab.index(ex["caller"])
    elif by == "function":
        key = symtab.index(ex["rip"])
    else:
        key = ex["rip"].astype(np.int64)
    uniq, inverse, counts, sums = _group(key, cost)
    # hottest exit address of each group (function/caller rows show where the exits come from)
    site_uniq, site_inv, site_counts = np.unique(
        np.stack([inverse.astype(np.int64), ex["rip"].astype(np.int64)], axis=1), axis=0,
        return_inverse=True, return_counts=True)
    order = np.lexsort((site_uniq[:, 1], -site_counts, site_uniq[:, 0]))
    grp_first, first_at = np.unique(site_uniq[order, 0], return_index=True)
    top_rip = np.zeros(len(uniq), dtype=np.int64)
    top_rip[grp_first] = site_uniq[order[first_at], 1]
    best_callers = _top_callers(inverse, ex["caller"], len(uniq)) if callers else None
    rank = np.lexsort((uniq, -counts))
    if top is not None:
        rank = rank[:top]
    for r, g in enumerate(rank, 1):
        rip = int(top_rip[g])
        row = {
            "rank": r,
            "address": f"0x{rip:08x}",
            "count": int(counts[g]),
            "time_s": float(sums[g] / freq),
            "time_pct": float(100.0 * sums[g] / freq / run_seconds),
            "function": symtab.name(rip),
        }
        if by == "caller":
            row["caller"] = str(symtab.names[int(uniq[g])])
        if callers:
            ca = int(best_callers[g])
            row["caller_address"] = f"0x{ca:08x}" if ca else "-"
            row["caller"] = symtab.name(ca) if ca else "-"
        rows.append(row)
    columns = [Column("rank", "#", "int"), Column("address", "exit address", "hex"),
               Column("count", "exits", "int"), Column("time_s", "time s", "seconds"),
               Column("time_pct", "% of run", "pct"), Column("function", "function", "str")]
    if by == "caller":
        columns.insert(1, Column("caller", "caller", "str"))
    elif callers:
        columns += [Column("caller_address", "caller address", "hex"), Column("caller", "caller", "str")]
    titles = {"function": "Hot functions", "address": "Hot exit addresses", "caller": "Hot callers"}
    return Report(by=by, title=f"{titles[by]} ({trace.meta.get('guest', '?')})", columns=columns,
                  rows=rows, totals=_totals(trace, pricing))


def _stat_rows(labels: list[int], inverse: np.ndarray, us: np.ndarray, n: int) -> list[dict]:
    """One perf-kvm-stat row per group; the per-group work is over groups, the grouping is numpy."""
    counts = np.bincount(inverse, minlength=n)
    sums = np.bincount(inverse, weights=us, minlength=n)
    order = np.argsort(inverse, kind="stable")
    sorted_us = us[order]
    starts = np.searchsorted(inverse[order], np.arange(n), side="left")
    total_n = max(int(counts.sum()), 1)
    total_us = float(us.sum()) or 1.0
    rows = []
    for g in np.lexsort((np.arange(n), -counts)):
        c = int(counts[g])
        if c == 0:
            continue
        vals = np.sort(sorted_us[starts[g]:starts[g] + c])
        mean = float(vals.mean())
        rows.append({
            "count": c,
            "count_pct": 100.0 * c / total_n,
            "time_pct": 100.0 * float(sums[g]) / total_us,
            "min_us": float(vals[0]),
            "max_us": float(vals[-1]),
            "avg_us": mean,
            "stddev_pct": float(100.0 * vals.std() / mean) if mean else 0.0,
            "p50_us": float(np.percentile(vals, 50)),
            "p95_us": float(np.percentile(vals, 95)),
            "_label": labels[g],
        })
    return rows


_STAT_COLUMNS = [Column("count", "Samples", "int"), Column("count_pct", "Samples%", "pct"),
                 Column("time_pct", "Time%", "pct"), Column("min_us", "Min Time", "us"),
                 Column("max_us", "Max Time", "us"), Column("avg_us", "Avg time", "us_pm"),
                 Column("p50_us", "p50", "us"), Column("p95_us", "p95", "us")]


def _stat_report(trace: Trace, by: str, title: str, label_key: str, label_header: str,
                 select: np.ndarray, keys: np.ndarray, pricing: Pricing) -> Report:
    """perf-kvm-stat rows for the selected exits grouped by integer keys (row["_label"] = the key)."""
    us = pricing.costs[select] * 1e6 / pricing.freq
    uniq, inverse = np.unique(keys, return_inverse=True)
    rows = _stat_rows([int(k) for k in uniq], inverse.astype(np.int64), us, len(uniq))
    totals = _totals(trace, pricing)
    totals["selected_exits"] = int(select.sum())
    footer = f"Total Samples:{int(select.sum())}, Total events handled time:{us.sum():.2f}us."
    return Report(by=by, title=title, columns=[Column(label_key, label_header, "str")] + _STAT_COLUMNS,
                  rows=rows, totals=totals, footer=footer)


def by_reason(trace: Trace, pricing: Pricing) -> Report:
    ex = trace.exits
    select = np.ones(len(ex), dtype=bool)
    report = _stat_report(trace, "reason", "Analyze events for all VMs, all VCPUs", "reason", "VM-EXIT",
                          select, ex["reason"].astype(np.int64), pricing)
    for row in report.rows:
        row["reason"] = reason_name(int(row.pop("_label")))
    return report


def by_port(trace: Trace, pricing: Pricing) -> Report:
    ex = trace.exits
    select = ex["reason"] == ExitReason.IO_INSTRUCTION
    keys = (ex["qualifier"][select].astype(np.int64) << 2) | ex["direction"][select].astype(np.int64)
    report = _stat_report(trace, "port", "Analyze events for all VMs, all VCPUs (ioport)", "key",
                          "IO Port Access", select, keys, pricing)
    for row in report.rows:
        k = int(row.pop("_label"))
        port, d = k >> 2, k & 3
        row["port"] = f"0x{port:x}"
        row["direction"] = "in" if d == Direction.IN else "out"
        row["key"] = f"0x{port:x}:{'PIN' if d == Direction.IN else 'POUT'}"
    return report


def by_mmio(trace: Trace, pricing: Pricing) -> Report:
    ex = trace.exits
    select = (ex["reason"] == ExitReason.EPT_VIOLATION) | (ex["reason"] == ExitReason.APIC_ACCESS)
    keys = (ex["qualifier"][select].astype(np.int64) << 2) | ex["direction"][select].astype(np.int64)
    report = _stat_report(trace, "mmio", "Analyze events for all VMs, all VCPUs (mmio)", "key",
                          "MMIO Access", select, keys, pricing)
    for row in report.rows:
        k = int(row.pop("_label"))
        addr, d = k >> 2, k & 3
        row["address"] = f"0x{addr:x}"
        row["direction"] = "read" if d == Direction.IN else "write"
        row["key"] = f"0x{addr:x}:{'R' if d == Direction.IN else 'W'}"
    return report


def report(trace: Trace, by: str = "function", top: int | None = 10, callers: bool = False,
           profile=None) -> Report:
    """The report `by` for a trace, priced by its own costs or re-priced by `profile`."""
    pricing = Pricing.of(trace, profile)
    if by in ("function", "address", "caller"):
        return hot_sites(trace, by, top, callers, pricing)
    table = {"reason": by_reason, "port": by_port, "mmio": by_mmio}
    if by not in table:
        raise ValueError(f"unknown report {by!r} (choose from {', '.join(BY_CHOICES)})")
    rep = table[by](trace, pricing)
    if top is not None and by != "reason":
        rep.rows = rep.rows[:top]
    return rep
