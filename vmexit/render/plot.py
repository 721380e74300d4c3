"""Figures (matplotlib, the `plot` extra): grouped bar charts, flame graphs of exit stacks and timelines
of exits per interval, as PNG or SVG bytes.

Output is deterministic: no timestamps in the files, fixed SVG ids, the Agg backend.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (pip install 'vmexit[plot]')."""


@dataclass
class Figure:
    title: str
    xlabel: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float]]   # label -> one value per category
    kind: str = "bar"                # bar | line (categories in order along x)
    secondary: dict[str, list[float]] = field(default_factory=dict)  # line: on a right-hand axis
    secondary_label: str = ""


def render(fig: Figure, fmt: str) -> bytes:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("figures need matplotlib: pip install 'vmexit[plot]'") from None
    with matplotlib.rc_context({"svg.hashsalt": "vmexit", "svg.fonttype": "none"}):
        f, ax = plt.subplots(figsize=(8, 4.5))
        n = max(len(fig.series), 1)
        width = 0.8 / n
        lines = []
        for i, (label, values) in enumerate(fig.series.items()):
            if fig.kind == "line":
                lines += ax.plot(range(len(values)), values, marker="o", label=label)
            else:
                xs = [c + (i - (n - 1) / 2) * width for c in range(len(fig.categories))]
                ax.bar(xs, values, width, label=label)
        if fig.secondary:
            ax2 = ax.twinx()
            for label, values in fig.secondary.items():
                lines += ax2.plot(range(len(values)), values, marker="s", linestyle="--", color="tab:red",
                                  label=label)
            ax2.set_ylabel(fig.secondary_label)
            ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8)
        ax.set_xticks(range(len(fig.categories)))
        ax.set_xticklabels(fig.categories, rotation=20, ha="right", fontsize=8)
        ax.set_title(fig.title, fontsize=10)
        ax.set_xlabel(fig.xlabel)
        ax.set_ylabel(fig.ylabel)
        if not fig.secondary:
            ax.legend(fontsize=8)
        f.tight_layout()
        buf = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        f.savefig(buf, format=fmt, metadata=metadata, dpi=100)
        plt.close(f)
    return buf.getvalue()


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("figures need matplotlib: pip install 'vmexit[plot]'") from None
    return matplotlib, plt


def _save(f, plt, fmt: str) -> bytes:
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    f.savefig(buf, format=fmt, metadata=metadata, dpi=100)
    plt.close(f)
    return buf.getvalue()


def flame_layout(stacks: list[tuple[list[str], float]]) -> list[tuple[int, float, float, str, float]]:
    """Rectangles of a flame graph: (depth, left, width, name, weight), the outermost frames at depth 0;
    children sorted by name (as flamegraph.pl does), each as wide as the weight below it."""
    tree: dict = {}
    for frames, weight in stacks:
        node = tree
        for name in frames:
            entry = node.setdefault(name, [0.0, {}])
            entry[0] += weight
            node = entry[1]
    out: list[tuple[int, float, float, str, float]] = []
    todo = [(tree, 0, 0.0)]
    while todo:
        node, depth, left = todo.pop()
        for name in sorted(node):
            weight, children = node[name]
            out.append((depth, left, weight, name, weight))
            todo.append((children, depth + 1, left))
            left += weight
    return sorted(out)


def _flame_color(name: str) -> tuple[float, float, float]:
    """flamegraph.pl's warm palette, picked by a hash of the name (the same name, the same colour)."""
    import zlib
    h = zlib.crc32(name.encode()) / 0xFFFFFFFF
    return (0.80 + 0.2 * h, 0.30 + 0.5 * (1 - h), 0.15 * h)


def flame(stacks: list[tuple[list[str], float]], title: str, unit: str, fmt: str) -> bytes:
    """A flame graph (icicle turned up: the outermost frames at the bottom) of weighted stacks."""
    matplotlib, plt = _pyplot()
    rects = flame_layout(stacks)
    total = sum(w for frames, w in stacks) or 1.0
    depth = max((r[0] for r in rects), default=0) + 1
    with matplotlib.rc_context({"svg.hashsalt": "vmexit", "svg.fonttype": "none"}):
        f, ax = plt.subplots(figsize=(12, 1.2 + 0.28 * depth))
        for level, left, width, name, weight in rects:
            ax.add_patch(matplotlib.patches.Rectangle((left / total, level), width / total, 0.95,
                                                      facecolor=_flame_color(name), edgecolor="white", linewidth=0.3))
            if width / total > 0.04:
                label = name if len(name) * 0.0065 < width / total else name[:max(int(width / total / 0.0065) - 2, 1)] + ".."
                ax.text(left / total + 0.003, level + 0.45, label, va="center", ha="left", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, depth)
        ax.set_yticks([])
        ax.set_xlabel(f"share of {unit} (total {total:,.0f})")
        ax.set_title(title, fontsize=10)
        f.tight_layout()
        return _save(f, plt, fmt)


def timeline(starts: list[float], series: dict[str, list[float]], title: str, ylabel: str, fmt: str) -> bytes:
    """Exits per interval along virtual time, one line per key (xenalyze's --interval as a figure)."""
    matplotlib, plt = _pyplot()
    with matplotlib.rc_context({"svg.hashsalt": "vmexit", "svg.fonttype": "none"}):
        f, ax = plt.subplots(figsize=(10, 4.5))
        for label, values in series.items():
            ax.step(starts, values, where="post", label=label, linewidth=1)
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        if series:
            ax.legend(fontsize=7, loc="upper right")
        f.tight_layout()
        return _save(f, plt, fmt)
