"""Plain aligned text, like perf's reports: numbers right-aligned, names left-aligned."""
from __future__ import annotations


def render(report) -> str:
    from . import cell, totals_line
    headers = [c.header for c in report.columns]
    body = [[cell(c.kind, row.get(c.key), row) for c in report.columns] for row in report.rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    left = [c.kind == "str" for c in report.columns]

    def line(values):
        parts = [v.ljust(w) if lft else v.rjust(w) for v, w, lft in zip(values, widths, left)]
        return "  ".join(parts).rstrip()

    out = [report.title, "", line(headers)]
    out += [line(r) for r in body]
    if not body:
        out.append("(no exits)")
    out.append("")
    if report.footer:
        out.append(report.footer)
    out.append(totals_line(report))
    return "\n".join(out) + "\n"
