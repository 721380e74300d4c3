"""CSV: one header line of column keys, then one line per row; raw numbers, no units."""
from __future__ import annotations

import csv as _csv
import io


def render(report) -> str:
    buf = io.StringIO()
    keys = [c.key for c in report.columns]
    writer = _csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    for row in report.rows:
        writer.writerow([_raw(row.get(k)) for k in keys])
    return buf.getvalue()


def _raw(value):
    if isinstance(value, float):
        return repr(round(value, 9))
    return "" if value is None else value
