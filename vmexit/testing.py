"""Testing exit counts: `assert_exits`, and the run cache behind the pytest fixture `vmexit_run`.

    from vmexit.testing import assert_exits

    def test_ticks(vmexit_run):                         # the fixture: vmexit/pytest_plugin.py (pytest11)
        trace = vmexit_run("timer", constants={"TICKS": 20})
        assert_exits(trace, 20, reason="io", port=0x20, direction="in")
        assert_exits(trace, {"timer_interrupt": 40, "mask_and_ack_8259A": 60}, by="function")

A failed assertion says what was expected and what the trace has, per count, and shows the top of
the run's hot-function table, so that the failing test tells what changed. Plain AssertionError:
it works under pytest, unittest or a script alike. Needs no pytest itself.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from .api import Trace, run
from .errors import VmexitError

__all__ = ["assert_exits", "RunCache"]


def _where(filters: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in filters.items() if v is not None) or "all exits"


def _meets(actual: int, expected: int | range) -> bool:
    return actual in expected if isinstance(expected, range) else actual == expected


def _checks(trace: Trace, expected: Any, by: str, filters: dict) -> list[tuple[dict, Any, int]]:
    """(filters, expected, actual) of every count the assertion makes."""
    if isinstance(expected, Mapping):
        wanted = [({**filters, by: key}, value) for key, value in expected.items()]
    else:
        wanted = [(filters, expected)]
    out = []
    for where, value in wanted:
        if isinstance(value, bool) or not isinstance(value, (int, range)):
            raise VmexitError(f"expected {value!r}: give a count (an int), a range of counts, or a mapping of them")
        out.append((where, value, trace.count(**where)))
    return out


def assert_exits(trace: Trace, expected: int | range | Mapping[Any, int | range], *, by: str = "function",
                 top: int = 5, **filters: Any) -> None:
    """Assert how many exits the trace has where every filter holds (Trace.count's filters: reason,
    function, address, port, direction, caller, domain).

    expected: a count, a range of counts, or a mapping {value of the filter `by`: count} — e.g.
    {"putc": 105, "uart_irq": 33} with by="function" (the default) or {"io": 195, "hlt": 10} with
    by="reason" — all checked before one failure lists every mismatch. On failure an AssertionError
    shows expected and actual counts and the top `top` rows of the hot-function table."""
    __tracebackhide__ = True  # pytest: the failure points at the test, not in here
    if not isinstance(trace, Trace):
        if not hasattr(trace, "exits"):
            raise VmexitError(f"trace={trace!r}: give a Trace (vmexit.run, vmexit.load, the vmexit_run fixture)")
        trace = Trace.of(trace)
    checks = _checks(trace, expected, by, filters)
    wrong = [(where, want, got) for where, want, got in checks if not _meets(got, want)]
    if not wrong:
        return
    lines = [f"exit counts of {trace.meta.get('guest', '?')} (ended {trace.status}, "
             f"{len(trace.exits):,} exits in all) differ from the expected:"]
    for where, want, got in wrong:
        delta = f" ({got - want:+d})" if isinstance(want, int) else ""
        lines.append(f"  {_where(where)}: expected {_shown(want)}, got {got}{delta}")
    lines += ["", trace.report("function", top).render("text").rstrip()]
    raise AssertionError("\n".join(lines))


def _shown(expected: int | range) -> str:
    if isinstance(expected, range):
        return f"{expected.start} to {expected.stop - 1}" if expected.step == 1 else repr(expected)
    return str(expected)


def _key(value: Any) -> Any:
    """A hashable, order-independent form of run() arguments (paths absolute, mappings sorted)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_key(v) for v in value]
        return tuple(sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items)
    if isinstance(value, os.PathLike) or (isinstance(value, str) and os.sep in value):
        return os.path.abspath(os.fspath(value))
    if callable(value):
        return ("callable", id(value))
    return value


class RunCache:
    """vmexit.run, once per distinct guest and options: the trace of the first call is returned to
    every later call with the same arguments (the `vmexit_run` fixture holds one per test session).
    The cached traces are shared: their arrays are made read-only."""

    def __init__(self) -> None:
        self._traces: dict[Any, Trace] = {}
        self.runs = 0   # guests actually run

    def __repr__(self) -> str:
        return f"<vmexit_run: {len(self._traces)} run(s) cached>"

    def __call__(self, guest: str | os.PathLike, **options: Any) -> Trace:
        key = (_key(guest), _key(options))
        if key not in self._traces:
            trace = run(guest, **options)
            for array in (trace.exits, trace.emulated):
                array.flags.writeable = False
            self.runs += 1
            self._traces[key] = trace
        return self._traces[key]
