"""Traces recorded before the domain/engine/exit-model restructuring (issue 13), committed under
tests/reference/: every bundled guest under every hypervisor, and each option `vmexit reproduce` uses,
must give the same exit records, byte for byte, and the same run results.

`pytest --update-reference` rewrites the files from the current code; do that only for a change that
is meant to alter what a run records, and say so in the commit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.hypervisors import HYPERVISORS

REFERENCE = Path(__file__).resolve().parent / "reference"
GUESTS = ("timer", "ide", "netperf", "bonnie", "specjbb", "fork", "exec")
TICKS = {"TICKS": 1_000_000}

#: name -> (guest, constants, run options)
CASES: dict[str, tuple[str, dict, dict]] = {
    f"{g}-{hv}": (g, {}, {"hypervisor": hv}) for hv in ("kvm", "xen-pv", "native") for g in GUESTS
}
CASES.update({
    "specjbb-host-tick": ("specjbb", {}, {"host_timer_hz": 1000}),
    "netperf-no-napi": ("netperf", {"NAPI": 0}, {}),
    "netperf-receive": ("netperf", {"RECEIVE": 1}, {"net_peer_sends": True}),
    "bonnie-coalesce-static": ("bonnie", {"COALESCE": 1}, {}),
    "bonnie-coalesce-dynamic": ("bonnie", {}, {"optimizations": {"coalesce": 64}}),
    "ide-coalesce-static": ("ide", {"COALESCE": 1}, {}),
    "ide-coalesce-dynamic": ("ide", {}, {"optimizations": {"coalesce": 64}}),
    "timer-tick-hz250": ("timer", TICKS, {"optimizations": {"tick-hz": 250}, "max_seconds": 0.1}),
    "specjbb-tick-hz100": ("specjbb", {}, {"optimizations": {"tick-hz": 100}}),
    "fork-enhanced": ("fork", {}, {"hypervisor": "xen-pv", "optimizations": {"xen-pf-offload": 1}}),
    "exec-enhanced": ("exec", {}, {"hypervisor": "xen-pv", "optimizations": {"xen-pf-offload": 1}}),
    "fork-xen-batch0": ("fork", {"BATCH": 0}, {"hypervisor": "xen-pv"}),
    "fork-xen-batch1": ("fork", {"BATCH": 1}, {"hypervisor": "xen-pv"}),
})

#: The run results besides the records that must not move (the vmexit version and the recorded
#: option set may: they describe the program, not the run).
META_KEYS = ("instructions", "cycles", "idle_cycles", "virtual_seconds", "status", "detail", "guest_value",
             "end_address", "console", "input_consumed", "ide", "pit", "lapic", "nic", "xen", "optimizations",
             "guest_sha256", "constants", "profile", "hypervisor", "freq_hz", "cpi")


def _run(name: str) -> session.Trace:
    guest, constants, options = CASES[name]
    profile = load_profile(HYPERVISORS[options.get("hypervisor", "kvm")].profile)
    return session.run(guests.resolve(guest, dict(constants)), profile, session.RunOptions(**options))


def _save(path: Path, trace) -> None:
    meta = {k: trace.meta.get(k) for k in META_KEYS}
    with path.open("wb") as f:
        np.savez_compressed(f, exits=trace.exits, emulated=trace.emulated,
                            meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8))


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_records_as_before(name, request):
    path = REFERENCE / f"{name}.npz"
    trace = _run(name)
    if request.config.getoption("--update-reference"):
        REFERENCE.mkdir(exist_ok=True)
        _save(path, trace)
        pytest.skip("reference rewritten")
    assert_same_as_reference(name, trace)


def assert_same_as_reference(name: str, trace) -> None:
    """The run's records and results against the reference recorded before: each recorded field byte
    for byte (columns added since: domain is 0 here, subop a hypercall's command, stack an id)."""
    with np.load(REFERENCE / f"{name}.npz", allow_pickle=False) as ref:
        recorded = ref["exits"].dtype.names
        assert set(recorded) <= set(trace.exits.dtype.names)
        for field in recorded:
            mine, theirs = trace.exits[field], ref["exits"][field]
            if mine.dtype != theirs.dtype:   # seq: 64-bit then, 32-bit since format 5; the same numbers
                theirs = theirs.astype(mine.dtype)
                assert (theirs == ref["exits"][field]).all()
            assert mine.tobytes() == theirs.tobytes(), f"{name}: exit {field} differs"
        for field in set(trace.exits.dtype.names) - set(recorded):
            assert field in ("subop", "stack") or not trace.exits[field].any(), f"{name}: {field} is not 0"
        assert trace.emulated.tobytes() == ref["emulated"].tobytes(), f"{name}: emulated records differ"
        meta = json.loads(bytes(ref["meta"]).decode())
    assert {k: trace.meta.get(k) for k in META_KEYS} == json.loads(json.dumps(meta))
