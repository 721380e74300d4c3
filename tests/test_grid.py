"""Grids of runs (vmexit/grid.py): serial, pooled and clustered sweeps write the same bytes; a failing
run is a row and the others complete; SIGTERM / SIGHUP / Ctrl-C keep the traces finished so far."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmexit import grid
from vmexit.cli import EXIT_CRASH, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, main
from vmexit.progress import GridProgress
from vmexit.trace import load

ROOT = Path(__file__).resolve().parent.parent

#: A guest whose -D constants pick its ending: FOREVER=1 loops without an exit or a timer (only a
#: signal ends it), BROKEN=1 does not assemble, BROKEN=2 jumps into unmapped memory (crashed).
GUEST = """
multiboot_header:
    .long 0x1BADB002, 0, -0x1BADB002
_start:
    mov esp, 0x90000
.ifndef FOREVER
.set FOREVER, 0
.endif
.ifndef BROKEN
.set BROKEN, 0
.endif
    mov dx, 0x3f8
    mov al, 0x52
    out dx, al
    mov al, 0x0a
    out dx, al
.if BROKEN == 1
    not_an_instruction eax
.endif
.if BROKEN == 2
    mov eax, 0xdead0000
    jmp eax
.endif
.if FOREVER
spin:
    add ecx, 1
    jmp spin
.endif
    mov dx, 0xf4
    mov al, 0
    out dx, al
    hlt
"""


@pytest.fixture
def guest(tmp_path):
    path = tmp_path / "g.S"
    path.write_text(GUEST)
    return path


SWEEP = ["sweep", "ide", "-D", "SECTORS=2,4", "--opt", "coalesce=off,64", "--per", "SECTORS", "--no-progress"]


def _sweep_files(out: Path, how: list[str]) -> dict[str, bytes]:
    """Every output of one sweep (text, JSON and CSV tables, a figure, the traces) by file name."""
    out.mkdir()
    for fmt in ("text", "json", "csv"):
        extra = ["--plot", str(out / "sweep.svg")] if fmt == "text" else []
        extra += ["--traces", str(out / "traces")] if fmt == "json" else []
        assert main([*SWEEP, *how, "--format", fmt, "--report-file", str(out / f"table.{fmt}"), *extra]) == EXIT_OK
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    return _sweep_files(tmp_path_factory.mktemp("serial") / "out", ["--jobs", "1"])


def test_a_pooled_sweep_writes_the_serial_bytes(serial_sweep, tmp_path):
    assert len([name for name in serial_sweep if name.startswith("traces")]) == 4
    assert _sweep_files(tmp_path / "out", ["--jobs", "2"]) == serial_sweep


def test_a_sweep_on_a_dask_cluster_writes_the_serial_bytes(serial_sweep, tmp_path):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'vmexit[cluster]')")
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        files = _sweep_files(tmp_path / "out", ["--cluster", cluster.scheduler_address])
    assert files == serial_sweep


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failing_run_is_a_row_and_the_others_complete(capsys, guest, jobs):
    code = main(["sweep", str(guest), "-D", "BROKEN=0,1,2,0", "--jobs", jobs, "--no-progress", "--format", "json"])
    out = capsys.readouterr().out
    rows = json.loads(out)["rows"]
    assert [(r["status"], r["code"]) for r in rows] == [("exited", 0), ("error", EXIT_USAGE), ("crashed", EXIT_CRASH),
                                                      ("exited", 0)]
    assert "does not assemble" in rows[1]["error"] and rows[1]["exits"] is None and rows[3]["exits"] == 3
    assert code == EXIT_CRASH   # the worst
    main(["sweep", str(guest), "-D", "BROKEN=0,1", "--jobs", jobs, "--no-progress"])
    text = capsys.readouterr().out
    assert "Runs that failed:\n-D BROKEN=1: g.S: does not assemble" in text


def test_a_run_that_raises_fails_alone(capsys, guest, monkeypatch):
    real = grid._trace

    def flaky(job, progress=None):
        if job.constants.get("BROKEN") == 3:
            raise RuntimeError("boom")
        return real(job, progress)
    monkeypatch.setattr(grid, "_trace", flaky)
    code = main(["sweep", str(guest), "-D", "BROKEN=3,0", "--jobs", "1", "--no-progress", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["status"], r["code"]) for r in rows] == [("failed", EXIT_INTERNAL), ("exited", 0)]
    assert rows[0]["error"] == "internal error: RuntimeError: boom" and code == EXIT_INTERNAL


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vmexit", *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"vmexit did not stop on signal {sig}")
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_ends_a_run_like_ctrl_c_and_the_trace_is_saved(guest, tmp_path, sig, code):
    trace = tmp_path / "t.npz"
    proc = _start(["run", str(guest), "-D", "FOREVER=1", "--console", "--no-progress", "-o", str(trace)])
    seen = b""
    while not seen.endswith(b"R"):         # the guest runs: it printed its first character, then loops
        byte = proc.stderr.read(1)
        assert byte, seen
        seen += byte
    rc, out, err = _stop(proc, sig)
    name = signal.Signals(sig).name
    assert rc == code and f"trace saved to {trace}" in err and "Traceback" not in err
    t = load(trace)
    assert t.meta["status"] == "interrupted" and t.meta["instructions"] > 0
    assert t.meta["detail"] == ("interrupted by the user (Ctrl-C)" if sig == signal.SIGINT else f"terminated by {name}")


def _wait_for(paths: list[Path], proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds   # a bound on the test only: vmexit's runs end on counts
    while not all(p.exists() for p in paths):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the finished runs' traces never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_pooled_sweep_keeps_the_finished_runs(guest, tmp_path, sig, code):
    traces = tmp_path / "traces"
    # two runs that end at once, then two that loop until stopped, on two workers
    proc = _start(["sweep", str(guest), "-D", "FOREVER=0,1", "-D", "BROKEN=0,3", "--jobs", "2", "--traces",
                   str(traces), "--format", "json", "--no-progress"])
    finished = [traces / "FOREVER=0,BROKEN=0.npz", traces / "FOREVER=0,BROKEN=3.npz"]
    _wait_for(finished, proc)
    time.sleep(0.5)
    rc, out, err = _stop(proc, sig)
    assert rc == code and "Traceback" not in err, err
    rows = json.loads(out)["rows"]
    assert [r["status"] for r in rows] == ["exited", "exited", "not run", "not run"]
    assert [r["code"] for r in rows] == [0, 0, code, code]
    assert [load(p).meta["status"] for p in finished] == ["exited", "exited"]
    assert sorted(traces.iterdir()) == finished
    assert f"{signal.Signals(sig).name if sig != signal.SIGINT else 'interrupted'}" in err
    assert "2 of 4 runs finished" in err


@pytest.mark.parametrize("argv,message", [
    (["--jobs", "0"], "--jobs 0: give 1 or more"),
    (["--jobs", "2", "--cluster", "tcp://127.0.0.1:1"], "not both"),
])
def test_grid_options_bad_input(capsys, argv, message):
    code = main([*SWEEP, *argv])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_cluster_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(grid, "CONNECT_TIMEOUT_S", 1)
    code = main([*SWEEP, "--cluster", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and len(err.strip().splitlines()) == 1
    assert "vmexit[cluster]" in err or "cannot reach the Dask scheduler" in err


def test_progress_lines_off_a_terminal(capsys, guest):
    assert main(["sweep", str(guest), "-D", "BROKEN=0,1", "--jobs", "1"]) == EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("vmexit: run 1/2 -D BROKEN=0: exited; 0 failed, 1 left")
    assert lines[1].startswith("vmexit: run 2/2 -D BROKEN=1: error (") and lines[1].endswith("1 failed, 0 left")


def test_progress_bar_counts_done_failed_and_left():
    stream = io.StringIO()
    bar = GridProgress(["a", "b", "c"], "bar", stream)
    bar(grid.Outcome(1, "crashed"))
    bar(grid.Outcome(0, "exited"))
    assert (bar.done, bar.failed) == (2, 1) and bar.estimate() is not None
    bar.close()
    quiet = GridProgress(["a"], "off", stream)
    quiet(grid.Outcome(0, "exited"))
    quiet.close()


def test_the_pool_starts_no_forked_engine():
    assert grid._context().get_start_method() in ("forkserver", "spawn")


def test_default_jobs_are_the_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert grid.default_jobs() == cores


def test_reproduce_with_a_failed_run_keeps_the_others_and_writes_no_tables(capsys, tmp_path, monkeypatch):
    from vmexit import reproduce
    monkeypatch.setattr(reproduce, "RUNS", {"ide": reproduce.RUNS["ide"], "broken": reproduce.RunSpec("nope")})
    code = main(["reproduce", "--out", str(tmp_path), "--no-progress", "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "run broken: error: unknown guest 'nope'" in err
    assert "1 of 2 runs finished" in err and not (tmp_path / "reproduce.md").exists()
    assert load(tmp_path / "traces" / "ide.npz").meta["status"] == "exited"


def _die(_data: bytes) -> None:
    """A console that kills its process: the worker running the run dies (as on a crash in Unicorn)."""
    os._exit(9)


def test_a_run_that_kills_its_worker_fails_alone(guest):
    from vmexit import session
    from vmexit.costs import load_profile
    profile = load_profile(None)
    jobs = [grid.Job(name, str(guest), {}, profile, session.RunOptions(echo=echo))
            for name, echo in (("a", None), ("dies", _die), ("b", None), ("c", None))]
    outcomes = grid.run(jobs, lambda _: None, workers=2)
    assert [o.status for o in outcomes] == ["exited", "failed", "exited", "exited"]
    assert "worker process died" in outcomes[1].error
    assert outcomes[0].data == outcomes[2].data == grid.run_job(0, jobs[0]).data
