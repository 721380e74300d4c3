"""The run options' valid ranges, checked once for the command line and the Python API alike.

session.RunOptions checks itself when it is made (`validate`, from its __post_init__), so every way
of asking for a run — `vmexit run`, `vmexit sweep`, `vmexit.run(...)`, a scenario — meets the same
checks and the same messages, and a value out of range is bad input (RunOptionError, a VmexitError:
exit code 2 on the command line) before any guest instruction runs, never an internal error halfway.
A message names the option as its user spelled it: `--memory 5G: ...` on the command line,
`memory=5G: ...` in Python (RunOptionError.cli / str()).

`run_options` turns the user's spelling of the options (sizes as "64M", typed input as text or a
file, optimizations as NAME[=VALUE]) into RunOptions: the command line and vmexit.run share it.
`parse_size` and `check_top` are the shared parsers of a size and of a report's row count.

This module imports neither the emulator nor numpy at import time (the session, for RunOptions, and
the optimizations' table are imported where a run is being set up).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import VmexitError

PAGE = 4096
RAM_MIN = 2 << 20          # the multiboot layout (GDT, information, stack) needs the first 2 MiB
RAM_MAX = 0xFEC00000       # RAM ends where the chipset's MMIO window begins (the I/O APIC, 0xfec00000)
COUNT_MAX = (1 << 63) - 1  # instruction budgets are compared with 64-bit counters
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
#: The NIC's peers (devices/pc.py builds them): frames counted as segments, or a host with TCP/IP
NET_PEERS = ("stream", "tcp")


class RunOptionError(VmexitError):
    """A run option out of its valid range; the message says the range."""

    def __init__(self, keyword: str, flag: str, shown: str, valid: str):
        super().__init__(f"{keyword}={shown}: {valid}")
        self.keyword, self.flag, self.shown, self.valid = keyword, flag, shown, valid
        self.cli = f"{flag} {shown}: {valid}"


def parse_size(text: str | int) -> int:
    """A size as users write it: bytes (int, or "65536", "0x10000") or with a unit ("64M", "1.5G",
    "512KiB"). A ValueError (not a VmexitError: callers say which option it was) when it is none."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ValueError(f"not a size: {text!r} (e.g. 64M)")
    if isinstance(text, int):
        return text
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if t and t[-1] in _UNITS:
            return int(float(t[:-1]) * _UNITS[t[-1]])
        return int(t, 0)
    except (ValueError, OverflowError):
        raise ValueError(f"not a size: {text!r} (e.g. 64M)") from None


def format_size(n: int) -> str:
    """A size the way it was most likely written: 64M, 5G, 4K, else bytes."""
    for unit in "GMK":
        if n and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


def check_top(top: Any, flag: str = "--top") -> int | None:
    """A report's row count: 0 (all rows; returned as None) or more. RunOptionError otherwise."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise RunOptionError(flag.lstrip("-"), flag, repr(top) if not isinstance(top, int) else str(top),
                             "give the number of rows to show, 0 (all) or more")
    return None if top == 0 else top


# the ranges -----------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _ram(v: Any) -> bool:
    return _is_int(v) and RAM_MIN <= v <= RAM_MAX and v % PAGE == 0


@dataclass(frozen=True)
class Limit:
    field: str                      # RunOptions' field
    flag: str                       # the command line's option
    keyword: str                    # vmexit.run's keyword
    ok: Callable[[Any], bool]       # whether a value is valid
    valid: str                      # what is valid, in words
    optional: bool = False          # None is valid too (no budget, no limit)
    show: Callable[[Any], str] = str


LIMITS: tuple[Limit, ...] = (
    Limit("ram_size", "--memory", "memory", _ram,
          f"give {format_size(RAM_MIN)} to {format_size(RAM_MAX)} (RAM ends where the chipset's MMIO window "
          "starts, 0xfec00000), a multiple of 4K", show=lambda v: format_size(v) if _is_int(v) else repr(v)),
    Limit("max_instructions", "--max-instructions", "max_instructions", lambda v: _is_int(v) and 1 <= v <= COUNT_MAX,
          f"give a budget of 1 to {COUNT_MAX} guest instructions (or none)", optional=True),
    Limit("max_seconds", "--max-seconds", "max_seconds", lambda v: _is_number(v) and v > 0,
          "give a finite budget of virtual seconds above 0 (or none)", optional=True),
    Limit("net_ack_every", "--net-ack-every", "net_ack_every", lambda v: _is_int(v) and 1 <= v <= 1 << 20,
          "give 1 to 1048576 frames per acknowledgement"),
    Limit("net_ack_delay_us", "--net-ack-delay-us", "net_ack_delay_us", lambda v: _is_number(v) and 0 <= v <= 1e9,
          "give 0 to 1e9 virtual microseconds"),
    Limit("net_frame_size", "--net-frame-size", "net_frame_size", lambda v: _is_int(v) and 60 <= v <= 1514,
          "give an Ethernet frame size of 60 to 1514 bytes"),
    Limit("net_window", "--net-window", "net_window", lambda v: _is_int(v) and 1 <= v <= 1 << 20,
          "give 1 to 1048576 frames"),
    Limit("net_rate_bps", "net_rate_bps", "net_rate_bps", lambda v: _is_int(v) and 1 <= v <= 10 ** 12,
          "give a link rate of 1 to 1e12 bits per second (or none: the peer's default)", optional=True),
    Limit("net_peer", "--net-peer", "net_peer", lambda v: v in NET_PEERS, f"choose from {', '.join(NET_PEERS)}",
          show=repr),
    Limit("host_timer_hz", "--host-timer-hz", "host_timer_hz", lambda v: _is_int(v) and v >= 0,
          "give 0 (off) or a host tick rate in Hz up to the profile's CPU clock"),
    Limit("disk_size", "disk_size", "disk_size", lambda v: _is_int(v) and v > 0 and v % 512 == 0,
          "give a positive multiple of 512 bytes"),
    Limit("until_console", "--until-console", "until_console", lambda v: isinstance(v, str) and v != "",
          "give the text to wait for (not empty)", optional=True, show=repr),
    Limit("input", "--input", "input", lambda v: isinstance(v, bytes), "give text or bytes", show=repr),
)


def validate(options: Any) -> None:
    """Every field of a session.RunOptions within its range, its hypervisor and optimizations known:
    RunOptionError (or optimizations.OptionError) on the first that is not."""
    for limit in LIMITS:
        value = getattr(options, limit.field)
        if value is None and limit.optional:
            continue
        if not limit.ok(value):
            raise RunOptionError(limit.keyword, limit.flag, limit.show(value), limit.valid)
    if options.net_peer == "tcp" and options.net_peer_sends:   # the tcp peer sends on its port 5002 instead
        error = VmexitError("give net_peer_sends or net_peer='tcp', not both (the tcp peer sends on port 5002)")
        error.cli = "give --net-peer-sends or --net-peer tcp, not both (the tcp peer sends on port 5002)"
        raise error
    from .hypervisors import HYPERVISORS
    if options.hypervisor not in HYPERVISORS:
        raise RunOptionError("hypervisor", "--hypervisor", repr(options.hypervisor),
                             f"choose from {', '.join(HYPERVISORS)}")
    from .optimizations import parse_opts
    parse_opts([f"{name}={value}" for name, value in dict(options.optimizations).items()])


# the user's spelling -> RunOptions ---------------------------------------------------------------------
def _memory(memory: int | str) -> int:
    try:
        return parse_size(memory)
    except ValueError:
        raise RunOptionError("memory", "--memory", repr(memory), "give a size such as 64M or 1G") from None


def _path(keyword: str, value: str | os.PathLike | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise RunOptionError(keyword, f"--{keyword}", repr(value), "give the path of a disk image")
    return os.fspath(value)


def _typed(input: str | bytes | None, input_file: str | os.PathLike | None) -> bytes:
    """The bytes typed into the serial port: `input` (text as Latin-1, or bytes), or a file's bytes."""
    if input is not None and input_file is not None:
        error = VmexitError("give input or input_file, not both")
        error.cli = "give --input or --input-file, not both"
        raise error
    if input_file is not None:
        if not isinstance(input_file, (str, os.PathLike)):
            raise RunOptionError("input_file", "--input-file", repr(input_file), "give the path of a file")
        try:
            with open(input_file, "rb") as f:
                return f.read()
        except OSError as e:
            error = VmexitError(f"cannot read input_file {input_file}: {e.strerror or e}")
            error.cli = f"cannot read --input-file {input_file}: {e.strerror or e}"
            raise error from None
    if isinstance(input, str):
        return input.encode("latin-1", "replace")
    return b"" if input is None else input


def _opt_texts(opts: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """--opt's NAME[=VALUE] strings from a list of them or a {name: value or None} mapping."""
    if opts is None:
        return []
    if isinstance(opts, str):
        return [opts]
    if isinstance(opts, Mapping):
        return [name if value is None or value is True else f"{name}={value}" for name, value in opts.items()]
    return [str(o) for o in opts]


def run_options(*, memory: int | str = "64M", max_instructions: int | None = None,
                max_seconds: float | None = None, disk: str | os.PathLike | None = None,
                disk1: str | os.PathLike | None = None, disk_writable: bool = False,
                input: str | bytes | None = None, input_file: str | os.PathLike | None = None,
                until_console: str | None = None, echo: Callable[[bytes], None] | None = None,
                net_ack_every: int = 2, net_ack_delay_us: float = 20.0, net_peer_sends: bool = False,
                net_frame_size: int = 1514, net_window: int = 16, net_peer: str = "stream",
                opts: Mapping[str, Any] | Iterable[str] | None = None, hypervisor: str = "kvm",
                host_timer_hz: int = 0):
    """session.RunOptions from the options as the command line and vmexit.run spell them, checked."""
    from .optimizations import parse_opts
    from .session import RunOptions
    return RunOptions(ram_size=_memory(memory), max_instructions=max_instructions, max_seconds=max_seconds,
                      disk=_path("disk", disk), disk1=_path("disk1", disk1),
                      disk_writable=bool(disk_writable), net_ack_every=net_ack_every,
                      net_ack_delay_us=net_ack_delay_us, net_peer_sends=bool(net_peer_sends),
                      net_frame_size=net_frame_size, net_window=net_window, net_peer=net_peer,
                      optimizations=parse_opts(_opt_texts(opts)),
                      hypervisor=hypervisor, host_timer_hz=host_timer_hz, input=_typed(input, input_file),
                      until_console=until_console, echo=echo)
