"""JSON for scripts; the layout is a contract (README, "JSON output"): an object with `by`, `rows`
(a list of objects) and `totals`."""
from __future__ import annotations

import json as _json


def render(report) -> str:
    doc = {"by": report.by, "title": report.title, "rows": report.rows, "totals": report.totals}
    return _json.dumps(doc, indent=2, sort_keys=False) + "\n"
