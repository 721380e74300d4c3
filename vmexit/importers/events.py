"""The kvm tracepoints' print text, as perf script and trace-cmd report show it after each line's header.

Each format module (perf.py, tracecmd.py) splits a line into its header (thread, process when given,
timestamp, event name) and the tracepoint's text; this module reads the text of the events an import
uses, and `read` runs a file through a format's splitter into one array of EVENT_DTYPE rows (the only
loop over lines: building the trace from them is numpy, build.py).

The texts, from the TP_printk of each event (include/trace/events/kvm.h, arch/x86/kvm/trace.h), as
they changed over kernel versions -- every variant below is accepted, any other text is an error:
- kvm_exit (arch/x86/kvm/trace.h): `reason R rip 0xRIP` (2.6.3x); `... info I1 I2` (hexadecimal without
  0x; 3.x-5.x, when the ISA's info fields were added); `vcpu N reason R rip ... info I1 I2` (5.5, vcpu id);
  R may carry ` FAILED_VMENTRY` (5.10, the flags of a VMX reason); `vcpu N reason R rip 0xRIP info1 0xI1
  info2 0xI2 intr_info 0xII error_code 0xEC` (5.13) and `... requests 0xRQ` (6.x, checked against this
  machine's /sys/kernel/tracing/events/kvm/kvm_exit/format). R is a VMX or SVM name (reasons.py), and an
  SVM exception's name has a space ("PF excp").
- kvm_pio (include/trace/events/kvm.h): `pio_read|pio_write at 0xPORT size S count C` then ` val 0xV`
  (since 3.x) and ` (...)` when count > 1 (string I/O: S bytes x C elements).
- kvm_mmio: `mmio read|write|unsatisfied-read len L gpa 0xGPA val 0xV`.
- kvm_entry (arch/x86/kvm/trace.h): `vcpu N`, later `vcpu N, rip 0xRIP` and more fields after it.
- kvm_userspace_exit (include/trace/events/kvm.h): `reason KVM_EXIT_IO (2)` -- the exit went on to QEMU.
- kvm_msr (arch/x86/kvm/trace.h): `msr_read|msr_write ECX = 0xDATA`, ` (#GP)` when it faulted.
Other events (other kvm:* tracepoints, other systems) are skipped and counted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import VmexitError

EXIT, PIO, MMIO, ENTRY, USERSPACE, MSR = range(6)
CHUNK = 1 << 16  # events read between packings into EVENT_DTYPE rows
KINDS = {"kvm_exit": EXIT, "kvm_pio": PIO, "kvm_mmio": MMIO, "kvm_entry": ENTRY,
         "kvm_userspace_exit": USERSPACE, "kvm_msr": MSR}

EVENT_DTYPE = np.dtype([
    ("kind", "u1"),      # EXIT, PIO, ...
    ("line", "<u8"),     # line number in the file (from 1)
    ("pid", "<i8"),      # the process (a VM's QEMU) when the file gives it, else -1
    ("tid", "<i8"),      # the thread (a vCPU's)
    ("ns", "<i8"),       # timestamp in nanoseconds
    ("name", "<i4"),     # kvm_exit: index of its reason name in Events.names
    ("address", "<u8"),  # kvm_exit: the guest RIP; kvm_pio: port; kvm_mmio: gpa; kvm_msr: ECX
    ("write", "u1"),     # 1: a write (pio_write, mmio write, msr_write); kvm_exit: info1 == 1
    ("size", "<u8"),     # kvm_pio: size x count; kvm_mmio: len
    ("value", "<u8"),    # the value written or read (kvm_msr: its data)
    ("info", "u1"),      # kvm_exit: 1 when the text had info fields
])


class ImportFormatError(VmexitError):
    """A file that is not the text an import reads: unreadable, a malformed line, no kvm_exit."""


_HEX = r"[0-9a-fA-F]+"
_EXIT = re.compile(
    rf"^(?:vcpu (?P<vcpu>\d+) )?reason (?P<reason>.+?)(?: FAILED_VMENTRY)? rip 0x(?P<rip>{_HEX})"
    rf"(?:(?: info (?P<i1>{_HEX}) {_HEX})"
    rf"|(?: info1 0x(?P<j1>{_HEX}) info2 0x{_HEX} intr_info 0x{_HEX} error_code 0x{_HEX}(?: requests 0x{_HEX})?))?$")
_PIO = re.compile(rf"^pio_(?P<rw>read|write) at 0x(?P<port>{_HEX}) size (?P<size>\d+) count (?P<count>\d+)"
                  rf"(?: val 0x(?P<val>{_HEX}))?(?: \(\.\.\.\))?$")
_MMIO = re.compile(rf"^mmio (?P<rw>unsatisfied-read|read|write) len (?P<len>\d+) gpa 0x(?P<gpa>{_HEX})"
                   rf" val 0x(?P<val>{_HEX})$")
_ENTRY = re.compile(rf"^vcpu \d+(?:, rip 0x{_HEX}(?: .*)?)?$")
_USERSPACE = re.compile(r"^reason \S+ \(-?\d+\)$")
_MSR = re.compile(rf"^msr_(?P<rw>read|write) (?P<ecx>{_HEX}) = 0x(?P<data>{_HEX})(?: \(#GP\))?$")

#: a header splitter: a line -> None (not an event: a comment, a header line), or (pid or -1, tid,
#: nanoseconds, event name without a `kvm:` system, comm, the event's text); raises ValueError(why)
#: when the line is in neither form
Splitter = Callable[[str], "tuple[int, int, int, str, str, str] | None"]


@dataclass
class Events:
    rows: np.ndarray                                 # EVENT_DTYPE, in file order
    names: list[str]                                 # kvm_exit reason names, by Events.rows["name"]
    lines: int = 0                                   # lines read
    skipped: dict[str, int] = field(default_factory=dict)   # events not used, by name
    comms: dict[int, str] = field(default_factory=dict)     # process (or thread) -> its first comm


def timestamp_ns(text: str) -> int:
    """`15819.497805` (perf's microseconds, or nanoseconds with --ns; trace-cmd's) as integer nanoseconds:
    exact, so equal files give equal traces."""
    seconds, _, frac = text.partition(".")
    return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9])


def _body(kind: int, text: str, names: dict[str, int]) -> tuple | None:
    """(name, address, write, size, value, info) of an event's text, None if it does not parse."""
    if kind == EXIT:
        m = _EXIT.match(text)
        if m is None:
            return None
        info1 = m.group("i1") or m.group("j1")
        reason = names.setdefault(m.group("reason"), len(names))
        return reason, int(m.group("rip"), 16), int(info1 is not None and int(info1, 16) == 1), 0, 0, int(info1 is not None)
    if kind == PIO:
        m = _PIO.match(text)
        if m is None:
            return None
        size = int(m.group("size")) * max(int(m.group("count")), 1)
        return -1, int(m.group("port"), 16), int(m.group("rw") == "write"), size, int(m.group("val") or "0", 16), 0
    if kind == MMIO:
        m = _MMIO.match(text)
        if m is None:
            return None
        return -1, int(m.group("gpa"), 16), int(m.group("rw") == "write"), int(m.group("len")), int(m.group("val"), 16), 0
    if kind == MSR:
        m = _MSR.match(text)
        if m is None:
            return None
        return -1, int(m.group("ecx"), 16), int(m.group("rw") == "write"), 0, int(m.group("data"), 16), 0
    pattern = _ENTRY if kind == ENTRY else _USERSPACE
    return (-1, 0, 0, 0, 0, 0) if pattern.match(text) else None


def read(path: str | Path, split: Splitter, tool: str) -> Events:
    """Every kvm event of a text file, through the format's header splitter."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise ImportFormatError(f"{path}: no such file") from None
    except OSError as e:
        raise ImportFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    rows, chunks, names, skipped, comms = [], [], {}, {}, {}
    number = 0
    with f:
        try:
            for number, line in enumerate(f, 1):
                event = _event(line.rstrip("\n"), split, names, comms, skipped)
                if event is None:
                    continue
                if isinstance(event, str):
                    raise ImportFormatError(f"{path}:{number}: {event}")
                rows.append((event[0], number) + event[1:])
                if len(rows) == CHUNK:  # packed as they come: EVENT_DTYPE rows, not tuples of Python ints
                    chunks.append(np.array(rows, dtype=EVENT_DTYPE))
                    rows.clear()
        except UnicodeDecodeError:
            raise ImportFormatError(f"{path}:{number + 1}: not UTF-8 text (is it {tool} text output?)") from None
        except OSError as e:
            raise ImportFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    chunks.append(np.array(rows, dtype=EVENT_DTYPE))
    events = Events(np.concatenate(chunks), sorted(names, key=names.get), number, skipped, comms)
    if not int((events.rows["kind"] == EXIT).sum()):
        found = f" (it has {', '.join(f'{n} {k}' for k, n in sorted(_kinds(events).items()))})" if len(events.rows) else ""
        raise ImportFormatError(f"{path}: no kvm_exit events in {tool} output{found}; record kvm:kvm_exit")
    return events


def _event(line: str, split: Splitter, names: dict, comms: dict, skipped: dict):
    """One line: None (nothing to keep), an error message (str), or the row's values after `line`."""
    try:
        head = split(line)
    except ValueError as e:
        return str(e)
    if head is None:
        return None
    pid, tid, ns, event, comm, text = head
    kind = KINDS.get(event)
    if kind is None:
        skipped[event] = skipped.get(event, 0) + 1
        return None
    body = _body(kind, text.rstrip(), names)
    if body is None:
        return f"{event} text not in any known kernel's format: {text.strip()[:80]!r}"
    comms.setdefault(pid if pid >= 0 else tid, comm)
    return (kind, pid, tid, ns) + body


def _kinds(events: Events) -> dict[str, int]:
    by_kind = {v: k for k, v in KINDS.items()}
    kinds, counts = np.unique(events.rows["kind"], return_counts=True)
    return {by_kind[int(k)]: int(c) for k, c in zip(kinds, counts)}
