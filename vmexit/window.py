"""A measurement window of a trace, marked by what the guest printed: the exits between two console lines.

A benchmark inside a booted guest is measured from its start to its end, not from power-on: `perf kvm
stat record` is started when the workload starts. vmexit records the whole run (nothing is lost) and
cuts the window afterwards, from the trace alone: every byte the guest writes to COM1's transmit
register (port 0x3f8, an `out` that exits) is an exit whose value is the byte, so the console can be
read back from the exits with the exit that wrote each byte. The window is what happens between two
lines: it holds the exits after the one that wrote the end of the line holding the start text (its
newline; the text's last byte when no newline follows), up to the one that wrote the first byte of
the end text's first appearance after it, which is left out (to the end of the run without an end
text). So neither marker line's own printing is counted: on a serial console a line is dozens of
exits. A line printed with interrupt-driven output (Linux's 8250 driver) still ends with the
transmitter-empty interrupt that finds nothing more to send, a few exits inside the window.

Its virtual time is exact: an exit's `cycles` is its instruction count at the CPI plus every cost and
idle stretch before it, so the window's length, instructions and idle time follow from its two
bounding exits (idle = length - instructions at the CPI - the window's exit costs). The run's device
counters (the NIC's frames) are not the window's and are left out of it. Bytes written while
the divisor latch is open (DLAB) go to the same port and are read as console bytes too; they are
written once, when the driver sets the baud rate, before any line a window would start at. Output the
guest writes with string I/O (`rep outsb`, one exit for many bytes) is not seen byte by byte; neither
Linux's 8250 driver nor the bundled guests write the console that way.

Between the trace and the reports (analysis.py); used by `--from-console`/`--to-console` of `vmexit
report`, `run` and `compare`, and by `vmexit reproduce --linux`.
"""
from __future__ import annotations

import numpy as np

from .exits import Direction, ExitReason
from .trace import Trace, TraceError

COM1_THR = 0x3F8


def console_writes(trace: Trace) -> tuple[bytes, np.ndarray]:
    """The bytes the guest wrote to COM1's transmit register, in order, and for each the index of the
    exit that wrote it or inside which it was emulated (a coalesced run of port I/O)."""
    e = trace.exits
    mask = ((e["reason"] == ExitReason.IO_INSTRUCTION) & (e["qualifier"] == COM1_THR)
            & (e["direction"] == Direction.OUT))
    rows = np.flatnonzero(mask)
    values = e["value"][rows]
    em = trace.emulated
    if len(em):
        emask = (em["port"] == COM1_THR) & (em["direction"] == Direction.OUT)
        seq_to_row = _seq_index(e)
        # an emulated access belongs to its exit (the exit's own access first, then the emulated ones)
        erows = seq_to_row[em["exit"][emask].astype(np.int64)]
        rows = np.concatenate([rows, erows])
        values = np.concatenate([values, em["value"][emask]])
        order = np.argsort(np.concatenate([np.zeros(int(mask.sum()), np.int8), np.ones(len(erows), np.int8)])
                           + 2 * rows.astype(np.int64), kind="stable")
        rows, values = rows[order], values[order]
    return (values & 0xFF).astype(np.uint8).tobytes(), rows


def _seq_index(exits: np.ndarray) -> np.ndarray:
    index = np.zeros(int(exits["seq"].max()) + 1 if len(exits) else 1, dtype=np.int64)
    index[exits["seq"].astype(np.int64)] = np.arange(len(exits))
    return index


def between(trace: Trace, start: str | None, end: str | None = None) -> Trace:
    """The exits after the console printed `start` (from the run's beginning when None) up to its
    printing `end` (the first time after `start`; the run's end when None), as a trace of their own:
    rows renumbered, emulated accesses re-pointed, instructions, virtual time and idle time those of the
    window. A text the console never printed is a TraceError naming what it did print last."""
    if start is None and end is None:
        return trace
    text, rows = console_writes(trace)
    first, time_from = _start(trace, text, rows, start)
    last, time_to = _end(trace, text, rows, end, start)
    return _cut(trace, first, last, time_from, time_to, start, end)


def _find(text: bytes, what: str, after: int, trace: Trace, which: str) -> int:
    """Where `what` first starts in the console bytes at or after `after`."""
    at = text.find(what.encode("latin-1"), after)
    if at < 0:
        tail = text[-60:].decode("latin-1").replace("\r", "").replace("\n", "\\n")
        where = "" if after == 0 else " after the start text"
        raise TraceError(f"--{which}-console {what!r}: the guest never wrote it to the console{where} "
                         f"(its last console bytes: {tail!r})" if text else
                         f"--{which}-console {what!r}: the guest wrote nothing to the console (COM1) in this trace")
    return at


def _line_end(text: bytes, start: str, trace: Trace) -> int:
    """The console byte ending the line that holds `start` (the text's last byte without a newline)."""
    last = _find(text, start, 0, trace, "from") + len(start) - 1
    newline = text.find(b"\n", last)
    return last if newline < 0 else newline


def _start(trace: Trace, text: bytes, rows: np.ndarray, start: str | None) -> tuple[int, tuple[int, int]]:
    """First row of the window, and (instructions, cycles) where it begins."""
    if start is None:
        return 0, (0, 0)
    row = int(rows[_line_end(text, start, trace)])
    e = trace.exits[row]
    return row + 1, (int(e["icount"]), int(e["cycles"]) + int(e["cost"]))


def _end(trace: Trace, text: bytes, rows: np.ndarray, end: str | None, start: str | None) -> tuple[int, tuple[int, int]]:
    """Last row of the window (inclusive), and (instructions, cycles) where it ends: at the exit that
    writes the end text's first byte, before its cost."""
    if end is None:
        return len(trace.exits) - 1, (int(trace.meta.get("instructions", 0)), int(trace.meta.get("cycles", 0)))
    after = 0 if start is None else _line_end(text, start, trace) + 1
    row = int(rows[_find(text, end, after, trace, "to")])
    e = trace.exits[row]
    return row - 1, (int(e["icount"]), int(e["cycles"]))


def _cut(trace: Trace, first: int, last: int, time_from: tuple[int, int], time_to: tuple[int, int],
         start: str | None, end: str | None) -> Trace:
    exits = trace.exits[first:last + 1].copy()
    exits["seq"] = np.arange(len(exits), dtype=np.uint32)
    em = trace.emulated
    if len(em):
        seqs = trace.exits["seq"][first:last + 1].astype(np.int64)
        keep = np.isin(em["exit"].astype(np.int64), seqs)
        em = em[keep].copy()
        em["exit"] = np.searchsorted(seqs, em["exit"].astype(np.int64))
    instructions = time_to[0] - time_from[0]
    cycles = time_to[1] - time_from[1]
    num, den = trace.meta.get("cpi", (1, 1))
    costs = int(exits["cost"].sum(dtype=np.uint64))
    # the NIC's counters are the run's, not the window's: a report would divide the window's exits by
    # the run's frames
    meta = dict(trace.meta, nic=None, instructions=instructions, cycles=cycles,
                virtual_seconds=cycles / trace.freq_hz, idle_cycles=max(cycles - instructions * num // den - costs, 0),
                window={"from_console": start, "to_console": end, "first_exit": first, "last_exit": last,
                        "start_instructions": time_from[0], "start_cycles": time_from[1]})
    return Trace(exits=exits, meta=meta, symbols=trace.symbols, emulated=em, stacks=trace.stacks)
