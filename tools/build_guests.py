#!/usr/bin/env python3
"""Build guests/NAME.elf from guests/NAME.S for every bundled guest (default constants).

The .elf files are committed so that `qemu-system-i386 -kernel guests/NAME.elf -device
isa-debug-exit,iobase=0xf4,iosize=0x04` boots the very file vmexit runs. `--check` only verifies
that they are up to date (the test suite runs it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmexit.guests import GUESTS, guests_dir, resolve  # noqa: E402
from vmexit.trace import write_atomic  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a committed .elf is stale")
    args = ap.parse_args()
    stale = []
    for name in GUESTS:
        elf = resolve(name).elf
        path = guests_dir() / f"{name}.elf"
        if args.check:
            if not path.exists() or path.read_bytes() != elf:
                stale.append(name)
            continue
        write_atomic(path, elf)
        print(f"{path}: {len(elf)} bytes")
    if stale:
        print(f"stale: {', '.join(stale)} (run tools/build_guests.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
