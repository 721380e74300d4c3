"""Every renderer x every report, checked against golden files (pytest --update-golden rewrites them)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from vmexit import analysis
from vmexit.render import RENDERERS

from ..test_analysis import _after, merged_synthetic, synthetic

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
EXT = {"text": "txt", "markdown": "md", "csv": "csv", "json": "json"}
CASES = [("function", False), ("function", True), ("address", False), ("caller", False), ("reason", False),
         ("port", False), ("mmio", False)]


@pytest.mark.parametrize("fmt", list(RENDERERS))
@pytest.mark.parametrize("by,callers", CASES)
def test_golden(fmt, by, callers, update_golden):
    out = RENDERERS[fmt](analysis.report(synthetic(), by, callers=callers))
    path = GOLDEN / f"{by}{'-callers' if callers else ''}.{EXT[fmt]}"
    if update_golden:
        path.parent.mkdir(exist_ok=True)
        path.write_text(out)
    assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
    assert out == path.read_text()


#: Views of a run of two domains (test_analysis.two_domains): (golden name, --by, --domain)
DOMAIN_CASES = [("domains-domain", "domain", None), ("domains-hypercall", "hypercall", None),
                ("domains-address", "address", None), ("domains-function-d1", "function", 1)]


@pytest.mark.parametrize("fmt", list(RENDERERS))
@pytest.mark.parametrize("name,by,domain", DOMAIN_CASES)
def test_domain_golden(fmt, name, by, domain, update_golden):
    out = RENDERERS[fmt](analysis.report(merged_synthetic(), by, top=None, domain=domain))
    path = GOLDEN / f"{name}.{EXT[fmt]}"
    if update_golden:
        path.write_text(out)
    assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
    assert out == path.read_text()


@pytest.mark.parametrize("by,callers", CASES)
def test_json_contract(by, callers):
    doc = json.loads(RENDERERS["json"](analysis.report(synthetic(), by, callers=callers)))
    assert doc["by"] == by and isinstance(doc["rows"], list)
    assert {"exits", "time_s", "instructions", "virtual_seconds", "status"} <= doc["totals"].keys()
    required = {
        "function": {"address", "function", "count", "time_s", "time_pct"},
        "address": {"address", "function", "count", "time_s", "time_pct"},
        "caller": {"caller", "count", "time_s", "time_pct"},
        "reason": {"reason", "count", "count_pct", "time_pct", "min_us", "max_us", "avg_us"},
        "port": {"port", "direction", "count", "time_pct"},
        "mmio": {"address", "direction", "count", "time_pct"},
    }[by]
    if callers:
        required |= {"caller", "caller_address"}
    for row in doc["rows"]:
        assert required <= row.keys()
        for key in ("address", "port", "caller_address"):
            if key in row and row[key] != "-":
                assert row[key].startswith("0x")
        if "direction" in row:
            assert row["direction"] in ({"in", "out"} if by == "port" else {"read", "write"})


def test_csv_parses_back():
    text = RENDERERS["csv"](analysis.report(synthetic(), "address"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["count"]) for r in rows] == [5, 3, 2, 2]


@pytest.mark.parametrize("fmt", list(RENDERERS))
@pytest.mark.parametrize("by", ["function", "address", "reason", "port"])
def test_compare_golden(fmt, by, update_golden):
    before, after = synthetic(), _after()
    before.meta["guest_sha256"] = after.meta["guest_sha256"] = "same"
    out = RENDERERS[fmt](analysis.compare(before, after, by))
    path = GOLDEN / f"compare-{by}.{EXT[fmt]}"
    if update_golden:
        path.write_text(out)
    assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
    assert out == path.read_text()


def test_compare_json_contract():
    doc = json.loads(RENDERERS["json"](analysis.compare(synthetic(), _after(), "function")))
    assert doc["by"] == "compare-function"
    for row in doc["rows"]:
        assert {"key", "before", "after", "delta", "ratio"} <= row.keys()
    assert {"before", "after", "matched_by"} <= doc["totals"].keys()


def stacked():
    """synthetic() with a stack table: f's exits from g (called from h) or from h, g's and h's from nowhere."""
    from vmexit.stacks import Stacks
    t = synthetic()
    t.stacks = Stacks.of([(), (0x1150, 0x1260), (0x1250,)])
    t.exits["stack"] = [{0x1150: 1, 0x1250: 2}.get(int(c), 0) for c in t.exits["caller"]]
    return t


#: New layouts (issue 17): (golden name, renderer, report)
STACK_CASES = [
    ("stack", "stack", None, "exits"), ("stack-sort-max", "stack", "max", "exits"),
    ("stack-time", "stack", None, "time"), ("function-sort-avg", "function", "avg", "exits"),
    ("reason-sort-time", "reason", "time", "exits"),
]


@pytest.mark.parametrize("fmt", list(RENDERERS))
@pytest.mark.parametrize("name,by,sort,weight", STACK_CASES)
def test_stack_and_sort_golden(fmt, name, by, sort, weight, update_golden):
    rep = analysis.report(stacked(), by, top=None, sort=sort)
    rep.meta["weight"] = weight
    _check(GOLDEN / f"{name}.{EXT[fmt]}", RENDERERS[fmt](rep), update_golden)


@pytest.mark.parametrize("fmt", ["collapsed", "speedscope"])
@pytest.mark.parametrize("weight", ["exits", "time"])
def test_flame_formats_golden(fmt, weight, update_golden):
    from vmexit.render import STACK_RENDERERS
    rep = analysis.report(stacked(), "stack", top=None)
    rep.meta["weight"] = weight
    ext = "folded" if fmt == "collapsed" else "speedscope.json"
    _check(GOLDEN / f"stack-{weight}.{ext}", STACK_RENDERERS[fmt](rep), update_golden)


@pytest.mark.parametrize("fmt", list(RENDERERS))
def test_interval_golden(fmt, update_golden):
    from vmexit import timeline
    rep = timeline.intervals(stacked(), "reason", 0.5)
    _check(GOLDEN / f"interval-reason.{EXT[fmt]}", RENDERERS[fmt](rep), update_golden)


def _check(path: Path, out: str, update: bool) -> None:
    if update:
        path.write_text(out)
    assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
    assert out == path.read_text()
