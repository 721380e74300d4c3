"""The paper's optimizations that live in the hypervisor, switched on with `--opt NAME[=VALUE]`.

Each is one module, used at one named hook point of the hypervisor model:
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

from . import coalesce_dynamic, tickrate


class OptionError(ValueError):
    """An --opt that names no optimization or has a bad value."""


@dataclass(frozen=True)
class Optimization:
    name: str
    hook: str            # the hypervisor model's hook point
    summary: str
    value: str           # what VALUE means
    default: int | None  # VALUE when omitted (None: a value is required)
    low: int
    high: int


#: Every optimization option, explicitly.
OPTIMIZATIONS: dict[str, Optimization] = {
    "coalesce": Optimization(
        "coalesce", "io_exit", "dynamic I/O coalescing: one exit for a run of port I/O",
        "instructions looked ahead", coalesce_dynamic.DEFAULT_WINDOW, 1, coalesce_dynamic.MAX_WINDOW),
    "tick-hz": Optimization(
        "tick-hz", "timer_load", "transparent tick-rate reduction of periodic PIT/LAPIC timers",
        "target tick rate in Hz", None, tickrate.MIN_HZ, tickrate.MAX_HZ),
    "xen-pf-offload": Optimization(
        "xen-pf-offload", "page_fault", "Xen fixes demand-zero and copy-on-write faults itself (xen-pv)",
        "1 on, 0 off", 1, 0, 1),
}


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
