"""`--by stack`: one row per distinct stack of function names, the outermost frame first and the exit's
own function innermost, as flame graphs draw them (collapsed stacks, speedscope: render/).

Exits are grouped by (stack id, domain, the function of the exit's address) with views.group_by, a
chunk at a time; each group's chain of return addresses is then named (the function holding the
address just before each return address, the call instruction, so that a call that ends its function
is named right) and the groups whose names are equal are added together: two call sites in one
function make one frame. In a merged run of several domains the names are the domain's own,
`d<N>:name`. A trace without a stack table (formats before 4) has the caller only: its stacks are two
frames deep at most, `caller;function`.
"""
from __future__ import annotations

import numpy as np

from .analysis import Column, Pricing, Report, _totals, order
from .stacks import DEPTH
from .symbols import DOMAIN_SHIFT
from .trace import Trace
from .views import VIEWS, Context, View, group_by, stack_key_width

_COLUMNS = (Column("rank", "#", "int"), Column("count", "exits", "int"), Column("time_s", "time s", "seconds"),
            Column("time_pct", "% of run", "pct"), Column("stack", "stack (outermost first)", "str"))


def _chains(ctx: Context, chain_ids: np.ndarray) -> list[tuple[int, ...]]:
    """Each group's return addresses, innermost first: from the stack table, or the caller alone."""
    if ctx.stacks is None:
        return [(int(c),) if c else () for c in chain_ids]
    table = ctx.stacks
    return [tuple(int(a) for a in table.frames[int(table.starts[c]):int(table.starts[c + 1])]) for c in chain_ids]


def named_stacks(trace: Trace, pricing: Pricing) -> list[dict]:
    """{frames (outermost first), count, cycles, max} per distinct stack of names, in no set order."""
    ctx = Context.of(trace)
    costs = pricing.costs_of
    groups = group_by(VIEWS["stack"], trace.exits, ctx, sums={"cycles": costs}, maxes={"max": costs})
    domains, width = stack_key_width(ctx)
    keys = groups.keys
    leaf = ctx.symbols.names[keys % width]
    domain = (keys // width) % domains
    chains = _chains(ctx, keys // width // domains)
    lengths = [len(c) for c in chains]
    flat = np.array([a - 1 for c in chains for a in c], dtype=np.int64)  # the call instruction's byte
    if ctx.domains:
        flat |= np.repeat(domain, lengths) << DOMAIN_SHIFT
    names = ctx.symbols.names_of(flat) if len(flat) else np.zeros(0, dtype=object)
    merged: dict[tuple, dict] = {}
    at = 0
    for g, n in enumerate(lengths):
        frames = tuple(str(x) for x in names[at:at + n][::-1]) + (str(leaf[g]),)
        at += n
        row = merged.setdefault(frames, {"frames": list(frames), "count": 0, "cycles": 0.0, "max": 0.0})
        row["count"] += int(groups.counts[g])
        row["cycles"] += float(groups.sums["cycles"][g])
        row["max"] = max(row["max"], float(groups.sums["max"][g]))
    return list(merged.values())


def stacks_report(trace: Trace, view: View, top: int | None, pricing: Pricing, sort: str | None = None) -> Report:
    """The stack rows, most exits first (or by --sort); `weight` in meta says what collapsed stacks
    and flame graphs count (set by the caller: exits by default)."""
    stacks = named_stacks(trace, pricing)
    labels = np.array([";".join(s["frames"]) for s in stacks], dtype=object)
    counts = np.array([s["count"] for s in stacks], dtype=np.int64)
    cycles = np.array([s["cycles"] for s in stacks], dtype=np.float64)
    maxes = np.array([s["max"] for s in stacks], dtype=np.float64)
    rank = order(labels, counts, cycles, maxes, sort) if len(stacks) else np.zeros(0, dtype=np.int64)
    run_seconds = pricing.run_seconds or 1.0
    rows = []
    for r, i in enumerate(rank if top is None else rank[:top], 1):
        s = stacks[i]
        row = {"rank": r, "stack": labels[i], "frames": s["frames"], "count": s["count"],
               "cycles": int(round(s["cycles"])), "time_s": s["cycles"] / pricing.freq,
               "time_pct": 100.0 * s["cycles"] / pricing.freq / run_seconds}
        if sort in ("avg", "max"):
            row[f"{sort}_us"] = (s["cycles"] / s["count"] if sort == "avg" else s["max"]) * 1e6 / pricing.freq
        rows.append(row)
    columns = list(_COLUMNS)
    if sort in ("avg", "max"):
        columns.insert(4, Column(f"{sort}_us", f"{sort} time", "us"))
    if trace.stacks is None:
        footer = "This trace has no stack table (recorded before trace format 4): stacks are caller;function."
    else:
        footer = (f"{len(stacks):,} distinct stacks; frames are functions, the exit's own innermost; chains "
                  f"of at most {DEPTH} return addresses.")
    return Report(by=view.name, title=view.title.format(guest=trace.meta.get("guest", "?")), columns=columns,
                  rows=rows, totals=_totals(trace, pricing), footer=footer,
                  meta={"weight": "exits", "freq_hz": pricing.freq, "stacks": len(stacks)})
