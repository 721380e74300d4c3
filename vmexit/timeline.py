"""`--interval SECONDS`: where in the run the exits come (xenalyze's --interval). One row per interval of
virtual time and key of the view (`--by`): the interval's exits and modeled exit time.

Exits fall into intervals by their recorded virtual time (the `cycles` column: the run's own clock,
also when a profile re-prices their costs). Two passes over the exits, a chunk at a time, all numpy:
the view's distinct keys first (views.group_by), then every exit keyed by interval x key index and
grouped again. Rows exist only for an interval and key with exits; they add up to the view's exits.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .analysis import Column, Pricing, Report, _totals
from .trace import Trace, domain_view
from .views import VIEWS, Context, group_by

_COLUMNS = (Column("interval", "interval", "int"), Column("start_s", "start s", "seconds"))


def intervals(trace: Trace, by: str, seconds: float, profile=None, domain: int | None = None) -> Report:
    """The exits of view `by` per interval of `seconds` of virtual time (see the module docstring)."""
    view = VIEWS.get(by)
    if view is None or view.layout not in ("sites", "stat", "domains"):
        choices = ", ".join(n for n, v in VIEWS.items() if v.layout in ("sites", "stat", "domains"))
        raise ValueError(f"--interval groups by one of {choices}, not {by!r}")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"--interval {seconds}: give a positive number of seconds of virtual time")
    if domain is not None:
        trace = domain_view(trace, domain)
    ctx, pricing = Context.of(trace), Pricing.of(trace, profile)
    width = max(int(round(seconds * trace.freq_hz)), 1)  # cycles of the trace's clock
    keys = group_by(view, trace.exits, ctx).keys
    n = max(len(keys), 1)

    def key(ex: np.ndarray, c: Context) -> np.ndarray:
        slot = (ex["cycles"] // np.uint64(width)).astype(np.int64)
        return slot * n + np.searchsorted(keys, view.key(ex, c))

    groups = group_by(replace(view, key=key), trace.exits, ctx, sums={"cost": pricing.costs_of})
    rows = []
    for g, k in enumerate(groups.keys):
        slot, index = divmod(int(k), n)
        fields = view.decode(int(keys[index]), ctx)
        rows.append({"interval": slot, "start_s": slot * width / trace.freq_hz, "key": view.label.format(**fields),
                     **fields, "count": int(groups.counts[g]), "time_s": float(groups.sums["cost"][g] / pricing.freq)})
    columns = [*_COLUMNS, Column("key", view.header, "str"), Column("count", "exits", "int"),
               Column("time_s", "exit time s", "seconds")]
    title = f"Exits per {seconds:g} s of virtual time, by {by} ({trace.meta.get('guest', '?')})"
    return Report(by=f"interval-{by}", title=title, columns=columns, rows=rows, totals=_totals(trace, pricing),
                  meta={"interval_s": seconds, "interval_cycles": width, "freq_hz": trace.freq_hz})
