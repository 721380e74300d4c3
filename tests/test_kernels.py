"""C test kernels (tests/kernels/, gcc -m32 -ffreestanding, multiboot) on the PC vmexit provides: ring 3
and system calls, the UART receive interrupt with typed input, demand paging. Each asserts its console
and its exact exits by reason and by port. Built with the machine's gcc and ld; skipped without them."""
from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from vmexit import session
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason
from vmexit.loader import load_file

from .kernels import build

COM1_THR, COM1_IER, COM1_LCR, COM1_LSR = 0x3F8, 0x3F9, 0x3FB, 0x3FD


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    missing = build.toolchain_missing()
    if missing:
        pytest.skip(f"cannot build the test kernels: {missing}")
    out = tmp_path_factory.mktemp("kernels")
    try:
        return {name: build.build(name, out) for name in build.KERNELS}
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot build the test kernels here: {e.stderr.strip().splitlines()[-1:]}")


def run(path, **options):
    return session.run(load_file(path), load_profile(None), session.RunOptions(**options))


def ports(t) -> Counter:
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    return Counter(zip(io["qualifier"].tolist(), io["direction"].tolist()))


def serial_exits(console: str) -> Counter:
    """serial_init's five writes, then per byte printed one LSR read and one THR write."""
    return Counter({(COM1_IER, Direction.OUT): 2, (COM1_LCR, Direction.OUT): 2,
                    (COM1_THR, Direction.OUT): 1 + len(console), (COM1_LSR, Direction.IN): len(console)})


def test_user_process_in_ring_3_with_system_calls(kernels):
    t = run(kernels["user"])
    console = ("kernel: multiboot\nuser: hello from ring 3\nuser: second call\n"
               "kernel: exit after 3 system calls\n")
    assert t.meta["status"] == "exited" and t.meta["guest_value"] == 0
    assert t.meta["console"] == console
    # int 0x80 from ring 3 is handled by the guest's IDT: no exit; only the serial port and the end
    assert set(t.exits["reason"].tolist()) == {ExitReason.IO_INSTRUCTION}
    assert ports(t) == serial_exits(console) + Counter({(0xF4, Direction.OUT): 1})


def test_line_editor_on_the_uart_receive_interrupt(kernels):
    typed = b"helo\x7flo\nworld\nquit\n"
    t = run(kernels["editor"], input=typed)
    console = "> helo\b \blo\nline: hello\nworld\nline: world\nquit\nline: quit\neditor: 3 lines\n"
    assert t.meta["status"] == "exited" and t.meta["console"] == console
    assert t.meta["input_consumed"] == len(typed)
    n = len(typed)
    expected = serial_exits(console) + Counter({
        (COM1_IER, Direction.OUT): 1,                       # IER: received-data interrupt
        (COM1_THR, Direction.IN): n,                        # RBR, once per byte
        (COM1_LSR, Direction.IN): 2 * n,                    # the handler's loop: data, then none
        (0x20, Direction.OUT): 1 + n,                       # ICW1, then one EOI per byte
        (0x21, Direction.OUT): 4, (0xA0, Direction.OUT): 1, (0xA1, Direction.OUT): 4,
        (0xF4, Direction.OUT): 1})
    assert ports(t) == expected
    r = Counter(t.exits["reason"].tolist())
    # each byte's interrupt comes either out of hlt or while the guest runs with IF=0 (then it waits
    # for the window at sti)
    assert r[ExitReason.HLT] + r[ExitReason.EXTERNAL_INTERRUPT] == n
    assert r[ExitReason.INTERRUPT_WINDOW] == r[ExitReason.EXTERNAL_INTERRUPT]


def test_demand_paging(kernels):
    t = run(kernels["paging"])
    console = "paging: 16 faults, sum 136\n"
    assert t.meta["console"] == console
    faults = t.exits[t.exits["reason"] == ExitReason.EXCEPTION_NMI]
    assert len(faults) == 16 and set(faults["qualifier"].tolist()) == {14}   # shadow paging: #PF traps
    assert ports(t) == serial_exits(console) + Counter({(0xF4, Direction.OUT): 1})


def test_until_console_stops_at_a_prompt(kernels):
    t = run(kernels["editor"], input=b"abc\n", until_console="line: abc")
    assert t.meta["status"] == "console" and t.meta["console"].endswith("line: abc")
