"""The `vmexit` command: parse arguments, call the layers, pick a renderer from the table.

Only the commands that run guests import the emulator side (session, guests): `vmexit report` and
`vmexit compare` work from saved traces on a machine without unicorn, capstone or keystone.

A guest argument that names a scenario of several domains (vmexit.scenarios.SCENARIOS, e.g. `xennet`:
dom0 + domU + the network peer) runs it on one host and reports the merged trace (trace.merge_domains),
with the per-domain summary after the report.

`vmexit sweep` and `vmexit reproduce` run their grids through grid.py (serially, on a process pool with
--jobs, or on a Dask cluster with --cluster) and load every trace from the bytes a run returned, so
their output does not depend on where the runs ran.

Exit codes (README, "Exit codes"): 0 the guest ended itself (debug-exit port or HLT with interrupts
off), 2 bad input or usage (any errors.VmexitError; run options are checked by options.py, as for the
Python API; no usable /dev/kvm for kvm-hw), 3 a budget stopped the run, 4 the guest crashed, 5 this
host's KVM cannot run an instruction of the guest (kvm-hw, status `unsupported`), 130 interrupted by the user (Ctrl-C),
143 / 129 stopped by SIGTERM / SIGHUP (stopsignals.py: handled like Ctrl-C, the trace saved), 1 an
internal error (a bug: please report it; --debug shows the traceback). A sweep exits with its worst
run's code.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

from . import __version__, analysis, grid, papers, stopsignals, timeline, window
from .costs import DEFAULT_PROFILE, PROFILES, load_profile
from .errors import VmexitError
from .hypervisors import HYPERVISORS
from .optimizations import OPTIMIZATIONS, parse_opts
from .options import NET_PEERS, RunOptionError, check_top, parse_size, run_options
from .render import RENDERERS, STACK_RENDERERS
from .trace import domain_view, from_bytes, load as load_trace, merge_domains, write_atomic

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BUDGET, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_UNSUPPORTED = 5   # kvm-hw: this host's KVM cannot run an instruction of the guest (hwvcpu.py)
EXIT_MISMATCH = 6   # vmexit validate: the backends' access counts differ (or one failed to run the guest)
STATUS_EXIT_CODES = {"exited": EXIT_OK, "halted": EXIT_OK, "console": EXIT_OK, "budget": EXIT_BUDGET, "crashed": EXIT_CRASH,
                     "interrupted": EXIT_INTERRUPTED, "stopped": EXIT_OK, "unsupported": EXIT_UNSUPPORTED,
                     # a run of a sweep that did not end as a guest does (grid.py)
                     "error": EXIT_USAGE, "failed": EXIT_INTERNAL, "not run": EXIT_INTERRUPTED}


def status_code(status: str) -> int:
    """A run's exit code by its status; interrupted: 130 for Ctrl-C, 128 + the signal for SIGTERM / SIGHUP."""
    if STATUS_EXIT_CODES.get(status) == EXIT_INTERRUPTED:
        return stopsignals.exit_code()
    return STATUS_EXIT_CODES.get(status, EXIT_INTERNAL)


class UsageError(VmexitError):
    """Bad usage of the command line (exit code 2)."""


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _top(text: str) -> int:
    """--top's row count, checked as the API checks it (options.check_top): 0 (all) or more."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        check_top(value)
    except RunOptionError as e:
        raise argparse.ArgumentTypeError(f"{e.shown}: {e.valid}") from None
    return value


def _define(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"-D takes NAME=VALUE, got {text!r}")
    try:
        return name, int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"-D {name}: {value!r} is not an integer") from None


def _define_list(text: str) -> tuple[str, list[int]]:
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"-D takes NAME=V1,V2,..., got {text!r}")
    try:
        return name, [int(v, 0) for v in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"-D {name}: {values!r} is not a list of integers") from None


def _grid_options(p: argparse.ArgumentParser) -> None:
    """How a grid of runs is run (grid.py): --jobs, --cluster, and the progress display."""
    p.add_argument("--jobs", type=int, metavar="N", help="runs at a time on this machine's cores (default: all "
                   f"of them, {grid.default_jobs()} here; 1: one after another in this process)")
    p.add_argument("--cluster", metavar="ADDRESS", help="run each run as a task of the Dask distributed cluster "
                   "whose scheduler is at ADDRESS, e.g. tcp://127.0.0.1:8786 (pip install 'vmexit[cluster]')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (and no progress lines off a terminal)")


def _window_options(p: argparse.ArgumentParser, what: str = "report on") -> None:
    p.add_argument("--from-console", metavar="TEXT", help=f"{what} only the exits after the guest's console "
                   "printed TEXT (a workload's start line; window.py)")
    p.add_argument("--to-console", metavar="TEXT", help=f"{what} only the exits up to the console's printing TEXT "
                   "(after --from-console's text)")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", choices=analysis.BY_CHOICES, default="function",
                   help=f"group exits by {', '.join(analysis.BY_CHOICES)} (default function)")
    p.add_argument("--top", type=_top, default=10, help="rows to show (0: all; default 10)")
    p.add_argument("--sort", choices=analysis.SORT_CHOICES,
                   help="order rows by exits, total exit time, average or maximum exit time (default: the view's own)")
    p.add_argument("--callers", action="store_true", help="add the most frequent caller of each row")
    p.add_argument("--domain", type=int, metavar="N", help="only domain N's exits and symbols (a run of several domains)")
    p.add_argument("--format", choices=tuple(RENDERERS) + tuple(STACK_RENDERERS), default="text",
                   help="text, markdown, csv, json; collapsed (flamegraph.pl, inferno) and speedscope give the "
                        "exit stacks")
    p.add_argument("--weight", choices=("exits", "time"), default="exits",
                   help="what stacks count in collapsed, speedscope and flame graphs (default exits)")
    p.add_argument("--interval", type=float, metavar="SECONDS",
                   help="one row per interval of SECONDS of virtual time and key of --by: exits and exit time")
    p.add_argument("--plot", metavar="FILE", help="write a flame graph of the exit stacks, or with --interval a "
                   "timeline (.svg or .png; needs matplotlib)")
    p.add_argument("--report-file", metavar="FILE", help="write the report to FILE instead of stdout")
    _window_options(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmexit", description="Trace and cost the VM exits of an x86 guest.")
    p.add_argument("--version", action="version", version=f"vmexit {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("guests", help="list the bundled guests")
    sub.add_parser("profiles", help="list the cost profiles: bundled, then the user's (vmexit calibrate)")
    cal = sub.add_parser("calibrate", help="measure this host's KVM exit round trips into a cost profile")
    cal.add_argument("-o", "--output", metavar="PROFILE.json",
                     help="where to write the profile (default: calibrated.json in the user's profile folder)")
    cal.add_argument("--samples", type=_int, default=1000, metavar="N", help="round trips per exit kind (default 1000)")

    r = sub.add_parser("run", help="run a guest and report its exits")
    r.add_argument("guest", help="bundled guest name, assembly source, multiboot ELF32 or flat binary, or a "
                   "scenario of several domains (xennet, xenidc)")
    r.add_argument("-D", dest="defines", type=_define, action="append", default=[], metavar="NAME=VALUE",
                   help="assembler constant for a guest source (repeatable)")
    r.add_argument("-o", "--output", metavar="FILE.npz", help="save the trace")
    r.add_argument("--profile", help="cost profile name or file (default: the hypervisor's, "
                   f"{DEFAULT_PROFILE} for kvm)")
    r.add_argument("--hypervisor", choices=tuple(HYPERVISORS), default="kvm",
                   help="the exit model: kvm (default), xen-pv (paravirtual memory), native (no hypervisor); "
                        "kvm-hw runs the guest on this host's real KVM")
    r.add_argument("--host-timer-hz", type=int, default=0, metavar="HZ",
                   help="the host runs guest timers (PIT, LAPIC) on its own HZ tick, as a low-resolution "
                        "host does; 0 (default): they fire when due")
    r.add_argument("--memory", type=_size, default=64 << 20, help="guest RAM (default 64M)")
    r.add_argument("--max-instructions", type=_int, metavar="N", help="stop after N guest instructions")
    r.add_argument("--max-seconds", type=float, metavar="S",
                   help="stop after S seconds of virtual time (real time under kvm-hw)")
    r.add_argument("--disk", metavar="IMG", help="IDE disk image (used as a copy unless --disk-writable)")
    r.add_argument("--disk1", metavar="IMG", help="the slave drive's image (also a copy unless --disk-writable)")
    r.add_argument("--disk-writable", action="store_true", help="write the guest's disk writes back to the images")
    r.add_argument("--console", action="store_true", help="echo the guest's serial output to stderr")
    r.add_argument("--input", metavar="TEXT", help="type TEXT into the serial port (\\n for Enter)")
    r.add_argument("--input-file", metavar="FILE", help="type the bytes of FILE into the serial port")
    r.add_argument("--until-console", metavar="TEXT", help="end the run once the console has printed TEXT")
    r.add_argument("--net-ack-every", type=int, default=2, metavar="N",
                   help="the network peer acknowledges every N frames the guest sends (default 2)")
    r.add_argument("--net-ack-delay-us", type=float, default=20.0, metavar="US",
                   help="virtual microseconds from a frame to its acknowledgement (default 20)")
    r.add_argument("--net-peer-sends", action="store_true",
                   help="the network peer streams to the guest at 100 Mb/s (netperf -D RECEIVE=1)")
    r.add_argument("--net-frame-size", type=int, default=1514, metavar="BYTES",
                   help="frame size of the peer's stream (60-1514, default 1514)")
    r.add_argument("--net-window", type=int, default=16, metavar="FRAMES",
                   help="frames the streaming peer sends ahead of the guest's ACKs (default 16)")
    r.add_argument("--net-peer", choices=NET_PEERS, default="stream",
                   help="the NIC's peer: stream (default: counts frames as segments, for the bundled guests) or "
                        "tcp (a host at 10.0.2.2 answering ARP, ping and TCP: a sink on port 5001, a source on 5002)")
    r.add_argument("--opt", dest="opts", action="append", default=[], metavar="NAME[=VALUE]",
                   help="hypervisor-side optimization (repeatable): " + "; ".join(
                       f"{o.name}[={o.value}]: {o.summary}" for o in OPTIMIZATIONS.values()))
    r.add_argument("--symbols", metavar="FILE", help="symbol map {name: address} for a flat binary; a Linux "
                   "bzImage's System.map or vmlinux")
    r.add_argument("--cmdline", metavar="TEXT", help="a Linux bzImage's kernel command line")
    r.add_argument("--initrd", metavar="FILE", help="a Linux bzImage's initrd (initramfs)")
    r.add_argument("--load-addr", type=_int, default=0x100000, help="load address of a flat binary")
    r.add_argument("--entry", type=_int, help="entry point of a flat binary (default: load address)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--paper", action="store_true",
                   help="print ours beside the paper's table for this workload (specjbb, timer: the KVM paper's "
                        "Table 1; fork, exec: the Xen report's Fig. 4; xennet: the Xen network report's "
                        "throughput at the run's MSG_SIZE)")
    _report_options(r)

    rep = sub.add_parser("report", help="report on a saved trace")
    rep.add_argument("trace", help="trace file written by `vmexit run -o`")
    rep.add_argument("--profile", help="re-price the trace under another cost profile")
    _report_options(rep)

    c = sub.add_parser("compare", help="exits per site before and after a change (the paper's Table 4)")
    c.add_argument("before", help="trace of the run before")
    c.add_argument("after", help="trace of the run after")
    c.add_argument("--by", choices=analysis.COMPARE_CHOICES, default="function")
    c.add_argument("--top", type=_top, default=0, help="rows to show (0: all, the default)")
    c.add_argument("--domain", type=int, metavar="N", help="compare domain N's exits of each trace")
    c.add_argument("--format", choices=tuple(RENDERERS), default="text")
    c.add_argument("--report-file", metavar="FILE", help="write the report to FILE instead of stdout")
    _window_options(c, "compare")

    _import_parser(sub)

    rp = sub.add_parser("reproduce", help="run the KVM paper's experiments and write tables, JSON, traces, figures")
    rp.add_argument("--out", default="vmexit-reproduce", metavar="DIR", help="output directory (default vmexit-reproduce)")
    rp.add_argument("--profile", default=DEFAULT_PROFILE, help=f"cost profile name or file (default {DEFAULT_PROFILE})")
    rp.add_argument("--no-figures", action="store_true", help="skip the figures (they need matplotlib)")
    rp.add_argument("--linux", action="store_true", help="Tables 1-3 from the Linux kernel of tools/linux/build.sh "
                    "($VMEXIT_LINUX_DIR or ~/.cache/vmexit/linux) instead: linux.md, linux.json, traces")
    _grid_options(rp)

    sw = sub.add_parser("sweep", help="run one guest under every combination of constants / options")
    sw.add_argument("guest", help="bundled guest name or assembly source")
    sw.add_argument("-D", dest="defines", type=_define_list, action="append", default=[], metavar="NAME=V1,V2,...",
                    help="a guest constant and its values (repeatable: the runs are the product)")
    sw.add_argument("--opt", dest="opts", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="an optimization and its values (repeatable; 'off' for a run without it)")
    sw.add_argument("--profile", help="cost profile name or file (default: the hypervisor's)")
    sw.add_argument("--hypervisor", choices=tuple(HYPERVISORS), default="kvm", help="the exit model (default kvm)")
    sw.add_argument("--host-timer-hz", type=int, default=0, metavar="HZ",
                    help="guest timers fire on a host tick of HZ (default 0: when due)")
    sw.add_argument("--max-instructions", type=_int, metavar="N", help="stop each run after N guest instructions")
    sw.add_argument("--max-seconds", type=float, metavar="S", help="stop each run after S seconds of virtual time")
    sw.add_argument("--per", metavar="NAME", help="a guest constant counting the operations a run does (e.g. "
                    "SECTORS): adds exits and virtual time per operation")
    sw.add_argument("--plot", metavar="FILE", help="write a figure (.png or .svg; needs matplotlib)")
    sw.add_argument("--format", choices=tuple(RENDERERS), default="text")
    sw.add_argument("--report-file", metavar="FILE", help="write the table to FILE instead of stdout")
    sw.add_argument("--traces", metavar="DIR", help="save each run's trace in DIR, as NAME=VALUE,....npz")
    _grid_options(sw)

    v = sub.add_parser("validate", help="the guest's port and MMIO access counts under the model, QEMU and KVM, "
                       "side by side (exit code 6 on a mismatch)")
    v.add_argument("guest", help="bundled guest name, assembly source or multiboot ELF32")
    v.add_argument("-D", dest="defines", type=_define, action="append", default=[], metavar="NAME=VALUE",
                   help="assembler constant for a guest source (repeatable)")
    v.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="host seconds QEMU may run the guest (default 300)")
    v.add_argument("--format", choices=tuple(RENDERERS), default="text")
    v.add_argument("--report-file", metavar="FILE", help="write the table to FILE instead of stdout")

    b = sub.add_parser("build", help="assemble a guest source into a multiboot ELF (bootable in QEMU)")
    b.add_argument("guest", help="bundled guest name or assembly source")
    b.add_argument("-D", dest="defines", type=_define, action="append", default=[], metavar="NAME=VALUE")
    b.add_argument("-o", "--output", required=True, metavar="FILE.elf")
    return p


def _import_parser(sub) -> None:
    """`vmexit import FORMAT FILE`: a real host's kvm tracepoints as a trace (vmexit/importers)."""
    from .importers import FORMATS
    im = sub.add_parser("import", help="read a real host's kvm exits (perf script / trace-cmd report text) as a trace",
                        description="Record: " + "; or ".join(f.records for f in FORMATS.values()))
    im.add_argument("importer", metavar="FORMAT", choices=tuple(FORMATS),
                    help=f"the tool that printed FILE: {' or '.join(FORMATS)}")
    im.add_argument("file", help="the text file (perf script or trace-cmd report output)")
    im.add_argument("-o", "--output", metavar="FILE.npz", help="save the trace")
    im.add_argument("--symbols", metavar="PATH", help="the guest kernel's System.map, vmlinux (ELF) or a JSON map "
                    "{name: address}: names the functions of the exit addresses")
    im.add_argument("--pid", type=int, metavar="N", help="only the exits of process N (perf script -F +pid) or thread N")
    im.add_argument("--profile", help=f"the clock (its frequency) and the prices of exits without a kvm_entry "
                    f"(default {DEFAULT_PROFILE})")
    _report_options(im)


def _emit(text: str, path: str | None) -> None:
    if path:
        try:
            write_atomic(Path(path), text.encode())
        except OSError as e:
            raise UsageError(f"cannot write report {path}: {e.strerror or e}") from None
    else:
        sys.stdout.write(text)


def _render(trace, args, profile=None) -> str:
    """The report asked for: --interval's rows, the stacks (--by stack, or a stack format), or a view;
    --plot writes its figure beside it."""
    top = None if args.top == 0 else args.top
    stack_format = args.format in STACK_RENDERERS
    trace = window.between(trace, args.from_console, args.to_console)
    if args.plot and Path(args.plot).suffix not in (".png", ".svg"):
        raise UsageError(f"--plot {args.plot}: the file must end in .png or .svg")
    try:
        if args.interval is not None:
            if stack_format:
                raise UsageError(f"--format {args.format} gives stacks, not intervals: use text, markdown, csv or json")
            rep = timeline.intervals(trace, args.by, args.interval, profile, args.domain)
        elif stack_format or args.by == "stack":
            rep = analysis.report(trace, "stack", None if stack_format else top, False, profile, args.domain, args.sort)
            rep.meta["weight"] = args.weight
        else:
            rep = analysis.report(trace, args.by, top, args.callers, profile, args.domain, args.sort)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.plot:
        _write_plot(None, args.plot, _report_figure(trace, rep, args, profile))
    return (STACK_RENDERERS.get(args.format) or RENDERERS[args.format])(rep)


def _report_figure(trace, rep, args, profile):
    """--plot: the timeline of an interval report, else the flame graph of the run's stacks."""
    from .render import plot
    fmt = Path(args.plot).suffix[1:]
    if args.interval is not None:
        labels = list(dict.fromkeys(r["key"] for r in sorted(rep.rows, key=lambda r: -r["count"])))
        shown = labels[:8]
        slots = list(range(max((r["interval"] for r in rep.rows), default=-1) + 1))  # empty intervals too
        index = {s: i for i, s in enumerate(slots)}
        series = {k: [0.0] * len(slots) for k in shown + (["other"] if len(labels) > 8 else [])}
        for r in rep.rows:
            series[r["key"] if r["key"] in series else "other"][index[r["interval"]]] += r["count"]
        starts = [s * args.interval for s in slots]
        return lambda: plot.timeline(starts, series, rep.title, f"exits per {args.interval:g} s", fmt)
    stacks = rep if rep.by == "stack" and len(rep.rows) == rep.meta.get("stacks") else analysis.report(
        trace, "stack", None, False, profile, args.domain)
    unit = "modeled exit cycles" if args.weight == "time" else "exits"
    weighted = [(r["frames"], float(r["cycles"] if args.weight == "time" else r["count"])) for r in stacks.rows]
    return lambda: plot.flame(weighted, stacks.title, unit, fmt)


def cmd_guests(args) -> int:
    from .guests import GUESTS, guests_dir
    width = max(len(n) for n in GUESTS)
    for name, (source, description) in GUESTS.items():
        print(f"{name.ljust(width)}  {description}  [{guests_dir() / source}]")
    module = _scenarios()
    entries = module.SCENARIOS if module is not None else {}
    print("\nScenarios (several domains on one host; `vmexit run NAME`):")
    for name, entry in entries.items():
        print(f"{name.ljust(width)}  {entry.summary}  [{entry.hypervisor}, profile {entry.profile}]")
    return EXIT_OK


def cmd_profiles(args) -> int:
    from .costs import user_profile_dir, user_profiles
    users = user_profiles()
    for name in list(PROFILES) + list(users):
        prof = load_profile(str(users[name]) if name in users else name)
        where = f" [{users[name]}]" if name in users else ""
        print(f"{name}: {prof.description} ({prof.freq_hz / 1e9:.2f} GHz){where}")
        for key, cycles in prof.costs.items():
            print(f"  {key:28s} {cycles:>7,} cycles  {prof.sources[key]}")
    if not users:
        print(f"(no profiles of your own in {user_profile_dir()}: `vmexit calibrate` writes one there)")
    return EXIT_OK


def cmd_calibrate(args) -> int:
    """Measure this host's KVM exits (calibrate.py) and write the profile atomically."""
    from . import calibrate
    output = Path(args.output) if args.output else calibrate.default_output()
    if args.output and not output.resolve().parent.is_dir():
        raise UsageError(f"cannot write profile {args.output}: directory {output.resolve().parent} does not exist")
    doc, measured = calibrate.calibrate(args.samples, output.stem)
    print(calibrate.summary(doc))
    try:
        calibrate.write_profile(doc, output)
    except OSError as e:
        raise UsageError(f"cannot write profile {output}: {e.strerror or e}") from None
    print(f"\nwrote {output} (use it: --profile {output.stem if output.parent == calibrate.default_output().parent else output})")
    return EXIT_OK


class _Progress:
    """A progress bar on a terminal (host time only paces the display; results never see it)."""

    def __init__(self, enabled: bool, budget: int | None, unit: str = "instructions"):
        self._bar = None
        self._last = 0.0
        self._unit = unit
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self._bar = Progress(TextColumn("[bold]running"), BarColumn(), TextColumn("{task.description}"),
                             TimeElapsedColumn(), transient=True)
        self._task = self._bar.add_task("", total=budget)
        self._bar.start()

    def __call__(self, done: int, cycles: int, label: str = "") -> None:
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and not label:
            return
        self._last = now
        self._bar.update(self._task, completed=done, description=label or f"{done:,} {self._unit}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# running guests: only these functions import the emulator side ----------------------------------------
def _run_guest(image, profile, options, progress=None):
    """One guest run (vmexit.session.run); a disk image that cannot be used is bad input."""
    from .devices.ide import DiskError
    from .session import run
    try:
        return run(image, profile, options, progress)
    except DiskError as e:
        raise UsageError(str(e)) from None


def _guest_constant(image, constants: dict[str, int], name: str) -> int | None:
    """A guest constant's value in a run: as given with -D, else as the guest's source defaults it (None
    when the source sets no such constant, or the guest is a binary)."""
    return constants.get(name, image.defaults.get(name))


def _profile_for(args):
    return load_profile(args.profile or HYPERVISORS[args.hypervisor].profile)


def _typed_input(args) -> bytes | None:
    """What --input types into the serial port, its escapes (\\n for Enter) decoded."""
    if args.input is None:
        return None
    return args.input.encode("latin-1", "replace").decode("unicode_escape").encode("latin-1", "replace")


def _echo(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


def _run_options(args, profile):
    """`vmexit run`'s options as the session's RunOptions, checked as vmexit.run checks them
    (options.run_options: the one place a run option's range is known)."""
    return run_options(memory=args.memory, max_instructions=args.max_instructions,
                       max_seconds=args.max_seconds, disk=args.disk, disk1=args.disk1,
                       disk_writable=args.disk_writable, input=_typed_input(args), input_file=args.input_file,
                       until_console=args.until_console, echo=_echo if args.console else None,
                       net_ack_every=args.net_ack_every, net_ack_delay_us=args.net_ack_delay_us,
                       net_peer_sends=args.net_peer_sends, net_frame_size=args.net_frame_size,
                       net_window=args.net_window, net_peer=args.net_peer, opts=args.opts, hypervisor=args.hypervisor,
                       host_timer_hz=_host_timer_hz(args, profile))


def _check_output(args) -> None:
    if args.output:
        out_dir = Path(args.output).resolve().parent
        if not out_dir.is_dir():
            raise UsageError(f"cannot write trace {args.output}: directory {out_dir} does not exist")


def cmd_run(args) -> int:
    from .guests import resolve
    scenarios = _scenarios()
    if scenarios is not None and args.guest in scenarios.SCENARIOS:
        return _run_scenario(args, scenarios)
    if args.domain not in (None, 0):
        raise UsageError(f"--domain {args.domain}: a run of one guest has only domain 0")
    profile = _profile_for(args)
    image = resolve(args.guest, dict(args.defines), args.symbols, args.load_addr, args.entry,
                    cmdline=args.cmdline, initrd=args.initrd)
    _check_output(args)
    options = _run_options(args, profile)
    paper = None
    if args.paper and (args.format in STACK_RENDERERS or args.interval is not None or args.plot):
        raise UsageError("--paper prints a table beside the paper's: no stack formats, --interval or --plot")
    if args.paper:
        xen = papers.xen_paper_for(image.name)
        if xen is not None:
            return _xen_paper(args, xen, options)
        paper = papers.paper_table_for(image.name)
        if paper is None:
            raise UsageError(f"the papers have no table for guest {image.name!r}")
    show = sys.stderr.isatty() and args.format != "json" and not args.no_progress and not args.console
    progress = _Progress(show, args.max_instructions)
    try:
        trace = _run_guest(image, profile, options, progress)
    finally:
        progress.close()
    saved = _save_output(trace, args)
    if saved is None:
        return EXIT_USAGE
    if paper is not None:
        _emit(RENDERERS[args.format](papers.beside_paper(trace, paper)), args.report_file)
    else:
        _emit(_render(trace, args), args.report_file)
    return _ended(trace, saved)


def _ended(trace, saved: str) -> int:
    """The exit code of a run's ending, said on stderr unless the guest ended itself."""
    status = trace.meta["status"]
    code = status_code(status)
    if code != EXIT_OK:
        where = trace.meta.get("end_address")
        at = f" at 0x{where:x}" if where is not None and status != "unsupported" else ""  # its detail has it
        print(f"vmexit: {status}: {trace.meta['detail']}{at}{saved}", file=sys.stderr)
    return code


def _xen_paper(args, paper: dict, options) -> int:
    """The Xen report's Fig. 4 beside ours: every run of papers.xen_runs, with the guest as given."""
    import dataclasses

    from .guests import resolve
    image = resolve(args.guest, dict(args.defines), args.symbols, args.load_addr, args.entry)
    n = _guest_constant(image, dict(args.defines), paper["constant"])
    if not n:
        raise UsageError(f"{args.guest}: no {paper['constant']} constant to count operations by")
    images, traces, worst = {}, {}, EXIT_OK
    for xen_run in papers.xen_runs(paper, n):
        constants = dict(args.defines, **xen_run.constants)
        key = tuple(sorted(constants.items()))
        if key not in images:
            images[key] = resolve(args.guest, constants, args.symbols, args.load_addr, args.entry)
        system = xen_run.system
        opt = dataclasses.replace(options, hypervisor=system.hypervisor,
                                  optimizations=dict(options.optimizations, **system.optimizations))
        profile = load_profile(args.profile or HYPERVISORS[system.hypervisor].profile)
        trace = traces[xen_run.name] = _run_guest(images[key], profile, opt)
        worst = max(worst, status_code(trace.meta["status"]))
    _emit(RENDERERS[args.format](papers.beside_xen_paper(paper, n, traces)), args.report_file)
    return worst


# scenarios: several domains on one host (vmexit.scenarios) -----------------------------------------------
def _scenarios():
    """The module of scenarios of several domains (SCENARIOS, run_scenario), None in a build without it."""
    try:
        return importlib.import_module(".scenarios", __package__)
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.scenarios":
            raise
        return None


def _scenario_trace(scenarios, name: str, constants: dict, profile, options):
    """One run of a scenario, its domains' traces merged into one (trace.merge_domains)."""
    from .devices.ide import DiskError
    try:
        traces, host = scenarios.run_scenario(name, constants, profile, options)
    except DiskError as e:
        raise UsageError(str(e)) from None
    return merge_domains(traces, {"name": name, **host})


def _save_output(trace, args) -> str | None:
    """-o: save the trace; the words the run's last line adds, or None when it could not be written (said)."""
    if not args.output:
        return ""
    try:
        trace.save(args.output)
    except OSError as e:
        print(f"vmexit: error: cannot write trace {args.output}: {e.strerror or e}", file=sys.stderr)
        return None
    return f"; trace saved to {args.output}"


def _run_scenario(args, scenarios) -> int:
    """`vmexit run SCENARIO`: the run's report (restricted by --domain), then its per-domain summary;
    -o saves the merged trace; --paper runs the paper's systems instead."""
    entry = scenarios.SCENARIOS[args.guest]
    hypervisor = getattr(entry, "hypervisor", "xen-pv")
    profile = load_profile(args.profile or getattr(entry, "profile", None) or HYPERVISORS[hypervisor].profile)
    _check_output(args)
    options = dataclasses.replace(_run_options(args, profile), hypervisor=hypervisor)
    if args.paper:
        if args.format in STACK_RENDERERS or args.interval is not None or args.plot:
            raise UsageError("--paper prints a table beside the paper's: no stack formats, --interval or --plot")
        return _scenario_paper(args, scenarios, entry, profile, options)
    trace = _scenario_trace(scenarios, args.guest, dict(args.defines), profile, options)
    saved = _save_output(trace, args)
    if saved is None:
        return EXIT_USAGE
    _emit(_with_domains(trace, args), args.report_file)
    return _ended(trace, saved)


def _with_domains(trace, args) -> str:
    """The report asked for, then the per-domain summary (in JSON: under the report's "domains")."""
    main = _render(trace, args)
    if args.by == "domain" or args.format in STACK_RENDERERS or args.interval is not None:
        return main
    domains = analysis.report(trace, "domain", None, False, None, args.domain)
    if args.format == "json":
        doc = json.loads(main)
        doc["domains"] = json.loads(RENDERERS["json"](domains))
        return json.dumps(doc, indent=2) + "\n"
    return main + "\n" + RENDERERS[args.format](domains)


def _scenario_paper(args, scenarios, entry, profile, options) -> int:
    """A scenario beside its paper: the scenario's own `paper` runs what the paper compares (through
    the merged-trace runner given to it) and returns the table."""
    if getattr(entry, "paper", None) is None:
        raise UsageError(f"--paper: the {args.guest} scenario has no paper to compare with")
    if args.output:
        raise UsageError("--paper runs the scenario once per system: save a run without --paper (-o)")
    ends = []

    def run(constants: dict):
        trace = _scenario_trace(scenarios, args.guest, constants, profile, options)
        ends.append(status_code(trace.meta["status"]))
        return trace
    try:
        report = entry.paper(dict(args.defines), run)
    except ValueError as e:
        raise UsageError(f"--paper: {e}") from None
    _emit(RENDERERS[args.format](report), args.report_file)
    return max(ends, default=EXIT_OK)


# commands on saved traces: no emulator ----------------------------------------------------------------
def cmd_report(args) -> int:
    trace = load_trace(args.trace)
    profile = load_profile(args.profile) if args.profile else None
    _emit(_render(trace, args, profile), args.report_file)
    return EXIT_OK


def cmd_compare(args) -> int:
    before, after = load_trace(args.before), load_trace(args.after)
    if args.domain is not None:
        before, after = domain_view(before, args.domain), domain_view(after, args.domain)
    before, after = (window.between(t, args.from_console, args.to_console) for t in (before, after))
    rep = analysis.compare(before, after, args.by, None if args.top == 0 else args.top)
    _emit(RENDERERS[args.format](rep), args.report_file)
    return EXIT_OK


def cmd_import(args) -> int:
    """A real host's exits as a trace: saved with -o, then the report asked for, as `vmexit report` prints it."""
    from .importers import import_file, notes
    _check_output(args)
    trace = import_file(args.importer, args.file, args.symbols, args.pid, load_profile(args.profile))
    if _save_output(trace, args) is None:
        return EXIT_USAGE
    _emit(_render(trace, args), args.report_file)
    for note in notes(trace.meta):
        print(f"vmexit: note: {note}", file=sys.stderr)
    return EXIT_OK


# experiments ------------------------------------------------------------------------------------------
def cmd_reproduce(args) -> int:
    from . import reproduce
    profile = load_profile(args.profile)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if args.linux:
        return _reproduce_linux(args, profile, out)
    figures = not args.no_figures
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("vmexit: note: matplotlib is not installed, figures skipped (pip install 'vmexit[plot]')",
                  file=sys.stderr)
            figures = False
    names = list(reproduce.RUNS)
    traces_dir = _output_dir(out / "traces")
    outcomes, stopped = _run_grid(reproduce.jobs(profile), names, args, traces_dir, names)
    missing = [(name, o) for name, o in zip(names, outcomes) if o is None or o.data is None]
    if stopped or missing:
        return _unfinished(missing, len(names), stopped, traces_dir)
    traces = {name: from_bytes(o.data) for name, o in zip(names, outcomes)}
    reps = reproduce.reports(traces)
    try:
        written = reproduce.write(out, traces, reps, figures, traces_saved=True)
    except OSError as e:
        raise UsageError(f"cannot write to {out}: {e.strerror or e}") from None
    print(f"{len(reproduce.RUNS)} runs, {len(reps)} tables: {out / 'reproduce.md'}, {out / 'reproduce.json'}"
          f"{', figures in ' + str(out / 'figures') if figures else ''} ({len(written)} files)")
    return EXIT_OK


def _reproduce_linux(args, profile, out: Path) -> int:
    """`vmexit reproduce --linux`: the Linux runs (linuxpaper.py), then their tables."""
    from . import linuxpaper
    d = linuxpaper.check_built(linuxpaper.linux_dir())
    names = list(linuxpaper.RUNS)
    traces_dir = _output_dir(out / "traces")
    outcomes, stopped = _run_grid(linuxpaper.jobs(profile, d), names, args, traces_dir, names)
    missing = [(name, o) for name, o in zip(names, outcomes)
               if o is None or o.data is None or o.status != "console"]
    if stopped or missing:
        code = _unfinished(missing, len(names), stopped, traces_dir)
        return code if code != EXIT_OK else EXIT_CRASH   # the kernel ended before its workload's done line
    try:
        reps = linuxpaper.reports({name: from_bytes(o.data) for name, o in zip(names, outcomes)})
        written = linuxpaper.write(out, reps)
    except OSError as e:
        raise UsageError(f"cannot write to {out}: {e.strerror or e}") from None
    print(f"{len(names)} Linux runs, {len(reps)} tables: {written[0]}, {written[1]}")
    return EXIT_OK


def _unfinished(missing: list, total: int, stopped: bool, traces_dir: Path) -> int:
    """`vmexit reproduce` without every run: no tables; each failed run said, the exit code the worst."""
    for name, o in missing:
        if o is not None:
            print(f"vmexit: run {name}: {o.status}: {o.error or ''}".rstrip(": "), file=sys.stderr)
    finished = total - len(missing)
    why = stopsignals.reason() if stopped else f"{len(missing)} runs failed"
    print(f"vmexit: {why}: no tables; {finished} of {total} runs finished, their traces are in {traces_dir}",
          file=sys.stderr)
    return max([status_code(o.status if o is not None else "not run") for _, o in missing] or [status_code("not run")])


def _output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write to {path}: {e.strerror or e}") from None
    return path


def _workers(args) -> int:
    """--jobs, checked: all the cores by default; with --cluster the cluster decides."""
    if args.cluster is not None and args.jobs is not None:
        raise UsageError("give --jobs (this machine) or --cluster (a Dask cluster), not both")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give 1 or more")
    return args.jobs or grid.default_jobs()


def _run_grid(jobs: list, labels: list[str], args, traces_dir: Path | None = None,
              names: list[str] | None = None) -> tuple[list, bool]:
    """Run a grid (grid.py) with its progress display; each trace saved in traces_dir as it arrives
    (names[i].npz). Returns the outcomes in the grid's order (None: never finished) and whether a
    Ctrl-C, SIGTERM or SIGHUP stopped it."""
    workers = _workers(args)
    show = grid_progress(labels, not args.no_progress)
    saved: set[int] = set()

    def save(outcome) -> None:
        if traces_dir is not None and outcome.data is not None and outcome.index not in saved:
            path = traces_dir / f"{names[outcome.index]}.npz"
            try:
                write_atomic(path, outcome.data)
            except OSError as e:
                raise UsageError(f"cannot write trace {path}: {e.strerror or e}") from None
            saved.add(outcome.index)

    try:
        return grid.run(jobs, lambda outcome: (save(outcome), show(outcome)), workers, args.cluster), False
    except grid.Interrupted as e:
        for outcome in e.done.values():   # one whose saving the signal cut short (a second one is ignored)
            save(outcome)
        return [e.done.get(i) for i in range(len(jobs))], True
    finally:
        show.close()


def grid_progress(labels: list[str], enabled: bool):
    from .progress import GridProgress
    return GridProgress.choose(labels, enabled)


def _sweep_axes(args) -> list[tuple[str, str, list]]:
    """(kind, name, values) of every swept list: -D constants, then --opt options (None: off)."""
    axes: list[tuple[str, str, list]] = [("D", name, values) for name, values in args.defines]
    for text in args.opts:
        name, sep, values = text.partition("=")
        if not sep or not values:
            raise UsageError(f"--opt takes NAME=V1,V2,... in a sweep, got {text!r}")
        axes.append(("opt", name, [None if v == "off" else parse_opts([f"{name}={v}"])[name]
                                   for v in values.split(",")]))
    if not axes:
        raise UsageError("nothing to sweep: give -D NAME=V1,V2,... or --opt NAME=V1,V2,...")
    return axes


def _sweep_jobs(args, axes, profile, host_hz: int) -> tuple[list[dict], list, list[int]]:
    """Every combination of the axes' values as a run (grid.Job): (labels, jobs, operations per run)."""
    import itertools

    from .session import RunOptions
    scenario, defaults, hypervisor = _sweep_guest(args)
    labels, jobs, per_counts = [], [], []
    for combo in itertools.product(*[values for _, _, values in axes]):
        constants = {name: v for (kind, name, _), v in zip(axes, combo) if kind == "D"}
        opts = {name: v for (kind, name, _), v in zip(axes, combo) if kind == "opt" and v is not None}
        label = {(f"-D {name}" if kind == "D" else f"--opt {name}"): ("off" if v is None else v)
                 for (kind, name, _), v in zip(axes, combo)}
        if args.per is not None:
            n = constants.get(args.per, defaults.get(args.per))
            if n is None:
                raise UsageError(f"--per {args.per}: {args.guest} has no constant {args.per}")
            per_counts.append(n)
        options = RunOptions(max_instructions=args.max_instructions, max_seconds=args.max_seconds,
                             optimizations=opts, hypervisor=hypervisor, host_timer_hz=host_hz)
        text = " ".join(f"{k}={v}" for k, v in label.items())
        jobs.append(grid.Job(text, args.guest, constants, profile, options, scenario))
        labels.append(label)
    return labels, jobs, per_counts


def _sweep_guest(args) -> tuple[bool, dict, str]:
    """Whether the guest is a scenario, the constants its sources default, and the hypervisor; a guest
    that does not exist is bad input here, before any run (a combination that does not assemble is one
    failed run of the sweep)."""
    from .guests import resolve
    scenarios = _scenarios()
    if scenarios is not None and args.guest in scenarios.SCENARIOS:
        entry = scenarios.SCENARIOS[args.guest]
        return True, dict(getattr(entry, "defaults", None) or {}), getattr(entry, "hypervisor", "xen-pv")
    return False, dict(resolve(args.guest).defaults or {}), args.hypervisor


def _sweep_name(label: dict) -> str:
    """A run's trace file name in --traces: NAME=VALUE,... of its swept values."""
    return ",".join(f"{key.split()[-1]}={value}" for key, value in label.items()).replace("/", "_")


def _sweep_figure(rep, keys: list[str], per: bool):
    """One axis: exits and time along it; several: one line per value of the last, along the others."""
    from .render.plot import Figure
    y = "exits_per_op" if per else "exits"
    ylabel = "exits per operation" if per else "exits"
    if len(keys) == 1:
        y2 = "us_per_op" if per else "time_s"
        return Figure(rep.title, keys[0], ylabel, [str(r[keys[0]]) for r in rep.rows],
                      {y.replace("_", " "): [r[y] or 0 for r in rep.rows]}, kind="line",
                      secondary={("virtual time / op (us)" if per else "exit time (s)"): [r[y2] or 0 for r in rep.rows]},
                      secondary_label="microseconds" if per else "seconds")
    last = keys[-1]
    cats = list(dict.fromkeys(" ".join(str(r[k]) for k in keys[:-1]) for r in rep.rows))
    series: dict[str, list] = {}
    for r in rep.rows:
        series.setdefault(f"{last}={r[last]}", []).append(r[y] or 0)
    return Figure(rep.title, ", ".join(keys[:-1]), ylabel, cats, series, kind="line")


def _write_plot(fig, path: str, draw=None) -> None:
    """Write a figure: a plot.Figure, or what `draw()` returns."""
    from .render.plot import PlotUnavailable, render as plot
    try:
        data = draw() if draw is not None else plot(fig, Path(path).suffix[1:])
    except PlotUnavailable as e:
        raise UsageError(str(e)) from None
    try:
        write_atomic(Path(path), data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def cmd_sweep(args) -> int:
    axes = _sweep_axes(args)
    if args.plot and Path(args.plot).suffix not in (".png", ".svg"):
        raise UsageError(f"--plot {args.plot}: the file must end in .png or .svg")
    _workers(args)
    labels, jobs, per_counts = _sweep_jobs(args, axes, *_sweep_pricing(args))
    traces_dir = _output_dir(Path(args.traces)) if args.traces else None
    names = [_sweep_name(label) for label in labels]
    outcomes, stopped = _run_grid(jobs, [job.label for job in jobs], args, traces_dir, names)
    points, ends = [], []
    for label, o in zip(labels, outcomes):
        status = o.status if o is not None else "not run"
        points.append((label, from_bytes(o.data) if o is not None and o.data is not None else None))
        ends.append({"status": status, "code": status_code(status), "error": o.error if o is not None else None})
    rep = analysis.sweep(points, args.per, per_counts or None, ends)
    _emit(RENDERERS[args.format](rep), args.report_file)
    if stopped:
        done = sum(o is not None for o in outcomes)
        kept = f", their traces are in {traces_dir}" if traces_dir else ""
        print(f"vmexit: {stopsignals.reason()}: {done} of {len(jobs)} runs finished{kept}", file=sys.stderr)
    elif args.plot:
        _write_plot(_sweep_figure(rep, list(labels[0]), args.per is not None), args.plot)
    return max(e["code"] for e in ends)


def _sweep_pricing(args) -> tuple:
    """The profile and host timer rate of every run of a sweep."""
    scenarios = _scenarios()
    entry = scenarios.SCENARIOS.get(args.guest) if scenarios is not None else None
    hypervisor = getattr(entry, "hypervisor", "xen-pv") if entry is not None else args.hypervisor
    profile = load_profile(args.profile or getattr(entry, "profile", None) or HYPERVISORS[hypervisor].profile)
    return profile, _host_timer_hz(args, profile)


def _host_timer_hz(args, profile) -> int:
    if not 0 <= args.host_timer_hz <= profile.freq_hz:
        raise UsageError(f"--host-timer-hz {args.host_timer_hz}: give 0 (off) up to the CPU clock, {profile.freq_hz} Hz")
    return args.host_timer_hz


def cmd_validate(args) -> int:
    """`vmexit validate`: vmexit.validate's table; 0 when every backend that ran agrees, 6 when not."""
    from . import validate
    if not 0 < args.timeout < float("inf"):
        raise UsageError(f"--timeout {args.timeout}: give a number of seconds above 0")
    result = validate.validate(args.guest, dict(args.defines), timeout=args.timeout)
    _emit(RENDERERS[args.format](validate.report(result)), args.report_file)
    failed = any(o.state == "failed" for o in result.outcomes)
    return EXIT_OK if result.agree and not failed else EXIT_MISMATCH


def cmd_build(args) -> int:
    from .guests import resolve
    image = resolve(args.guest, dict(args.defines))
    elf = image.elf
    if elf is None:
        raise UsageError(f"{args.guest}: not an assembly source")
    try:
        write_atomic(Path(args.output), elf)
    except OSError as e:
        raise UsageError(f"cannot write {args.output}: {e.strerror or e}") from None
    print(f"{args.output}: {len(elf)} bytes, entry 0x{image.entry:x}, {len(image.symbols)} symbols")
    return EXIT_OK


#: The errors that are the user's input, not a bug (errors.py; --cluster's too): one line on stderr, exit code 2.
USER_ERRORS = (VmexitError,)


COMMANDS = {"guests": cmd_guests, "profiles": cmd_profiles, "calibrate": cmd_calibrate, "run": cmd_run,
            "report": cmd_report, "compare": cmd_compare, "import": cmd_import, "reproduce": cmd_reproduce,
            "sweep": cmd_sweep, "build": cmd_build, "validate": cmd_validate}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with stopsignals.stop_like_ctrl_c():
            return COMMANDS[args.command](args)
    except USER_ERRORS as e:
        print(f"vmexit: error: {e.cli or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:   # Ctrl-C, SIGTERM, SIGHUP outside a run (a run ends `interrupted` itself)
        print(f"vmexit: {stopsignals.reason()}", file=sys.stderr)
        return stopsignals.exit_code()
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: one line for users, the traceback with --debug
        if args.debug:
            raise
        print(f"vmexit: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
