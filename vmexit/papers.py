"""The papers vmexit reproduces, who wrote them and where they appeared, and their tables beside ours.

Their numbers are data: vmexit/data/kvm_paper.json (the KVM paper's Tables 1-4 and the results of its
optimizations), vmexit/data/xen_paper.json (the Xen page-fault report's Fig. 4) and
vmexit/data/xen_net_paper.json (the Xen network report's throughput figure) and
vmexit/data/xen_idc_paper.json (seed 004's Table 1, the shared-memory channel), each table saying
where in its paper it stands; PAPERS below holds the full citations every `source` is built from. The
Xen experiment (three systems, each run with the guest's operation count and twice it) is defined here
once, as data: `vmexit run --paper` and `vmexit reproduce` both run it through vmexit.session. Nothing
here imports the emulator.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analysis import Column, Pricing, Report, hot_sites
from .exits import ExitReason
from .trace import Trace


@dataclass(frozen=True)
class Paper:
    short: str           # how a source names it in passing
    authors: str
    title: str
    venue: str
    year: str
    note: str = ""       # how to find it, what the copy we have lacks

    def citation(self) -> str:
        parts = ", ".join(p for p in (self.authors, self.title, self.venue, self.year) if p)
        return f"{parts} ({self.note})" if self.note else parts

    def cite(self, where: str) -> str:
        """A source: the full citation, then the place in the paper."""
        return f"{self.citation()}; {where}"


#: The papers vmexit's numbers come from, explicitly.
PAPERS: dict[str, Paper] = {
    # the title as printed: 修改客户操作系统优化 KVM 虚拟机的 I/O 性能 (English title and byline as in the paper)
    "kvm": Paper(
        "Zhang et al., Chinese Journal of Computers 2010",
        "Zhang Bin-Bin, Wang Xiao-Lin, Yang Liang, Lai Rong-Feng, Wang Zhen-Lin, Luo Ying-Wei, Li Xiao-Ming",
        '"Modifying Guest OS to Optimize I/O Virtualization in KVM"', "Chinese Journal of Computers", "2010",
        "doi:10.3724/SP.J.1016.2010.02312; KVM-76, Linux 2.6.27.7 guest, Intel Core 2 Quad Q9550 at 2.83 GHz"),
    # The copy we have starts inside the report's introduction: its title page is missing.
    "xen-pf": Paper(
        "the Chang Gung University report on Xen page faults", "",
        'research project report on offloading Xen PV page-fault handling into Xen ("Enhanced Xen")',
        "Chang Gung University, Taiwan", "",
        "title, authors and year are missing from our copy, whose references run to 2004"),
    # 作業系統虛擬化網路效能改善之研究 (the English abstract has no title; ours is a translation)
    "xen-net": Paper(
        "Feng, Chang Gung University report on Xen network performance", "Feng Li-Chi (馮立琪)",
        '"作業系統虛擬化網路效能改善之研究" (Improving the network performance of operating-system '
        'virtualization)', "research project report, Department of Computer Science and Information "
        "Engineering, Chang Gung University, Taiwan", "",
        "the year is not printed in our copy; Xen split-driver networking measured with netperf"),
    # 基于共享内存的 Xen 虚拟机间通信的研究 (English title as printed with the paper)
    "xen-idc": Paper(
        "Zhu and Ai, Computer Technology and Development 2011", "ZHU Tuan-jie (朱团结), AI Li-rong (艾丽蓉)",
        '"Research on Xen Inter Domain Communication Based on Shared Memory"',
        "Computer Technology and Development (计算机技术与发展), 2011 no. 7, article 1673-629X(2011)07-0005-04", "2011",
        "Northwestern Polytechnical University; HP DL140 G3 (Xeon 5130), CentOS 5.2 guests"),
    # seed 002: 藉由繞過驅動程式域改善Xen虛擬機器之網路吞吐量
    "dbnet": Paper(
        "Tai, NCTU thesis 2006 (DBNet)", "Tai Han-Yu (戴函昱), advisor Chang Ruei-Chuan (張瑞川)",
        '"Improving Xen Network Throughput by Bypassing Driver Domain"', "master's thesis, Institute of "
        "Computer Science and Engineering, National Chiao Tung University, Taiwan", "2006",
        "our copy is the abstract; it states orderings, no numbers"),
    "twindrivers": Paper(
        "Menon et al., ASPLOS 2009 (TwinDrivers)", "Aravind Menon, Simon Schubert, Willy Zwaenepoel",
        '"TwinDrivers: Semi-Automatic Derivation of Fast and Safe Hypervisor Network Drivers from Guest OS '
        'Drivers"', "ASPLOS", "2009"),
}

KVM_PAPER_DATA = Path(__file__).resolve().parent / "data" / "kvm_paper.json"
XEN_PAPER_DATA = Path(__file__).resolve().parent / "data" / "xen_paper.json"
XEN_NET_PAPER_DATA = Path(__file__).resolve().parent / "data" / "xen_net_paper.json"
XEN_IDC_PAPER_DATA = Path(__file__).resolve().parent / "data" / "xen_idc_paper.json"
DBNET_PAPER_DATA = Path(__file__).resolve().parent / "data" / "dbnet_paper.json"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def kvm_paper() -> dict:
    """The KVM paper's numbers (kvm_paper.json)."""
    return _load(KVM_PAPER_DATA)


def source(doc: dict, where: str) -> str:
    """The full source of one table or figure of a paper's data file."""
    return PAPERS[doc["paper"]].cite(where)


# the KVM paper's hot-function tables ------------------------------------------------------------------
def paper_table_for(guest: str) -> dict | None:
    """The KVM paper's table whose workload this guest models, if any."""
    doc = kvm_paper()
    for table in doc["tables"].values():
        if guest in table["guests"]:
            return dict(table, source=source(doc, table["where"]))
    return None


def _exit_share(mine: dict, exit_seconds: float) -> float | None:
    if "time_s" not in mine or not exit_seconds:
        return None
    return 100.0 * mine["time_s"] / exit_seconds


def _paper_basis(table: dict) -> str:
    """What the paper's % is a share of, from its own rows (Table 1: 8.57 s is 35.28 % of 24.3 s)."""
    timed = [r for r in table["rows"] if r.get("time_pct")]
    if not timed:
        return ""
    r = max(timed, key=lambda r: r["time_pct"])
    return (f" The paper's % is of all its exit-handling time ({r['time_s']} s is {r['time_pct']} % of "
            f"{r['time_s'] / r['time_pct'] * 100:.1f} s); ours beside it is of our modeled exit time, "
            f"and 'our % of run' of the whole virtual run.")


def beside_paper(trace: Trace, table: dict) -> Report:
    """Ours beside the paper: one row per function the paper lists (its rows keep their rank),
    with our exits, time shares and rank for that function; then our other top functions."""
    with_callers = "caller" in table["rows"][0]
    ours = hot_sites(trace, "function", None, with_callers, Pricing.of(trace))
    exit_s = ours.totals["time_s"]
    by_function = {r["function"]: r for r in ours.rows}
    rows, seen = [], set()
    for p in table["rows"]:
        mine = by_function.get(p["function"], {})
        seen.add(p["function"])
        row = {"paper_rank": p["rank"], "function": p["function"], "paper_address": p["address"],
               "paper_exits": p.get("exits"), "paper_time_pct": p.get("time_pct"),
               "rank": mine.get("rank"), "count": mine.get("count"), "time_pct": mine.get("time_pct"),
               "exit_time_pct": _exit_share(mine, exit_s)}
        if with_callers:
            row.update(paper_caller=p["caller"], caller=mine.get("caller"))
        rows.append(row)
    for mine in ours.rows[:5]:
        if mine["function"] not in seen:
            rows.append({"paper_rank": None, "function": mine["function"], "paper_address": None,
                         "paper_exits": None, "paper_time_pct": None, "rank": mine["rank"],
                         "count": mine["count"], "time_pct": mine["time_pct"],
                         "exit_time_pct": _exit_share(mine, exit_s)})
    ranks = [Column("paper_rank", "paper #", "int"), Column("function", "function", "str")]
    ours_columns = [Column("rank", "our #", "int"), Column("count", "our exits", "int"),
                    Column("time_pct", "our % of run", "pct")]
    if with_callers:
        columns = ranks + [Column("paper_caller", "paper caller", "str")] + ours_columns + [
            Column("caller", "our caller", "str")]
    else:
        columns = ranks + [Column("paper_exits", "paper exits", "int"),
                           Column("paper_time_pct", "paper % of exit time", "pct"),
                           Column("exit_time_pct", "our % of exit time", "pct")] + ours_columns
    return Report(by="paper", title=f"{table['title']} beside {trace.meta.get('guest', '?')}",
                  columns=columns, rows=rows, totals=dict(ours.totals, source=table["source"]),
                  footer=f"Source: {table['source']}.{_paper_basis(table)}")


# the Xen page-fault report's Fig. 4 -------------------------------------------------------------------
@dataclass(frozen=True)
class XenSystem:
    paper: str             # the system's name in the figure
    key: str               # its runs' names in `vmexit reproduce` (fork-<key>-x1)
    hypervisor: str        # our run: hypervisors.HYPERVISORS ...
    optimizations: dict = field(default_factory=dict)   # ... with these --opt

    @property
    def label(self) -> str:
        return " ".join([self.hypervisor] + [f"--opt {name}" for name in self.optimizations])


#: The figure's three systems and the runs that stand for them.
XEN_SYSTEMS = (XenSystem("Standard Linux", "native", "native"),
               XenSystem("Native Xen", "xen", "xen-pv"),
               XenSystem("Enhanced Xen", "enhanced", "xen-pv", {"xen-pf-offload": 1}))
#: Each system runs the guest's operation count and twice it: per operation is the difference, so boot
#: and the end do not count (lmbench amortizes them the same way).
XEN_SCALES = (1, 2)


@dataclass(frozen=True)
class XenRun:
    system: XenSystem
    scale: int
    constants: dict        # the guest's operation count for this run

    @property
    def name(self) -> str:
        return _run_name(self.system, self.scale)


def _run_name(system: XenSystem, scale: int) -> str:
    return f"{system.key}-x{scale}"


def xen_paper_for(guest: str) -> dict | None:
    """The Xen report's figure for a fork/exec guest, if it has one."""
    doc = _load(XEN_PAPER_DATA)
    entry = doc["workloads"].get(guest)
    return None if entry is None else dict(entry, source=source(doc, doc["where"]), title=doc["title"],
                                           systems=doc["systems"])


def xen_runs(paper: dict, operations: int) -> list[XenRun]:
    """Every run of the experiment for a guest doing `operations` operations by default."""
    return [XenRun(system, k, {paper["constant"]: k * operations}) for system in XEN_SYSTEMS for k in XEN_SCALES]


def beside_xen_paper(paper: dict, operations: int, traces: dict[str, Trace]) -> Report:
    """One row per system (native, Xen PV, Xen PV with fault offload): the paper's latency beside ours,
    from `traces`, the runs of xen_runs(paper, operations) by name."""
    rows = []
    for system in XEN_SYSTEMS:
        once, twice = (traces[_run_name(system, k)] for k in XEN_SCALES)
        seconds = float(twice.meta["virtual_seconds"]) - float(once.meta["virtual_seconds"])
        calls = [int((t.exits["reason"] == ExitReason.VMCALL).sum()) for t in (once, twice)]
        rows.append({"system": system.paper, "ours": system.label,
                     "paper_us": paper["us"][paper["systems"].index(system.paper)],
                     "us": seconds / operations * 1e6, "exits_per_op": (len(twice.exits) - len(once.exits)) / operations,
                     "hypercalls_per_op": (calls[1] - calls[0]) / operations})
    base_p, base_o = rows[1]["paper_us"], rows[1]["us"]   # the ratios are to Native Xen
    for r in rows:
        r["paper_vs_xen"] = r["paper_us"] / base_p
        r["ours_vs_xen"] = r["us"] / base_o if base_o else None
    columns = [Column("system", "system", "str"), Column("ours", "ours run as", "str"),
               Column("paper_us", "paper us", "int"), Column("us", "our us / op", "ratio"),
               Column("paper_vs_xen", "paper vs Xen", "ratio"), Column("ours_vs_xen", "ours vs Xen", "ratio"),
               Column("exits_per_op", "exits / op", "ratio"), Column("hypercalls_per_op", "hypercalls / op", "ratio")]
    guest = traces[_run_name(XEN_SYSTEMS[0], XEN_SCALES[0])].meta.get("guest", "?")
    note = (f"Source: {paper['source']}. Ours: modeled virtual time per operation, from runs of {operations} "
            f"and {XEN_SCALES[-1] * operations} operations (the guest's {paper['constant']}); the paper's times are whole "
            f"lmbench processes on real hardware, ours a {operations}-operation miniature: compare the ratios.")
    return Report(by="paper", title=f"{paper['title']}, {paper['label']}, beside {guest}", columns=columns,
                  rows=rows, totals={"summary": note})


# the Xen network report's throughput figure -----------------------------------------------------------
def xen_net_paper() -> dict:
    """The Xen network report's throughput figure (xen_net_paper.json), with its full source."""
    doc = _load(XEN_NET_PAPER_DATA)
    return dict(doc, source=source(doc, doc["where"]))


def beside_xen_net_paper(paper: dict, msg_size: int, throughput: dict[str, float], guest: str = "xennet") -> Report:
    """One row per system (Native Xen: SHARED_BUFFERS=0, Enhanced Xen: 1) at one message size: the
    paper's throughput beside ours (throughput: Mbit/s by the paper's system name), each as a ratio to
    Native Xen too."""
    if msg_size not in paper["message_sizes"]:
        raise ValueError(f"the paper measured {paper['constant']} "
                         f"{', '.join(map(str, paper['message_sizes']))}, not {msg_size}")
    at = paper["message_sizes"].index(msg_size)
    base_p, base_o = paper["mbit_s"][paper["systems"][0]][at], throughput.get(paper["systems"][0])
    rows = []
    for system in paper["systems"]:
        theirs, ours = paper["mbit_s"][system][at], throughput.get(system)
        rows.append({"system": system, "ours": f"-D {paper['switch']}={paper['modes'][system]}",
                     "paper_mbit_s": theirs, "mbit_s": ours, "paper_vs_native": theirs / base_p,
                     "ours_vs_native": ours / base_o if ours is not None and base_o else None})
    columns = [Column("system", "system", "str"), Column("ours", "ours run as", "str"),
               Column("paper_mbit_s", "paper Mbit/s", "ratio"), Column("mbit_s", "our Mbit/s", "ratio"),
               Column("paper_vs_native", "paper vs Native", "ratio"), Column("ours_vs_native", "ours vs Native", "ratio")]
    others = "; ".join(f"{size} B: " + " / ".join(f"{paper['mbit_s'][s][i]}" for s in paper["systems"])
                       for i, size in enumerate(paper["message_sizes"]))
    note = (f"Source: {paper['source']}. {paper['benchmark']}; the paper's Native / Enhanced Mbit/s at each "
            f"size: {others}. Ours: the modeled throughput of the run in virtual time; compare the ratios.")
    return Report(by="paper", title=f"{paper['title']}, {paper['constant']}={msg_size}, beside {guest}",
                  columns=columns, rows=rows, totals={"summary": note})


# seed 004: the shared-memory channel between co-resident domUs (the xenidc scenario) ----------------
XEN_IDC_MODES = {"BOOST=0": 0, "BOOST=1": 1}   # ours without and with a waking domain preempting
XEN_IDC_SPLIT = "SHM=0"                          # ours through the split-driver path (BOOST=0)
_IDC_ROLES = {0: "dom0", 1: "receiver", 2: "sender"}
_EVENT_CHANNEL_OP, _SCHED_OP, _EVTCHNOP_send, _SCHEDOP_block = 32, 29, 4, 1


def xen_idc_paper() -> dict:
    """Seed 004's Table 1 (xen_idc_paper.json), with its full source."""
    doc = _load(XEN_IDC_PAPER_DATA)
    return dict(doc, source=source(doc, doc["where"]))


def xen_idc_per_send(trace: Trace, buf: int) -> dict:
    """Per send of a merged xenidc trace: the sender's and the receiver's notifications
    (event_channel_op:send) and blocks (sched_op:block), each domain's virtual CPU microseconds, and
    the stream's microseconds; the setup before the stream included in the counts (33 maps, one bind)."""
    from .trace import cpu_cycles
    host = trace.meta.get("host") or {}
    sends = max(1, int(host.get("stream_bytes", 0)) // buf)
    e, freq = trace.exits, float(trace.meta["freq_hz"])
    vm = e["reason"] == int(ExitReason.VMCALL)
    out = {"sends": sends, "us_per_send": int(host.get("stream_cycles", 0)) / freq * 1e6 / sends}
    for domid in (2, 1):
        mine = vm & (e["domain"] == domid)
        role = _IDC_ROLES[domid]
        out[f"{role}_notify"] = int((mine & (e["qualifier"] == _EVENT_CHANNEL_OP) & (e["subop"] == _EVTCHNOP_send)).sum()) / sends
        out[f"{role}_block"] = int((mine & (e["qualifier"] == _SCHED_OP) & (e["subop"] == _SCHEDOP_block)).sum()) / sends
    cost = np.bincount(e["domain"], weights=e["cost"], minlength=3)
    for m in trace.meta.get("domains", []):
        out[f"cpu_us_{_IDC_ROLES.get(m['domid'], m['domid'])}"] = cpu_cycles(m, int(cost[m["domid"]])) / freq * 1e6 / sends
    return out


def beside_xen_idc_paper(paper: dict, traces: dict[tuple[int, str], Trace]) -> Report:
    """Seed 004's Table 1 beside ours: one row per buffer size and mode of ours (traces keyed by (BUF,
    mode of XEN_IDC_MODES)); each bandwidth also as a share of its own 16 KiB figure, the time per send
    (BUF * 8 / bandwidth), and per send our notifications, blocks and CPU time by domain."""
    sizes, peak_at = paper["buffer_sizes"], paper["buffer_sizes"].index(16384)
    rows = []
    mbit = {key: float((t.meta.get("host") or {}).get("throughput_mbit_s", 0.0)) for key, t in traces.items()}
    for mode in [*XEN_IDC_MODES, XEN_IDC_SPLIT]:
        ours = {b: mbit[(b, mode)] for b in sizes if (b, mode) in traces}
        peak = ours.get(16384)
        for i, b in enumerate(sizes):
            if b not in ours:
                continue
            theirs = paper["mbit_s"][i]
            split = mbit.get((b, XEN_IDC_SPLIT)) if mode != XEN_IDC_SPLIT else None
            rows.append({"buf": b, "ours": f"-D {mode}", "paper_mbit_s": theirs,
                         "paper_vs_16k": theirs / paper["mbit_s"][peak_at], "mbit_s": ours[b],
                         "ours_vs_16k": ours[b] / peak if peak else None,
                         "over_split": ours[b] / split if split else None, "paper_us_per_send": b * 8 / theirs,
                         **xen_idc_per_send(traces[(b, mode)], b)})
    columns = [Column("buf", paper["constant"], "int"), Column("ours", "ours run as", "str"),
               Column("paper_mbit_s", "paper Mbit/s", "ratio"), Column("paper_vs_16k", "paper / 16K", "ratio"),
               Column("mbit_s", "our Mbit/s", "ratio"), Column("ours_vs_16k", "ours / 16K", "ratio"),
               Column("over_split", "ours / SHM=0", "ratio"), Column("paper_us_per_send", "paper us/send", "ratio"), Column("us_per_send", "our us/send", "ratio"),
               Column("sender_notify", "sender notify/send", "ratio"), Column("sender_block", "sender block/send", "ratio"),
               Column("receiver_notify", "receiver notify/send", "ratio"),
               Column("receiver_block", "receiver block/send", "ratio"),
               Column("cpu_us_dom0", "dom0 CPU us/send", "ratio"), Column("cpu_us_receiver", "receiver CPU us/send", "ratio"),
               Column("cpu_us_sender", "sender CPU us/send", "ratio")]
    note = (f"Source: {paper['source']}. {paper['benchmark']}. The paper's standard network path: "
            f"{paper['network_path_note']}. Ours: the xenidc scenario "
            "(SHM=1), throughput over the stream in virtual time; BOOST=1: a woken domain preempts the running "
            "one (Xen's credit-scheduler boost); SHM=0: the same stream through the split-driver path "
            "(netfront -> netback -> bridge -> netback -> netfront, page flipping), BOOST=0, and ours / SHM=0 "
            "is shared memory over it at the same BUF (the paper: about 20x its ~100 Mbit/s network path). "
            "Compare the shapes (/ 16K).")
    return Report(by="paper", title=paper["title"] + ", beside the xenidc scenario", columns=columns, rows=rows,
                  totals={"summary": note})
# seed 002, DBNet: orderings beside ours ----------------------------------------------------------------
def dbnet_paper() -> dict:
    """DBNet's statements and TwinDrivers' magnitudes (dbnet_paper.json), with their full sources."""
    doc = _load(DBNET_PAPER_DATA)
    twin = dict(doc["twindrivers"], source=PAPERS["twindrivers"].cite(doc["twindrivers"]["where"]))
    return dict(doc, source=source(doc, doc["where"]), twindrivers=twin)


def dbnet_holds(direction: str, ours: dict[str, dict]) -> bool:
    """Whether our runs keep the thesis' ordering in one direction. ours: system -> {mbit_s, cpu_us}
    (CPU per packet). Transmit: DBNet above the split path and within 20 % of native ("nearly the
    same"); receive: DBNet above the split path at less CPU per packet; with several guests (a system
    with a `bound`: the split path's slowest guest with n guests, measured, or its one-guest
    throughput / n, estimated), the slowest guest above that."""
    split, db, native = (ours[s] for s in ("Xen split path", "DBNet", "native Linux"))
    several = [m for m in ours.values() if "bound" in m]
    if any(m["mbit_s"] <= m["bound"] for m in several):
        return False
    if direction == "transmit":
        return db["mbit_s"] > split["mbit_s"] and db["mbit_s"] >= 0.8 * native["mbit_s"]
    return db["mbit_s"] > split["mbit_s"] and db["cpu_us"] < split["cpu_us"]


def _several_row(direction: str, system: str, m: dict, paper: dict) -> dict:
    """Several guests: the slowest guest's throughput, its ratio to the split path's per-guest share."""
    return {"direction": direction, "system": system, "mbit_s": round(m["mbit_s"], 1),
            "cpu_us": round(m["cpu_us"], 2), "exits": round(m.get("exits", 0.0), 2),
            "over_split": round(m["mbit_s"] / m["bound"], 2) if m["bound"] else None, "twin_over_split": None,
            "of_native": None, "twin_of_native": None, "thesis": paper["statements"]["guests"],
            "holds": "yes" if m["mbit_s"] > m["bound"] else "no"}


def beside_dbnet_paper(paper: dict, ours: dict[str, dict[str, dict]]) -> Report:
    """One row per direction and system: our throughput and CPU per packet, the ratio to the split path
    and to native beside TwinDrivers' (DBNet's row), and the thesis' statement with whether ours keeps
    it. ours: direction ("transmit"/"receive") -> system -> {mbit_s, cpu_us, exits, hypercalls}."""
    twin = paper["twindrivers"]
    rows = []
    for direction, systems in ours.items():
        split, native = systems["Xen split path"]["mbit_s"], systems["native Linux"]["mbit_s"]
        holds = dbnet_holds(direction, systems)
        for system, m in systems.items():
            db = system == "DBNet"
            if "bound" in m:
                rows.append(_several_row(direction, system, m, paper))
                continue
            rows.append({"direction": direction, "system": system, "mbit_s": round(m["mbit_s"], 1),
                         "cpu_us": round(m["cpu_us"], 2), "exits": round(m.get("exits", 0.0), 2),
                         "over_split": round(m["mbit_s"] / split, 2) if split else None,
                         "twin_over_split": twin["over_split"][direction] if db else None,
                         "of_native": round(m["mbit_s"] / native, 2) if native else None,
                         "twin_of_native": twin["of_native"][direction] if db else None,
                         "thesis": paper["statements"][direction] if db else "",
                         "holds": ("yes" if holds else "no") if db else ""})
    columns = [Column("direction", "direction", "str"), Column("system", "system", "str"),
               Column("mbit_s", "our Mbit/s", "ratio"), Column("cpu_us", "CPU us/packet", "ratio"),
               Column("exits", "exits/packet", "ratio"), Column("over_split", "ours / split", "ratio"),
               Column("twin_over_split", "TwinDrivers / split", "ratio"), Column("of_native", "ours / native", "ratio"),
               Column("twin_of_native", "TwinDrivers / native", "ratio"), Column("holds", "thesis kept", "str")]
    said = "; ".join(f"{d}: {paper['statements'][d]}" for d in ours)
    if any("bound" in m for systems in ours.values() for m in systems.values()):
        if any(m.get("measured") for systems in ours.values() for m in systems.values()):
            said += (f"; guests: {paper['statements']['guests']} (ours / split for several guests: the slowest "
                     "guest over the split path's slowest guest, measured: netback serving n frontends)")
        else:
            said += (f"; guests: {paper['statements']['guests']} (ours / split for several guests: the slowest "
                     "guest over the split path's one-guest throughput / n, an estimate)")
    note = (f"The thesis: {said}. Source: {paper['source']}. Magnitudes: {twin['source']}. CPU per packet: the "
            "host's busy time (every domain's instructions, exits, upcalls, DBNet's driver work, domain "
            "switches) over the NIC frames, both ways.")
    return Report(by="paper", title=f"DBNet (Tai, NCTU 2006) beside the split-driver path and native Linux: "
                                    f"{paper['benchmark']}", columns=columns, rows=rows, totals={"summary": note})
