"""Boot the built Linux guest in QEMU (TCG, the `pc` machine vmexit models) and collect its console.

The guest is asked to end with `reboot -f` (vmexit.end=reboot), which `-no-reboot` turns into QEMU
exiting, so a run needs no monitor or kill. The timeout only guards against a hung guest."""
from __future__ import annotations

import selectors
import shutil
import subprocess
import time

QEMU = shutil.which("qemu-system-i386")
GUARD_SECONDS = 600


def command(kernel, append: str, *extra: str) -> list[str]:
    return [QEMU, "-M", "pc", "-m", "64", "-display", "none", "-monitor", "none", "-serial", "stdio",
            "-no-reboot", "-kernel", str(kernel.bzimage), "-initrd", str(kernel.initramfs),
            "-append", f"console=ttyS0 vmexit.end=reboot {append}", *extra]


def boot(kernel, append: str, *extra: str, replies: dict[str, str] | None = None) -> str:
    """The guest's console text until QEMU exits; `replies` types a line when a text first appears."""
    replies = dict(replies or {})
    proc = subprocess.Popen(command(kernel, append, *extra), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    console = b""
    deadline = time.monotonic() + GUARD_SECONDS
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=1):
                continue
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            console += chunk
            for text in [t for t in replies if t.encode() in console]:
                proc.stdin.write(replies.pop(text).encode())
                proc.stdin.flush()
        else:
            proc.kill()
            raise AssertionError(f"QEMU still running after {GUARD_SECONDS} s:\n{console.decode(errors='replace')}")
    proc.wait()
    return console.decode(errors="replace").replace("\r\n", "\n")
