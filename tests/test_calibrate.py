"""`vmexit calibrate`: the micro-guests' profile (every number measured or derived, with what, where,
how many samples and which statistic), where it is written and found (`vmexit profiles`, `--profile
NAME`), kvm-hw's default profile, re-pricing a saved model trace with it, and no /dev/kvm being bad
input. Calibration itself needs a usable /dev/kvm and skips without one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import vmexit
from vmexit.cli import EXIT_OK, EXIT_USAGE, main
from vmexit.costs import CALIBRATED, DEFAULT_PROFILE, load_profile, parse_profile
from vmexit.engine import kvmapi
from vmexit.exits import ExitReason
from vmexit.hypervisors import HYPERVISORS

from .engine.test_kvm import NO_KVM

SAMPLES = 40
needs_kvm = pytest.mark.skipif(NO_KVM is not None, reason=f"no usable KVM: {NO_KVM}")


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    """One calibration for the module, written by the command line."""
    if NO_KVM is not None:
        pytest.skip(f"no usable KVM: {NO_KVM}")
    path = tmp_path_factory.mktemp("cal") / "thishost.json"
    assert main(["calibrate", "-o", str(path), "--samples", str(SAMPLES)]) == EXIT_OK
    return path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def test_no_kvm_device_fails_calibrate_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(kvmapi.DEVICE_ENV, str(tmp_path / "no-kvm"))
    assert main(["calibrate", "-o", str(tmp_path / "p.json")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("vmexit: error: no KVM on this host") and err.count("\n") == 1
    assert not (tmp_path / "p.json").exists()


def test_bad_sample_counts_are_refused(capsys, tmp_path):
    assert main(["calibrate", "--samples", "0", "-o", str(tmp_path / "p.json")]) == EXIT_USAGE
    assert "give 1 to" in capsys.readouterr().err


def test_kvm_hw_defaults_to_the_calibrated_profile_else_the_papers_host(tmp_path, monkeypatch):
    monkeypatch.setenv("VMEXIT_PROFILE_DIR", str(tmp_path))
    assert HYPERVISORS["kvm-hw"].profile == CALIBRATED
    assert load_profile(CALIBRATED).name == DEFAULT_PROFILE     # nothing calibrated yet
    doc = json.loads((Path(vmexit.__file__).parent / "profiles" / "kvm-skylake.json").read_text())
    doc["name"] = "calibrated"
    (tmp_path / "calibrated.json").write_text(json.dumps(doc))
    assert load_profile(CALIBRATED).name == "calibrated"
    assert load_profile(None).name == DEFAULT_PROFILE           # the model's default is untouched


@needs_kvm
def test_the_profile_says_what_was_measured_where_and_how(profile_file):
    doc = json.loads(profile_file.read_text())
    profile = parse_profile(profile_file.read_text(), str(profile_file))
    cal = doc["calibration"]
    assert (cal["samples"], cal["statistic"], cal["cpu"]) == (SAMPLES, "median", _cpu_model())
    assert cal["tsc_khz"] * 1000 == profile.freq_hz
    for key in ("IO_INSTRUCTION/user/in", "IO_INSTRUCTION/user/out", "EPT_VIOLATION/user/in",
                "EPT_VIOLATION/user/out", "HLT", "CPUID"):
        source = profile.sources[key]
        assert source.startswith("measured by vmexit calibrate") and f"median of {SAMPLES} samples" in source
        assert _cpu_model() in source and cal["kernel"] in source
    for key, source in profile.sources.items():
        assert source.startswith(("measured by vmexit calibrate", "derived:")) or key == "TRIPLE_FAULT"
    # every number is its kind's median minus its baseline's, by construction
    kinds = cal["kinds"]
    net = kinds["port_out"]["median_ticks"] - kinds["none"]["median_ticks"]
    assert profile.costs["IO_INSTRUCTION/user/out"] == max(net, 0)
    assert kinds["port_out"]["samples"] == SAMPLES and kinds["port_out"]["user_exits"] == SAMPLES
    # the user-space round trips are the kernel part a kvm-hw run adds plus vmexit's own part
    user = kinds["port_out"]["user_median_ns"] * cal["tsc_khz"] // 1_000_000
    assert profile.host_cost("kvm_hw_kernel/IO_INSTRUCTION/out") == max(net - user, 0)


@needs_kvm
def test_the_profile_is_listed_and_taken_by_name(profile_file, monkeypatch, capsys):
    monkeypatch.setenv("VMEXIT_PROFILE_DIR", str(profile_file.parent))
    assert main(["profiles"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"thishost: this host, as vmexit calibrate measured it: {_cpu_model()}" in out
    assert load_profile("thishost").costs == load_profile(str(profile_file)).costs


@needs_kvm
def test_a_calibrated_profile_reprices_a_saved_model_trace(profile_file, tmp_path):
    trace_path = tmp_path / "ide.npz"
    vmexit.run("ide", constants={"SECTORS": 2}).save(trace_path)
    trace = vmexit.load(trace_path)
    profile = load_profile(str(profile_file))
    rows = trace.report(by="reason", top=0, profile=str(profile_file))
    e = trace.exits
    # by construction: each exit at its kind's calibrated price (the model's places: in-kernel PIC/PIT,
    # user-space IDE and UART)
    expected = sum(profile.cost(int(r), int(p), int(d)) for r, p, d in zip(e["reason"], e["place"], e["direction"]))
    assert round(rows.totals["time_s"] * profile.freq_hz) == expected
    assert rows.totals["profile"] == "thishost" and rows.totals["exits"] == len(e)
    assert expected != sum(int(c) for c in e["cost"])   # not the trace's own modeled costs


@needs_kvm
def test_a_kvm_hw_run_adds_the_calibrated_kernel_part(profile_file, tmp_path):
    from .engine.test_kvm import _guest
    real = vmexit.run(_guest(tmp_path), hypervisor="kvm-hw", profile=str(profile_file))
    profile = load_profile(str(profile_file))
    io_out = real.exits[(real.exits["reason"] == ExitReason.IO_INSTRUCTION) & (real.exits["direction"] == 2)]
    assert np.all(io_out["cost"] >= profile.host_cost("kvm_hw_kernel/IO_INSTRUCTION/out"))
    assert real.meta["profile"] == profile.name
