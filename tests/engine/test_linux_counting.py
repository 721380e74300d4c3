"""A Linux kernel counted a block at a time by the compiled helper (its code watch and block callbacks
in C) boots to the same trace as in Unicorn's count mode with every look-up in Python (VMEXIT_PURE=1):
the same exits at the same instructions, byte for byte. Skipped unless tools/linux/build.sh built the
kernel; about two minutes (the count-mode boot is the slow one)."""
from __future__ import annotations

import pytest

from tests.test_bzimage import boot_linux, linux_dir
from vmexit.engine import blockcount


@pytest.fixture(scope="module")
def linux():
    d = linux_dir()
    if not (d / "READY").exists() or not (d / "bzImage").exists():
        pytest.skip("Linux kernel not built: run tools/linux/build.sh")
    if not blockcount.enabled():
        pytest.skip("the compiled helper does not build here (no cc): both boots would be count mode")
    return d


def test_linux_boots_to_the_same_trace_with_the_helper_and_in_count_mode(linux, monkeypatch):
    with_helper = boot_linux(linux)
    monkeypatch.setenv("VMEXIT_PURE", "1")
    blockcount.helper.cache_clear()
    try:
        assert not blockcount.enabled()
        counted = boot_linux(linux)
    finally:
        monkeypatch.undo()
        blockcount.helper.cache_clear()
    assert with_helper.meta["status"] == counted.meta["status"] == "console"
    assert with_helper.meta["instructions"] == counted.meta["instructions"]
    assert with_helper.meta["console"] == counted.meta["console"]
    assert len(with_helper.exits) == len(counted.exits) > 10_000
    assert with_helper.exits.tobytes() == counted.exits.tobytes()
