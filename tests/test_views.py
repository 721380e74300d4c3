"""The table of views: one key, one decoder and one label per view, shared by report and compare."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit import analysis, views
from vmexit.exits import EXIT_DTYPE, Direction, ExitReason
from vmexit.views import VIEWS, Context, group, group_by

from .test_analysis import _after, synthetic


def test_every_view_decodes_into_its_column_and_label():
    t = synthetic()
    ctx = Context.of(t)
    for view in VIEWS.values():
        groups = group_by(view, t.exits, ctx)
        assert len(groups.keys), view.name
        for g in range(len(groups.keys)):
            fields = groups.fields(g, ctx)
            assert view.column in fields, view.name
            assert groups.label(g, ctx)
        assert view.layout in analysis.LAYOUTS
        assert view.across_images is None or VIEWS[view.across_images].comparable


def test_perf_keys_are_written_once():
    ctx = Context.of(synthetic())
    port = VIEWS["port"].decode(0x1F7 << 2 | Direction.IN, ctx)
    assert port == {"port": "0x1f7", "direction": "in", "key": "0x1f7:PIN"}
    mmio = VIEWS["mmio"].decode(0xFEE000B0 << 2 | Direction.OUT, ctx)
    assert mmio == {"address": "0xfee000b0", "direction": "write", "key": "0xfee000b0:W"}


def test_selection_is_by_reason():
    t = synthetic()
    groups = group_by(VIEWS["mmio"], t.exits, Context.of(t))
    assert groups.selected == int(np.isin(t.exits["reason"], (ExitReason.APIC_ACCESS, ExitReason.EPT_VIOLATION)).sum())
    assert group_by(VIEWS["reason"], t.exits, Context.of(t)).selected == len(t.exits)


def random_exits(n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ex = np.zeros(n, dtype=EXIT_DTYPE)
    ex["seq"] = np.arange(n)
    ex["rip"] = 0x1000 + rng.integers(0, 0x300, n)
    ex["caller"] = rng.choice([0, 0x1150, 0x1250], n)
    ex["reason"] = rng.choice([ExitReason.IO_INSTRUCTION, ExitReason.VMCALL, ExitReason.APIC_ACCESS, ExitReason.HLT], n)
    ex["direction"] = rng.integers(0, 3, n)
    ex["qualifier"] = rng.choice([0x1F0, 0x1F7, 0xFEE000B0], n)
    ex["cost"] = rng.choice([1790, 14526, 17385], n) + rng.integers(0, 3, n)
    return ex


def tallied(view, ex, chunk):
    """What group_by keeps, as plain lists."""
    t = synthetic()
    sums = {"cost": lambda part, start: part["cost"] * 1e6 / 2_830_000_000, "start": lambda part, start:
            np.arange(start, start + len(part), dtype=np.float64)}
    pairs = {"rip": lambda part, start: part["rip"].astype(np.int64), "cost": lambda part, start: part["cost"].astype(np.int64)}
    g = group_by(view, ex, Context.of(t), sums, pairs, chunk)
    return ([g.keys.tolist(), g.counts.tolist()] + [g.sums[k].tobytes() for k in sums]
            + [(p.group.tolist(), p.value.tolist(), p.count.tolist()) for p in g.pairs.values()]
            + [g.most_frequent("rip").tolist()])


@pytest.mark.parametrize("by", list(VIEWS))
def test_any_chunk_size_groups_alike_bit_for_bit(by):
    """Counts and pairs are exact, and float sums carry over from chunk to chunk: the same bits as one pass."""
    ex = random_exits(1500)
    whole = tallied(VIEWS[by], ex, len(ex))
    for chunk in (1, 3, 64, 1499):
        assert tallied(VIEWS[by], ex, chunk) == whole, chunk


def test_sums_are_those_of_one_bincount():
    ex = random_exits(3000)
    t = synthetic()
    us = ex["cost"] * 1e6 / 2_830_000_000
    g = group_by(VIEWS["address"], ex, Context.of(t), {"us": lambda part, start: part["cost"] * 1e6 / 2_830_000_000},
                 chunk=7)
    _, inverse = np.unique(ex["rip"].astype(np.int64), return_inverse=True)
    assert g.sums["us"].tobytes() == np.bincount(inverse, weights=us).tobytes()


@pytest.mark.parametrize("by", analysis.COMPARE_CHOICES)
def test_report_and_compare_name_rows_alike(by):
    """A comparison's rows carry the labels the report's rows decode to (same keys, same decoder)."""
    before, after = synthetic(), _after()
    before.meta["guest_sha256"] = after.meta["guest_sha256"] = "same"
    rep = analysis.report(before, by, top=None)
    ctx = Context.of(before)
    groups = group_by(VIEWS[by], before.exits, ctx)
    labels = {groups.label(g, ctx) for g in range(len(groups.keys))}
    compared = {r["key"] for r in analysis.compare(before, after, by).rows if r["before"]}
    assert compared == labels and len(rep.rows) == len(labels)


def test_dense_and_sparse_grouping_agree():
    keys = np.array([5, 3, 5, 9, 3, 5], dtype=np.int64)
    sparse = keys * (views.DENSE_RANGE + 1)
    for k in (keys, sparse):
        uniq, inverse, counts = group(k)
        assert list(counts) == [2, 3, 1] and list(uniq[inverse]) == list(k)


def test_unknown_views_are_refused():
    with pytest.raises(ValueError, match="unknown report"):
        analysis.report(synthetic(), "nope")
    assert set(analysis.COMPARE_CHOICES) == {"function", "address", "reason", "port"}


def test_symbols_of_several_domains_stay_in_their_domain():
    """d<domid>:name at domid << 32 | address: an address of domain 1 below its first symbol is unknown,
    not the last symbol of domain 0; address 0 is unknown in every domain."""
    from vmexit.symbols import SymbolTable
    table = SymbolTable.of_domains({"d0:a": 0x100, "d0:b": 0x200, "d1:x": 0x150})
    d1 = 1 << 32
    got = table.names_of(np.array([0x100, 0x180, 0x250, d1 | 0x120, d1 | 0x160, d1, 0], dtype=np.uint64))
    assert got.tolist() == ["d0:a", "d0:a", "d0:b", "[unknown]", "d1:x", "[unknown]", "[unknown]"]
    plain = SymbolTable({"a": 0x100})
    assert plain.names_of(np.array([0, 0x50, 0x100, 0x900])).tolist() == ["[unknown]", "[unknown]", "a", "a"]


def test_hypercall_keys_carry_the_sub_operation():
    ex = np.zeros(3, dtype=EXIT_DTYPE)
    ex["reason"] = ExitReason.VMCALL
    ex["qualifier"] = [20, 20, 32]
    ex["subop"] = [5, 0, 4]
    t = synthetic()
    t.meta["hypervisor"] = "xen-pv"
    ctx = Context.of(t)
    keys = VIEWS["hypercall"].key(ex, ctx)
    assert [VIEWS["hypercall"].decode(int(k), ctx)["hypercall"] for k in keys] == [
        "grant_table_op:copy", "grant_table_op:map_grant_ref", "event_channel_op:send"]
    t.meta["subops_recorded"] = False   # a format-2 trace: plain names
    assert VIEWS["hypercall"].decode(int(keys[0]), Context.of(t))["hypercall"] == "grant_table_op"
