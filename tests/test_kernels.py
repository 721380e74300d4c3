"""C test kernels (tests/kernels/, gcc -m32 -ffreestanding, multiboot) on the PC vmexit provides: ring 3
and system calls, the UART receive interrupt with typed input, demand paging, interrupt-driven IDE, a
scheduler on the LAPIC timer, a compute loop under the PIT tick. Each asserts its console
and its exact exits by reason and by port. Built with the machine's gcc and ld; skipped without them."""
from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from vmexit import session
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason
from vmexit.loader import load_file

from .conftest import count
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


def test_interrupt_driven_ide_on_two_disks(kernels, tmp_path):
    master, slave = tmp_path / "master.img", tmp_path / "slave.img"
    master.write_bytes(b"MAST" + bytes(1 << 20))
    slave.write_bytes(b"SLAV" + bytes(1 << 20))
    before = master.read_bytes(), slave.read_bytes()
    t = run(kernels["ide"], disk=str(master), disk1=str(slave))
    console = (f"ide: both drives ok\nmaster sector 0: {int.from_bytes(b'MAST', 'little')}\n"
               f"slave sector 0: {int.from_bytes(b'SLAV', 'little')}\nirqs 6\n")
    assert t.meta["console"] == console
    assert (master.read_bytes(), slave.read_bytes()) == before          # copies unless --disk-writable
    p = ports(t)
    # 6 commands (write and read back on each drive, then sector 0 of each): 5 taskfile writes and the
    # command each; one DRQ poll per write; one status read per interrupt (the handler's ack); 128-dword
    # rep outsl/insl: 512 bytes fit one string-I/O exit each
    assert [p[(r, Direction.OUT)] for r in (0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F7)] == [6] * 6
    assert p[(0x1F7, Direction.IN)] == 2 + 6
    assert p[(0x1F0, Direction.OUT)] == 2 and p[(0x1F0, Direction.IN)] == 4
    assert p[(0xA0, Direction.OUT)] == 1 + 6 and p[(0x20, Direction.OUT)] == 1 + 6   # ICW1, then EOIs
    assert t.meta["ide"]["sectors_written"] == 2 and t.meta["ide"]["sectors_read"] == 4


def test_timer_driven_scheduler_switches_user_processes(kernels):
    state = {}

    def capture(machine, devices):
        state["fired"] = devices["lapic"].fired_total
        state["in_service"] = devices["lapic"].isr != 0 or devices["lapic"].irr != 0

    t = session.run(load_file(kernels["sched"]), load_profile(None), session.RunOptions(), on_end=capture)
    console = t.meta["console"]
    assert console.endswith("\nsched: both done\n")
    letters = console.split("\n")[0]
    assert sorted(letters) == sorted("A" * 6 + "B" * 6) and letters not in ("AAAAAABBBBBB", "BBBBBBAAAAAA")
    r = Counter(t.exits["reason"].tolist())
    # every LAPIC tick fires while a process computes: one EXTERNAL_INTERRUPT each; each one handled
    # writes one EOI (APIC_ACCESS at 0xfee000b0) -- a tick still pending or in service at the end has
    # none; 4 more APIC writes set the timer up (SVR, divide, LVT, initial count)
    assert r[ExitReason.EXTERNAL_INTERRUPT] == state["fired"] > 1
    apic = t.exits[t.exits["reason"] == ExitReason.APIC_ACCESS]
    eois = int((apic["qualifier"] == 0xFEE000B0).sum())
    assert eois == state["fired"] - int(state["in_service"])
    assert sorted(set(apic["qualifier"].tolist()) - {0xFEE000B0}) == [0xFEE000F0, 0xFEE00320, 0xFEE00380, 0xFEE003E0]
    assert len(apic) == eois + 4
    # the 8259 is programmed and masked; nothing else but the serial port and the end
    p = ports(t)
    assert p[(0x20, Direction.OUT)] == 1 and p[(0x21, Direction.OUT)] == 4
    assert p == serial_exits(console) + Counter({(0x20, Direction.OUT): 1, (0x21, Direction.OUT): 4,
                                                 (0xA0, Direction.OUT): 1, (0xA1, Direction.OUT): 4,
                                                 (0xF4, Direction.OUT): 1})


def lcg(n: int, x: int = 1) -> int:
    """n steps of x = x * 1103515245 + 12345 (mod 2**32), by squaring the affine map."""
    a, c = 1103515245, 12345
    while n:
        if n & 1:
            x = (a * x + c) & 0xFFFFFFFF
        a, c = (a * a) & 0xFFFFFFFF, (a * c + c) & 0xFFFFFFFF
        n >>= 1
    return x


def test_compute_loop_under_the_tick(kernels):
    image = load_file(kernels["compute"])
    t = session.run(image, load_profile(None), session.RunOptions())
    e = t.exits
    start = image.symbols["compute"]
    end = min(a for a in image.symbols.values() if a > start)           # the next function
    in_loop = (e["reason"] == ExitReason.EXTERNAL_INTERRUPT) & (e["rip"] >= start) & (e["rip"] < end)
    ticks = int(in_loop.sum())
    console = f"compute: {lcg(2_000_000)} after {ticks} ticks\n"
    assert t.meta["status"] == "exited" and t.meta["console"] == console and ticks > 1
    # PIT at 1000 Hz: every tick that fires inside compute() (interrupts on) is taken, one EOI each; one
    # that fires while the result is printed (after cli) stays pending: an exit, no EOI. The loop
    # itself makes no exit.
    externals = count(t, ExitReason.EXTERNAL_INTERRUPT)
    assert externals == t.meta["pit"]["interrupts"] and externals - ticks in (0, 1)
    assert set(e["reason"].tolist()) == {ExitReason.IO_INSTRUCTION, ExitReason.EXTERNAL_INTERRUPT}
    assert ports(t) == serial_exits(console) + Counter({
        (0x20, Direction.OUT): 1 + ticks, (0x21, Direction.OUT): 4, (0xA0, Direction.OUT): 1,
        (0xA1, Direction.OUT): 4, (0x43, Direction.OUT): 1, (0x40, Direction.OUT): 2, (0xF4, Direction.OUT): 1})
