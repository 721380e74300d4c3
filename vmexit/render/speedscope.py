"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): one "sampled" profile
whose samples are the distinct stacks (frame indices, outermost first) and whose weights are their exits
(unit "none") or, with `--weight time`, their modeled exit time (unit "nanoseconds")."""
from __future__ import annotations

import json

from .. import __version__

SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def render(report) -> str:
    weight = report.meta.get("weight", "exits")
    freq = report.meta.get("freq_hz") or 1
    frames: dict[str, int] = {}
    samples, weights = [], []
    for row in sorted(report.rows, key=lambda r: r["stack"]):
        samples.append([frames.setdefault(name, len(frames)) for name in row["frames"]])
        weights.append(row["cycles"] * 1e9 / freq if weight == "time" else row["count"])
    title = report.title
    doc = {
        "$schema": SCHEMA,
        "shared": {"frames": [{"name": name} for name in frames]},
        "profiles": [{"type": "sampled", "name": f"{title}, by {'modeled exit time' if weight == 'time' else 'exits'}",
                      "unit": "nanoseconds" if weight == "time" else "none", "startValue": 0,
                      "endValue": sum(weights), "samples": samples, "weights": weights}],
        "name": title, "activeProfileIndex": 0, "exporter": f"vmexit {__version__}",
    }
    return json.dumps(doc, indent=1) + "\n"
