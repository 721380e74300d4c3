"""The papers: citations, their tables beside synthetic traces whose numbers are known, the Xen experiment."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vmexit import papers
from vmexit.exits import EXIT_DTYPE, ExitReason, Place
from vmexit.trace import Trace


def test_every_source_cites_the_paper_itself():
    kvm = papers.PAPERS["kvm"].citation()
    assert all(part in kvm for part in ("Zhang Bin-Bin", "Li Xiao-Ming", "Modifying Guest OS to Optimize I/O "
                                        "Virtualization in KVM", "Chinese Journal of Computers", "2010"))
    for path in (papers.KVM_PAPER_DATA, papers.XEN_PAPER_DATA):
        doc = json.loads(path.read_text())
        assert doc["paper"] in papers.PAPERS
    kvm_doc = papers.kvm_paper()
    for table in list(kvm_doc["tables"].values()) + list(kvm_doc["experiments"].values()):
        assert table["where"].startswith(("Table", "section"))
    assert "Table 2" in papers.paper_table_for("netperf")["source"]
    assert "Fig. 4" in papers.xen_paper_for("fork")["source"]


def test_no_shipped_text_points_at_the_project_digest():
    from vmexit.costs import PROFILE_DIR
    for path in [*PROFILE_DIR.glob("*.json"), papers.KVM_PAPER_DATA, papers.XEN_PAPER_DATA]:
        assert "PAPERS.md" not in path.read_text(), path
    for paper in papers.PAPERS.values():
        assert "PAPERS.md" not in paper.citation() and "seed" not in paper.citation()


def _table1_trace() -> Trace:
    """Three of Table 1's functions at known costs: exit time 1000 cycles of a 10 000-cycle run."""
    symbols = {"ack_ioapic_irq": 0x1000, "timer_interrupt": 0x1100, "smp_apic_timer_interrupt": 0x1200}
    spec = ((0x1010, 100), (0x1110, 300), (0x1210, 300), (0x1210, 300))
    rows = [(i, i, i, rip, ExitReason.APIC_ACCESS, Place.KERNEL, 0, 0, 1, 0, cost, 0, 0, 0, 0)
            for i, (rip, cost) in enumerate(spec)]
    meta = {"freq_hz": 1000, "guest": "specjbb", "instructions": 9000, "virtual_seconds": 10.0,
            "status": "exited", "detail": "", "profile": "test"}
    return Trace(np.array(rows, dtype=EXIT_DTYPE), meta, symbols)


def test_beside_the_paper_the_share_of_exit_time():
    rep = papers.beside_paper(_table1_trace(), papers.paper_table_for("specjbb"))
    rows = {(r["paper_rank"], r["function"]): r for r in rep.rows}
    assert rows[(1, "ack_ioapic_irq")]["paper_time_pct"] == 17.66
    assert rows[(1, "ack_ioapic_irq")]["exit_time_pct"] == pytest.approx(10.0)   # 100 of 1000 cycles
    assert rows[(4, "smp_apic_timer_interrupt")]["exit_time_pct"] == pytest.approx(60.0)
    assert rows[(4, "smp_apic_timer_interrupt")]["time_pct"] == pytest.approx(6.0)  # 0.6 s of a 10 s run
    assert rows[(2, "__do_softirq")]["exit_time_pct"] is None
    headers = [c.header for c in rep.columns]
    assert headers.index("our % of exit time") == headers.index("paper % of exit time") + 1
    assert "our % of run" in headers
    assert "24.3 s" in rep.footer and "Table 1" in rep.totals["source"]


def test_table3_keeps_its_layout():
    t = _table1_trace()
    rep = papers.beside_paper(t, papers.paper_table_for("bonnie"))
    assert [c.key for c in rep.columns] == ["paper_rank", "function", "paper_caller", "rank", "count", "time_pct",
                                            "caller"]


def test_the_xen_experiment_is_defined_once():
    paper = papers.xen_paper_for("fork")
    runs = papers.xen_runs(paper, 4)
    assert [(r.name, r.system.label, r.constants) for r in runs] == [
        ("native-x1", "native", {"FORKS": 4}), ("native-x2", "native", {"FORKS": 8}),
        ("xen-x1", "xen-pv", {"FORKS": 4}), ("xen-x2", "xen-pv", {"FORKS": 8}),
        ("enhanced-x1", "xen-pv --opt xen-pf-offload", {"FORKS": 4}),
        ("enhanced-x2", "xen-pv --opt xen-pf-offload", {"FORKS": 8})]
    assert [s.paper for s in papers.XEN_SYSTEMS] == paper["systems"]


def _xen_trace(seconds: float, exits: int, calls: int) -> Trace:
    rows = [(i, i, i, 0x1000, ExitReason.VMCALL if i < calls else ExitReason.EXCEPTION_NMI, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0)
            for i in range(exits)]
    return Trace(np.array(rows, dtype=EXIT_DTYPE), {"freq_hz": 1000, "guest": "fork", "virtual_seconds": seconds})


def test_beside_the_xen_paper_per_operation_is_the_difference():
    paper = papers.xen_paper_for("fork")
    traces = {"native-x1": _xen_trace(1.0, 0, 0), "native-x2": _xen_trace(1.0004, 0, 0),
              "xen-x1": _xen_trace(2.0, 30, 10), "xen-x2": _xen_trace(2.004, 130, 60),
              "enhanced-x1": _xen_trace(2.0, 20, 5), "enhanced-x2": _xen_trace(2.002, 70, 25)}
    rep = papers.beside_xen_paper(paper, 4, traces)
    got = [(r["system"], r["paper_us"], round(r["us"], 6), r["exits_per_op"], r["hypercalls_per_op"]) for r in rep.rows]
    assert got == [("Standard Linux", 130, 100.0, 0.0, 0.0), ("Native Xen", 451, 1000.0, 25.0, 12.5),
                   ("Enhanced Xen", 252, 500.0, 12.5, 5.0)]
    assert rep.rows[2]["ours_vs_xen"] == pytest.approx(0.5) and "Chang Gung University" in rep.totals["summary"]
