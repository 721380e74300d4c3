"""Console-marked windows of a trace (window.py): the exits between two lines the guest printed, with
the window's own instructions and virtual time; and --from-console / --to-console on the command line."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit.cli import main
from vmexit.exits import ExitReason
from vmexit.trace import TraceError
from vmexit.window import between, console_writes

from .conftest import count, run_inline
from .snippets import EXIT

PRINT = """
puts:                       # esi: a NUL-terminated string, one `out` to COM1's THR per byte
    lodsb
    test al, al
    jz puts_done
    mov dx, 0x3f8
    out dx, al
    jmp puts
puts_done:
    ret
"""


def pokes(label: str, n: int) -> str:
    """n port-0x80 writes (the exits a window should hold), each after 1000 instructions of work."""
    return f"""
    mov ebx, {n}
{label}:
    mov ecx, 1000
{label}_spin:
    dec ecx
    jnz {label}_spin
    out 0x80, al
    dec ebx
    jnz {label}
"""


GUEST = ("    mov esi, boot_line\n    call puts\n" + pokes("before", 7)
         + "    mov esi, start_line\n    call puts\n" + pokes("during", 11)
         + "    mov esi, end_line\n    call puts\n" + pokes("after", 5) + EXIT + PRINT + """
boot_line: .asciz "booting\\n"
start_line: .asciz "bench start\\n"
end_line: .asciz "bench done\\n"
""")


@pytest.fixture(scope="module")
def trace():
    return run_inline(GUEST)


def test_the_console_is_read_back_from_the_exits(trace):
    text, rows = console_writes(trace)
    assert text == b"booting\nbench start\nbench done\n"
    assert (trace.exits["qualifier"][rows] == 0x3F8).all() and list(rows) == sorted(rows)


def test_the_window_holds_the_exits_between_the_two_lines(trace):
    w = between(trace, "bench start", "bench done")
    # after the start line's newline, before the end text's first byte: the 11 pokes, no console byte
    assert count(w, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 11 == len(w.exits)
    assert list(w.exits["seq"]) == list(range(11))
    # its time: the instructions between the two bounding exits, exactly, and no idle time
    e = trace.exits
    first, last = w.meta["window"]["first_exit"], w.meta["window"]["last_exit"]
    assert e["value"][first - 1] == ord("\n") and e["value"][last + 1] == ord("b")
    assert w.meta["instructions"] == int(e["icount"][last + 1]) - int(e["icount"][first - 1])
    assert w.meta["cycles"] == w.meta["instructions"] + int(w.exits["cost"].sum())  # CPI 1, no HLT
    assert w.meta["idle_cycles"] == 0
    assert w.meta["virtual_seconds"] == w.meta["cycles"] / trace.freq_hz


def test_open_ended_windows(trace):
    tail = between(trace, "bench done", None)
    assert count(tail, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 5 == len(tail.exits) - 1   # + the exit port
    head = between(trace, None, "bench start")
    assert count(head, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 7
    assert count(head, ExitReason.IO_INSTRUCTION, qualifier=0x3F8) == len("booting\n")
    assert between(trace, None, None) is trace
    assert tail.meta["instructions"] + head.meta["instructions"] < trace.meta["instructions"]
    start = int(trace.exits["icount"][tail.meta["window"]["first_exit"] - 1])
    assert tail.meta["instructions"] == trace.meta["instructions"] - start


def test_a_text_inside_a_line_starts_the_window_at_the_end_of_that_line(trace):
    w = between(trace, "bench sta", "bench do")
    assert count(w, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 11 and len(w.exits) == 11
    part = between(trace, "bench", None)     # "bench" starts the first line that holds it
    assert count(part, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 11 + 5


def test_the_end_is_looked_for_after_the_start(trace):
    # "bench" is in both lines: as an end it is the one after the start
    w = between(trace, "bench start", "bench")
    assert count(w, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 11


def test_a_text_never_printed_is_an_error_naming_what_was(trace):
    with pytest.raises(TraceError, match=r"--from-console 'nope': the guest never wrote it .*bench done"):
        between(trace, "nope")
    with pytest.raises(TraceError, match="--to-console 'booting': .* after the start text"):
        between(trace, "bench start", "booting")


def test_report_from_and_to_console(trace, tmp_path, capsys):
    path = tmp_path / "t.npz"
    trace.save(path)
    assert main(["report", str(path), "--by", "port", "--format", "json",
                 "--from-console", "bench start", "--to-console", "bench done"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["port"]: r["count"] for r in rows} == {"0x80": 11}
    assert main(["report", str(path), "--from-console", "nope"]) == 2
    assert "never wrote it" in capsys.readouterr().err


def test_window_of_an_empty_console():
    t = run_inline("    out 0x80, al\n" + EXIT)
    with pytest.raises(TraceError, match="wrote nothing to the console"):
        between(t, "x")
    assert np.array_equal(between(t, None, None).exits, t.exits)


def test_the_api_cuts_the_same_window(trace):
    from vmexit.api import Trace
    t = Trace.of(trace).between("bench start", "bench done")
    assert t.count(port=0x80) == 11
    assert t.meta["instructions"] == between(trace, "bench start", "bench done").meta["instructions"]
