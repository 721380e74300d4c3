"""The package's shape: only the CPU engine imports the emulator, and functions stay short."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vmexit"
#: Declarative tables written as one function (the argparse parser) may be longer.
LONG_TABLES = {("cli.py", "build_parser")}
MAX_LINES = 60


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_engine_imports_unicorn():
    users = {str(path) for path, tree in _modules() if "unicorn" in _imports(tree)}
    assert users and all(u.startswith("engine/") for u in users), sorted(users)


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES and (str(path), node.name) not in LONG_TABLES:
                    long.append(f"{path}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
