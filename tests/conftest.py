"""Shared fixtures: each bundled guest runs once per session (vmexit's own pytest plugin, vmexit_run);
small inline guests for mechanism tests."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit import guests, session
from vmexit.asm import build_guest
from vmexit.costs import load_profile
from vmexit.exits import ExitReason
from vmexit.loader import load_elf

PRELUDE = """
multiboot_header:
    .long 0x1BADB002, 0, -0x1BADB002
_start:
    mov esp, 0x90000
"""


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from current output")
    parser.addoption("--update-reference", action="store_true",
                     help="rewrite tests/reference/*.npz (the recorded runs) from the current code")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


def inline_image(body: str, constants: dict | None = None):
    return load_elf(build_guest(PRELUDE + body, constants), "inline")


def run_inline(body: str, profile: str | None = None, **options):
    return session.run(inline_image(body), load_profile(profile), session.RunOptions(**options))


def count(trace, reason, **fields) -> int:
    e = trace.exits
    mask = e["reason"] == reason
    for k, v in fields.items():
        mask &= e[k] == v
    return int(mask.sum())


def pytest_configure(config):
    """vmexit's pytest plugin (vmexit/pytest_plugin.py, the vmexit_run fixture) comes with its installation
    (the pytest11 entry point); a checkout run without installing it, or under an installation made
    before the plugin existed, gets it here."""
    if not config.pluginmanager.has_plugin("vmexit"):
        from vmexit import pytest_plugin
        config.pluginmanager.register(pytest_plugin, "vmexit")


@pytest.fixture(scope="session")
def timer_trace(vmexit_run):
    return vmexit_run("timer")


@pytest.fixture(scope="session")
def ide_trace(vmexit_run):
    return vmexit_run("ide")


__all__ = ["inline_image", "run_inline", "count", "ExitReason", "np"]
