"""The Python API (vmexit.run / load / compare, Trace.count / report): counts derived from the bundled
guests' construction (tests/test_guests.py), rows equal to the JSON renderer's, one exception type."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import vmexit
from vmexit.cli import main
from vmexit.exits import Direction, ExitReason

from .conftest import count

TICKS = 20  # timer's default TICKS


def test_import_is_light_and_load_needs_no_emulator(tmp_path, timer_trace):
    path = tmp_path / "t.npz"
    timer_trace.save(path)
    code = ("import sys, vmexit; light = sorted(m for m in sys.modules if m.startswith('vmexit'));"
            f"t = vmexit.load({str(path)!r}); n = t.count(reason='io'); rows = t.report(by='port');"
            "print(light, 'unicorn' in sys.modules, 'keystone' in sys.modules, n)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['vmexit']", "False", "False", str(count(timer_trace, ExitReason.IO_INSTRUCTION))]


def test_public_names():
    assert set(vmexit.__all__) == {"run", "load", "compare", "import_trace", "Trace", "Rows", "VmexitError", "RunOptionError",
                                   "__version__"}
    for name in vmexit.__all__:
        assert getattr(vmexit, name) is not None
    assert issubclass(vmexit.VmexitError, ValueError) and issubclass(vmexit.RunOptionError, vmexit.VmexitError)
    for fn in (vmexit.run, vmexit.load, vmexit.compare, vmexit.Trace.count, vmexit.Trace.report):
        assert fn.__doc__ and fn.__annotations__


def test_timer_counts_by_construction(timer_trace):
    t = timer_trace
    assert isinstance(t, vmexit.Trace) and t.status == "exited" and t.console == "timer: start\ntimer: done\n"
    assert t.count() == len(t.exits) == 215
    io = count(t, ExitReason.IO_INSTRUCTION)
    assert t.count(reason="IO_INSTRUCTION") == t.count(reason="io") == t.count(reason=30) == io
    # per tick: timer_ack's inb 0x20 in timer_interrupt, called from do_IRQ
    assert t.count(reason="io", port=0x20, direction="in") == t.count(port="0x20", direction="in") == TICKS
    assert t.count(port=0x20, direction="in", function="timer_interrupt", caller="do_IRQ") == TICKS
    assert t.count(function="timer_interrupt") == 2 * TICKS       # timer_ack's outb and inb
    assert t.count(function="mask_and_ack_8259A") == 3 * TICKS    # inb 0x21, outb 0x21, outb 0x20
    # do_IRQ calls mask_and_ack_8259A, timer_interrupt and unmask_8259A_irq: 3 + 2 + 1 exits per tick
    assert t.count(caller="do_IRQ") == 6 * TICKS
    # within: the exit's own function or any on its stack; do_IRQ's callees have no callees that exit
    assert t.count(within="do_IRQ") == 6 * TICKS and t.count(within="timer_interrupt") == 2 * TICKS
    assert t.count(within="mask_and_ack_8259A", function="timer_interrupt") == 0
    assert t.count(reason=["hlt", "interrupt"]) == TICKS           # every tick: out of a HLT or while running
    assert t.count(port=0xF4, direction="out") == 1
    assert t.count(direction="in") + t.count(direction="out") + t.count(direction="none") == 215
    mask = t.mask(reason="io", direction="out")
    assert mask.dtype == bool and int(mask.sum()) == int(np.sum((t.exits["reason"] == ExitReason.IO_INSTRUCTION)
                                                                & (t.exits["direction"] == Direction.OUT)))


def test_report_rows_are_the_json_renderers(tmp_path, capsys, timer_trace):
    path = tmp_path / "timer.npz"
    timer_trace.save(path)
    for by, top in (("function", 4), ("reason", 10), ("port", 0)):
        assert main(["report", str(path), "--by", by, "--top", str(top), "--format", "json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        rows = vmexit.load(path).report(by=by, top=top)
        assert rows == doc["rows"] and rows.totals == doc["totals"] and rows.by == doc["by"]
    rows = timer_trace.report(top=4)
    assert [r["function"] for r in rows] == ["mask_and_ack_8259A", "serial_putc", "timer_interrupt",
                                             "unmask_8259A_irq"]
    assert [r["count"] for r in rows] == [3 * TICKS, 50, 2 * TICKS, TICKS]
    assert rows.render().startswith("Hot functions (timer)")


def test_save_load_round_trip(tmp_path, timer_trace):
    path = tmp_path / "t.npz"
    timer_trace.save(path)
    loaded = vmexit.load(path)
    assert isinstance(loaded, vmexit.Trace)
    assert loaded.count(function="timer_interrupt") == 2 * TICKS and np.array_equal(loaded.exits, timer_trace.exits)


def test_compare_by_construction(vmexit_run, tmp_path):
    # __ide_do_rw_disk: 11 taskfile outb per request, 2 * SECTORS requests
    four, eight = vmexit_run("ide", constants={"SECTORS": 4}), vmexit_run("ide", constants={"SECTORS": 8})
    assert four.count(function="__ide_do_rw_disk") == 11 * 2 * 4
    eight.save(tmp_path / "eight.npz")
    rows = vmexit.compare(four, tmp_path / "eight.npz")
    row = next(r for r in rows if r["key"] == "__ide_do_rw_disk")
    assert (row["before"], row["after"], row["delta"], row["ratio"]) == (88, 176, 88, 2.0)
    assert rows.totals["before"]["exits"] == four.count() and rows.totals["after"]["exits"] == eight.count()
    assert all(r["delta"] == 0 for r in vmexit.compare(four, four, by="reason"))


def test_a_scenario_runs_as_the_cli_runs_it(vmexit_run):
    t = vmexit_run("xennet", max_seconds=0.01)
    assert [m["name"] for m in t.meta["domains"]] == ["dom0", "dom1"]
    assert t.count(domain=0) + t.count(domain="dom1") == t.count() > 0
    both = t.count(function="hypercall_page")
    assert both == t.count(function="d0:hypercall_page") + t.count(function="d1:hypercall_page") > 0
    assert t.domain(1).count(function="hypercall_page") == t.count(function="hypercall_page", domain=1)
    with pytest.raises(vmexit.VmexitError, match="runs under xen-pv"):
        vmexit.run("xennet", hypervisor="kvm")


def test_run_options_are_the_clis(tmp_path):
    seen: list[bytes] = []
    t = vmexit.run("ide", constants={"SECTORS": 1}, memory="8M", console=seen.append, opts=["coalesce"],
                   max_instructions=10 ** 9)
    assert b"".join(seen).decode() == t.console == "ide: start\nide: ok\n"
    assert t.meta["options"]["ram_size"] == 8 << 20 and t.meta["options"]["optimizations"] == {"coalesce": 64}
    assert t.count(function="__ide_do_rw_disk") == 2  # coalesced: one exit per request, two requests
    short = vmexit.run("ide", constants={"SECTORS": 1}, max_instructions=100)
    assert short.status == "budget" and short.meta["instructions"] == 100


def test_the_fixture_runs_once_per_arguments(vmexit_run, timer_trace):
    runs = vmexit_run.runs
    assert vmexit_run("timer") is timer_trace and vmexit_run.runs == runs
    assert not timer_trace.exits.flags.writeable  # shared between tests: read-only


@pytest.mark.parametrize("kwargs,message", [
    ({"memory": "5G"}, "memory=5G: give 2M to 4076M"),
    ({"memory": "1K"}, "memory=1K: give 2M to 4076M"),
    ({"memory": "lots"}, "give a size such as 64M"),
    ({"max_seconds": float("nan")}, "max_seconds=nan: give a finite budget"),
    ({"max_instructions": -1}, "max_instructions=-1: give a budget of 1 to"),
    ({"net_frame_size": 10}, "60 to 1514 bytes"),
    ({"max_instrutions": 5}, "did you mean 'max_instructions'"),
    ({"hypervisor": "xen"}, "choose from kvm, xen-pv, native"),
    ({"opts": {"nope": 1}}, "unknown optimization 'nope'"),
    ({"constants": {"TICKS": "many"}}, "each constant is a NAME and an integer"),
    ({"profile": "no-such-profile"}, "unknown cost profile"),
    ({"input": "x", "input_file": "f"}, "not both"),
    ({"host_timer_hz": 10 ** 12}, "to the CPU clock"),
    ({"console": "yes"}, "give True"),
    ({"disk": 5}, "give the path of a disk image"),
    ({"input_file": 0}, "give the path of a file"),
    ({"input": 5}, "give text or bytes"),
])
def test_bad_run_arguments_raise_vmexit_error(kwargs, message):
    with pytest.raises(vmexit.VmexitError, match=message):
        vmexit.run("timer", **kwargs)


def test_bad_guest_and_trace_raise_vmexit_error(tmp_path):
    with pytest.raises(vmexit.VmexitError, match="unknown guest"):
        vmexit.run("no-such-guest")
    (tmp_path / "x.npz").write_bytes(b"not a trace")
    with pytest.raises(vmexit.VmexitError, match="not a readable vmexit trace"):
        vmexit.load(tmp_path / "x.npz")


@pytest.mark.parametrize("filters,message", [
    ({"reason": "iox"}, "no such exit reason"),
    ({"function": "timer_interupt"}, "did you mean timer_interrupt"),
    ({"caller": 3.5}, "give an integer"),
    ({"direction": "up"}, "give 'in' or 'out'"),
    ({"port": "twenty"}, "give an integer"),
    ({"domain": 3}, "no such domain"),
    ({"fucntion": "putc"}, "unknown filter 'fucntion'; did you mean 'function'"),
])
def test_bad_filters_raise_vmexit_error(timer_trace, filters, message):
    with pytest.raises(vmexit.VmexitError, match=message):
        timer_trace.count(**filters)


@pytest.mark.parametrize("call,message", [
    (lambda t: t.report(top=-3), "top=-3: give the number of rows"),
    (lambda t: t.report(by="nonsense"), "by='nonsense': choose from"),
    (lambda t: t.report().render("html"), "choose from text"),
    (lambda t: vmexit.compare(t, t, by="caller"), "choose from function"),
    (lambda t: vmexit.compare(t, 5), "give a Trace or the path"),
])
def test_bad_report_arguments_raise_vmexit_error(timer_trace, call, message):
    with pytest.raises(vmexit.VmexitError, match=message):
        call(timer_trace)


def test_within_in_a_run_of_several_domains():
    # each domain's stacks are resolved with its own symbols: within a domain's function, as by its
    # name, counts that domain's exits under it and none of the other's
    from vmexit.costs import load_profile
    from vmexit.scenarios import run_scenario
    from vmexit.session import RunOptions
    from vmexit.trace import merge_domains
    run = run_scenario("xennet", {"MESSAGES": 4}, load_profile("xen-pv-q9550"), RunOptions(max_seconds=0.002))
    t = vmexit.Trace.of(merge_domains(run.traces, {"name": "xennet", **run.host}))
    for d in (0, 1):
        own = vmexit.Trace.of(run.traces[d])
        top = own.report("caller", 1)[0]["caller"]
        assert t.count(within=f"d{d}:{top}") == own.count(within=top) > 0
