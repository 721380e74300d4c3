"""A grid of runs (`vmexit sweep`, `vmexit reproduce`): each run a Job, done serially, on a local process
pool (--jobs N) or as a task of a Dask distributed cluster (--cluster ADDRESS), each returned as an
Outcome holding the bytes of its trace.

Why bytes: a trace file is deterministic, byte for byte (trace.py), so a run done in another process or
on another machine is the very run done here. Every trace is loaded from its bytes whichever way it ran
(serially too), and outcomes are placed by their index in the grid, never in the order they finished:
tables, JSON and files are the same, byte for byte, with --jobs 1, --jobs N or a cluster.

Why a fresh process per worker ("forkserver", or "spawn" where there is none): a Unicorn engine must
not be forked mid-use; a worker started clean has none. Workers ignore SIGINT: Ctrl-C, SIGTERM or SIGHUP
(stopsignals.py) reach the parent, which stops the workers and raises Interrupted with the outcomes
finished so far. Why Dask distributed and not Ray: it installs in seconds from pure-Python wheels
(pip install 'vmexit[cluster]'), needs no daemon beyond its scheduler, and its futures map one run to
one task returning bytes; a cluster is any `dask scheduler` with `dask worker`s that have vmexit.

A run that fails does not stop the grid: bad input for one combination (status "error": a source that
does not assemble with its constants, a missing disk image) or a bug or a dead worker ("failed") is an
Outcome with its status and message; the other runs go on.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable

from . import __version__
from .costs import Profile
from .errors import VmexitError

#: Seconds to wait for a Dask scheduler to answer before --cluster gives up.
CONNECT_TIMEOUT_S = 20
#: How often (host seconds) a run on a cluster asks whether the client was interrupted (_stop_check).
STOP_POLL_S = 1.0
#: Statuses of runs that did not end as planned (the progress bar's "failed").
FAILED = ("error", "failed", "crashed", "unsupported")


class ClusterError(VmexitError):
    """--cluster cannot be used: Dask distributed is not installed, or the scheduler does not answer."""


@dataclass
class Job:
    """One run of the grid: a guest (bundled name, source, ELF) or a scenario of several domains."""
    label: str                  # how progress lines and errors name it
    guest: str
    constants: dict
    profile: Profile
    options: object             # session.RunOptions
    scenario: bool = False
    image: dict = field(default_factory=dict)   # guests.resolve's other arguments (a bzImage's cmdline, initrd, symbols)


@dataclass
class Outcome:
    index: int                  # the run's place in the grid
    status: str                 # the trace's status, or "error" (bad input) / "failed" (a bug, a dead worker)
    data: bytes | None = None   # the trace file's bytes
    error: str | None = None
    seconds: float = field(default=0.0, compare=False)   # host wall time: for progress estimates only


class Interrupted(Exception):
    """The grid was stopped (Ctrl-C, SIGTERM, SIGHUP): the outcomes finished so far, by index."""

    def __init__(self, done: dict[int, Outcome]):
        super().__init__(f"interrupted after {len(done)} runs")
        self.done = done


def run_job(index: int, job: Job, progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Do one run; what goes wrong is the Outcome's status and message (KeyboardInterrupt passes).
    progress, if given, is called between slices of the run (session.run's) and may end it by raising
    KeyboardInterrupt."""
    t0 = time.perf_counter()
    try:
        trace = _trace(job, progress)
    except VmexitError as e:   # the run's input (errors.py): its row says what is wrong
        return Outcome(index, "error", error=str(e), seconds=time.perf_counter() - t0)
    except Exception as e:  # a bug: the run's row says so, the other runs go on
        return Outcome(index, "failed", error=f"internal error: {type(e).__name__}: {e}",
                       seconds=time.perf_counter() - t0)
    data = trace.to_bytes()
    return Outcome(index, trace.meta["status"], data, seconds=time.perf_counter() - t0)


def _trace(job: Job, progress=None):
    from . import guests, scenarios, session
    from .trace import merge_domains
    if job.scenario:
        run = scenarios.run_scenario(job.guest, dict(job.constants), job.profile, job.options, progress)
        return merge_domains(run.traces, {"name": job.guest, **run.host})
    return session.run(guests.resolve(job.guest, dict(job.constants), **job.image), job.profile, job.options,
                       progress)


def _versioned(index: int, job: Job, stop: str | None = None) -> tuple[str, Outcome]:
    """A cluster task: the worker's vmexit version with the outcome (another version runs other code).
    stop: the Dask Event the client sets when it is interrupted: the run then ends as on Ctrl-C."""
    return __version__, run_job(index, job, _stop_check(stop))


def _stop_check(name: str | None):
    """A progress callback ending the run (KeyboardInterrupt, as Ctrl-C) once the client set the Dask
    Event `name`: a cancelled task cannot be killed in its worker's thread, and a guest that never ends
    would hold the worker forever. It asks the scheduler at most every STOP_POLL_S of host time; only
    a run whose result is dropped ends this way, so no result depends on the host's clock."""
    if name is None:
        return None
    from distributed import Event
    event, last = Event(name), [time.monotonic()]

    def check(_icount: int, _cycles: int) -> None:
        now = time.monotonic()
        if now - last[0] >= STOP_POLL_S:
            last[0] = now
            if event.is_set():
                raise KeyboardInterrupt
    return check


def run(jobs: list[Job], on_done: Callable[[Outcome], None], workers: int = 1,
        cluster: str | None = None) -> list[Outcome]:
    """Every job's Outcome in the grid's order; on_done sees each as it finishes. Raises Interrupted
    (with the finished outcomes) on Ctrl-C, SIGTERM or SIGHUP, after stopping the workers."""
    done: dict[int, Outcome] = {}

    def finished(outcome: Outcome) -> None:
        done[outcome.index] = outcome
        on_done(outcome)

    try:
        if cluster is not None:
            _on_cluster(jobs, cluster, finished)
        elif workers > 1 and len(jobs) > 1:
            _on_pool(jobs, min(workers, len(jobs)), finished)
        else:
            _serially(jobs, finished)
    except KeyboardInterrupt:
        raise Interrupted(done) from None
    return [done[i] for i in range(len(jobs))]


def _serially(jobs: list[Job], finished) -> None:
    for i, job in enumerate(jobs):
        outcome = run_job(i, job)
        finished(outcome)
        if outcome.status == "interrupted":   # Ctrl-C ended the run under way (its trace is kept): stop
            raise KeyboardInterrupt


# a local process pool ----------------------------------------------------------------------------
def _context():
    """A start method that forks no Unicorn state: a fork server (vmexit's modules preloaded), or spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["vmexit.grid", "vmexit.session", "vmexit.guests", "vmexit.scenarios"])
        return ctx
    return multiprocessing.get_context("spawn")


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which stops them; SIGTERM (the parent's stop) ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


def _on_pool(jobs: list[Job], workers: int, finished) -> None:
    """The jobs on `workers` processes; runs whose worker died are retried alone (_alone), so that a
    run that kills its process fails by itself and takes no other run with it."""
    pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_worker_init)
    orphans = []
    try:
        futures = {pool.submit(run_job, i, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            outcome = _from_pool(futures[future], future)
            if outcome is None:
                orphans.append(futures[future])
            else:
                finished(outcome)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    for i in sorted(orphans):
        finished(_alone(i, jobs[i]))


def _from_pool(index: int, future) -> Outcome | None:
    """The run's outcome; None when its worker died (the pool is broken: the run is retried alone)."""
    try:
        return future.result()
    except BrokenProcessPool:
        return None
    except Exception as e:   # e.g. a job that cannot be sent to a worker
        return Outcome(index, "failed", error=f"the pool could not run it: {type(e).__name__}: {e}")


def _alone(index: int, job: Job) -> Outcome:
    pool = ProcessPoolExecutor(1, mp_context=_context(), initializer=_worker_init)
    try:
        return pool.submit(run_job, index, job).result()
    except BrokenProcessPool:
        return Outcome(index, "failed", error="its worker process died (killed, or a crash in the emulator)")
    except BaseException:
        _stop(pool)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (runs under way are lost; finished ones are kept by the caller)."""
    terminate = getattr(pool, "terminate_workers", None)   # Python 3.14
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


# a Dask distributed cluster ----------------------------------------------------------------------
def _connect(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--cluster needs Dask distributed: pip install 'vmexit[cluster]'") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(f"--cluster {address}: cannot reach the Dask scheduler ({type(e).__name__}: {e})") from None


def _on_cluster(jobs: list[Job], address: str, finished) -> None:
    """Each job a task of the cluster (pure=False: always run, never taken from a cache)."""
    client = _connect(address)
    from distributed import Event, as_completed as dask_completed
    batch = f"vmexit-{uuid.uuid4().hex[:12]}"
    futures = {}
    try:
        for i, job in enumerate(jobs):
            futures[client.submit(_versioned, i, job, f"{batch}-stop", pure=False, key=f"{batch}-{i:06d}")] = i
        for future in dask_completed(list(futures), loop=client.loop):
            finished(_from_task(futures[future], future))
    except BaseException:
        Event(f"{batch}-stop", client=client).set()   # the runs under way end (_stop_check)
        client.cancel(list(futures))
        raise
    finally:
        client.close()


def _from_task(index: int, future) -> Outcome:
    try:
        version, outcome = future.result()
    except Exception as e:   # the task's worker died (KilledWorker) or the task was lost
        return Outcome(index, "failed", error=f"the cluster could not run it: {type(e).__name__}: {e}")
    if version != __version__:
        return Outcome(index, "failed", error=f"the worker runs vmexit {version}, this is vmexit {__version__}")
    return outcome


def default_jobs() -> int:
    """The machine's cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
