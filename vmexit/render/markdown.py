"""GitHub-flavoured Markdown table, ready to paste into a paper draft or an issue."""
from __future__ import annotations


def render(report) -> str:
    from . import cell, totals_line
    out = [f"### {report.title}", ""]
    out.append("| " + " | ".join(c.header for c in report.columns) + " |")
    out.append("|" + "|".join(":---" if c.kind == "str" else "---:" for c in report.columns) + "|")
    for row in report.rows:
        out.append("| " + " | ".join(cell(c.kind, row.get(c.key), row).replace("|", "\\|")
                                     for c in report.columns) + " |")
    out.append("")
    if report.footer:
        out.append(report.footer)
        out.append("")
    out.append(totals_line(report))
    return "\n".join(out) + "\n"
