"""vmexit: which guest instructions make a virtual machine exit, and what each exit costs.

The Python API (api.py; README, "Use from Python"):

    import vmexit
    trace = vmexit.run("timer")                        # a Trace, as `vmexit run timer -o t.npz` saves
    trace.count(reason="io", function="timer_interrupt")
    trace.report(by="reason")                          # rows, as `--format json` gives them
    vmexit.compare(vmexit.load("before.npz"), trace)   # `vmexit compare`, as rows

Bad arguments raise VmexitError (a ValueError). With pytest, the `vmexit_run` fixture and
vmexit.testing.assert_exits come with the installation (the pytest11 entry point, vmexit/pytest_plugin.py).

Importing vmexit is light: the names below load on first use (PEP 562), and the emulator only when a
guest runs, so `vmexit.load` and reports work without unicorn.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["run", "load", "compare", "import_trace", "Trace", "Rows", "VmexitError", "RunOptionError", "__version__"]

#: Each public name -> the module that defines it.
_LAZY = {"run": "api", "load": "api", "compare": "api", "import_trace": "api", "Trace": "api", "Rows": "api",
         "VmexitError": "errors", "RunOptionError": "options"}

if TYPE_CHECKING:
    from .api import Rows, Trace, compare, import_trace, load, run
    from .errors import VmexitError
    from .options import RunOptionError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vmexit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
