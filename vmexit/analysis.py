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

Reports run over the exits a chunk at a time (views.CHUNK), so a trace of any length needs temporaries
of one chunk, and no number depends on the chunk size: counts and cycle totals are exact integers; per
row sums are added in exit order as one np.bincount would (views._Tally); min, max, p50 and p95 come from
the exact count of each distinct cost in a row (np.percentile's linear method, reproduced bit for bit),
the standard deviation from the same counts (two passes, shifted by the row's minimum), and Time% of
the stat layouts is a share of the exact total of cycles. Against a whole-trace np.std / np.sum, those
last two agree to the last bit or two (rows of equal costs now show exactly 0 spread).
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field, replace

import numpy as np

from .exits import ExitReason
from .hypervisors import hypercalls
from .trace import Trace, cpu_cycles, domain_view, domains_of
from .views import VIEWS, Context, Groups, View, chunks, group_by


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
#: --sort (perf kvm stat's --key): most exits, most exit time, highest average, highest maximum first
SORT_CHOICES = ("count", "time", "avg", "max")


def order(keys: np.ndarray, counts: np.ndarray, time: np.ndarray, maxes: np.ndarray | None = None,
          sort: str | None = None) -> np.ndarray:
    """Group indices in report order: by the --sort key, largest first (None, count: most exits), then
    most exits, then the key ascending (rank, so that any key type sorts)."""
    counts = np.asarray(counts, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    if sort in (None, "count"):
        primary = counts
    elif sort == "time":
        primary = time
    elif sort == "avg":
        primary = np.divide(time, counts, out=np.zeros_like(time), where=counts > 0)
    elif sort == "max":
        primary = np.asarray(maxes, dtype=np.float64)
    else:
        raise ValueError(f"unknown sort {sort!r} (choose from {', '.join(SORT_CHOICES)})")
    return np.lexsort((np.argsort(np.argsort(keys, kind="stable"), kind="stable"), -counts, -primary))


@dataclass(frozen=True)
class Pricing:
    """Exit costs, clock and run length a report uses: the trace's own, or re-priced by a profile.
    Costs are priced a chunk of exits at a time (`cycles`), never held for the whole trace; totals are
    exact integer sums of cycles."""
    trace: Trace
    freq: int
    run_seconds: float
    profile: str
    total_cycles: int = 0
    repricing: object = None    # the Profile that re-prices the trace; None: its own costs
    hypercall_name: object = None   # (nr, subop) -> the hypercall's name, for its profile key

    @classmethod
    def of(cls, trace: Trace, profile=None) -> "Pricing":
        m = trace.meta
        if profile is None:
            own = cls(trace, trace.freq_hz, float(m.get("virtual_seconds", 0.0)), str(m.get("profile", "?")))
            return replace(own, total_cycles=own._total())
        # Re-pricing keeps the recorded exit sequence: instructions are re-timed with the new CPI and
        # frequency, exits with the new costs; idle time (waiting for timers) keeps its length in seconds,
        # and so do a run of several domains' switches and upcalls (host costs, not exits).
        trace = replace(trace, emulated=_in_exit_order(trace.emulated))
        pricing = cls(trace, profile.freq_hz, 0.0, profile.name, repricing=profile,
                      hypercall_name=Context.of(trace).hypercall_name)
        total = pricing._total()
        num, den = profile.cpi
        idle_s = float(int(m.get("idle_cycles", 0)) + _host_cycles(m)) / trace.freq_hz
        run = (int(m.get("instructions", 0)) * num / den + float(total)) / profile.freq_hz + idle_s
        return replace(pricing, run_seconds=run, total_cycles=total)

    def _total(self) -> int:
        return sum(int(self.cycles(part, start).sum(dtype=np.uint64)) for start, part in chunks(self.trace.exits))

    def cycles(self, part: np.ndarray, start: int) -> np.ndarray:
        """Cycles of each exit of a chunk (uint64): its recorded cost, or its price under the profile
        plus the price of the accesses emulated inside it."""
        if self.repricing is None:
            return part["cost"].astype(np.uint64)
        out = self.repricing.price(part).astype(np.uint64)
        _hypercall_prices(self.repricing, self.hypercall_name, part, out)
        em = self.trace.emulated
        lo, hi = bisect_left(em["exit"], start), bisect_left(em["exit"], start + len(part))  # no copy of the field
        if hi > lo:
            inside = em[lo:hi]
            np.add.at(out, inside["exit"].astype(np.intp) - start, self.repricing.price_emulated(inside))
        return out

    def costs_of(self, part: np.ndarray, start: int) -> np.ndarray:
        """Cycles of each exit of a chunk, as float64 (what sums and times are computed from)."""
        return self.cycles(part, start).astype(np.float64)

    @property
    def costs(self) -> np.ndarray:
        """Every exit's cycles as one float64 array (for callers that want them all; reports do not)."""
        parts = [self.costs_of(part, start) for start, part in chunks(self.trace.exits)]
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def exit_seconds(self) -> float:
        """Modeled exit time: the cost of every exit, in seconds."""
        return float(self.total_cycles) / self.freq


def _host_cycles(meta: dict) -> int:
    """The recorded time of a run of several domains that is neither instructions, exits nor idle:
    the host's domain switches, the upcalls Xen entered and DBNet's driver work (0 for a run of one guest)."""
    if "domains" not in meta:
        return 0
    upcalls = sum(int((d.get("xen") or {}).get(k, 0)) for d in meta["domains"]
                  for k in ("upcall_cycles", "dbnet_cycles"))
    return int((meta.get("host") or {}).get("switch_total_cycles", 0)) + upcalls


def hypercall_price(profile, name: str) -> tuple[int, int] | None:
    """(cycles, per item) of the profile key `VMCALL/<name>` (`VMCALL/grant_table_op:copy`), None when
    the profile has none: the profile's own look-up (Profile.call_price) where it has one, else its
    cost tables read the same way."""
    method = getattr(profile, "call_price", None) or getattr(profile, "hypercall_price", None)
    if method is not None:
        return method(name)
    key = f"VMCALL/{name}"
    if key not in profile.costs:
        return None
    return int(profile.costs[key]), int(profile.per_items.get(key, 0))


def _hypercall_prices(profile, name, part: np.ndarray, out: np.ndarray) -> None:
    """Hypercall exits of a chunk re-priced in place by their own profile keys, most specific first:
    `VMCALL/<name>:<subop>` (cycles + per item x size), else the VMCALL price already in `out`. One
    look-up per distinct (hypercall, sub-operation), never one per exit."""
    calls = np.flatnonzero(part["reason"] == ExitReason.VMCALL)
    if len(calls) == 0:
        return
    sel = part[calls]
    keys, inverse = np.unique((sel["qualifier"].astype(np.int64) << 16) | sel["subop"].astype(np.int64),
                              return_inverse=True)
    prices = [hypercall_price(profile, name(int(k) >> 16, int(k) & 0xFFFF)) for k in keys]
    own = np.array([p is not None for p in prices])
    if not own.any():
        return
    base = np.array([p[0] if p else 0 for p in prices], dtype=np.uint64)
    per = np.array([p[1] if p else 0 for p in prices], dtype=np.uint64)
    hit = own[inverse]
    out[calls[hit]] = base[inverse[hit]] + per[inverse[hit]] * sel["size"][hit].astype(np.uint64)


def _in_exit_order(emulated: np.ndarray) -> np.ndarray:
    """Emulated accesses sorted by their exit: as recorded (checked a chunk at a time), or, for a file
    that is not, after a stable sort."""
    last = 0
    for _, part in chunks(emulated):
        seq = part["exit"].astype(np.int64)
        if seq[0] < last or np.any(seq[1:] < seq[:-1]):
            return emulated[np.argsort(emulated["exit"], kind="stable")]
        last = int(seq[-1])
    return emulated


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
        if "domains" in m:
            network["per_packet"] = _per_packet(trace, pricing, frames)
        totals["network"] = network
    opts = m.get("optimizations") or {}
    if opts:
        totals["optimizations"] = opts
    return totals


# the paper's hot-function layout ----------------------------------------------------------------------
_SITE_COLUMNS = (Column("rank", "#", "int"), Column("address", "exit address", "hex"),
                 Column("count", "exits", "int"), Column("time_s", "time s", "seconds"),
                 Column("time_pct", "% of run", "pct"), Column("function", "function", "str"))
_CALLER_COLUMNS = (Column("caller_address", "caller address", "hex"), Column("caller", "caller", "str"))


def hot_sites(trace: Trace, by: str, top: int | None, callers: bool, pricing: Pricing, sort: str | None = None) -> Report:
    """The paper's hot-function table, grouped by function, exit address or caller."""
    return _sites(trace, VIEWS[by], top, callers, pricing, sort)


def _sites(trace: Trace, view: View, top: int | None, callers: bool, pricing: Pricing,
           sort: str | None = None) -> Report:
    ctx = Context.of(trace)
    # the hottest exit address of each group: function and caller rows show where their exits come from
    pairs = {"rip": _where(ctx, "rip")}
    if callers:
        pairs["caller"] = _where(ctx, "caller")
    maxes = {"max": pricing.costs_of} if sort == "max" else None
    groups = group_by(view, trace.exits, ctx, sums={"cost": pricing.costs_of}, pairs=pairs, maxes=maxes)
    n = len(groups.keys)
    sums = groups.sums["cost"]
    run_seconds = pricing.run_seconds or 1.0
    top_rip = groups.most_frequent("rip") if n else groups.keys
    best_callers = groups.most_frequent("caller") if callers else None
    rank = order(groups.keys, groups.counts, sums, groups.sums.get("max"), sort)
    rows: list[dict] = []
    for r, g in enumerate(rank if top is None else rank[:top], 1):
        rip = int(top_rip[g])
        row = {
            "rank": r,
            "address": ctx.address(rip),
            "count": int(groups.counts[g]),
            "time_s": float(sums[g] / pricing.freq),
            "time_pct": float(100.0 * sums[g] / pricing.freq / run_seconds),
            "function": ctx.symbols.name(rip),
        }
        row.update(groups.fields(g, ctx))
        if callers:
            ca = int(best_callers[g])
            known = ca & 0xFFFFFFFF
            row["caller_address"] = ctx.address(ca) if known else "-"
            row["caller"] = ctx.symbols.name(ca) if known else "-"
        if sort in ("avg", "max"):  # the key rows are sorted by is shown
            row[f"{sort}_us"] = float((sums[g] / groups.counts[g] if sort == "avg" else groups.sums["max"][g])
                                      * 1e6 / pricing.freq)
        rows.append(row)
    columns = list(_SITE_COLUMNS)
    if sort in ("avg", "max"):
        columns.insert(5, Column(f"{sort}_us", f"{sort} time", "us"))
    if view.column not in {c.key for c in columns}:
        columns.insert(1, Column(view.column, view.header, "str"))
    elif callers:
        columns += _CALLER_COLUMNS
    return Report(by=view.name, title=view.title.format(guest=trace.meta.get("guest", "?")), columns=columns,
                  rows=rows, totals=_totals(trace, pricing))


def _where(ctx: Context, name: str):
    return lambda part, start: ctx.where(part, name)


# perf kvm stat's layout -------------------------------------------------------------------------------
_STAT_COLUMNS = [Column("count", "Samples", "int"), Column("count_pct", "Samples%", "pct"),
                 Column("time_pct", "Time%", "pct"), Column("min_us", "Min Time", "us"),
                 Column("max_us", "Max Time", "us"), Column("avg_us", "Avg time", "us_pm"),
                 Column("p5_us", "p5", "us"), Column("p50_us", "p50", "us"), Column("p95_us", "p95", "us")]


def _stat_rows(groups: Groups, freq: int, total_us: float, sort: str | None = None) -> list[tuple[int, dict]]:
    """(group, row) of one perf-kvm-stat row per group, most samples first (or by --sort): counts and
    sums by bincount, order statistics from the exact count of each distinct cost in the group (Pairs)."""
    counts, sums, n = groups.counts, groups.sums["us"], len(groups.keys)
    dist = groups.pairs["cost"]
    us = dist.value * 1e6 / freq  # each distinct cost in microseconds, as each exit's would be
    total_n = max(int(counts.sum()), 1)
    total_us = total_us or 1.0
    stats = _distribution(dist, us, counts)
    rows = []
    for g in order(np.arange(n), counts, sums, stats["max"], sort):
        c = int(counts[g])
        if c == 0:
            continue
        mean = float(sums[g]) / c
        rows.append((int(g), {
            "count": c,
            "count_pct": 100.0 * c / total_n,
            "time_pct": 100.0 * float(sums[g]) / total_us,
            "min_us": float(stats["min"][g]),
            "max_us": float(stats["max"][g]),
            "avg_us": mean,
            "stddev_pct": float(100.0 * stats["std"][g] / mean) if mean else 0.0,
            "p5_us": float(stats["p5"][g]),
            "p50_us": float(stats["p50"][g]),
            "p95_us": float(stats["p95"][g]),
        }))
    return rows


def _total_us(groups: Groups, freq: int) -> float:
    """Microseconds of all selected exits: their exact total of cycles (Python integers: no overflow),
    converted once."""
    dist = groups.pairs["cost"]
    cycles = int((dist.value.astype(object) * dist.count.astype(object)).sum()) if len(dist.value) else 0
    return float(cycles) * 1e6 / freq


def _distribution(dist, us: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per group: min, max, standard deviation, and the 5th, 50th and 95th percentiles as np.percentile
    (linear method) gives them over the group's exits, from the count of each distinct value."""
    n_groups = len(counts)
    if n_groups == 0:
        return {k: np.zeros(0) for k in ("min", "max", "std", "p5", "p50", "p95")}
    starts = dist.starts(n_groups)
    ends = np.append(starts[1:], len(dist.value)) - 1
    # two passes over the distinct values, shifted by the group's minimum: a group of equal costs has a
    # spread of exactly 0
    shifted = us - us[starts][dist.group]
    mean = np.add.reduceat(dist.count * shifted, starts) / counts
    spread = np.add.reduceat(dist.count * (shifted - mean[dist.group]) ** 2, starts) / counts
    out = {"min": us[starts], "max": us[ends], "std": np.sqrt(spread)}
    # np.percentile: the sorted values at floor((n-1)q) and the next one, blended by numpy's _lerp
    below = np.cumsum(dist.count) - dist.count  # exits of the earlier rows (groups, then values)
    first = below[starts]
    for name, q in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95)):
        virtual = (counts - 1) * np.float64(q)
        prev = np.floor(virtual)
        at_end = virtual >= counts - 1
        lo = np.where(at_end, counts - 1, prev).astype(np.int64)
        hi = np.where(at_end, counts - 1, prev + 1).astype(np.int64)
        gamma = virtual - np.where(at_end, -1, prev)
        a = us[np.searchsorted(below, first + lo, side="right") - 1]
        b = us[np.searchsorted(below, first + hi, side="right") - 1]
        diff = b - a
        out[name] = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return out


def _stat(trace: Trace, view: View, top: int | None, callers: bool, pricing: Pricing,
          sort: str | None = None) -> Report:
    """perf-kvm-stat rows of the exits a view selects, one per key (--callers does not apply)."""
    ctx = Context.of(trace)

    def us(part: np.ndarray, start: int) -> np.ndarray:
        return pricing.costs_of(part, start) * 1e6 / pricing.freq

    def cycles(part: np.ndarray, start: int) -> np.ndarray:
        return pricing.cycles(part, start).astype(np.int64)

    sums = {"us": us, **{name: _float_field(source) for name, source, _ in view.sums}}
    groups = group_by(view, trace.exits, ctx, sums=sums, pairs={"cost": cycles})
    total_us = _total_us(groups, pricing.freq)
    rows = []
    for g, row in _stat_rows(groups, pricing.freq, total_us, sort):
        row.update(groups.fields(g, ctx))
        row.update({name: int(groups.sums[name][g]) for name, _, _ in view.sums})
        rows.append(row)
    if top is not None and not view.every_row:
        rows = rows[:top]
    totals = _totals(trace, pricing)
    totals["selected_exits"] = groups.selected
    footer = f"Total Samples:{groups.selected}, Total events handled time:{total_us:.2f}us."
    columns = ([Column(view.column, view.header, "str")] + [Column(name, header, "int") for name, _, header in view.sums]
               + _STAT_COLUMNS)
    return Report(by=view.name, title=view.title.format(guest=trace.meta.get("guest", "?")), columns=columns,
                  rows=rows, totals=totals, footer=footer)


def _float_field(name: str):
    return lambda part, start: part[name].astype(np.float64)


# per domain: a xenalyze-style summary -------------------------------------------------------------------
_HYPERCALL_NR = {name: nr for nr, name in hypercalls.XEN.items()}
_EVENT_CHANNEL_OP, _GRANT_TABLE_OP = _HYPERCALL_NR["event_channel_op"], _HYPERCALL_NR["grant_table_op"]
_SEND = {n: nr for nr, n in hypercalls.XEN_SUBOPS[_EVENT_CHANNEL_OP].items()}["send"]
_COPY = {n: nr for nr, n in hypercalls.XEN_SUBOPS[_GRANT_TABLE_OP].items()}["copy"]


def _domain_sums(pricing: Pricing, xen: bool) -> dict:
    """What the per-domain summary adds up per exit (floats: exact for counts below 2**53): exit
    cycles, hypercalls, and under Xen event-channel sends and grant operations (the op count each
    grant_table_op exit carries in `size`; a copy's size is bytes, so a copy call counts once)."""
    def calls(part: np.ndarray) -> np.ndarray:
        return part["reason"] == ExitReason.VMCALL

    def of(nr: int):
        return lambda part: calls(part) & (part["qualifier"] == nr) if xen else np.zeros(len(part), dtype=bool)

    sends, grants = of(_EVENT_CHANNEL_OP), of(_GRANT_TABLE_OP)
    return {
        "cycles": pricing.costs_of,
        "hypercalls": lambda part, start: calls(part).astype(np.float64),
        "sends": lambda part, start: (sends(part) & (part["subop"] == _SEND)).astype(np.float64),
        "grant_ops": lambda part, start: np.where(grants(part), np.where(part["subop"] == _COPY, 1.0,
                                                                         part["size"].astype(np.float64)), 0.0),
    }


def _by_domain(trace: Trace, pricing: Pricing, maxes: bool = False) -> dict[int, dict]:
    """Per domid: exits and the sums of _domain_sums (and with `maxes` the costliest exit's cycles,
    "max"), aggregated over the exits' domain column."""
    groups = group_by(VIEWS["domain"], trace.exits, Context.of(trace),
                      sums=_domain_sums(pricing, str(trace.meta.get("hypervisor")) == "xen-pv"),
                      maxes={"max": pricing.costs_of} if maxes else None)
    out = {}
    for g, key in enumerate(groups.keys):
        out[int(key)] = {"exits": int(groups.counts[g]), **{k: v[g] for k, v in groups.sums.items()}}
    return out


def _domain_cpu_s(meta: dict, exit_cycles: float, pricing: Pricing) -> float:
    """A domain's virtual CPU seconds (trace.cpu_cycles), at the re-pricing profile's CPI when there is one."""
    if pricing.repricing is not None:
        meta = {**{k: v for k, v in meta.items() if k != "cpu_cycles"}, "cpi": list(pricing.repricing.cpi)}
    return cpu_cycles(meta, int(exit_cycles)) / pricing.freq


#: The grant operations Xen counts per domain (its xen stats): each one map, unmap, copy or transfer.
_GRANT_STATS = ("maps", "unmaps", "copies", "transfers")


def _grant_ops(stats: dict, tally: dict) -> int:
    """Grant operations of a domain: from Xen's counts when the run kept them, else from its exits."""
    if any(k in stats for k in _GRANT_STATS):
        return sum(int(stats.get(k, 0)) for k in _GRANT_STATS)
    return int(tally.get("grant_ops", 0))


def _domain_row(m: dict, tally: dict, pricing: Pricing) -> dict:
    stats = m.get("xen") or {}
    cpu_s = _domain_cpu_s(m, tally.get("cycles", 0.0), pricing)
    received = stats.get("events_received", stats.get("upcalls"))
    return {"domain": int(m["domid"]), "name": str(m.get("name", "")), "guest": str(m.get("guest", "?")),
            "count": tally.get("exits", 0), "hypercalls": int(tally.get("hypercalls", 0)),
            "events_sent": int(stats.get("events_sent", tally.get("sends", 0))),
            "events_received": None if received is None else int(received),
            "grant_ops": _grant_ops(stats, tally),
            "exit_time_s": float(tally.get("cycles", 0.0)) / pricing.freq, "cpu_s": cpu_s,
            "cpu_pct": 100.0 * cpu_s / (pricing.run_seconds or 1.0)}


_DOMAIN_COLUMNS = [Column("domain", "domain", "int"), Column("name", "name", "str"), Column("guest", "guest", "str"),
                   Column("count", "exits", "int"), Column("hypercalls", "hypercalls", "int"),
                   Column("events_sent", "events sent", "int"), Column("events_received", "events received", "int"),
                   Column("grant_ops", "grant ops", "int"), Column("exit_time_s", "exit time s", "seconds"),
                   Column("cpu_s", "CPU s", "seconds"), Column("cpu_pct", "% of run", "pct")]


def _domains(trace: Trace, view: View, top: int | None, callers: bool, pricing: Pricing,
             sort: str | None = None) -> Report:
    """One row per domain, as xenalyze's per-domain summary: exits, hypercalls, events sent and
    received, grant operations, exit time and virtual CPU time (and its share of the run); the footer
    has the host's domain switches. In domid order unless --sort; --top and --callers do not apply."""
    tallies = _by_domain(trace, pricing, maxes=sort == "max")
    rows = [_domain_row(m, tallies.get(int(m["domid"]), {}), pricing) for m in domains_of(trace)]
    if sort is not None:
        maxes = [tallies.get(r["domain"], {}).get("max", 0.0) for r in rows]
        rows = [rows[i] for i in order(np.array([r["domain"] for r in rows]), [r["count"] for r in rows],
                                       [r["exit_time_s"] for r in rows], maxes, sort)]
    host = trace.meta.get("host") or {}
    switches, per = int(host.get("switches", 0)), int(host.get("switch_cycles", 0))
    footer = (f"Host: {len(rows)} domain(s), {switches:,} domain switches ({per:,} cycles each, "
              f"{switches * per / trace.freq_hz:.6f} s); CPU is each domain's instructions and exits (and "
              f"upcalls), % of the run's {pricing.run_seconds:.6f} s.")
    return Report(by=view.name, title=view.title.format(guest=trace.meta.get("guest", "?")),
                  columns=list(_DOMAIN_COLUMNS), rows=rows, totals=_totals(trace, pricing), footer=footer)


def _per_packet(trace: Trace, pricing: Pricing, frames: int) -> dict:
    """The network totals of a run of several domains per packet (NIC frames in and out): exits,
    hypercalls, notifications (event_channel_op:send), grant operations, domain switches, and each
    domain's virtual CPU microseconds."""
    tallies = _by_domain(trace, pricing)
    rows = [_domain_row(m, tallies.get(int(m["domid"]), {}), pricing) for m in domains_of(trace)]
    switches = int((trace.meta.get("host") or {}).get("switches", 0))
    return {"frames": frames, "exits": len(trace.exits) / frames,
            "hypercalls": sum(r["hypercalls"] for r in rows) / frames,
            "notifications": sum(r["events_sent"] for r in rows) / frames,
            "grant_ops": sum(r["grant_ops"] for r in rows) / frames, "domain_switches": switches / frames,
            "cpu_us": {r["name"]: r["cpu_s"] / frames * 1e6 for r in rows}}


def _stacks(trace: Trace, view: View, top: int | None, callers: bool, pricing: Pricing,
            sort: str | None = None) -> Report:
    from .stackreport import stacks_report  # the stack layout (built on this module's Report and Pricing)
    return stacks_report(trace, view, top, pricing, sort)


#: How each layout of views.py is laid out as a report.
LAYOUTS = {"sites": _sites, "stat": _stat, "domains": _domains, "stacks": _stacks}


def report(trace: Trace, by: str = "function", top: int | None = 10, callers: bool = False,
           profile=None, domain: int | None = None, sort: str | None = None) -> Report:
    """The report `by` for a trace, priced by its own costs or re-priced by `profile`; `domain`
    restricts it to one domain's exits and symbols (trace.domain_view); `sort` orders the rows
    (SORT_CHOICES; None: each view's own order)."""
    view = VIEWS.get(by)
    if view is None:
        raise ValueError(f"unknown report {by!r} (choose from {', '.join(BY_CHOICES)})")
    if sort is not None and sort not in SORT_CHOICES:
        raise ValueError(f"unknown sort {sort!r} (choose from {', '.join(SORT_CHOICES)})")
    if domain is not None:
        trace = domain_view(trace, domain)
    return LAYOUTS[view.layout](trace, view, top, callers, Pricing.of(trace, profile), sort)


# comparisons ------------------------------------------------------------------------------------------
def _keyed_counts(trace: Trace, view: View) -> dict[str, tuple[int, float]]:
    """{row label: (exits, modeled seconds)} for one side of a comparison."""
    ctx = Context.of(trace)
    freq = trace.freq_hz
    groups = group_by(view, trace.exits, ctx, sums={"s": lambda part, start: part["cost"].astype(np.float64) / freq})
    sums = groups.sums["s"]
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


def sweep(points: list[tuple[dict, Trace | None]], per: str | None = None, per_counts: list[int] | None = None,
          ends: list[dict] | None = None) -> Report:
    """One row per combination of swept values: exits, exit time, instructions, virtual time and, when
    `per` names what the guest repeats (per_counts: how many times in each run), each per operation.
    `ends` (one per point: its status, exit code and any error), when given, adds each run's status and
    exit code as columns; a point without a trace (a run that failed, or never ran) is a row of those only,
    and the errors are listed under the table."""
    if not points:
        raise ValueError("a sweep needs at least one run")
    names = list(points[0][0])
    rows = [_sweep_row(params, t, per, per_counts[i] if per is not None else None, ends[i] if ends else None)
            for i, (params, t) in enumerate(points)]
    columns = [Column(n, n, "str") for n in names]
    columns += [Column("exits", "exits", "int"), Column("time_s", "exit time s", "seconds"),
                Column("instructions", "instructions", "int"), Column("virtual_seconds", "virtual s", "seconds")]
    if per is not None:
        columns += [Column("operations", per, "int"), Column("exits_per_op", "exits / op", "ratio"),
                    Column("us_per_op", "virtual time / op", "us")]
    if ends:
        columns += [Column("status", "status", "str"), Column("code", "exit", "int")]
    guest = next((t.meta.get("guest", "?") for _, t in points if t is not None), "?")
    title = f"Sweep of {guest} over {', '.join(names)}"
    statuses = sorted({r["status"] for r in rows})
    errors = [" ".join(f"{k}={r[k]}" for k in names) + f": {r['error']}" for r in rows if r.get("error")]
    return Report(by="sweep", title=title, columns=columns, rows=rows,
                  footer="\n".join(["Runs that failed:"] + errors) if errors else "",
                  totals={"summary": f"{len(rows)} runs; ended: {', '.join(statuses)}"})


def _sweep_row(params: dict, t: Trace | None, per: str | None, n: int | None, end: dict | None) -> dict:
    row = dict(params)
    if t is not None:
        row.update(exits=int(len(t.exits)), time_s=exit_seconds(t), instructions=int(t.meta.get("instructions", 0)),
                   virtual_seconds=float(t.meta.get("virtual_seconds", 0.0)), status=t.meta.get("status"))
    else:
        row.update(exits=None, time_s=None, instructions=None, virtual_seconds=None)
    if per is not None:
        ok = t is not None and n
        row.update(operations=n, exits_per_op=row["exits"] / n if ok else None,
                   us_per_op=row["virtual_seconds"] / n * 1e6 if ok else None)
    if end is not None:
        row.update(status=end["status"], code=end["code"])
        if end.get("error"):
            row["error"] = end["error"]
    return row
