"""`vmexit reproduce --linux`: the KVM paper's Tables 1-3 again, from a real Linux kernel's workloads.

The paper measured Linux 2.6.27.7 running SPECjbb, netperf and bonnie++ (its Tables 1-3); the bundled
guests imitate those kernel paths in assembly. Here the kernel of tools/linux/build.sh (Linux 6.1,
`ata_piix`, `8139too`, HZ=1000) runs the stand-ins its /init offers: `compute` (an awk loop while
the timer ticks: SPECjbb), `net` and `receive` (a TCP stream through 8139too to and from the TCP
peer: netperf both ways) and `disk`
(O_DIRECT dd writes and reads through libata: bonnie++). Each table counts the exits of the workload
only, between its `vmexit: workload NAME start` line and the first line /init prints after the work
(window.py), as the paper measured a running benchmark and not the boot.

Linux 6.1 is not 2.6.27: functions were renamed or inlined and some paths are gone. Each of the
paper's rows carries, in vmexit/data/kvm_paper.json (`linux61`), the place where that exit happens
in 6.1 -- the function, the caller it returns to or the handler it runs under (`within`), the exit
reason where it matters -- and why, read from the 6.1
sources (each entry names its file); a row whose exit 6.1 no longer makes says so. The tables show
the paper's row, its 6.1 site with our count there, then our own hottest sites.

The hypervisor-side optimizations run unchanged on the same kernel: `--opt tick-hz` on `compute` and
`--opt coalesce` on `disk`, each compared with its plain run by the function (analysis.compare).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import analysis, filters, grid, papers, session
from .analysis import Column, Pricing, Report, hot_sites
from .costs import Profile
from .errors import VmexitError
from .symbols import SymbolTable
from .trace import Trace
from .window import between

PAPER = papers.kvm_paper()
CMDLINE = "console=ttyS0 acpi=off quiet"
OURS_SHOWN = 6   # our hottest sites listed under the paper's rows


class LinuxNotBuilt(VmexitError):
    """No kernel of tools/linux/build.sh where vmexit looks for it."""


def linux_dir() -> Path:
    """Where tools/linux/build.sh put the kernel: $VMEXIT_LINUX_DIR, else ~/.cache/vmexit/linux."""
    return Path(os.environ.get("VMEXIT_LINUX_DIR") or Path.home() / ".cache/vmexit/linux")


def check_built(d: Path) -> Path:
    missing = [f for f in ("READY", "bzImage", "initramfs.cpio", "System.map") if not (d / f).is_file()]
    if missing:
        raise LinuxNotBuilt(f"no Linux kernel built in {d} (missing {', '.join(missing)}): run tools/linux/build.sh "
                            "(or set VMEXIT_LINUX_DIR)")
    return d


@dataclass(frozen=True)
class LinuxRun:
    workload: str                 # /init's vmexit.workload=
    count: int                    # its vmexit.count=
    opts: dict = field(default_factory=dict)
    net_peer: str = "stream"
    kernel_args: str = ""         # more of the kernel's command line

    def cmdline(self) -> str:
        return " ".join(filter(None, (CMDLINE, self.kernel_args,
                                      f"vmexit.workload={self.workload} vmexit.count={self.count}")))

    def window(self) -> tuple[str, str]:
        """The console lines the workload's exits lie between (window.py): after its start line,
        before the first line /init prints once the work is over (tools/linux/init)."""
        return f"vmexit: workload {self.workload} start", WORK_DONE[self.workload]


#: The line /init prints first after each workload's work (the compute sum, the sender's end, the reads').
WORK_DONE = {"compute": "vmexit: compute sum", "net": "vmexit: net send done", "receive": "vmexit: net receive done",
             "disk": "vmexit: disk read done"}


#: Every run, by name: one per table (two for Tables 1 and 2), and the optimizations' runs beside their plain
#: ones.
# `noapictimer`: Linux keeps the PIT (IRQ0 through the I/O APIC) as its tick, the paper's other timer path.
RUNS: dict[str, LinuxRun] = {
    "linux-specjbb": LinuxRun("compute", 50000),
    "linux-specjbb-pit": LinuxRun("compute", 50000, kernel_args="noapictimer"),
    "linux-specjbb-tick-hz100": LinuxRun("compute", 50000, opts={"tick-hz": 100}),
    "linux-netperf": LinuxRun("net", 256, net_peer="tcp"),
    # the other direction: the TCP peer's source (port 5002) sends 1 MiB, whatever the count
    "linux-netperf-receive": LinuxRun("receive", 1024, net_peer="tcp"),
    "linux-bonnie": LinuxRun("disk", 64),
    "linux-bonnie-coalesce": LinuxRun("disk", 64, opts={"coalesce": 64}),
}


def jobs(profile: Profile, d: Path, runs: dict[str, LinuxRun] | None = None) -> list[grid.Job]:
    """The runs as grid jobs: each boots the kernel with its workload and ends at its done line."""
    out = []
    for name, run in (runs or RUNS).items():
        options = session.RunOptions(optimizations=dict(run.opts), net_peer=run.net_peer,
                                     until_console=f"vmexit: workload {run.workload} done")
        image = {"cmdline": run.cmdline(), "initrd": str(d / "initramfs.cpio"), "symbols": str(d / "System.map")}
        out.append(grid.Job(name, str(d / "bzImage"), {}, profile, options, image=image))
    return out


def workload(trace: Trace, name: str) -> Trace:
    """The exits of a run's workload: between its start line and the first line after its work."""
    return between(trace, *RUNS[name].window())


# the tables --------------------------------------------------------------------------------------------
SITE_FILTERS = ("function", "caller", "within", "reason")   # what a linux61 site may name (filters.py)


def _site_exits(t: Trace, site: dict) -> tuple[int, int] | None:
    """Exits (and their cycles) at a 6.1 site: a function, with its caller, a function it runs under
    (`within`: where inlining or an indirect call makes the immediate caller a helper) and the exit
    reason when given; None when the kernel has no such function (another build than ours)."""
    given = {k: site[k] for k in SITE_FILTERS if site.get(k)}
    try:
        m = filters.mask(t, **given)
    except VmexitError:
        return None
    return int(m.sum()), int(t.exits["cost"][m].sum(dtype=np.uint64))


def _site(site: dict) -> str:
    if not any(site.get(k) for k in SITE_FILTERS):
        return "- (no such exit)"
    text = site.get("function") or "any function"
    text += f" <- {site['caller']}" if site.get("caller") else ""
    text += f" under {site['within']}" if site.get("within") else ""
    return text + (f" ({site['reason']})" if site.get("reason") else "")


def top_sites(t: Trace, top: int) -> list[tuple[str, int, int]]:
    """The hottest sites, a site being an exit's function and its caller's function (the paper's rows):
    (site, exits, cycles), by exits then name. Numpy over the exits; one name per distinct site."""
    table = SymbolTable(t.symbols)
    function = table.index(t.exits["rip"])
    caller = table.index(t.exits["caller"])
    key = function * (len(table.names) + 1) + caller
    sites, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    cycles = np.bincount(inverse, weights=t.exits["cost"].astype(np.float64), minlength=len(sites))
    names = [_pair(table, int(k) // (len(table.names) + 1), int(k) % (len(table.names) + 1)) for k in sites]
    order = sorted(range(len(sites)), key=lambda i: (-int(counts[i]), names[i]))[:top]
    return [(names[i], int(counts[i]), int(cycles[i])) for i in order]


def _pair(table: SymbolTable, function: int, caller: int) -> str:
    name = str(table.names[function])
    return name if caller >= len(table.names) - 1 else f"{name} <- {table.names[caller]}"


def beside_paper(t: Trace, table_key: str, run_name: str) -> Report:
    """One of the paper's Tables 1-3 with, for each row, the 6.1 site of its exit and our exits there;
    then our hottest sites (function <- caller)."""
    table = PAPER["tables"][table_key]
    pricing = Pricing.of(t)
    exit_cycles = max(int(t.exits["cost"].sum(dtype=np.uint64)), 1)
    seconds = float(t.meta.get("virtual_seconds", 0.0)) or 1.0
    rows = []
    for p in table["rows"]:
        site = p.get("linux61") or {}
        named = any(site.get(k) for k in SITE_FILTERS)
        found = _site_exits(t, site) if named else None
        n, cycles = found or (0, 0)
        label = _site(site) + (" (not in this kernel)" if named and found is None else "")
        paper = p["function"] + (f" <- {p['caller']}" if p.get("caller") else "")
        rows.append({"paper_rank": p["rank"], "function": paper,
                     "paper_exits": p.get("exits"), "paper_time_pct": p.get("time_pct"), "site": label,
                     "rank": None, "count": n if found else None, "per_s": round(n / seconds) if found else None,
                     "exit_time_pct": 100.0 * cycles / exit_cycles if found else None})
    for rank, (site, n, cycles) in enumerate(top_sites(t, OURS_SHOWN), 1):
        rows.append({"paper_rank": None, "function": None, "paper_exits": None, "paper_time_pct": None,
                     "site": site, "rank": rank, "count": n, "per_s": round(n / seconds),
                     "exit_time_pct": 100.0 * cycles / exit_cycles})
    mine = hot_sites(t, "function", 1, False, pricing)
    columns = [Column("paper_rank", "paper #", "int"), Column("function", "paper (2.6.27)", "str"),
               Column("paper_exits", "paper exits", "int"), Column("paper_time_pct", "paper % of exit time", "pct"),
               Column("site", "Linux 6.1 site", "str"), Column("rank", "our #", "int"),
               Column("count", "our exits", "int"), Column("per_s", "our exits/s", "int"),
               Column("exit_time_pct", "our % of exit time", "pct")]
    run = RUNS[run_name]
    where = papers.source(PAPER, table["where"])
    return Report(by="paper", title=f"{table['title']} beside Linux 6.1's {run.workload} workload ({run_name})",
                  columns=columns, rows=rows, totals=dict(mine.totals, source=where),
                  footer=(f"Source: {where}. Ours: the exits between the lines '{run.window()[0]}' and "
                          f"'{run.window()[1]}' ({run.cmdline()}); a site is the function holding the exit "
                          f"and the function it returns to. Why each 6.1 site: vmexit/data/kvm_paper.json "
                          f"(linux61)."))


def _optimization(title: str, before: str, after: str, by: str = "function"):
    def make(traces: dict[str, Trace]) -> Report:
        rep = analysis.compare(workload(traces[before], before), workload(traces[after], after), by, 12)
        rep.title = f"{title}: {rep.title}"
        return rep
    return make


def _table(key: str, run: str):
    def make(traces: dict[str, Trace]) -> Report:
        return beside_paper(workload(traces[run], run), key, run)
    return make


#: Each table of linux.md: the paper's three (Table 1 from both timers, Table 2 both ways) and the two
#: optimizations.
EXPERIMENTS = {
    "table1": _table("table1", "linux-specjbb"),
    "table1_pit": _table("table1", "linux-specjbb-pit"),
    "table2": _table("table2", "linux-netperf"),
    "table2_receive": _table("table2", "linux-netperf-receive"),
    "table3": _table("table3", "linux-bonnie"),
    "tick_hz": _optimization("Tick-rate reduction on Linux 6.1 (--opt tick-hz=100, compute)", "linux-specjbb",
                             "linux-specjbb-tick-hz100"),
    "coalesce": _optimization("Dynamic I/O coalescing on Linux 6.1 (--opt coalesce=64, disk)", "linux-bonnie",
                              "linux-bonnie-coalesce"),
}


def reports(traces: dict[str, Trace]) -> dict[str, Report]:
    return {name: make(traces) for name, make in EXPERIMENTS.items()}


def write(out: Path, reps: dict[str, Report]) -> list[Path]:
    """linux.md (the tables, markdown) and linux.json (their rows, and each run's settings) under `out`;
    the traces are saved by the caller as they arrive (traces/NAME.npz)."""
    import json

    from .render import RENDERERS
    from .trace import write_atomic
    out.mkdir(parents=True, exist_ok=True)
    md = ["# vmexit reproduce --linux: the KVM paper's Tables 1-3 from Linux 6.1", "",
          f"Source: {PAPERS_CITATION}", ""] + [RENDERERS["markdown"](rep) for rep in reps.values()]
    doc = {name: json.loads(RENDERERS["json"](rep)) for name, rep in reps.items()}
    doc["runs"] = {name: {"cmdline": run.cmdline(), "optimizations": run.opts, "net_peer": run.net_peer,
                          "window": list(run.window()), "trace": f"traces/{name}.npz"} for name, run in RUNS.items()}
    written = [out / "linux.md", out / "linux.json"]
    write_atomic(written[0], "\n".join(md).encode())
    write_atomic(written[1], (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    return written


PAPERS_CITATION = papers.PAPERS[PAPER["paper"]].citation()
