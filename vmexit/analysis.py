"""Pure functions Trace -> Report. Every aggregation is numpy (unique / bincount / searchsorted); which
exits a report groups and how its rows are keyed and named is the table of views (views.py).

Layouts follow the sources users already read:
- by function / address / caller: the KVM paper's hot-function tables (Zhang et al., "Modifying Guest
  OS to Optimize I/O Virtualization in KVM", Chinese Journal of Computers, 2010, Tables 1-2: rank, exit
  address, exits, time s / %, function; with --callers Table 3's caller address and caller: the most
  frequent [EBP+4] return address at that site, and the function that contains it). Our % is of the
  whole virtual run; the paper's tables beside ours (papers.py) add the share of exit time;
- by reason, port, mmio, hypercall: `perf kvm stat report` (tools/perf/arch/x86/util/kvm-stat.c):
  Samples, Samples%, Time% (of all exit handling time), Min, Max, Avg (+-stddev%), here with p50/p95
  too, and the totals line "Total Samples:N, Total events handled time:Xus.".
Time is modeled cost: the trace's own costs, or a profile's prices when a report re-prices a trace.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .trace import Trace
from .views import VIEWS, Context, View, group, group_by


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


BY_CHOICES = tuple(VIEWS)
COMPARE_CHOICES = tuple(name for name, view in VIEWS.items() if view.comparable)


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
        em = trace.emulated
        if len(em):
            costs += np.bincount(em["exit"].astype(np.intp), weights=profile.price_emulated(em).astype(np.float64),
                                 minlength=len(costs))[:len(costs)]
        num, den = profile.cpi
        idle_s = float(m.get("idle_cycles", 0)) / trace.freq_hz
        run = (int(m.get("instructions", 0)) * num / den + costs.sum()) / profile.freq_hz + idle_s
        return cls(costs, profile.freq_hz, run, profile.name)

    @property
    def exit_seconds(self) -> float:
        """Modeled exit time: the cost of every exit, in seconds."""
        return float(self.costs.sum() / self.freq)


def exit_seconds(trace: Trace, profile=None) -> float:
    """A trace's modeled exit time in seconds, at its own costs or re-priced by `profile`."""
    return Pricing.of(trace, profile).exit_seconds


def variant(meta: dict) -> str:
    """What a run changed from the default: guest constants (-D), optimizations (--opt) and the host's
    timer rate (--host-timer-hz)."""
    parts = [f"-D {k}={v}" for k, v in sorted((meta.get("constants") or {}).items())]
    options = meta.get("options") or {}
    parts += [f"--opt {k}={v}" for k, v in sorted((options.get("optimizations") or {}).items())]
    if options.get("host_timer_hz"):
        parts.append(f"--host-timer-hz {options['host_timer_hz']}")
    return " ".join(parts) or "default"


def _totals(trace: Trace, pricing: Pricing) -> dict:
    m = trace.meta
    nic = m.get("nic") or {}
    network = ({"frames_out": nic["tx_frames"], "bytes_out": nic["tx_bytes"], "frames_in": nic["rx_frames"],
                "bytes_in": nic["rx_bytes"], "throughput_mbit_s": nic["throughput_mbit_s"]}
               if nic.get("tx_frames") or nic.get("rx_frames") else None)
    totals = {
        "exits": int(len(trace.exits)),
        "time_s": pricing.exit_seconds,
        "instructions": int(m.get("instructions", 0)),
        "virtual_seconds": float(pricing.run_seconds),
        "status": m.get("status", "unknown"),
        "detail": m.get("detail", ""),
        "profile": pricing.profile,
    }
    if network is not None:
        frames = network["frames_out"] + network["frames_in"]
        network["exits_per_frame"] = totals["exits"] / frames
        network["exit_us_per_frame"] = totals["time_s"] / frames * 1e6
        totals["network"] = network
    opts = m.get("optimizations") or {}
    if opts:
        totals["optimizations"] = opts
    return totals


def _best_per_group(group_of_pair: np.ndarray, value_of_pair: np.ndarray, count_of_pair: np.ndarray,
                    n_groups: int) -> np.ndarray:
    """For each group, the value of its most frequent pair (ties: the lowest value)."""
    order = np.lexsort((value_of_pair, -count_of_pair, group_of_pair))
    groups, first = np.unique(group_of_pair[order], return_index=True)
    best = np.zeros(n_groups, dtype=np.int64)
    best[groups] = value_of_pair[order[first]]
    return best


def _most_frequent(inverse: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """The most frequent value of `values` within each group of `inverse`."""
    v_uniq, v_inv, _ = group(values)
    pair_uniq, _, pair_counts = group(inverse * max(len(v_uniq), 1) + v_inv)
    n_values = max(len(v_uniq), 1)
    return _best_per_group(pair_uniq // n_values, v_uniq[pair_uniq % n_values], pair_counts, n_groups)


# the paper's hot-function layout ----------------------------------------------------------------------
_SITE_COLUMNS = (Column("rank", "#", "int"), Column("address", "exit address", "hex"),
                 Column("count", "exits", "int"), Column("time_s", "time s", "seconds"),
                 Column("time_pct", "% of run", "pct"), Column("function", "function", "str"))
_CALLER_COLUMNS = (Column("caller_address", "caller address", "hex"), Column("caller", "caller", "str"))


def hot_sites(trace: Trace, by: str, top: int | None, callers: bool, pricing: Pricing) -> Report:
    """The paper's hot-function table, grouped by function, exit address or caller."""
    return _sites(trace, VIEWS[by], top, callers, pricing)


def _sites(trace: Trace, view: View, top: int | None, callers: bool, pricing: Pricing) -> Report:
    ctx = Context.of(trace)
    ex = trace.exits
    groups = group_by(view, ex, ctx)
    n = len(groups.keys)
    sums = groups.sum(pricing.costs)
    run_seconds = pricing.run_seconds or 1.0
    # the hottest exit address of each group: function and caller rows show where their exits come from
    top_rip = _most_frequent(groups.inverse, n, groups.pick(ex["rip"].astype(np.int64))) if n else groups.keys
    best_callers = _most_frequent(groups.inverse, n, groups.pick(ex["caller"].astype(np.int64))) if callers else None
    rank = np.lexsort((groups.keys, -groups.counts))
    rows: list[dict] = []
    for r, g in enumerate(rank if top is None else rank[:top], 1):
        rip = int(top_rip[g])
        row = {
            "rank": r,
            "address": f"0x{rip:08x}",
            "count": int(groups.counts[g]),
            "time_s": float(sums[g] / pricing.freq),
            "time_pct": float(100.0 * sums[g] / pricing.freq / run_seconds),
            "function": ctx.symbols.name(rip),
        }
        row.update(groups.fields(g, ctx))
        if callers:
            ca = int(best_callers[g])
            row["caller_address"] = f"0x{ca:08x}" if ca else "-"
            row["caller"] = ctx.symbols.name(ca) if ca else "-"
        rows.append(row)
    columns = list(_SITE_COLUMNS)
    if view.column not in {c.key for c in columns}:
        columns.insert(1, Column(view.column, view.header, "str"))
    elif callers:
        columns += _CALLER_COLUMNS
    return Report(by=view.name, title=view.title.format(guest=trace.meta.get("guest", "?")), columns=columns,
                  rows=rows, totals=_totals(trace, pricing))


# perf kvm stat's layout -------------------------------------------------------------------------------
_STAT_COLUMNS = [Column("count", "Samples", "int"), Column("count_pct", "Samples%", "pct"),
                 Column("time_pct", "Time%", "pct"), Column("min_us", "Min Time", "us"),
                 Column("max_us", "Max Time", "us"), Column("avg_us", "Avg time", "us_pm"),
                 Column("p50_us", "p50", "us"), Column("p95_us", "p95", "us")]


def _stat_rows(inverse: np.ndarray, us: np.ndarray, n: int) -> list[tuple[int, dict]]:
    """(group, row) of one perf-kvm-stat row per group, most samples first: counts and sums by bincount,
    order statistics per group."""
    counts = np.bincount(inverse, minlength=n)
    sums = np.bincount(inverse, weights=us, minlength=n)
    total_n = max(int(counts.sum()), 1)
    total_us = float(us.sum()) or 1.0
    rows = []
    for g in np.lexsort((np.arange(n), -counts)):
        c = int(counts[g])
        if c == 0:
            continue
        vals = us[inverse == g]
        mean = float(sums[g]) / c
        p50, p95 = np.percentile(vals, [50, 95])
        rows.append((int(g), {
            "count": c,
            "count_pct": 100.0 * c / total_n,
            "time_pct": 100.0 * float(sums[g]) / total_us,
            "min_us": float(vals.min()),
            "max_us": float(vals.max()),
            "avg_us": mean,
            "stddev_pct": float(100.0 * vals.std() / mean) if mean else 0.0,
            "p50_us": float(p50),
            "p95_us": float(p95),
        }))
    return rows


def _stat(trace: Trace, view: View, top: int | None, callers: bool, pricing: Pricing) -> Report:
    """perf-kvm-stat rows of the exits a view selects, one per key (--callers does not apply)."""
    ctx = Context.of(trace)
    groups = group_by(view, trace.exits, ctx)
    us = groups.pick(pricing.costs) * 1e6 / pricing.freq
    extra = {name: groups.sum(trace.exits[source].astype(np.float64)) for name, source, _ in view.sums}
    rows = []
    for g, row in _stat_rows(groups.inverse, us, len(groups.keys)):
        row.update(groups.fields(g, ctx))
        row.update({name: int(sums[g]) for name, sums in extra.items()})
        rows.append(row)
    if top is not None and not view.every_row:
        rows = rows[:top]
    totals = _totals(trace, pricing)
    totals["selected_exits"] = groups.selected
    footer = f"Total Samples:{groups.selected}, Total events handled time:{us.sum():.2f}us."
    columns = ([Column(view.column, view.header, "str")] + [Column(name, header, "int") for name, _, header in view.sums]
               + _STAT_COLUMNS)
    return Report(by=view.name, title=view.title.format(guest=trace.meta.get("guest", "?")), columns=columns,
                  rows=rows, totals=totals, footer=footer)


#: How each layout of views.py is laid out as a report.
LAYOUTS = {"sites": _sites, "stat": _stat}


def report(trace: Trace, by: str = "function", top: int | None = 10, callers: bool = False,
           profile=None) -> Report:
    """The report `by` for a trace, priced by its own costs or re-priced by `profile`."""
    view = VIEWS.get(by)
    if view is None:
        raise ValueError(f"unknown report {by!r} (choose from {', '.join(BY_CHOICES)})")
    return LAYOUTS[view.layout](trace, view, top, callers, Pricing.of(trace, profile))


# comparisons ------------------------------------------------------------------------------------------
def _keyed_counts(trace: Trace, view: View) -> dict[str, tuple[int, float]]:
    """{row label: (exits, modeled seconds)} for one side of a comparison."""
    ctx = Context.of(trace)
    groups = group_by(view, trace.exits, ctx)
    sums = groups.sum(trace.exits["cost"].astype(np.float64) / trace.freq_hz)
    return {groups.label(g, ctx): (int(groups.counts[g]), float(sums[g])) for g in range(len(groups.keys))}


def _side(t: Trace) -> dict:
    m = t.meta
    return {"guest": m.get("guest"), "exits": int(len(t.exits)), "time_s": exit_seconds(t),
            "instructions": int(m.get("instructions", 0)), "virtual_seconds": float(m.get("virtual_seconds", 0.0)),
            "status": m.get("status"), "variant": variant(m)}


_COMPARE_COLUMNS = (Column("before", "before", "int"), Column("after", "after", "int"),
                    Column("delta", "delta", "signed"), Column("ratio", "ratio", "ratio"),
                    Column("time_before_s", "time before s", "seconds"),
                    Column("time_after_s", "time after s", "seconds"))


def compare(before: Trace, after: Trace, by: str = "function", top: int | None = None) -> Report:
    """The KVM paper's Table 4: exits per site before and after a change, with delta and ratio.
    Rows are matched by address when both traces come from the same image, by function name otherwise."""
    view = VIEWS.get(by)
    if view is None or not view.comparable:
        raise ValueError(f"unknown comparison {by!r} (choose from {', '.join(COMPARE_CHOICES)})")
    if before.meta.get("guest_sha256") != after.meta.get("guest_sha256") and view.across_images:
        view = VIEWS[view.across_images]
    b = _keyed_counts(before, view)
    a = _keyed_counts(after, view)
    keys = sorted(set(b) | set(a), key=lambda k: (-b.get(k, (0, 0))[0], -a.get(k, (0, 0))[0], k))
    rows = []
    for key in keys[:top] if top is not None else keys:
        nb, tb = b.get(key, (0, 0.0))
        na, ta = a.get(key, (0, 0.0))
        rows.append({"key": key, "before": nb, "after": na, "delta": na - nb,
                     "ratio": (na / nb) if nb else None, "time_before_s": tb, "time_after_s": ta})
    totals = {"before": _side(before), "after": _side(after), "matched_by": view.matched_by}
    title = (f"Exits before and after ({before.meta.get('guest', '?')} -> {after.meta.get('guest', '?')}, "
             f"by {by}, matched by {view.matched_by})")
    return Report(by=f"compare-{by}", title=title, columns=[Column("key", view.header, "str"), *_COMPARE_COLUMNS],
                  rows=rows, totals=totals)


def sweep(points: list[tuple[dict, Trace]], per: str | None = None, per_counts: list[int] | None = None) -> Report:
    """One row per combination of swept values: exits, exit time, instructions, virtual time and, when
    `per` names what the guest repeats (per_counts: how many times in each run), each per operation."""
    if not points:
        raise ValueError("a sweep needs at least one run")
    names = list(points[0][0])
    rows = []
    for i, (params, t) in enumerate(points):
        row = dict(params)
        row.update(exits=int(len(t.exits)), time_s=exit_seconds(t), instructions=int(t.meta.get("instructions", 0)),
                   virtual_seconds=float(t.meta.get("virtual_seconds", 0.0)), status=t.meta.get("status"))
        if per is not None:
            n = per_counts[i]
            row.update(operations=n, exits_per_op=row["exits"] / n if n else None,
                       us_per_op=row["virtual_seconds"] / n * 1e6 if n else None)
        rows.append(row)
    columns = [Column(n, n, "str") for n in names]
    columns += [Column("exits", "exits", "int"), Column("time_s", "exit time s", "seconds"),
                Column("instructions", "instructions", "int"), Column("virtual_seconds", "virtual s", "seconds")]
    if per is not None:
        columns += [Column("operations", per, "int"), Column("exits_per_op", "exits / op", "ratio"),
                    Column("us_per_op", "virtual time / op", "us")]
    guest = points[0][1].meta.get("guest", "?")
    title = f"Sweep of {guest} over {', '.join(names)}"
    statuses = sorted({r["status"] for r in rows})
    return Report(by="sweep", title=title, columns=columns, rows=rows,
                  totals={"summary": f"{len(rows)} runs; ended: {', '.join(statuses)}"})
