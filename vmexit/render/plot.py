"""Figures (matplotlib, the `plot` extra): grouped bar charts as PNG or SVG bytes.

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
