#!/usr/bin/env python3
"""vmexit benchmark: speed as ratios against bare Unicorn measured in the same process.

Cases (guests in guests/bench/):
  exit-light     compute loop with stores, PIT at 100 Hz: vmexit MIPS / bare Unicorn MIPS on the loop
  exit-light-gcc the same kind of loop written in C and built with gcc -O1 (tests/kernels/compute.c):
                 vmexit MIPS / bare Unicorn MIPS on compute(); skipped without gcc and ld
  irq-off        spinlocks with interrupts off under a pending 1000 Hz tick (irq_off.S): vmexit MIPS /
                 bare Unicorn MIPS on the loop
  kernel-boot    tests/kernels/sched.c booted until its console says it is done: vmexit's wall time /
                 qemu-system-i386 TCG's to the same line; skipped without gcc and ld or QEMU
  linux-boot     the Linux 6.1 kernel of tools/linux/build.sh booted to its busybox prompt: vmexit's wall
                 time / qemu-system-i386 TCG's to the same prompt; skipped when the kernel is not built
                 ($VMEXIT_LINUX_DIR or ~/.cache/vmexit/linux) or QEMU is missing
  exit-heavy     port I/O every few instructions with frame pointers: exits/s with full attribution
                 (caller and the whole frame-pointer stack), and the ratio of bare Unicorn's time to
                 vmexit's on the same image
  memset         a kernel clearing 200 MiB with one rep stosd at boot: bare Unicorn's time / vmexit's
  hypercall      vmcall loop: exits/s
  mmio           LAPIC register loop: exits/s
  analysis       synthetic 10M-exit trace: exits aggregated per second (hot functions + reasons +
                 addresses) and trace bytes per exit on disk
  sweep-jobs2    a sweep of RUNS exit-heavy runs (vmexit/grid.py) one after another in this process, then
                 on a pool of 2 processes (--jobs 2, worker start-up included): serial time / pooled time,
                 with the two sweeps' trace bytes checked equal; beside it the machine's own parallel
                 ratio now (two C loops one after another / at once), the ceiling under its current load
  peer           the exit-heavy guest under qemu-system-i386 with memory_region_ops tracing, when
                 QEMU is installed: QEMU's wall time / vmexit's

Exact instruction counting runs a block at a time with the compiled helper (vmexit/engine/_blockcount.c,
built with `cc` on first use) and in Unicorn's count mode without it; VMEXIT_PURE=1 forces count mode
(the same counts and traces, slower), so `VMEXIT_PURE=1 python tools/bench.py` measures that path. The
machine line (the `machine` object with --json) says which one ran.

Wall-clock time is used here and only here: it never enters a trace.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmexit import analysis, guests, session  # noqa: E402
from vmexit.costs import load_profile  # noqa: E402
from vmexit.engine import blockcount  # noqa: E402
from vmexit.exits import EXIT_DTYPE, ExitReason  # noqa: E402
from vmexit.loader import load_file  # noqa: E402
from vmexit.machine import X86Machine  # noqa: E402
from vmexit.trace import Trace  # noqa: E402
from tests.kernels import build as kernels  # noqa: E402

BENCH = ROOT / "guests" / "bench"


def _run(name: str, constants: dict | None = None):
    image = guests.resolve(str(BENCH / f"{name}.S"), constants or {})
    t0 = time.perf_counter()
    trace = session.run(image, load_profile(None), session.RunOptions())
    return image, trace, time.perf_counter() - t0


def _bare(image, start: str, end: str, esp: int = 0x8F000) -> float:
    """Run [start, end) of the image under plain Unicorn: no hooks, no count. Returns seconds."""
    m = X86Machine()
    m.load(image)
    m.boot_multiboot(image.entry)
    from unicorn.x86_const import UC_X86_REG_EBP, UC_X86_REG_ESP
    m.engine.uc.reg_write(UC_X86_REG_ESP, esp)
    m.engine.uc.reg_write(UC_X86_REG_EBP, esp)
    t0 = time.perf_counter()
    m.engine.uc.emu_start(image.symbols[start], image.symbols[end])
    return time.perf_counter() - t0


def exit_light(iterations: int) -> dict:
    image, trace, wall = _run("exit_light", {"ITERATIONS": iterations})
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    mips = trace.meta["instructions"] / wall / 1e6
    bare_wall = _bare(image, "compute", "compute_end")
    bare_mips = 5 * iterations / bare_wall / 1e6
    return {"case": "exit-light", "instructions": trace.meta["instructions"], "exits": len(trace.exits),
            "vmexit_mips": mips, "bare_mips": bare_mips, "exit_light_ratio": mips / bare_mips}


def _bare_call(image, func: str, args: tuple = (), count: bool = False) -> float | int:
    """Call the cdecl function `func(*args)` of an image under plain Unicorn until it returns. Returns
    seconds; with count=True, the instructions it executed instead (through a code hook: slow, so only
    for small arguments)."""
    m = X86Machine()
    m.load(image)
    m.boot_multiboot(image.entry)
    from unicorn import UC_HOOK_CODE
    from unicorn.x86_const import UC_X86_REG_EBP, UC_X86_REG_ESP
    uc = m.engine.uc
    ret = image.entry                   # the return address: the kernel's entry, never reached from inside
    esp = 0x8F000 - 4 * (len(args) + 1)
    uc.mem_write(esp, struct.pack(f"<{len(args) + 1}I", ret, *args))
    uc.reg_write(UC_X86_REG_ESP, esp)
    uc.reg_write(UC_X86_REG_EBP, 0)
    executed = [0]
    if count:
        uc.hook_add(UC_HOOK_CODE, lambda *_: executed.__setitem__(0, executed[0] + 1))
    t0 = time.perf_counter()
    uc.emu_start(image.symbols[func], ret)
    return executed[0] if count else time.perf_counter() - t0


def exit_light_gcc(iterations: int) -> dict:
    """exit-light on gcc -O1 code: compute() of tests/kernels/compute.c (multiply, add, one store per
    iteration), PIT at 100 Hz as in exit_light.S; bare Unicorn runs compute(iterations) alone."""
    row = {"case": "exit-light-gcc"}
    missing = kernels.toolchain_missing()
    if missing:
        return {**row, "skipped": f"cannot build tests/kernels/compute.c: {missing}"}
    with tempfile.TemporaryDirectory() as d:
        try:
            image = load_file(kernels.build("compute", Path(d), {"ITERATIONS": iterations, "HZ": 100}))
        except subprocess.CalledProcessError as e:
            return {**row, "skipped": f"cannot build tests/kernels/compute.c: {e.stderr.strip()[-200:]}"}
    t0 = time.perf_counter()
    trace = session.run(image, load_profile(None), session.RunOptions())
    wall = time.perf_counter() - t0
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    mips = trace.meta["instructions"] / wall / 1e6
    # compute(n) executes a + b * n instructions, whatever gcc made of it: count two small calls
    small, large = (_bare_call(image, "compute", (n,), count=True) for n in (1000, 2000))
    bare_instructions = small + (large - small) // 1000 * (iterations - 1000)
    bare_mips = bare_instructions / _bare_call(image, "compute", (iterations,)) / 1e6
    return {**row, "instructions": trace.meta["instructions"], "exits": len(trace.exits), "vmexit_mips": mips,
            "bare_mips": bare_mips, "exit_light_gcc_ratio": mips / bare_mips}


#: instructions of irq_off.S's wake_up_loop (counted in its code; tests/test_bench.py checks them)
IRQ_OFF_PROLOGUE, IRQ_OFF_PER_SECTION, IRQ_OFF_PER_WAITER = 4, 53, 47


def irq_off_loop_instructions(sections: int, waiters: int) -> int:
    return IRQ_OFF_PROLOGUE + sections * (IRQ_OFF_PER_SECTION + waiters * IRQ_OFF_PER_WAITER)


def irq_off(hz: int, sections: int, waiters: int) -> dict:
    """Nested spin_lock_irqsave sections, each longer than a tick, so that the tick is pending while
    interrupts are off most of the time; bare Unicorn runs the same loop without interrupts."""
    constants = {"HZ": hz, "SECTIONS": sections, "WAITERS": waiters}
    image, trace, wall = _run("irq_off", constants)
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    mips = trace.meta["instructions"] / wall / 1e6
    bare_wall = _bare(image, "wake_up_loop", "wake_up_loop_end")
    bare_mips = irq_off_loop_instructions(sections, waiters) / bare_wall / 1e6
    windows = int((trace.exits["reason"] == ExitReason.INTERRUPT_WINDOW).sum())
    return {"case": "irq-off", **constants, "instructions": trace.meta["instructions"], "window_exits": windows,
            "vmexit_mips": mips, "bare_mips": bare_mips, "irq_off_ratio": mips / bare_mips}


SCHED_DONE = "sched: both done"


def kernel_boot(runs: int = 3) -> dict:
    """tests/kernels/sched.c (two ring-3 processes preempted by the LAPIC timer, printing through system
    calls) from loading to its last console line: vmexit's wall time / QEMU TCG's, both from the start
    (QEMU's process start and firmware included, as vmexit's loading of the ELF is). Each side's fastest
    of `runs`: both take well under a second, where one slow start would decide the ratio."""
    row = {"case": "kernel-boot"}
    qemu = shutil.which("qemu-system-i386")
    missing = kernels.toolchain_missing() or (None if qemu else "qemu-system-i386 not found")
    if missing:
        return {**row, "skipped": missing}
    with tempfile.TemporaryDirectory() as d:
        try:
            elf = kernels.build("sched", Path(d))
        except subprocess.CalledProcessError as e:
            return {**row, "skipped": f"cannot build tests/kernels/sched.c: {e.stderr.strip()[-200:]}"}
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            trace = session.run(load_file(elf), load_profile(None), session.RunOptions(until_console=SCHED_DONE))
            walls.append(time.perf_counter() - t0)
            assert trace.meta["status"] == "console", trace.meta["detail"]
        qemu_wall = min(_qemu_until_console(qemu, elf, SCHED_DONE) for _ in range(runs))
    return {**row, "instructions": trace.meta["instructions"], "vmexit_wall_s": min(walls), "qemu_wall_s": qemu_wall,
            "kernel_boot_ratio": min(walls) / qemu_wall}


LINUX_CMDLINE = "console=ttyS0 acpi=off vmexit.workload=shell"
LINUX_PROMPT = "/ # "


def linux_boot() -> dict:
    """The Linux kernel and initramfs of tools/linux/build.sh from loading to busybox's prompt: vmexit's
    wall time / QEMU TCG's (one run each: a boot takes tens of seconds here, not a fraction of one)."""
    from vmexit import bzimage
    row = {"case": "linux-boot"}
    d = Path(os.environ.get("VMEXIT_LINUX_DIR") or Path.home() / ".cache/vmexit/linux")
    qemu = shutil.which("qemu-system-i386")
    if not (d / "READY").exists():
        return {**row, "skipped": f"no Linux kernel built in {d}: run tools/linux/build.sh"}
    if qemu is None:
        return {**row, "skipped": "qemu-system-i386 not found"}
    t0 = time.perf_counter()
    image = bzimage.load_file(d / "bzImage", LINUX_CMDLINE, d / "initramfs.cpio", d / "System.map")
    trace = session.run(image, load_profile(None), session.RunOptions(until_console=LINUX_PROMPT))
    wall = time.perf_counter() - t0
    assert trace.meta["status"] == "console", trace.meta["detail"]
    qemu_wall = _qemu_until_console(qemu, d / "bzImage", LINUX_PROMPT,
                                    extra=["-initrd", str(d / "initramfs.cpio"), "-append", LINUX_CMDLINE])
    return {**row, "instructions": trace.meta["instructions"], "exits": len(trace.exits), "vmexit_wall_s": wall,
            "qemu_wall_s": qemu_wall, "linux_boot_ratio": wall / qemu_wall}


def _qemu_until_console(qemu: str, elf: Path, text: str, timeout: float = 120.0, extra: list[str] = ()) -> float:
    """Seconds from launching QEMU (TCG) on the kernel until its serial console has printed `text`;
    QEMU is killed then."""
    cmd = [qemu, "-accel", "tcg", "-kernel", str(elf), *extra, "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    out = b""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        while text.encode() not in out:
            left = timeout - (time.perf_counter() - t0)
            ready = select.select([proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                raise RuntimeError(f"QEMU did not print {text!r} within {timeout:.0f} s (it printed {out[-80:]!r})")
            out += chunk
        return time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()


def exit_heavy(iterations: int) -> dict:
    image, trace, wall = _run("exit_heavy", {"ITERATIONS": iterations})
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    n = len(trace.exits)
    attributed = int((trace.exits["caller"] != 0).sum())
    stacked = int((trace.exits["stack"] != 0).sum())  # every exit's frame-pointer chain (issue 17)
    bare_wall = _bare(image, "_start", "machine_exit")
    return {"case": "exit-heavy", "exits": n, "attributed": attributed, "with_stack": stacked,
            "distinct_stacks": len(trace.stacks), "exit_heavy_exits_per_s": n / wall,
            "exit_heavy_ratio": bare_wall / wall, "wall_s": wall}


def memset(megabytes: int) -> dict:
    image = guests.resolve(str(BENCH / "memset.S"), {"MEGABYTES": megabytes})
    ram = (megabytes + 8) << 20
    t0 = time.perf_counter()
    trace = session.run(image, load_profile(None), session.RunOptions(ram_size=ram))
    wall = time.perf_counter() - t0
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    m = X86Machine(ram)
    m.load(image)
    m.boot_multiboot(image.entry)
    from unicorn.x86_const import UC_X86_REG_ESP
    m.engine.uc.reg_write(UC_X86_REG_ESP, 0x8F000)
    t0 = time.perf_counter()
    m.engine.uc.emu_start(image.symbols["fill"], image.symbols["fill_end"])
    bare = time.perf_counter() - t0
    return {"case": "memset", "megabytes": megabytes, "instructions": trace.meta["instructions"],
            "memset_ratio": bare / wall}


def simple(name: str, key: str, iterations: int) -> dict:
    _, trace, wall = _run(name, {"ITERATIONS": iterations})
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    return {"case": name, "exits": len(trace.exits), key: len(trace.exits) / wall}


def synthetic_trace(n: int) -> Trace:
    rng = np.random.default_rng(1)
    exits = np.zeros(n, dtype=EXIT_DTYPE)
    exits["seq"] = np.arange(n, dtype=np.uint64)
    exits["icount"] = np.cumsum(rng.integers(1, 50, n), dtype=np.uint64)
    exits["cycles"] = exits["icount"] * 3
    sites = 0x100000 + rng.integers(0, 4096, 256) * 4
    exits["rip"] = sites[rng.zipf(1.5, n) % len(sites)]
    exits["reason"] = rng.choice([ExitReason.IO_INSTRUCTION, ExitReason.EXTERNAL_INTERRUPT, ExitReason.HLT,
                                  ExitReason.VMCALL], n, p=[0.85, 0.05, 0.05, 0.05])
    exits["place"] = rng.integers(0, 2, n)
    exits["direction"] = rng.integers(1, 3, n)
    exits["qualifier"] = rng.choice([0x1F0, 0x1F7, 0x20, 0x21, 0x3F8], n)
    exits["size"] = 1
    exits["cost"] = rng.choice([1790, 14526, 16866, 17385], n)
    exits["caller"] = sites[rng.integers(0, len(sites), n)] + 5
    symbols = {f"func{i:03d}": 0x100000 + i * 64 for i in range(256)}
    meta = {"freq_hz": 2830000000, "guest": "synthetic", "instructions": int(exits["icount"][-1]),
            "virtual_seconds": float(exits["cycles"][-1]) / 2.83e9, "status": "exited", "detail": "",
            "profile": "kvm76-q9550", "idle_cycles": 0, "cpi": [1, 1]}
    return Trace(exits, meta, symbols)


def analysis_case(n: int) -> dict:
    trace = synthetic_trace(n)
    t0 = time.perf_counter()
    for by in ("function", "reason", "address"):
        analysis.report(trace, by, top=10)
    wall = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.npz"
        trace.save(path)
        size = path.stat().st_size
    return {"case": "analysis", "exits": n, "analysis_exits_per_s": 3 * n / wall,
            "trace_bytes_per_exit": size / n}


def memory(iterations: int) -> dict:
    """Peak resident memory per exit of `vmexit run exit_heavy.S -D ITERATIONS=N -o T.npz` (the user's
    whole flow: run, save the trace, render the hot-function report), target <= 64 bytes per exit.

    Each run is a fresh child Python calling vmexit.cli.main, which prints its own ru_maxrss (peak
    resident set, KiB on Linux) once main returns. Linux carries ru_maxrss across exec from the process
    that started the child (the larger of the two is kept), so the child is started by a small launcher
    Python, never by this process, which is large after the other cases. The baseline is the same
    command with ITERATIONS=1 (interpreter, vmexit, Unicorn, guest RAM, translated code: everything but
    the exits), so rss_bytes_per_exit = (peak(N) - peak(1)) / (exits(N) - exits(1)); exits are read from
    each trace's header. The guest makes 2 exits per iteration: 3,000,000 iterations are 6M exits."""
    import zipfile
    launcher = "import subprocess, sys\nsys.exit(subprocess.run(sys.argv[1:]).returncode)\n"
    child = ("import resource, sys\nsys.path.insert(0, sys.argv[1])\nfrom vmexit.cli import main\n"
             "code = main(sys.argv[2:])\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)\n")
    peaks, exits = [], []
    with tempfile.TemporaryDirectory() as d:
        for n in (1, iterations):
            trace = Path(d) / f"t{n}.npz"
            argv = ["run", str(BENCH / "exit_heavy.S"), "-D", f"ITERATIONS={n}", "-o", str(trace), "--no-progress",
                    "--report-file", str(Path(d) / "report.txt")]
            out = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-c", child, str(ROOT), *argv],
                                 capture_output=True, text=True, check=True).stdout.split()
            assert out[-1] == "0", out
            peaks.append(int(out[-2]) * 1024)
            with zipfile.ZipFile(trace) as z, z.open("exits.npy") as f:
                np.lib.format.read_magic(f)
                exits.append(np.lib.format.read_array_header_1_0(f)[0][0])
    return {"case": "memory", "exits": exits[1], "baseline_rss_mib": peaks[0] / 2**20, "rss_mib": peaks[1] / 2**20,
            "rss_bytes_per_exit": (peaks[1] - peaks[0]) / (exits[1] - exits[0])}


def peer(iterations: int, vmexit_wall: float | None) -> dict | None:
    qemu = shutil.which("qemu-system-i386")
    if qemu is None:
        return None
    image = guests.resolve(str(BENCH / "exit_heavy.S"), {"ITERATIONS": iterations})
    with tempfile.TemporaryDirectory() as d:
        elf = Path(d) / "g.elf"
        elf.write_bytes(image.elf)
        t0 = time.perf_counter()
        subprocess.run([qemu, "-kernel", str(elf), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                        "-display", "none", "-monitor", "none", "-serial", "null",
                        "-d", "trace:memory_region_ops_read,trace:memory_region_ops_write",
                        "-D", str(Path(d) / "qemu.log")], capture_output=True, timeout=600)
        wall = time.perf_counter() - t0
    row = {"case": "peer", "qemu_wall_s": wall}
    if vmexit_wall:
        row["qemu_ratio"] = wall / vmexit_wall
    return row


def sweep_jobs(runs: int, iterations: int, jobs: int = 2) -> dict:
    """The same grid of `runs` exit-heavy runs (ITERATIONS = iterations + 1000 * i) serially and on a pool
    of `jobs` processes, as `vmexit sweep --jobs` runs it: serial wall time / pooled wall time."""
    from vmexit import grid
    from vmexit.costs import load_profile as profile
    source = str(BENCH / "exit_heavy.S")
    grid_jobs = [grid.Job(f"ITERATIONS={iterations + 1000 * i}", source, {"ITERATIONS": iterations + 1000 * i},
                          profile(None), session.RunOptions()) for i in range(runs)]
    walls, outcomes = [], []
    for workers in (1, jobs):
        t0 = time.perf_counter()
        outcomes.append(grid.run(grid_jobs, lambda _: None, workers))
        walls.append(time.perf_counter() - t0)
    assert [o.data for o in outcomes[0]] == [o.data for o in outcomes[1]], "pooled traces differ from serial ones"
    assert all(o.status == "exited" for o in outcomes[0]), [o.error for o in outcomes[0]]
    return {"case": f"sweep-jobs{jobs}", "runs": runs, "serial_s": walls[0], f"jobs{jobs}_s": walls[1],
            f"sweep_jobs{jobs}_ratio": walls[0] / walls[1], "machine_parallel_ratio": parallel_ceiling(jobs)}


def parallel_ceiling(jobs: int, n: int = 30_000_000) -> float:
    """What `jobs` processes gain on this machine now (other work included): `jobs` C loops (sum over a
    range) one after another / the same loops on a started pool of `jobs` processes at once. The sweep's
    ratio is read against it: on a machine busy with other work it is well under `jobs`."""
    from concurrent.futures import ProcessPoolExecutor

    from vmexit import grid
    with ProcessPoolExecutor(jobs, mp_context=grid._context()) as pool:
        list(pool.map(sum, [range(10)] * jobs))   # the workers are up
        t0 = time.perf_counter()
        list(pool.map(sum, [range(n)] * jobs))
        parallel = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(jobs):
        sum(range(n))
    return (time.perf_counter() - t0) / parallel


def _field(key: str, value) -> str:
    if isinstance(value, float):
        return f"{key}={value:,.3f}"
    return f"{key}={value:,}" if isinstance(value, int) else f"{key}: {value}"


def main() -> int:
    ap = argparse.ArgumentParser(description="vmexit speed, as ratios against bare Unicorn")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--quick", action="store_true", help="smaller cases (a smoke run)")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    rows = [exit_light(20_000_000 // scale)]
    rows.append(exit_light_gcc(15_000_000 // scale))
    rows.append(irq_off(1000 * scale, 4, 90_000 // scale))
    rows.append(kernel_boot())
    rows.append(linux_boot())
    heavy = exit_heavy(200_000 // scale)
    rows.append(heavy)
    rows.append(memset(200 // scale))
    rows.append(simple("hypercall", "hypercall_exits_per_s", 200_000 // scale))
    rows.append(simple("mmio", "mmio_exits_per_s", 200_000 // scale))
    rows.append(analysis_case(10_000_000 // scale))
    rows.append(memory(3_000_000 // scale))
    rows.append(sweep_jobs(8 // (2 if args.quick else 1), 50_000 // scale))
    p = peer(200_000 // scale, heavy["wall_s"])
    if p:
        rows.append(p)
    machine = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine(),
               "counting": "blocks (compiled helper)" if blockcount.enabled() else "count mode"}
    summary = {k: v for row in rows for k, v in row.items() if k.endswith(("_ratio", "_per_s", "_per_exit"))}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows, **summary}, indent=2))
        return 0
    print(f"vmexit bench on {machine['processor']}, {machine['cpus']} CPUs, Python {machine['python']}, "
          f"counting: {machine['counting']}")
    for row in rows:
        print(f"{row['case']:14s} {', '.join(_field(k, v) for k, v in row.items() if k != 'case')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
