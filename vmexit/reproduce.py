"""`vmexit reproduce`: the papers' experiments as one matrix of runs, written out as tables beside the
papers' numbers, the JSON behind them, the traces, and figures.

The papers are Zhang et al., "Modifying Guest OS to Optimize I/O Virtualization in KVM" (Chinese Journal
of Computers, 2010) and the Chang Gung University report on Xen page faults; their numbers, and where in
each paper they stand, come from papers.py. The matrix is the table RUNS below (workload x optimization
on/off, and the Xen experiment of papers.py); the experiments are the table EXPERIMENTS, each a function
from the finished runs to one Report. Everything is virtual time, so two runs of `vmexit reproduce`
write the same tables and JSON byte for byte.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import analysis, grid, papers, scenarios, session
from .analysis import Column, Report, exit_seconds
from .costs import DEFAULT_PROFILE, Profile, load_profile
from .exits import Direction, ExitReason
from .hypervisors import HYPERVISORS
from .render import RENDERERS
from .trace import Trace, from_bytes, write_atomic

if TYPE_CHECKING:
    from .render.plot import Figure

PAPER = papers.kvm_paper()
TICK_SECONDS = 0.1   # virtual time each tick-rate run covers
TICK_CONSTANTS = {"TICKS": 1_000_000}  # the timer guest would end after 20 ticks; run on the clock
HOST_TIMER_HZ = 1000  # Table 1 again with guest timers on a low-resolution host's tick (README, Table 1)


@dataclass(frozen=True)
class RunSpec:
    guest: str
    constants: dict = field(default_factory=dict)
    opts: dict = field(default_factory=dict)
    max_seconds: float | None = None
    hypervisor: str = "kvm"
    host_timer_hz: int = 0
    net: dict = field(default_factory=dict)   # RunOptions' peer settings (net_*), when not the defaults


#: Every run of the matrix, by name.
RUNS: dict[str, RunSpec] = {
    "specjbb": RunSpec("specjbb"),
    "specjbb-host-tick": RunSpec("specjbb", host_timer_hz=HOST_TIMER_HZ),
    "netperf": RunSpec("netperf"),
    "netperf-no-napi": RunSpec("netperf", {"NAPI": 0}),
    "bonnie": RunSpec("bonnie"),
    "bonnie-coalesce-static": RunSpec("bonnie", {"COALESCE": 1}),
    "bonnie-coalesce-dynamic": RunSpec("bonnie", opts={"coalesce": 64}),
    "bonnie-no-pmtmr-verify": RunSpec("bonnie", {"PMTMR_VERIFY": 0}),
    "bonnie-fifo": RunSpec("bonnie", {"ELEVATOR": 0}),
    "ide": RunSpec("ide"),
    "ide-coalesce-static": RunSpec("ide", {"COALESCE": 1}),
    "ide-coalesce-dynamic": RunSpec("ide", opts={"coalesce": 64}),
    "timer-hz1000": RunSpec("timer", TICK_CONSTANTS, max_seconds=TICK_SECONDS),
    "timer-tick-hz250": RunSpec("timer", TICK_CONSTANTS, {"tick-hz": 250}, TICK_SECONDS),
    "timer-tick-hz100": RunSpec("timer", TICK_CONSTANTS, {"tick-hz": 100}, TICK_SECONDS),
    "timer-guest-hz100": RunSpec("timer", dict(TICK_CONSTANTS, HZ=100), max_seconds=TICK_SECONDS),
}
# The Xen report's fork and exec (papers.xen_runs: natively, under Xen PV and with Enhanced Xen, each
# with XEN_OPERATIONS operations and twice as many), and the batch-size sweep under Xen
XEN_GUESTS = ("fork", "exec")
XEN_OPERATIONS = 4
BATCHES = (0, 1, 2, 4, 8, 16, 32, 64)
for _guest in XEN_GUESTS:
    for _run in papers.xen_runs(papers.xen_paper_for(_guest), XEN_OPERATIONS):
        RUNS[f"{_guest}-{_run.name}"] = RunSpec(_guest, dict(_run.constants), dict(_run.system.optimizations),
                                                hypervisor=_run.system.hypervisor)
for _b in BATCHES:
    RUNS[f"fork-xen-batch{_b}"] = RunSpec("fork", {"BATCH": _b}, hypervisor="xen-pv")

# The Xen network report's throughput figure: the xennet scenario (dom0 + domU on one host) at each
# message size it measured, Native (SHARED_BUFFERS=0) and Enhanced Xen (1)
XEN_NET = papers.xen_net_paper()
for _size in XEN_NET["message_sizes"]:
    for _system in XEN_NET["systems"]:
        RUNS[f"xennet-{_size}-{XEN_NET['modes'][_system]}"] = RunSpec(
            "xennet", {XEN_NET["constant"]: _size, XEN_NET["switch"]: XEN_NET["modes"][_system]},
            hypervisor=scenarios.SCENARIOS["xennet"].hypervisor)


def _xen_net_run(size: int, system: str) -> str:
    return f"xennet-{size}-{XEN_NET['modes'][system]}"


# Seed 004's Table 1: the xenidc scenario (two domUs over a shared-memory channel) at each buffer size,
# without and with a woken domain preempting (BOOST=0 / 1), and through the split-driver path (SHM=0);
# a 2 MiB stream (16 fills of the ring) each
XEN_IDC = papers.xen_idc_paper()
XEN_IDC_STREAM = 2 << 20
for _size in XEN_IDC["buffer_sizes"]:
    for _mode, _boost in papers.XEN_IDC_MODES.items():
        RUNS[f"xenidc-{_size}-boost{_boost}"] = RunSpec(
            "xenidc", {XEN_IDC["constant"]: _size, "BOOST": _boost, "STREAM_BYTES": XEN_IDC_STREAM},
            hypervisor=scenarios.SCENARIOS["xenidc"].hypervisor)
    RUNS[f"xenidc-{_size}-split"] = RunSpec(
        "xenidc", {XEN_IDC["constant"]: _size, "SHM": 0, "STREAM_BYTES": XEN_IDC_STREAM},
        hypervisor=scenarios.SCENARIOS["xenidc"].hypervisor)


def _xen_idc_traces(traces: dict[str, Trace]) -> dict:
    out = {(size, mode): traces[f"xenidc-{size}-boost{boost}"]
           for size in XEN_IDC["buffer_sizes"] for mode, boost in papers.XEN_IDC_MODES.items()}
    out.update({(size, papers.XEN_IDC_SPLIT): traces[f"xenidc-{size}-split"]
                for size in XEN_IDC["buffer_sizes"] if f"xenidc-{size}-split" in traces})
    return out


# Seed 002's DBNet beside the split path and native Linux (scenarios/dbnet.py), each direction: the
# xennet host with DBNET=0 and 1, and the netperf guest driving the NIC itself under `native`
DBNET = papers.dbnet_paper()
DBNET_SYSTEMS = {"Xen split path": "split", "DBNet": "dbnet", "native Linux": "native"}
DBNET_GUESTS = 4          # the several-guests run: the most the scenario runs
for _direction, _receive in scenarios.dbnet.DIRECTIONS.items():
    for _system, _mode in (("split", 0), ("dbnet", 1)):
        RUNS[f"dbnet-{_direction}-{_system}"] = RunSpec("xennet", {"RECEIVE": _receive, "DBNET": _mode},
                                                        hypervisor=scenarios.SCENARIOS["xennet"].hypervisor)
    for _system, _mode in (("split", 0), ("dbnet", 1)):
        RUNS[f"dbnet-{_direction}-{_system}{DBNET_GUESTS}"] = RunSpec(
            "xennet", {"RECEIVE": _receive, "DBNET": _mode, "GUESTS": DBNET_GUESTS,
                       **({} if _mode else {"VIFS": DBNET_GUESTS})},
            hypervisor=scenarios.SCENARIOS["xennet"].hypervisor)
    RUNS[f"dbnet-{_direction}-native"] = RunSpec(
        "netperf", {"MESSAGES": 256, "MSG_SIZE": 4096, "RECEIVE": _receive}, hypervisor="native",
        net=scenarios.dbnet.native_net(_receive))


TICK_RUNS = ("timer-hz1000", "timer-tick-hz250", "timer-tick-hz100", "timer-guest-hz100")


def profile_for(hypervisor: str, chosen: Profile) -> Profile:
    """The profile a run of the matrix is priced by: the one chosen with --profile (by default the default
    profile) for a hypervisor that defaults to the default profile, the hypervisor's own otherwise."""
    own = HYPERVISORS[hypervisor].profile
    return chosen if own == DEFAULT_PROFILE else load_profile(own)


def jobs(profile: Profile) -> list[grid.Job]:
    """Every run of RUNS as a job of a grid (grid.py), in RUNS' order, each labelled by its name."""
    out = []
    for name, spec in RUNS.items():
        options = session.RunOptions(max_seconds=spec.max_seconds, optimizations=dict(spec.opts),
                                     hypervisor=spec.hypervisor, host_timer_hz=spec.host_timer_hz, **spec.net)
        out.append(grid.Job(name, spec.guest, dict(spec.constants), profile_for(spec.hypervisor, profile), options,
                            scenario=spec.guest in scenarios.SCENARIOS))
    return out


def run_all(profile: Profile, progress: Callable[[str, int, int], None] | None = None, workers: int = 1,
            cluster: str | None = None) -> dict[str, Trace]:
    """Every run of RUNS, by name (each loaded from its trace's bytes, however it ran: grid.py); a run
    that could not be done raises RuntimeError, Ctrl-C grid.Interrupted."""
    names, done = list(RUNS), [0]

    def on_done(outcome: grid.Outcome) -> None:
        done[0] += 1
        if progress is not None:
            progress(names[outcome.index], done[0], len(names))

    outcomes = grid.run(jobs(profile), on_done, workers, cluster)
    failed = [f"{names[o.index]}: {o.status}: {o.error}" for o in outcomes if o.data is None]
    if failed:
        raise RuntimeError("runs failed: " + "; ".join(failed))
    return {name: from_bytes(o.data) for name, o in zip(names, outcomes)}


# experiments ---------------------------------------------------------------------------------------
def _pct(after: float, before: float) -> float | None:
    return (after / before - 1.0) * 100.0 if before else None


def _summary(by: str, title: str, columns: list[Column], rows: list[dict], note: str) -> Report:
    return Report(by=by, title=title, columns=columns, rows=rows, totals={"summary": note})


def _paper_says(experiment: str, text: str | None = None) -> str:
    """What the KVM paper reports for an experiment, and where."""
    e = PAPER["experiments"][experiment]
    return f"The paper ({papers.PAPERS[PAPER['paper']].short}), {e['where']}: {e['note'] if text is None else text}."


def _paper_table(name: str, guest_run: str, note: str = "") -> Callable[[dict], Report]:
    def make(traces: dict[str, Trace]) -> Report:
        rep = papers.beside_paper(traces[guest_run], papers.paper_table_for(RUNS[guest_run].guest))
        rep.title += note
        return rep
    make.__name__ = name
    return make


def _function_exits(t: Trace, function: str) -> int:
    starts = sorted(t.symbols.items(), key=lambda kv: kv[1])
    addrs = np.array([a for _, a in starts], dtype=np.int64)
    idx = np.searchsorted(addrs, t.exits["rip"].astype(np.int64), "right") - 1
    target = [i for i, (n, _) in enumerate(starts) if n == function]
    return int(np.isin(idx, target).sum()) if target else 0


def table4(traces: dict[str, Trace]) -> Report:
    paper = PAPER["experiments"]["table4"]
    rows = [{"site": f"paper {r['address']}", "variant": "static (xKVM)", "before": r["before"],
             "after": r["after"], "ratio": r["after"] / r["before"]} for r in paper["rows"]]
    # (before, after, the site's function, coalescing, functions the after run's exits moved to)
    for base, variant, function, label, moved in (
            ("ide", "ide-coalesce-static", "__ide_do_rw_disk", "static (-D COALESCE=1)", ()),
            ("ide", "ide-coalesce-dynamic", "__ide_do_rw_disk", "dynamic (--opt coalesce)", ()),
            ("bonnie", "bonnie-coalesce-static", "iowrite8", "static (-D COALESCE=1)", ("xkvm_io_flush",)),
            ("bonnie", "bonnie-coalesce-dynamic", "iowrite8", "dynamic (--opt coalesce)", ())):
        b = _function_exits(traces[base], function)
        a = sum(_function_exits(traces[variant], f) for f in (function, *moved))
        rows.append({"site": f"ours {RUNS[base].guest}: {function}", "variant": label, "before": b, "after": a,
                     "ratio": a / b if b else None,
                     "time_change_pct": _pct(exit_seconds(traces[variant]), exit_seconds(traces[base]))})
    cols = [Column("site", "site", "str"), Column("variant", "coalescing", "str"), Column("before", "before", "int"),
            Column("after", "after", "int"), Column("ratio", "ratio", "ratio"),
            Column("time_change_pct", "exit time change", "pct")]
    note = (_paper_says("table4") + " Ours: exits at the site's function (for bonnie's static variant, "
            "iowrite8 plus the hypercall's xkvm_io_flush); exit time change is the whole run's modeled exit time.")
    return _summary("table4", paper["title"] + ", beside ours", cols, rows, note)


def pit(traces: dict[str, Trace]) -> Report:
    paper = PAPER["experiments"]["pit"]
    rows = []
    for name in TICK_RUNS:
        t = traces[name]
        p = t.meta["pit"]
        timer = ((t.meta.get("optimizations") or {}).get("tick-hz") or {}).get("timers", {}).get("pit")
        rows.append({"run": analysis.variant(t.meta), "count": p["count"], "count_run": p["count_run"],
                     "interrupts": p["interrupts"], "exits": int(len(t.exits)), "exit_time_s": exit_seconds(t),
                     "drift_s": timer["drift_s"] if timer else 0.0})
    cols = [Column("run", "run", "str"), Column("count", "PIT count loaded", "int"),
            Column("count_run", "PIT count run", "int"), Column("interrupts", "timer interrupts", "int"),
            Column("exits", "exits", "int"), Column("exit_time_s", "exit time s", "seconds"),
            Column("drift_s", "guest clock drift s", "seconds")]
    note = (_paper_says("pit", f"count {paper['counts']['1000']} for HZ=1000 becomes {paper['counts']['100']} "
                               f"for 100 Hz; {paper['note']}") + f" Ours: {TICK_SECONDS} s of virtual time each.")
    return _summary("pit", "Tick-rate reduction: PIT values, timer interrupts, exits and drift", cols, rows, note)


def napi(traces: dict[str, Trace]) -> Report:
    rows = []
    base_tp = None
    for name in ("netperf", "netperf-no-napi"):
        t = traces[name]
        nic = t.meta["nic"]
        frames = nic["tx_frames"] + nic["rx_frames"]
        tp = nic["throughput_mbit_s"]
        base_tp = tp if base_tp is None else base_tp
        rows.append({"run": analysis.variant(t.meta), "frames": frames, "exits": int(len(t.exits)),
                     "exits_per_frame": len(t.exits) / frames if frames else None,
                     "us_per_frame": exit_seconds(t) / frames * 1e6 if frames else None,
                     "throughput": tp, "change_pct": _pct(tp, base_tp)})
    cols = [Column("run", "run", "str"), Column("frames", "frames", "int"), Column("exits", "exits", "int"),
            Column("exits_per_frame", "exits / frame", "ratio"), Column("us_per_frame", "exit time / frame", "us"),
            Column("throughput", "Mbit/s", "ratio"), Column("change_pct", "throughput change", "pct")]
    return _summary("napi", "NAPI removal (netperf)", cols, rows, _paper_says("napi"))


def _redundant(title: str, key: str, base: str, variant: str, paper_note: str) -> Callable[[dict], Report]:
    """A guest-side removal (-D): both runs, and what the removal saved."""
    def make(traces: dict[str, Trace]) -> Report:
        rows = []
        for name in (base, variant):
            t = traces[name]
            rows.append({"run": analysis.variant(t.meta), "exits": int(len(t.exits)),
                         "instructions": int(t.meta["instructions"]), "exit_time_s": exit_seconds(t),
                         "virtual_s": float(t.meta["virtual_seconds"])})
        b, a = rows
        rows.append({"run": "saved", "exits": b["exits"] - a["exits"],
                     "instructions": b["instructions"] - a["instructions"],
                     "exit_time_s": b["exit_time_s"] - a["exit_time_s"], "virtual_s": b["virtual_s"] - a["virtual_s"]})
        cols = [Column("run", "run", "str"), Column("exits", "exits", "int"),
                Column("instructions", "instructions", "int"), Column("exit_time_s", "exit time s", "seconds"),
                Column("virtual_s", "virtual s", "seconds")]
        return _summary(key, title, cols, rows, paper_note)
    make.__name__ = key
    return make


def _xen_paper(guest: str) -> Callable[[dict], Report]:
    def make(traces: dict[str, Trace]) -> Report:
        paper = papers.xen_paper_for(guest)
        runs = papers.xen_runs(paper, XEN_OPERATIONS)
        return papers.beside_xen_paper(paper, XEN_OPERATIONS, {r.name: traces[f"{guest}-{r.name}"] for r in runs})
    make.__name__ = f"xen_{guest}"
    return make


def xen_batching(traces: dict[str, Trace]) -> Report:
    """mmu_update batching under Xen: exits and modeled time per fork against the batch size."""
    points = [({"BATCH": b}, traces[f"fork-xen-batch{b}"]) for b in BATCHES]
    forks = RUNS["fork-xen-batch0"].constants.get("FORKS", 4)
    rep = analysis.sweep(points, "FORKS", [forks] * len(points))
    rep.by, rep.title = "xen_batching", "Xen PV: page-table update batching (fork, boot included)"
    for row, (_, t) in zip(rep.rows, points):
        e = t.exits
        mmu_update = (e["reason"] == ExitReason.VMCALL) & (e["qualifier"] == 1)  # __HYPERVISOR_mmu_update
        trapped = (e["reason"] == ExitReason.EXCEPTION_NMI) & (e["direction"] == Direction.OUT)
        row["mmu_update_per_op"] = int(mmu_update.sum()) / forks
        row["trapped_writes_per_op"] = int(trapped.sum()) / forks
    rep.columns += [Column("mmu_update_per_op", "mmu_update / fork", "ratio"),
                    Column("trapped_writes_per_op", "trapped writes / fork", "ratio")]
    rep.totals = {"summary": f"As {papers.PAPERS['xen-pf'].short} describes, Xen queues page-table updates and "
                             "flushes them in one hypercall; ours per fork of 32 pages: ceil(64/B) + ceil(32/B) "
                             "mmu_update, 104 trapped writes at B=0."}
    return rep


def _throughput(t: Trace) -> float:
    return float((t.meta.get("host") or {}).get("throughput_mbit_s", 0.0))


def xen_net(traces: dict[str, Trace]) -> Report:
    """The Xen network report's figure: Native vs Enhanced Xen receive throughput at each message size,
    the paper's beside ours (one table per size, gathered in one)."""
    rows = []
    for size in XEN_NET["message_sizes"]:
        ours = {system: _throughput(traces[_xen_net_run(size, system)]) for system in XEN_NET["systems"]}
        rep = papers.beside_xen_net_paper(XEN_NET, size, ours)
        rows += [dict(row, msg_size=size) for row in rep.rows]
    columns = [Column("msg_size", XEN_NET["constant"], "int")] + rep.columns
    rep.rows, rep.columns, rep.by = rows, columns, "xen_net"
    rep.title = XEN_NET["title"] + ", beside the xennet scenario"
    return rep


def dbnet(traces: dict[str, Trace]) -> Report:
    """Seed 002: the split path, DBNet and native Linux per direction, beside the thesis' orderings and
    TwinDrivers' magnitudes."""
    ours = {d: {system: scenarios.dbnet.measure(traces[f"dbnet-{d}-{run}"]) for system, run in DBNET_SYSTEMS.items()}
            for d in scenarios.dbnet.DIRECTIONS}
    for d, systems in ours.items():
        split_n = traces[f"dbnet-{d}-split{DBNET_GUESTS}"]
        systems[f"Xen split path, {DBNET_GUESTS} guests: the slowest"] = scenarios.dbnet.slowest(split_n)
        systems[f"DBNet, {DBNET_GUESTS} guests: the slowest"] = scenarios.dbnet.several(
            traces[f"dbnet-{d}-dbnet{DBNET_GUESTS}"], DBNET_GUESTS, systems["Xen split path"], split_n)
    rep = papers.beside_dbnet_paper(DBNET, ours)
    rep.by = "dbnet"
    return rep


#: Every experiment, in the order of the output.
EXPERIMENTS: dict[str, Callable[[dict[str, Trace]], Report]] = {
    "table1": _paper_table("table1", "specjbb"),
    "table1_host_tick": _paper_table("table1_host_tick", "specjbb-host-tick",
                                     f", guest timers on a {HOST_TIMER_HZ} Hz host tick (--host-timer-hz)"),
    "table2": _paper_table("table2", "netperf"),
    "table3": _paper_table("table3", "bonnie"),
    "table4": table4,
    "pit": pit,
    "napi": napi,
    "verify_pmtmr_rate": _redundant("Redundant function removal: verify_pmtmr_rate (bonnie)", "verify_pmtmr_rate",
                                    "bonnie", "bonnie-no-pmtmr-verify",
                                    _paper_says("verify_pmtmr_rate")),
    "xen_fork": _xen_paper("fork"),
    "xen_exec": _xen_paper("exec"),
    "xen_batching": xen_batching,
    "io_scheduler": _redundant("Guest I/O scheduler removal: FIFO instead of a sorting elevator (bonnie)",
                               "io_scheduler", "bonnie", "bonnie-fifo",
                               _paper_says("io_scheduler", "host CFQ with a FIFO guest: block write "
                                           "+{block_write_gain_pct} %, block read +{block_read_gain_pct} %"
                                           .format(**PAPER["experiments"]["io_scheduler"]))),
    "xen_net": xen_net,
    "xen_idc": lambda traces: papers.beside_xen_idc_paper(XEN_IDC, _xen_idc_traces(traces)),
    "dbnet": dbnet,
}


# figures ---------------------------------------------------------------------------------------------
def _by_function(t: Trace, top: int | None) -> dict[str, int]:
    rep = analysis.hot_sites(t, "function", top, False, analysis.Pricing.of(t))
    return {r["function"]: r["count"] for r in rep.rows}


def fig_coalescing(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    runs = {"before": "ide", "static": "ide-coalesce-static", "dynamic": "ide-coalesce-dynamic"}
    counts = {label: _by_function(traces[name], None) for label, name in runs.items()}
    functions = list(_by_function(traces["ide"], 6))
    return Figure("ide: exits by hot function before and after I/O coalescing", "function", "exits",
                  functions, {label: [c.get(f, 0) for f in functions] for label, c in counts.items()})


def fig_tickrate(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    labels = [analysis.variant(traces[n].meta).replace("-D TICKS=1000000", "").strip() or "HZ=1000"
              for n in TICK_RUNS]
    return Figure(f"timer: {TICK_SECONDS} s of virtual time per tick rate", "run", "count / microseconds",
                  labels, {"timer interrupts": [traces[n].meta["pit"]["interrupts"] for n in TICK_RUNS],
                           "exits": [int(len(traces[n].exits)) for n in TICK_RUNS],
                           "exit time (us)": [round(exit_seconds(traces[n]) * 1e6) for n in TICK_RUNS]})


def fig_napi(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    runs = ("netperf", "netperf-no-napi")
    per_frame = {}
    for name in runs:
        t = traces[name]
        frames = t.meta["nic"]["tx_frames"] + t.meta["nic"]["rx_frames"]
        per_frame[name] = {f: c / frames for f, c in _by_function(t, None).items()} if frames else {}
    functions = sorted(set(per_frame["netperf"]) | set(per_frame["netperf-no-napi"]),
                       key=lambda f: (-per_frame["netperf"].get(f, 0), f))[:8]  # ties by name: no set order
    return Figure("netperf: exits per frame by function, with and without NAPI", "function", "exits per frame",
                  functions, {("NAPI" if n == "netperf" else "no NAPI"): [per_frame[n].get(f, 0) for f in functions]
                              for n in runs})


def fig_batching(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    rep = xen_batching(traces)
    return Figure("fork under Xen PV: page-table update batch size", "BATCH", "exits per fork",
                  [str(b) for b in BATCHES], {"exits / fork": [r["exits_per_op"] for r in rep.rows]}, kind="line",
                  secondary={"virtual time / fork (us)": [r["us_per_op"] for r in rep.rows]},
                  secondary_label="microseconds")


def fig_xen_net(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    sizes = XEN_NET["message_sizes"]
    series = {}
    for system in XEN_NET["systems"]:
        series[f"paper: {system}"] = list(XEN_NET["mbit_s"][system])
        series[f"ours: {system}"] = [round(_throughput(traces[_xen_net_run(s, system)]), 1) for s in sizes]
    return Figure("Xen split-driver receive throughput, 8192 B socket buffer", XEN_NET["constant"], "Mbit/s",
                  [str(s) for s in sizes], series)


def fig_xen_idc(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    rows = papers.beside_xen_idc_paper(XEN_IDC, _xen_idc_traces(traces)).rows
    peak = XEN_IDC["mbit_s"][XEN_IDC["buffer_sizes"].index(16384)]
    series = {"paper": [round(v / peak, 3) for v in XEN_IDC["mbit_s"]]}
    for mode in [*papers.XEN_IDC_MODES, papers.XEN_IDC_SPLIT]:
        points = [round(r["ours_vs_16k"], 3) for r in rows if r["ours"] == f"-D {mode}"]
        if points:
            series[f"ours, {mode}"] = points
    return Figure("Shared-memory channel between two domUs (Zhu and Ai 2011)", XEN_IDC["constant"],
                  "bandwidth / its bandwidth at 16 KiB",
                  [str(s) for s in XEN_IDC["buffer_sizes"]], series, kind="line")


def fig_dbnet(traces: dict[str, Trace]) -> "Figure":
    from .render.plot import Figure
    directions = list(scenarios.dbnet.DIRECTIONS)
    mbit = {system: [round(scenarios.dbnet.measure(traces[f"dbnet-{d}-{run}"])["mbit_s"], 1) for d in directions]
            for system, run in DBNET_SYSTEMS.items()}
    series = {f"ours: {system}": values for system, values in mbit.items()}
    series["TwinDrivers' ratio x our split path"] = [
        round(mbit["Xen split path"][i] * DBNET["twindrivers"]["over_split"][d], 1) for i, d in enumerate(directions)]
    n = DBNET_GUESTS
    series[f"ours: DBNet, slowest of {n} guests"] = [
        round(scenarios.dbnet.several(traces[f"dbnet-{d}-dbnet{n}"], n, {"mbit_s": 0.0})["mbit_s"], 1)
        for d in directions]
    series[f"ours: split path, slowest of {n} guests"] = [
        round(scenarios.dbnet.slowest(traces[f"dbnet-{d}-split{n}"])["mbit_s"], 1) for d in directions]
    return Figure(f"DBNet: TCP stream throughput per guest, 1 and {n} guests, 1 Gb/s link", "direction",
                  "Mbit/s", directions, series)


#: Every figure, by file name (written as .png and .svg).
FIGURES = {"coalescing": fig_coalescing, "tickrate": fig_tickrate, "napi": fig_napi, "batching": fig_batching,
           "xen_net": fig_xen_net, "xen_idc": fig_xen_idc, "dbnet": fig_dbnet}


def reports(traces: dict[str, Trace]) -> dict[str, Report]:
    return {name: make(traces) for name, make in EXPERIMENTS.items()}


def write(out: Path, traces: dict[str, Trace], reps: dict[str, Report], figures: bool = True,
          traces_saved: bool = False) -> list[Path]:
    """Write tables (markdown), JSON, traces (unless traces_saved: the caller saved each as it arrived)
    and figures under `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sources = {key: paper.citation() for key, paper in papers.PAPERS.items()}
    md = ["# vmexit reproduce: the papers' experiments", "", "Sources:", ""]
    md += [f"- {citation}" for citation in sources.values()] + [""]
    md += [RENDERERS["markdown"](rep) for rep in reps.values()]
    path = out / "reproduce.md"
    write_atomic(path, "\n".join(md).encode())
    written.append(path)
    doc = {name: json.loads(RENDERERS["json"](rep)) for name, rep in reps.items()}
    doc["sources"] = sources
    doc["runs"] = {name: {"guest": spec.guest, "constants": spec.constants, "optimizations": spec.opts,
                          "hypervisor": spec.hypervisor, "max_seconds": spec.max_seconds,
                          "trace": f"traces/{name}.npz"}
                   for name, spec in RUNS.items()}
    path = out / "reproduce.json"
    write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    written.append(path)
    (out / "traces").mkdir(exist_ok=True)
    for name, t in traces.items():
        path = out / "traces" / f"{name}.npz"
        if not traces_saved:
            t.save(path)
        written.append(path)
    if figures:
        from .render import plot
        (out / "figures").mkdir(exist_ok=True)
        for name, make in FIGURES.items():
            fig = make(traces)
            for fmt in ("png", "svg"):
                path = out / "figures" / f"{name}.{fmt}"
                write_atomic(path, plot.render(fig, fmt))
                written.append(path)
    return written
