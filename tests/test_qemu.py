"""The bundled ELF files boot unchanged in QEMU and print what they print under vmexit.

Skipped where qemu-system-i386 is not installed (Debian: qemu-system-x86).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from vmexit import guests

QEMU = shutil.which("qemu-system-i386")
pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-i386 not installed")
EXTRA = {"netperf": ["-nic", "user,model=rtl8139"]}


@pytest.mark.parametrize("name", list(guests.GUESTS))
def test_boots_in_qemu_like_in_vmexit(name, tmp_path):
    from vmexit import session
    from vmexit.costs import load_profile
    trace = session.run(guests.resolve(name), load_profile(None), session.RunOptions())
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(16 << 20))
    serial = tmp_path / "serial.txt"
    r = subprocess.run([QEMU, "-kernel", str(guests.guests_dir() / f"{name}.elf"),
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-display", "none",
                        "-monitor", "none", "-serial", f"file:{serial}",
                        "-drive", f"file={disk},format=raw,if=ide"] + EXTRA.get(name, []),
                       timeout=120, capture_output=True)
    assert serial.read_text() == trace.meta["console"]
    assert r.returncode == (trace.meta["guest_value"] << 1) | 1
