"""SIGTERM/SIGHUP handled like Ctrl-C (stopsignals.py), here the case a subprocess test cannot aim at:
the handler's Stopped lost inside a ctypes callback (it fired before the callback's try block, and
ctypes only reports it), with later signals only noted. The run loop raises it again between slices."""
from __future__ import annotations

import signal

from vmexit import stopsignals

from .conftest import run_inline


def test_a_stop_lost_in_a_callback_still_ends_the_run():
    with stopsignals.stop_like_ctrl_c():
        stopsignals._received.append(signal.SIGTERM)     # what a swallowed Stopped leaves behind
        t = run_inline("spin:\n    add ecx, 1\n    jmp spin\n")
    assert t.meta["status"] == "interrupted" and t.meta["detail"] == "terminated by SIGTERM"
    assert 0 < t.meta["instructions"] <= 1 << 24        # one slice at most (vcpu.MAX_SLICE)
    assert stopsignals.exit_code() == 128 + signal.SIGTERM


def test_an_interrupt_raised_in_a_ctypes_callback_is_kept_not_printed(capsys):
    # what ctypes does with an exception that escapes a callback: hand it to sys.unraisablehook
    import ctypes
    import sys

    @ctypes.CFUNCTYPE(None)
    def callback():
        raise KeyboardInterrupt

    before = sys.unraisablehook
    with stopsignals.stop_like_ctrl_c():
        callback()
        assert "Traceback" not in capsys.readouterr().err
        try:
            stopsignals.check()
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the lost Ctrl-C was not raised again")
        stopsignals.check()   # once
    assert sys.unraisablehook is before


def test_a_destructor_failing_after_a_stop_is_not_printed(monkeypatch):
    # a signal that cuts an object's constructor short leaves it half built; its __del__ then fails
    # (capstone's Cs without its handle): that is the stop's consequence, not a traceback to show
    import sys
    shown = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: shown.append(info.exc_type))

    class HalfBuilt:
        def __del__(self):
            self.handle   # never set

    with stopsignals.stop_like_ctrl_c():
        stopsignals._received.append(signal.SIGTERM)
        HalfBuilt()
    assert shown == []
    with stopsignals.stop_like_ctrl_c():   # without a stop it is reported as always
        HalfBuilt()
    assert shown == [AttributeError]
