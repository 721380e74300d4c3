"""vmexit's Python API: run a guest, load a trace, count and report its exits, compare two runs.

    import vmexit
    trace = vmexit.run("ide", constants={"SECTORS": 4}, opts={"coalesce": 64})
    trace.count(reason="io", function="__ide_do_rw_disk")      # an int
    trace.report(by="reason")                                   # rows, as `--format json` gives them
    vmexit.compare("before.npz", trace)                         # the paper's Table 4, as rows
    vmexit.import_trace("perf", "kvm.txt", symbols="System.map") # a real host's exits, as a trace

The keyword arguments of `run` are the command line's run options (`--max-seconds` is max_seconds=,
`-D` is constants=, `--opt` is opts=), checked by the same code (options.py); every bad argument
raises VmexitError. A thin layer: the work is the CLI's own (session, scenarios, analysis, render),
and `Trace` here is trace.Trace with the queries added, so that trace.py stays below analysis (the
reports it calls are above it). The emulator is imported only when `run` runs a guest: `load`,
`compare` and the queries work from saved traces without unicorn.
"""
from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from . import analysis, filters
from . import trace as _trace
from .errors import VmexitError
from .options import check_top, run_options

if TYPE_CHECKING:
    import numpy as np

PathLike = str | os.PathLike


class Rows(list):
    """A report's rows (a list of dicts, exactly the `rows` of `--format json`), with the rest of the
    report: `by`, `title`, `totals`, and `render(format)` for the text the command line prints."""

    def __init__(self, report: analysis.Report):
        super().__init__(report.rows)
        self.report = report
        self.by, self.title, self.totals = report.by, report.title, report.totals

    def render(self, format: str = "text") -> str:
        """The report as `vmexit` prints it: text, markdown, csv or json."""
        from .render import RENDERERS
        if format not in RENDERERS:
            raise VmexitError(f"format={format!r}: choose from {', '.join(RENDERERS)}")
        return RENDERERS[format](self.report)


@dataclass
class Trace(_trace.Trace):
    """The exits of one run (numpy records, `exits`), its facts (`meta`) and symbols, with queries.

    `count(...)` and `mask(...)` select exits by reason, function, address, port, direction, caller,
    domain; `report(...)` gives a report's rows; `save(path)` writes the .npz that `vmexit report`
    reads; `status` and `console` say how the run ended and what the guest printed."""

    @classmethod
    def of(cls, trace: _trace.Trace) -> "Trace":
        """The same trace (its arrays shared, not copied) with the queries."""
        if isinstance(trace, cls):
            return trace
        return cls(**{f.name: getattr(trace, f.name) for f in fields(trace)})

    @property
    def status(self) -> str:
        """How the run ended: exited, halted, console, budget, crashed, interrupted."""
        return str(self.meta.get("status"))

    @property
    def console(self) -> str:
        """What the guest printed on its serial console."""
        return str(self.meta.get("console", ""))

    def count(self, *, reason: Any = None, function: Any = None, address: Any = None, port: Any = None,
              direction: Any = None, caller: Any = None, within: Any = None, domain: Any = None,
              **unknown: Any) -> int:
        """The number of exits that meet every filter given (None: no condition); each filter takes
        one value or a list of values (any of them):

        reason: "IO_INSTRUCTION" (perf's names), "io", "hlt", "mmio", ... or the number;
        function: the name of the function holding the exit address ("putc"; "d1:putc" for one domain
        of a run of several); address: the exit address; port: an I/O port (I/O exits only);
        direction: "in" or "out" ("read"/"write"); caller: the calling function's name, or the return
        address as an integer; within: a function the exit is in or below, however deep (its stack);
        domain: a domid or a domain's name."""
        return filters.count(self, reason=reason, function=function, address=address, port=port,
                             direction=direction, caller=caller, within=within, domain=domain, **unknown)

    def mask(self, **where: Any) -> "np.ndarray":
        """The boolean numpy mask of the exits `count` would count, one per exit: trace.exits[mask]."""
        return filters.mask(self, **where)

    def report(self, by: str = "function", top: int = 10, *, callers: bool = False,
               profile: PathLike | None = None, domain: int | None = None) -> Rows:
        """A report's rows, as `vmexit report --by BY --top TOP --format json` gives them: by function,
        address, caller, reason, port, mmio, hypercall or domain; top 0 for every row; callers adds
        each row's most frequent caller; profile re-prices the exits; domain keeps one domain's."""
        if by not in analysis.BY_CHOICES:
            raise VmexitError(f"by={by!r}: choose from {', '.join(analysis.BY_CHOICES)}")
        rows = check_top(top, "top")
        return Rows(analysis.report(self, by, rows, callers, _profile(profile), domain))

    def domain(self, domid: int) -> "Trace":
        """One domain's exits of a run of several, as a trace of their own (`--domain N`)."""
        return Trace.of(_trace.domain_view(self, domid))

    def between(self, start: str | None = None, end: str | None = None) -> "Trace":
        """The exits after the console printed `start` up to its printing `end` (either None: from the
        run's start / to its end), as a trace of their own with the window's instructions and virtual
        time (`--from-console START --to-console END`; window.py)."""
        from .window import between
        return Trace.of(between(self, start, end))


def _profile(profile: PathLike | None):
    if profile is None:
        return None
    from .costs import load_profile
    return load_profile(os.fspath(profile))


def load(path: PathLike) -> Trace:
    """A trace saved by `vmexit run -o` or `Trace.save`; VmexitError when it is not a readable trace."""
    return Trace.of(_trace.load(path))


def import_trace(fmt: str, path: PathLike, *, symbols: PathLike | None = None, pid: int | None = None,
                 profile: PathLike | None = None) -> Trace:
    """What `vmexit import FMT FILE` reads: a real host's kvm tracepoint text (`perf script` output for
    fmt="perf", `trace-cmd report` for fmt="trace-cmd") as a trace, functions named from `symbols`
    (System.map, ELF or JSON map), `pid` to keep one VM; VmexitError on a file it cannot read."""
    from .importers import import_file
    return Trace.of(import_file(fmt, os.fspath(path), None if symbols is None else os.fspath(symbols), pid,
                                _profile(profile)))


def _as_trace(value: Trace | PathLike, name: str) -> _trace.Trace:
    if isinstance(value, _trace.Trace):
        return value
    if isinstance(value, (str, os.PathLike)):
        return _trace.load(value)
    raise VmexitError(f"{name}={value!r}: give a Trace or the path of a saved trace")


def compare(before: Trace | PathLike, after: Trace | PathLike, by: str = "function", top: int = 0,
            *, domain: int | None = None) -> Rows:
    """What `vmexit compare` computes (the KVM paper's Table 4): per site the exits before and after,
    delta, ratio and modeled time, as rows; the totals of both runs in `.totals`. `before` and
    `after` are traces or paths of saved traces; by function, address, reason or port."""
    if by not in analysis.COMPARE_CHOICES:
        raise VmexitError(f"by={by!r}: choose from {', '.join(analysis.COMPARE_CHOICES)}")
    rows = check_top(top, "top")
    b, a = _as_trace(before, "before"), _as_trace(after, "after")
    if domain is not None:
        b, a = _trace.domain_view(b, domain), _trace.domain_view(a, domain)
    return Rows(analysis.compare(b, a, by, rows))


def run(guest: PathLike, *, constants: Mapping[str, int] | None = None, profile: PathLike | None = None,
        hypervisor: str | None = None, opts: Mapping[str, Any] | Iterable[str] | None = None,
        memory: int | str = "64M", max_instructions: int | None = None, max_seconds: float | None = None,
        disk: PathLike | None = None, disk1: PathLike | None = None, disk_writable: bool = False,
        input: str | bytes | None = None, input_file: PathLike | None = None, until_console: str | None = None,
        console: bool | Callable[[bytes], None] = False, net_ack_every: int = 2, net_ack_delay_us: float = 20.0,
        net_peer_sends: bool = False, net_frame_size: int = 1514, net_window: int = 16, net_peer: str = "stream",
        host_timer_hz: int = 0,
        symbols: PathLike | None = None, load_addr: int = 0x100000, entry: int | None = None,
        cmdline: str | None = None, initrd: PathLike | None = None, **unknown: Any) -> Trace:
    """Run a guest to its end (or budget) and return its trace, as `vmexit run` does.

    guest: a bundled guest ("timer", "ide", ...), a scenario of several domains ("xennet": the merged
    trace), an assembly source, a multiboot ELF32 kernel or a flat binary (with symbols=, load_addr=,
    entry=), or a Linux bzImage (with cmdline=, initrd=, symbols= its System.map or vmlinux). The options are `vmexit run`'s: constants (-D, {NAME: int}), profile (name or file),
    hypervisor (kvm, xen-pv, native, or kvm-hw: the host's real KVM), opts (--opt: {name: value or None}
    or ["coalesce=64"]), memory (bytes or "64M"), max_instructions, max_seconds (virtual; real time
    under kvm-hw), disk, disk1, disk_writable, input (text
    typed into the serial port, as is), input_file, until_console, console (True: echo to stderr, or a
    function of bytes), net_ack_every, net_ack_delay_us, net_peer_sends, net_frame_size, net_window,
    net_peer, host_timer_hz. A run that ends otherwise than by the guest's own exit is no error: see
    `trace.status` ("budget", "crashed", "unsupported": an instruction the host's KVM cannot run under
    kvm-hw, ...). Bad arguments raise VmexitError (errors.KvmUnavailable: no usable /dev/kvm)."""
    if unknown:
        _unknown_options(unknown)
    constants = _constants(constants)
    if not isinstance(console, bool) and not callable(console):
        raise VmexitError(f"console={console!r}: give True (echo to stderr) or a function of bytes")
    echo = _echo if console is True else (console or None)
    if not isinstance(guest, (str, os.PathLike)):
        raise VmexitError(f"guest={guest!r}: give a bundled guest's name or a path")
    guest = os.fspath(guest)
    common = dict(memory=memory, max_instructions=max_instructions, max_seconds=max_seconds, disk=disk,
                  disk1=disk1, disk_writable=disk_writable, input=input, input_file=input_file,
                  until_console=until_console, echo=echo, net_ack_every=net_ack_every,
                  net_ack_delay_us=net_ack_delay_us, net_peer_sends=net_peer_sends, net_frame_size=net_frame_size,
                  net_window=net_window, net_peer=net_peer, opts=opts, host_timer_hz=host_timer_hz)
    from .scenarios import SCENARIOS
    if guest in SCENARIOS:
        return _run_scenario(guest, constants, profile, hypervisor, common)
    from .costs import load_profile
    from .guests import resolve
    from .hypervisors import HYPERVISORS
    from .session import run as run_session
    options = run_options(hypervisor=hypervisor or "kvm", **common)
    prof = load_profile(os.fspath(profile) if profile is not None else HYPERVISORS[options.hypervisor].profile)
    _check_host_timer(options, prof)
    image = resolve(guest, constants, None if symbols is None else os.fspath(symbols), load_addr, entry, cmdline,
                    None if initrd is None else os.fspath(initrd))
    return Trace.of(run_session(image, prof, options))


def _run_scenario(name: str, constants: dict, profile: PathLike | None, hypervisor: str | None,
                  common: dict) -> Trace:
    """A scenario of several domains (vmexit.scenarios), its domains' traces merged as `vmexit run`
    merges them; its hypervisor is the scenario's own."""
    from .costs import load_profile
    from .scenarios import SCENARIOS, run_scenario
    entry = SCENARIOS[name]
    if hypervisor is not None and hypervisor != entry.hypervisor:
        raise VmexitError(f"hypervisor={hypervisor!r}: the scenario {name} runs under {entry.hypervisor}")
    options = run_options(hypervisor=entry.hypervisor, **common)
    prof = load_profile(os.fspath(profile) if profile is not None else entry.profile)
    _check_host_timer(options, prof)
    traces, host = run_scenario(name, constants, prof, options)
    return Trace.of(_trace.merge_domains(traces, {"name": name, **host}))


def _check_host_timer(options, profile) -> None:
    from .options import RunOptionError
    if options.host_timer_hz > profile.freq_hz:
        raise RunOptionError("host_timer_hz", "--host-timer-hz", str(options.host_timer_hz),
                             f"give 0 (off) to the CPU clock, {profile.freq_hz} Hz")


def _constants(constants: Mapping[str, int] | None) -> dict[str, int]:
    if constants is None:
        return {}
    if not isinstance(constants, Mapping):
        raise VmexitError(f"constants={constants!r}: give a mapping {{NAME: integer}}")
    bad = {k: v for k, v in constants.items()
           if not isinstance(k, str) or not isinstance(v, int) or isinstance(v, bool)}
    if bad:
        raise VmexitError(f"constants: {bad!r}: each constant is a NAME and an integer")
    return dict(constants)


def _unknown_options(unknown: dict) -> None:
    known = [p for p in inspect.signature(run).parameters if p not in ("guest", "unknown")]
    names = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        names.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise VmexitError(f"unknown option {', '.join(names)}; vmexit.run takes: {', '.join(known)}")


def _echo(data: bytes) -> None:
    import sys
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()
