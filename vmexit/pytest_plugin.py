"""vmexit's pytest plugin, registered by the `pytest11` entry point when vmexit is installed: no
conftest needed. It gives the fixture `vmexit_run`, vmexit.run with its trace cached for the test
session, so that every test asking for the same guest and options shares one run:

    from vmexit.testing import assert_exits

    def test_pic_exits(vmexit_run):
        trace = vmexit_run("timer", max_seconds=0.05)
        assert_exits(trace, 20, reason="io", port=0x20, direction="in")

pytest loads plugins before it collects, so loading this one imports the `vmexit` package (light:
its names load on first use) from wherever Python finds it first: the installed copy under the
`pytest` script, the current directory under `python -m pytest`. A checkout's own tests therefore run
the installed code unless run with `python -m pytest` from the checkout (or installed editable).
Everything else is imported when the fixture is first used.
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def vmexit_run():
    """vmexit.run(guest, **options) -> Trace, run once per test session for the same arguments (the
    trace is shared: read-only arrays). Bad arguments raise vmexit.VmexitError."""
    from vmexit.testing import RunCache
    return RunCache()
