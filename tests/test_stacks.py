"""Exit stacks by construction (issue 17): a guest with a known call tree gives exactly its stacks and
counts, in every output; corrupt frame chains end a stack without an error; older traces report the
caller only."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vmexit import analysis, timeline
from vmexit.cli import main
from vmexit.exits import EMULATED_DTYPE, ExitReason
from vmexit.render import STACK_RENDERERS
from vmexit.stacks import DEPTH, FrameWalker, Stacks, StackTable
from vmexit.trace import EXIT_DTYPE_60, OLD_EXIT_DTYPE, Trace, load

from .conftest import run_inline
from .test_reference import REFERENCE

N = 5
#: main -> a -> b -> out; main -> c -> out (twice): every function keeps its frame pointer
TREE = """
    xor ebp, ebp
    call main
    out 0xf4, al
main:
    push ebp
    mov ebp, esp
    mov ecx, {n}
.Lloop:
    call a
    call c
    dec ecx
    jnz .Lloop
    pop ebp
    ret
a:
    push ebp
    mov ebp, esp
    call b
    pop ebp
    ret
b:
    push ebp
    mov ebp, esp
{corrupt}
    call out
{after}
    pop ebp
    ret
c:
    push ebp
    mov ebp, esp
    call out
    call out
    pop ebp
    ret
out:
    push ebp
    mov ebp, esp
    mov dx, 0x80
    out dx, al
    pop ebp
    ret
"""

EXPECTED = {"_start;main;a;b;out": N, "_start;main;c;out": 2 * N, "_start": 1}


def tree(corrupt: str = "", after: str = "", prefix: str = "", n: int = N) -> Trace:
    return run_inline(prefix + TREE.format(n=n, corrupt=corrupt, after=after))


def stacks_of(t: Trace) -> dict[str, int]:
    return {r["stack"]: r["count"] for r in analysis.report(t, "stack", top=None).rows}


def test_the_call_tree_gives_exactly_its_stacks_and_counts():
    t = tree()
    assert t.meta["status"] == "exited"
    assert stacks_of(t) == EXPECTED
    # one stack id per distinct chain of return addresses: b's call, c's two calls, and the empty one
    assert len(t.stacks) == 1 + 3
    chains = {t.stacks.get(int(s)) for s in t.exits["stack"]}
    assert all(len(c) <= 4 for c in chains)
    io = t.exits["reason"] == ExitReason.IO_INSTRUCTION
    first = np.array([t.stacks.get(int(s))[0] if s else 0 for s in t.exits["stack"]])
    assert np.array_equal(first[io], t.exits["caller"][io])  # the record's caller is the chain's first


def test_collapsed_counts_sum_to_the_runs_exits(tmp_path, capsys):
    trace = tmp_path / "t.npz"
    tree().save(trace)
    for weight in ("exits", "time"):
        assert main(["report", str(trace), "--format", "collapsed", "--weight", weight]) == 0
        lines = capsys.readouterr().out.splitlines()
        counts = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in lines}
        t = load(trace)
        if weight == "exits":
            assert counts == EXPECTED and sum(counts.values()) == len(t.exits)
        else:
            assert sum(counts.values()) == int(t.exits["cost"].sum())


def test_speedscope_file_has_the_frames(tmp_path, capsys):
    trace = tmp_path / "t.npz"
    tree().save(trace)
    assert main(["report", str(trace), "--format", "speedscope"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert sorted(names) == ["_start", "a", "b", "c", "main", "out"]
    profile = doc["profiles"][0]
    assert profile["type"] == "sampled" and profile["unit"] == "none"
    got = {";".join(names[i] for i in s): w for s, w in zip(profile["samples"], profile["weights"])}
    assert got == EXPECTED and profile["endValue"] == sum(EXPECTED.values())


@pytest.mark.parametrize("corrupt", [
    "    mov dword ptr [ebp], 0xf0000000",   # the caller's frame outside RAM
    "    mov dword ptr [ebp], ebp",          # a frame pointing at itself
    "    mov eax, ebp\n    add eax, 2\n    mov dword ptr [ebp], eax",  # misaligned
    "    mov dword ptr [ebp], 0",            # zero
])
def test_a_corrupt_chain_ends_the_stack_without_an_error(corrupt):
    t = tree(corrupt, after="    out 0xf4, al", n=1)
    assert t.meta["status"] == "exited"
    assert stacks_of(t) == {"a;b;out": 1, "a;b": 1}


def test_a_loop_through_two_frames_ends_the_stack():
    # b's saved frame points at out's, which points back at b's: the walk stops at the repeat
    body = """
    sub esp, 8
    mov dword ptr [esp], ebp
    mov dword ptr [esp + 4], 0x100000
    mov eax, esp
    mov dword ptr [ebp], eax
    mov ebp, esp
    mov dx, 0x80
    out dx, al
    out 0xf4, al
"""
    t = tree(body, n=1)
    assert t.meta["status"] == "exited"
    chain = t.stacks.get(int(t.exits[t.exits["qualifier"] == 0x80]["stack"][0]))
    assert chain[0] == 0x100000 and len(chain) == 2  # the fake frame, then b's (into a), then the repeat
    assert stacks_of(t) == {"a;[unknown];b": 2}  # 0x100000 - 1 is below every symbol


def test_depth_is_bounded():
    deep = """
    xor ebp, ebp
    mov ecx, 40
    call rec
    out 0xf4, al
rec:
    push ebp
    mov ebp, esp
    dec ecx
    jz .Lbottom
    call rec
    pop ebp
    ret
.Lbottom:
    mov dx, 0x80
    out dx, al
    pop ebp
    ret
"""
    t = run_inline(deep)
    io = t.exits[t.exits["qualifier"] == 0x80][0]
    assert len(t.stacks.get(int(io["stack"]))) == DEPTH


PAGING = """
    mov edi, 0x31000                    # identity-map the first 4 MiB, but the stack page 0x8f000 at 0x200000
    xor ecx, ecx
.Lpt:
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov dword ptr [edi + ecx * 4], eax
    inc ecx
    cmp ecx, 1024
    jb .Lpt
    mov dword ptr [0x31000 + 0x8f * 4], 0x200003
    mov dword ptr [0x30000], 0x31003
    mov eax, 0x30000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    rdtsc                               # ends the slice: the vCPU reads CR0 at the next one
"""


def test_stacks_are_read_through_the_guests_page_tables():
    t = tree(prefix=PAGING)
    assert t.meta["status"] == "exited"
    assert stacks_of(t) == EXPECTED


def test_the_walk_is_remembered_only_while_its_bytes_are_unchanged():
    ram = bytearray(0x1000)
    walker = FrameWalker(ram, StackTable(), lambda a: a)
    ram[0x800:0x810] = (0x810).to_bytes(4, "little") + (0x1234).to_bytes(4, "little") + bytes(8)
    ram[0x814:0x818] = (0x5678).to_bytes(4, "little")
    first = walker.walk(0x800)
    assert walker.table.table().get(first[1]) == (0x1234, 0x5678) and first[0] == 0x1234
    ram[0x814:0x818] = (0x9ABC).to_bytes(4, "little")  # the outer return address changes
    assert walker.walk(0x800) != first
    second = walker.walk(0x800)
    assert second != first
    assert walker.table.table().get(second[1]) == (0x1234, 0x9ABC)
    assert walker.walk(0x800) == second and walker.walk_virtual(0x800) == second


def test_interval_rows_add_up_to_the_view():
    t = tree(n=50)
    rep = timeline.intervals(t, "function", 1e-6)
    assert sum(r["count"] for r in rep.rows) == len(t.exits)
    assert {r["key"] for r in rep.rows} == {"out", "_start"}
    assert [r["interval"] for r in rep.rows] == sorted(r["interval"] for r in rep.rows)
    with pytest.raises(ValueError):
        timeline.intervals(t, "function", 0)


def test_sort_orders_every_summary_view():
    t = tree()
    for by in ("function", "address", "caller", "reason", "port", "hypercall", "domain", "stack"):
        for sort in analysis.SORT_CHOICES:
            analysis.report(t, by, top=None, sort=sort)
    rows = analysis.report(t, "stack", top=None, sort="time").rows
    assert [r["time_s"] for r in rows] == sorted((r["time_s"] for r in rows), reverse=True)


def _old(t: Trace, dtype: np.dtype, version: int, path) -> None:
    old = np.zeros(len(t.exits), dtype=dtype)
    for name in dtype.names:
        old[name] = t.exits[name]
    meta = dict(t.meta, format="vmexit-trace", format_version=version)
    names = sorted(t.symbols)
    np.savez_compressed(path, exits=old, emulated=t.emulated, symbol_names=np.array(names),
                        symbol_addresses=np.array([t.symbols[n] for n in names], dtype=np.uint32),
                        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


@pytest.mark.parametrize("dtype,version", [(OLD_EXIT_DTYPE, 2), (EXIT_DTYPE_60, 3)])
def test_older_traces_report_the_caller_only(tmp_path, dtype, version):
    _old(tree(), dtype, version, tmp_path / "old.npz")
    back = load(tmp_path / "old.npz")
    assert back.stacks is None and not back.exits["stack"].any()
    assert stacks_of(back) == {"b;out": N, "c;out": 2 * N, "_start": 1}
    rep = analysis.report(back, "stack", top=None)
    assert "no stack table" in rep.footer
    assert sum(int(line.rsplit(" ", 1)[1]) for line in STACK_RENDERERS["collapsed"](rep).splitlines()) == len(back.exits)


def test_a_recorded_format_2_reference_reports_caller_only(tmp_path):
    with np.load(REFERENCE / "fork-xen-pv.npz") as ref:
        recorded = ref["exits"]
    meta = {"format": "vmexit-trace", "format_version": 2, "freq_hz": 1000, "hypervisor": "xen-pv"}
    np.savez_compressed(tmp_path / "old.npz", exits=recorded, emulated=np.zeros(0, dtype=EMULATED_DTYPE),
                        symbol_names=np.zeros(0, dtype="<U1"), symbol_addresses=np.zeros(0, dtype=np.uint32),
                        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    back = load(tmp_path / "old.npz")
    rows = analysis.report(back, "stack", top=None).rows
    assert sum(r["count"] for r in rows) == len(recorded) and all(len(r["frames"]) <= 2 for r in rows)


def test_a_saved_trace_keeps_its_stacks(tmp_path):
    t = tree()
    t.save(tmp_path / "t.npz")
    back = load(tmp_path / "t.npz")
    assert np.array_equal(back.stacks.frames, t.stacks.frames) and np.array_equal(back.stacks.starts, t.stacks.starts)
    assert stacks_of(back) == EXPECTED


def test_merged_domains_name_frames_per_domain():
    from vmexit.trace import merge_domains
    a, b = tree(), tree(n=2)
    a.meta["domid"], b.meta["domid"] = 0, 1
    merged = merge_domains([a, b], {"cycles": 10 ** 9})
    got = stacks_of(merged)
    assert got["d0:_start;d0:main;d0:a;d0:b;d0:out"] == N
    assert got["d1:_start;d1:main;d1:c;d1:out"] == 4
    assert sum(got.values()) == len(merged.exits)


def test_stack_table_layout():
    s = Stacks.of([(), (1, 2), (3,)])
    assert len(s) == 3 and s.get(1) == (1, 2) and s.get(0) == () and list(s.depths()) == [0, 2, 1]
    merged, offsets = Stacks.concat([s, Stacks.of([(), (9,)])])
    assert offsets == [0, 2] and merged.get(3) == (9,)


def test_cli_interval_sort_and_figures(tmp_path, capsys):
    trace = tmp_path / "t.npz"
    tree(n=20).save(trace)
    assert main(["report", str(trace), "--interval", "0.000001", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "interval,start_s,key,count,time_s"
    assert sum(int(line.split(",")[3]) for line in lines[1:]) == 61
    assert main(["report", str(trace), "--by", "reason", "--sort", "max", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["max_us"] for r in rows] == sorted((r["max_us"] for r in rows), reverse=True) and "p5_us" in rows[0]
    for bad in (["--interval", "0"], ["--interval", "nan"], ["--interval", "1", "--format", "collapsed"],
                ["--plot", str(tmp_path / "x.pdf")], ["--interval", "1", "--by", "stack"]):
        assert main(["report", str(trace), *bad]) == 2, bad
        capsys.readouterr()
    pytest.importorskip("matplotlib")
    for args, name in ((["--by", "stack"], "flame.svg"), (["--interval", "0.00001"], "timeline.png")):
        assert main(["report", str(trace), *args, "--plot", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 1000
    first = (tmp_path / "flame.svg").read_bytes()
    assert main(["report", str(trace), "--weight", "time", "--plot", str(tmp_path / "flame.svg")]) == 0
    assert main(["report", str(trace), "--plot", str(tmp_path / "again.svg")]) == 0
    assert (tmp_path / "again.svg").read_bytes() == first  # figures are deterministic
    capsys.readouterr()


def test_the_stack_table_is_bounded():
    table = StackTable(limit=3)
    assert [table.intern(s) for s in [(1,), (1, 2), (1, 3), (4, 5), ()]] == [1, 2, 1, 0, 0]
    assert len(table) == 3 and table.truncated == 2
