"""Renderers: Report -> str. One module per format, listed in one explicit table."""
from __future__ import annotations

from ..optimizations import summary_line
from . import collapsed, csv, json, markdown, speedscope, text

RENDERERS = {
    "text": text.render,
    "markdown": markdown.render,
    "csv": csv.render,
    "json": json.render,
}

#: Formats of the stack report alone (`--by stack`): flame graph input.
STACK_RENDERERS = {
    "collapsed": collapsed.render,
    "speedscope": speedscope.render,
}


def cell(kind: str, value, row: dict | None = None) -> str:
    """One value formatted for humans (text and markdown share this)."""
    if value is None:
        return "-"
    if kind == "int":
        return f"{int(value):,}" if isinstance(value, (int, float)) else str(value)
    if kind == "seconds":
        return f"{value:.6f}"
    if kind == "pct":
        return f"{value:.2f}%"
    if kind == "us":
        return f"{value:.2f}us"
    if kind == "signed":
        return f"{int(value):+,}"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "us_pm":
        spread = (row or {}).get("stddev_pct", 0.0)
        return f"{value:.2f}us ( +-{spread:6.2f}% )"
    return str(value)


def totals_line(report) -> str:
    t = report.totals
    if "summary" in t:
        return t["summary"]
    if "before" in t:
        b, a = t["before"], t["after"]

        def change(key: str, fmt: str) -> str:
            ratio = f" ({a[key] / b[key]:.3f}x)" if b[key] else ""
            return f"{key} {format(b[key], fmt)} -> {format(a[key], fmt)}{ratio}"
        line = ("Total: " + ", ".join([change("exits", ","), change("time_s", ".6f"), change("instructions", ","),
                                       change("virtual_seconds", ".6f")]))
        if b.get("variant", "default") != "default" or a.get("variant", "default") != "default":
            line += f"\nBefore: {b.get('variant', 'default')}; after: {a.get('variant', 'default')}"
        return line
    line = (f"Total: {t['exits']:,} exits, {t['time_s']:.6f} s modeled exit time, "
            f"{t['instructions']:,} instructions, {t['virtual_seconds']:.6f} s virtual; "
            f"{t['status']}: {t['detail']}")
    net = t.get("network")
    if net:
        line += (f"\nNetwork: {net['frames_out']:,} frames / {net['bytes_out']:,} bytes out, "
                 f"{net['frames_in']:,} frames / {net['bytes_in']:,} bytes in, "
                 f"{net['throughput_mbit_s']:.1f} Mbit/s of virtual time; {net['exits_per_frame']:.2f} exits "
                 f"and {net['exit_us_per_frame']:.2f} us of exit time per frame")
        per = net.get("per_packet")
        if per:
            cpu = ", ".join(f"{name} {us:.2f} us" for name, us in per["cpu_us"].items())
            line += (f"\nPer packet ({per['frames']:,} NIC frames): {per['exits']:.2f} exits, "
                     f"{per['hypercalls']:.2f} hypercalls, {per['notifications']:.2f} notifications, "
                     f"{per['grant_ops']:.2f} grant ops, {per['domain_switches']:.2f} domain switches; "
                     f"CPU {cpu}")
    for name, opt in (t.get("optimizations") or {}).items():
        line += f"\nOptimization {name}={opt['value']}: {summary_line(name, opt)}"
    return line
