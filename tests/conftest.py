"""Shared fixtures: each bundled guest runs once per session; small inline guests for mechanism tests."""
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


@pytest.fixture(scope="session")
def timer_trace():
    return session.run(guests.resolve("timer"), load_profile(None), session.RunOptions())


@pytest.fixture(scope="session")
def ide_trace():
    return session.run(guests.resolve("ide"), load_profile(None), session.RunOptions())


__all__ = ["inline_image", "run_inline", "count", "ExitReason", "np"]
