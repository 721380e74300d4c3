"""The Linux guest built by tools/linux/build.sh (outside the repository): the `linux_kernel` fixture
finds its folder, ${VMEXIT_LINUX_DIR:-~/.cache/vmexit/linux}, and skips the test when no build is there."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# What build.sh writes into its output folder; READY is written last, once the others are complete.
BUILD_FILES = ("bzImage", "System.map", "vmlinux", "initramfs.cpio", "config", "build-info", "READY")


def linux_dir() -> Path:
    """The folder build.sh writes into (the same default as the script's)."""
    env = os.environ.get("VMEXIT_LINUX_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vmexit" / "linux"


@dataclass(frozen=True)
class LinuxBuild:
    root: Path

    @property
    def bzimage(self) -> Path:
        return self.root / "bzImage"

    @property
    def system_map(self) -> Path:
        return self.root / "System.map"

    @property
    def vmlinux(self) -> Path:
        return self.root / "vmlinux"

    @property
    def initramfs(self) -> Path:
        return self.root / "initramfs.cpio"

    @property
    def config(self) -> Path:
        return self.root / "config"

    def symbols(self) -> dict[str, int]:
        """System.map as name -> address (text and data symbols alike; the last of duplicate statics)."""
        table = {}
        for line in self.system_map.read_text().splitlines():
            address, _kind, name = line.split()[:3]
            table[name] = int(address, 16)
        return table

    def info(self) -> dict[str, str]:
        lines = (self.root / "build-info").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture(scope="session")
def linux_kernel() -> LinuxBuild:
    root = linux_dir()
    missing = [name for name in BUILD_FILES if not (root / name).is_file()]
    if missing:
        pytest.skip(f"Linux kernel not built: run tools/linux/build.sh (no {missing[0]} in {root})")
    return LinuxBuild(root)
