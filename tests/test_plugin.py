"""The pytest plugin as a user meets it: a test file of their own, for a guest of their own, using
only the public API (vmexit, vmexit.testing) and the `vmexit_run` fixture, run by pytest in a process
of its own (pytester):
it passes, and a wrong count fails with expected and actual counts and the hot-function table."""
from __future__ import annotations

import os
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from vmexit import pytest_plugin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# A user's guest: poke() writes port 0x80 once per call, _start calls it N times, then exits (0xf4).
GUEST = """
.ifndef N
.set N, 3
.endif
multiboot_header:
    .long 0x1BADB002, 0, -0x1BADB002
_start:
    mov esp, 0x90000
    mov ecx, N
.Lagain:
    call poke
    dec ecx
    jnz .Lagain
    mov al, 0
    out 0xf4, al
    hlt
poke:
    push ebp
    mov ebp, esp
    mov al, 1
    out 0x80, al
    pop ebp
    ret
"""

USER_TESTS = '''
import vmexit
from vmexit.testing import assert_exits


def test_pokes(vmexit_run):
    trace = vmexit_run("poke.S", constants={"N": 3})
    assert trace.status == "exited"
    assert_exits(trace, 3, function="poke", port=0x80, direction="out", caller="_start")
    assert_exits(trace, {"io": 4, "hlt": 0}, by="reason")


def test_one_run_per_arguments(vmexit_run, tmp_path):
    trace = vmexit_run("poke.S", constants={"N": 3})
    assert vmexit_run("poke.S", constants={"N": 3}) is trace
    trace.save(tmp_path / "poke.npz")
    rows = vmexit.compare(trace, vmexit_run("poke.S", constants={"N": 5}))
    assert [(r["key"], r["before"], r["after"]) for r in rows][:1] == [("poke", 3, 5)]
    assert vmexit.load(tmp_path / "poke.npz").report(by="port")[0]["key"] == "0x80:POUT"
'''

FAILING_TEST = '''
from vmexit.testing import assert_exits


def test_four_pokes(vmexit_run):
    assert_exits(vmexit_run("poke.S"), 4, function="poke")
'''


def _plugin_args() -> list[str]:
    """Nothing when vmexit is installed with its entry point (CI); else load the plugin by name."""
    installed = any(ep.name == "vmexit" and ep.value == "vmexit.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "vmexit.pytest_plugin"]


def test_the_entry_point_is_declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["entry-points"]["pytest11"] == {"vmexit": "vmexit.pytest_plugin"}
    assert callable(pytest_plugin.vmexit_run)


def _run(pytester, monkeypatch, tests: str):
    """pytest in a process of its own, as a user runs it, importing this checkout's vmexit."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pytester.makefile(".S", poke=GUEST)
    pytester.makepyfile(test_user=tests)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *_plugin_args())


def test_a_users_test_file_passes(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, USER_TESTS)
    result.assert_outcomes(passed=2)


def test_a_wrong_count_says_what_changed(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, FAILING_TEST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*exit counts of poke (ended exited, 4 exits in all) differ from the expected:*",
        "*function='poke': expected 4, got 3 (-1)*",
        "*Hot functions (poke)*",
        "*1*poke*",
    ])
    assert "vmexit/testing.py" not in result.stdout.str()  # the traceback stops at the user's test


def test_the_readmes_examples_use_the_public_api():
    """README's "Use from Python": its code compiles and names only what vmexit exports."""
    import ast
    import re

    import vmexit
    import vmexit.testing
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use from Python"):text.index("## Guests")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    for block in blocks:
        tree = ast.parse(block)
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and n.value.id == "vmexit"}
        assert used <= set(vmexit.__all__)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert all(hasattr(vmexit.testing, a.name) for a in node.names)
    assert "def test_" in blocks[1] and "vmexit_run" in blocks[1] and len(blocks[1].strip().splitlines()) <= 12
