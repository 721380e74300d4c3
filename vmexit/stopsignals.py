"""SIGTERM and SIGHUP stop vmexit as Ctrl-C does: the run ends `interrupted`, its trace is saved.

Why: `timeout`, batch schedulers and cluster engines stop work with SIGTERM, and a closed terminal
sends SIGHUP; by default either kills Python at once and the trace of a long run is lost. Here the
handler raises Stopped, a KeyboardInterrupt, in the main thread: the run loop returns to Python between
slices of guest instructions and in every callback, so the run ends there exactly as it does on Ctrl-C
(host.py ends it `interrupted`, with Stopped's text as the detail). A sweep's parent stops its workers
the same way (grid.py). Runs end from callbacks and instruction counts only: no wall-clock timer.

Only the first signal raises: a second one (a scheduler that repeats itself) while the trace is being
saved would lose it, so it is only noted. The exit code is the shell's convention, 128 + the signal's
number: 143 for SIGTERM, 129 for SIGHUP (130 for Ctrl-C, SIGINT).
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

#: The signals treated like Ctrl-C (SIGHUP does not exist everywhere).
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
EXIT_SIGINT = 128 + signal.SIGINT

_received: list[int] = []


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: handled wherever Ctrl-C is."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _handler(signum, _frame) -> None:
    first = not _received
    _received.append(signum)
    if first:
        raise Stopped(signum)


@contextmanager
def stop_like_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise Stopped in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    _lost.clear()
    _interrupted.clear()
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_sigint)
    hook, sys.unraisablehook = sys.unraisablehook, _keep_interrupts(sys.unraisablehook)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = hook


#: Ctrl-C's KeyboardInterrupts that a ctypes callback could not pass on (see check)
_lost: list[KeyboardInterrupt] = []
_interrupted: list[int] = []   # Ctrl-C arrived (raised as Python's own handler does, and noted)


def _on_sigint(signum, _frame) -> None:
    _interrupted.append(signum)
    raise KeyboardInterrupt


def _keep_interrupts(hook):
    """sys.unraisablehook for the run: a signal's exception raised on entry to a ctypes callback (a
    Python function's first instruction, before its try block) cannot propagate; ctypes hands it to
    this hook, which would print it as a traceback and go on. Kept instead, for check() to raise.
    Once a stop arrived, a destructor's failure is its consequence, not news (capstone's Cs whose
    constructor the signal cut short fails in __del__), and is not printed either."""
    def unraisable(info) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt):
            if not isinstance(info.exc_value, Stopped):   # Stopped's signal is in _received already
                _lost.append(info.exc_value)
            return
        if _received or _interrupted:
            return
        hook(info)
    return unraisable


def check() -> None:
    """Raise the stop again if a signal arrived and the run is still going: its exception can have been
    lost in a ctypes callback (_keep_interrupts), and the signals after the first only note
    themselves. The run loop calls this between slices, so the stop is late by one slice at most."""
    if _received:
        raise Stopped(_received[0])
    if _lost:
        raise _lost.pop()


def exit_code() -> int:
    """The exit code of an interrupted command: 128 + the first signal that stopped it (130: Ctrl-C)."""
    return 128 + _received[0] if _received else EXIT_SIGINT


def reason() -> str:
    """What stopped the command, for its one-line message."""
    return f"terminated by {signal.Signals(_received[0]).name}" if _received else "interrupted"
