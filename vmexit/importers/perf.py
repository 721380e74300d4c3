"""`perf script` text of kvm tracepoints (perf record -e kvm:kvm_exit -e kvm:kvm_pio ...; perf script).

perf script's default fields for a tracepoint are comm, tid, cpu, time, event and the tracepoint's
text (tools/perf/builtin-script.c, the default output of PERF_TYPE_TRACEPOINT), laid out as

    qemu-system-x86 13188 [001] 15819.498262:        kvm:kvm_pio: pio_write at 0x70 size 1 count 1 val 0x8f

(recorded on this project's development machine, perf 6.1): the comm is right-aligned (up to 15
characters, and may hold spaces: QEMU names its vCPU threads "CPU 0/KVM" with -name debug-threads=on),
the event name right-aligned. `perf script -F +pid` (or -F comm,pid,tid,...) gives `PID/TID` instead of
the TID, which lets an import tell the VMs (processes) of a file apart; `--ns` gives nanoseconds. A
sample period before the event name (events not recorded with -c 1) is accepted and ignored. Lines
starting with `#` (perf script --header) and empty lines are skipped; any other line that is not in
this layout is an error naming its line.
"""
from __future__ import annotations

import re

from .events import timestamp_ns

TOOL = "perf script"
_LINE = re.compile(r"^\s*(?P<comm>.*?)\s+(?:(?P<pid>\d+)/)?(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
                   r"(?P<ts>\d+\.\d+):\s+(?:\d+\s+)?(?P<event>[\w.-]+:[\w.-]+):(?: (?P<text>.*))?$")


def split(line: str):
    """(pid or -1, tid, ns, event, comm, text) of a perf script line, None for a comment or empty line."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    m = _LINE.match(line)
    if m is None:
        raise ValueError(f"not a perf script line (COMM [PID/]TID [CPU] SECONDS: EVENT: TEXT): {line.strip()[:80]!r}")
    system, _, name = m.group("event").partition(":")
    event = name if system == "kvm" else m.group("event")
    pid = int(m.group("pid")) if m.group("pid") else -1
    return pid, int(m.group("tid")), timestamp_ns(m.group("ts")), event, m.group("comm"), m.group("text") or ""
