"""The paper's optimizations that live in the hypervisor, switched on with `--opt NAME[=VALUE]`.

Each is one module, used at one named hook point of the hypervisor model; its entry in OPTIMIZATIONS
carries its wiring: how it is built for a domain, where it hooks, what it reports into the run's meta
and the line the text report prints for it.
- `coalesce` (coalesce_dynamic.py), hook point `io_exit`: after an I/O exit, the following run of port
  I/O and register-only instructions is handled inside it;
- `tick-hz` (tickrate.py), hook point `timer_load`: a periodic PIT / LAPIC timer count the guest loads
  is scaled to the target rate;
- `xen-pf-offload` (pf_offload.py), hook point `page_fault` of the Xen PV model: demand-zero and
  copy-on-write faults fixed in Xen ("Enhanced Xen").
Static I/O coalescing (coalesce_static.py) is the XKVM_IO_COALESCE hypercall, always offered; the guest
variants that use it are built with `-D COALESCE=1`. The guest-side optimizations (NAPI removal, tick
rate in the guest, verify_pmtmr_rate and elevator removal) are guest constants, not options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import VmexitError
from . import coalesce_dynamic, pf_offload, tickrate


class OptionError(VmexitError):
    """An --opt that names no optimization or has a bad value."""


@dataclass(frozen=True)
class RunFacts:
    """What an optimization's report may look at once the run is over."""
    emulated: np.ndarray     # exits.EMULATED_DTYPE rows
    devices: dict            # the domain's devices by name
    seconds: float           # virtual seconds of the run
    hook_points: tuple       # the hook points the run's hypervisor model offers
    hypervisor: str


@dataclass(frozen=True)
class Optimization:
    name: str
    hook: str            # the hypervisor model's hook point
    summary: str
    value: str           # what VALUE means
    default: int | None  # VALUE when omitted (None: a value is required)
    low: int
    high: int
    build: Callable[[int, object], object]            # (value, machine) -> what sits at the hook point
    report: Callable[[object, int, RunFacts], dict]    # (it, value, run) -> its meta entry's fields
    describe: Callable[[dict], str]                    # its meta entry -> one line of the text report

    def outcome(self, built, value: int, run: RunFacts) -> dict:
        """The meta entry: value, hook point, and what it did (a note when it had nothing to do)."""
        entry: dict = {"value": value, "hook": self.hook}
        if self.hook not in run.hook_points:
            entry["note"] = f"no-op: the {run.hypervisor} model has no {self.hook} hook point for it"
        else:
            entry.update(self.report(built, value, run))
        return entry


def _coalesce_report(_lookahead, _value: int, run: RunFacts) -> dict:
    merged = int(len(run.emulated))
    out = {"accesses_merged": merged, "merging_exits": int(len(np.unique(run.emulated["exit"])))}
    if not merged:
        out["note"] = "no-op: no run of port I/O followed an I/O exit within the window"
    return out


def _coalesce_text(entry: dict) -> str:
    return (f"{entry['accesses_merged']:,} port accesses handled inside {entry['merging_exits']:,} "
            f"exits instead of exiting themselves")


#: Every optimization option, explicitly.
OPTIMIZATIONS: dict[str, Optimization] = {
    "coalesce": Optimization(
        "coalesce", "io_exit", "dynamic I/O coalescing: one exit for a run of port I/O",
        "instructions looked ahead", coalesce_dynamic.DEFAULT_WINDOW, 1, coalesce_dynamic.MAX_WINDOW,
        build=lambda value, machine: coalesce_dynamic.LookAhead(machine.read_virtual, value),
        report=_coalesce_report, describe=_coalesce_text),
    "tick-hz": Optimization(
        "tick-hz", "timer_load", "transparent tick-rate reduction of periodic PIT/LAPIC timers",
        "target tick rate in Hz", None, tickrate.MIN_HZ, tickrate.MAX_HZ,
        build=lambda value, machine: tickrate.TickRate(value),
        report=lambda tick, _value, run: tickrate.run_report(tick, run.devices, run.seconds),
        describe=tickrate.describe),
    "xen-pf-offload": Optimization(
        "xen-pf-offload", "page_fault", "Xen fixes demand-zero and copy-on-write faults itself (xen-pv)",
        "1 on, 0 off", 1, 0, 1,
        build=lambda value, machine: pf_offload.FaultOffload.for_machine(machine) if value else None,
        report=pf_offload.run_report, describe=pf_offload.describe),
}


def summary_line(name: str, entry: dict) -> str:
    """The text report's line for one optimization's meta entry (a saved trace's, too)."""
    if "note" in entry:
        return entry["note"]
    opt = OPTIMIZATIONS.get(name)
    return opt.describe(entry) if opt is not None else ""


def parse_opts(texts: list[str]) -> dict[str, int]:
    """`NAME[=VALUE]` strings -> {name: value}; the last one of a name wins."""
    out: dict[str, int] = {}
    for text in texts:
        name, sep, raw = text.partition("=")
        name = name.strip()
        opt = OPTIMIZATIONS.get(name)
        if opt is None:
            raise OptionError(f"unknown optimization {name!r} (known: {', '.join(OPTIMIZATIONS)})")
        if not sep:
            if opt.default is None:
                raise OptionError(f"--opt {name} needs a value: {name}=N ({opt.value})")
            out[name] = opt.default
            continue
        try:
            value = int(raw, 0)
        except ValueError:
            raise OptionError(f"--opt {name}: {raw!r} is not an integer ({opt.value})") from None
        if not opt.low <= value <= opt.high:
            raise OptionError(f"--opt {name}: {value} is outside {opt.low}..{opt.high} ({opt.value})")
        out[name] = value
    return out
