"""Collapsed stacks, as flamegraph.pl and inferno read them: one `outer;...;inner count` line per stack,
the count the stack's exits, or with `--weight time` its modeled exit time in cycles (integers, as both
tools expect); lines sorted by stack, so that the same trace gives the same file."""
from __future__ import annotations


def weight_of(row: dict, weight: str) -> int:
    return int(row["cycles"]) if weight == "time" else int(row["count"])


def render(report) -> str:
    weight = report.meta.get("weight", "exits")
    lines = sorted((row["stack"], weight_of(row, weight)) for row in report.rows)
    return "".join(f"{stack} {w}\n" for stack, w in lines if w > 0)
