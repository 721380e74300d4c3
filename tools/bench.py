#!/usr/bin/env python3
"""vmexit benchmark: speed as ratios against bare Unicorn measured in the same process.

Cases (guests in guests/bench/):
  exit-light     compute loop with stores, PIT at 100 Hz: vmexit MIPS / bare Unicorn MIPS on the loop
  exit-heavy     port I/O every few instructions with frame pointers: exits/s with full attribution,
                 and the ratio of bare Unicorn's time to vmexit's on the same image
  memset         a kernel clearing 200 MiB with one rep stosd at boot: bare Unicorn's time / vmexit's
  hypercall      vmcall loop: exits/s
  mmio           LAPIC register loop: exits/s
  analysis       synthetic 10M-exit trace: exits aggregated per second (hot functions + reasons +
                 addresses) and trace bytes per exit on disk
  peer           the exit-heavy guest under qemu-system-i386 with memory_region_ops tracing, when
                 QEMU is installed: QEMU's wall time / vmexit's

Wall-clock time is used here and only here: it never enters a trace.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
from vmexit.exits import EXIT_DTYPE, ExitReason  # noqa: E402
from vmexit.machine import X86Machine  # noqa: E402
from vmexit.trace import Trace  # noqa: E402

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


def exit_heavy(iterations: int) -> dict:
    image, trace, wall = _run("exit_heavy", {"ITERATIONS": iterations})
    assert trace.meta["status"] == "exited", trace.meta["detail"]
    n = len(trace.exits)
    attributed = int((trace.exits["caller"] != 0).sum())
    bare_wall = _bare(image, "_start", "machine_exit")
    return {"case": "exit-heavy", "exits": n, "attributed": attributed, "exit_heavy_exits_per_s": n / wall,
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


def main() -> int:
    ap = argparse.ArgumentParser(description="vmexit speed, as ratios against bare Unicorn")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--quick", action="store_true", help="smaller cases (a smoke run)")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    rows = [exit_light(20_000_000 // scale)]
    heavy = exit_heavy(200_000 // scale)
    rows.append(heavy)
    rows.append(memset(200 // scale))
    rows.append(simple("hypercall", "hypercall_exits_per_s", 200_000 // scale))
    rows.append(simple("mmio", "mmio_exits_per_s", 200_000 // scale))
    rows.append(analysis_case(10_000_000 // scale))
    rows.append(memory(3_000_000 // scale))
    p = peer(200_000 // scale, heavy["wall_s"])
    if p:
        rows.append(p)
    machine = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine()}
    summary = {k: v for row in rows for k, v in row.items() if k.endswith(("_ratio", "_per_s", "_per_exit"))}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows, **summary}, indent=2))
        return 0
    print(f"vmexit bench on {machine['processor']}, {machine['cpus']} CPUs, Python {machine['python']}")
    for row in rows:
        fields = ", ".join(f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v:,}"
                           for k, v in row.items() if k != "case")
        print(f"{row['case']:11s} {fields}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
