"""Build the test kernels with the machine's gcc and ld (gcc -m32 -ffreestanding, multiboot ELF)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = ("user", "editor", "paging", "ide", "sched", "compute")
CFLAGS = ["-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector", "-fno-omit-frame-pointer",
          "-nostdlib", "-O1", "-Wall", "-Werror", "-fno-asynchronous-unwind-tables", "-mno-sse", "-mno-mmx"]


def toolchain_missing() -> str | None:
    for tool in ("gcc", "ld"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def build(name: str, out_dir: Path, defines: dict[str, int] | None = None) -> Path:
    """tests/kernels/NAME.c with the shared parts, linked as out_dir/NAME.elf; `defines` become -D flags."""
    objs = []
    flags = [*CFLAGS, *(f"-D{k}={v}" for k, v in (defines or {}).items())]
    for src in ("boot.S", "stubs.S", "kernel.c", f"{name}.c"):
        obj = out_dir / f"{name}-{Path(src).stem}.o"
        subprocess.run(["gcc", *flags, "-c", str(HERE / src), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        objs.append(str(obj))
    elf = out_dir / f"{name}.elf"
    subprocess.run(["ld", "-m", "elf_i386", "-T", str(HERE / "link.ld"), "-o", str(elf), *objs], check=True,
                   capture_output=True, text=True)
    return elf
