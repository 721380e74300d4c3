"""`trace-cmd report` text of kvm tracepoints (trace-cmd record -e kvm:kvm_exit -e kvm:kvm_pio ...).

trace-cmd report prints one event a line as the kernel's own trace file does, comm and thread joined
by a dash (`COMM-TID`), then `[CPU] SECONDS: EVENT: TEXT`, the event name without its system:

    vm1:        CPU 0/KVM-14299 [001] 15861.238814: kvm_pio:              pio_write at 0x70 size 1 count 1 val 0x8f

(trace-cmd 3.1.6 on this project's development machine, reading a buffer recorded in an instance
named vm1: an instance's or a file's events carry its name first). Also accepted: the kernel's own
/sys/kernel/tracing/trace text, which has the irq-flags column (`.....`) between CPU and time, and
`--ts-diff`'s `(+N)` before the event. Skipped: the `cpus=N` and `version = N` header lines, `#`
comments, `CPU N is empty`, and lines of lost events (`CPU:N [LOST M EVENTS]`, counted). The latency
layout (`report -l`, CPU and flags merged) is not accepted: report without -l.

trace-cmd gives the thread only, not its process: a file is one VM unless --pid picks a thread.
"""
from __future__ import annotations

import re

from .events import timestamp_ns

TOOL = "trace-cmd report"
_LINE = re.compile(r"^(?:[^\s:]+:\s+)?\s*(?P<comm>.*)-(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:[.\w]{4,6}\s+)?"
                   r"(?P<ts>\d+\.\d+):\s+(?:\(\+\d+\)\s+)?(?P<event>\w+):(?:\s+(?P<text>.*))?$")
_HEADER = re.compile(r"^(?:cpus=\d+|version = \d+|CPU \d+ is empty|\s*#.*|\s*)$")
LOST = re.compile(r"^(?:[^\s:]+:\s+)?\s*CPU:\s*\d+ \[(?:LOST \d+ EVENTS|\d+ EVENTS DROPPED)\]\s*$")


def split(line: str):
    """(-1, tid, ns, event, comm, text) of a trace-cmd report line, None for a header or lost-events line."""
    if _HEADER.match(line) or LOST.match(line):
        return None
    m = _LINE.match(line)
    if m is None:
        raise ValueError(f"not a trace-cmd report line (COMM-TID [CPU] SECONDS: EVENT: TEXT): {line.strip()[:80]!r}")
    return -1, int(m.group("tid")), timestamp_ns(m.group("ts")), m.group("event"), m.group("comm").strip(), \
        m.group("text") or ""
