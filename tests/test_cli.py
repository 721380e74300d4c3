"""The vmexit command: what users type, exit codes, one-line errors, traces kept on every ending."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vmexit.asm import build_guest
from vmexit.cli import EXIT_BUDGET, EXIT_CRASH, EXIT_OK, EXIT_USAGE, main
from vmexit.trace import load

from .conftest import PRELUDE


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_guest(tmp_path, body, name="g.elf"):
    path = tmp_path / name
    path.write_bytes(build_guest(PRELUDE + body))
    return path


def test_guests_lists_bundled(capsys):
    code, out, _ = run_cli(capsys, "guests")
    assert code == EXIT_OK
    guests, scenarios = out.split("\n\n")
    assert [line.split()[0] for line in guests.splitlines()] == ["timer", "ide", "netperf", "bonnie", "specjbb", "fork", "exec"]
    assert scenarios.startswith("Scenarios (several domains") and scenarios.splitlines()[1].split()[0] == "xennet"


def test_run_ide_save_and_report(capsys, tmp_path):
    trace = tmp_path / "ide.npz"
    code, out, err = run_cli(capsys, "run", "ide", "-o", str(trace), "--by", "reason")
    assert code == EXIT_OK and err == ""
    assert out.startswith("Analyze events for all VMs, all VCPUs")
    assert "IO_INSTRUCTION" in out and "Total Samples:" in out
    code, out, _ = run_cli(capsys, "report", str(trace), "--by", "function", "--top", "3", "--format", "markdown")
    assert code == EXIT_OK and out.startswith("### Hot functions (ide)")
    assert "| 1 | " in out and "__ide_do_rw_disk" in out
    code, out, _ = run_cli(capsys, "report", str(trace), "--profile", "kvm-skylake", "--format", "json")
    assert json.loads(out)["totals"]["profile"] == "kvm-skylake"


def test_defines_change_the_guest(capsys):
    code, out, _ = run_cli(capsys, "run", "ide", "-D", "SECTORS=2", "--by", "port", "--format", "json", "--top", "0")
    rows = {r["key"]: r["count"] for r in json.loads(out)["rows"]}
    assert code == EXIT_OK and rows["0x1f6:POUT"] == 4 + 1


def test_budget_exit_code_keeps_trace(capsys, tmp_path):
    trace = tmp_path / "t.npz"
    code, _, err = run_cli(capsys, "run", "timer", "--max-instructions", "100000", "-o", str(trace))
    assert code == EXIT_BUDGET and "budget" in err and "trace saved" in err
    assert load(trace).meta["status"] == "budget" and load(trace).meta["instructions"] == 100000


def test_crash_exit_code_keeps_trace(capsys, tmp_path):
    guest = write_guest(tmp_path, "    out 0x80, al\n    xor ecx, ecx\n    div ecx\n")
    trace = tmp_path / "t.npz"
    code, _, err = run_cli(capsys, "run", str(guest), "-o", str(trace))
    assert code == EXIT_CRASH and "triple fault" in err and " at 0x" in err
    t = load(trace)
    assert t.meta["status"] == "crashed" and len(t.exits) == 2


def test_halt_with_interrupts_off_is_a_clean_end(capsys, tmp_path):
    guest = write_guest(tmp_path, "    cli\n    hlt\n")
    code, out, err = run_cli(capsys, "run", str(guest))
    assert code == EXIT_OK and "halted" in out


@pytest.mark.parametrize("argv,message", [
    (["run", "no-such-guest"], "unknown guest"),
    (["run", "/nonexistent/g.elf"], "no such guest file"),
    (["run", "ide", "--profile", "nope"], "unknown cost profile"),
    (["report", "/nonexistent/t.npz"], "no such trace"),
    (["run", "ide", "-o", "/nonexistent/dir/t.npz"], "does not exist"),
    (["run", "ide", "--disk", "/nonexistent/disk.img"], "no such disk image"),
    (["run", "ide", "--opt", "turbo"], "unknown optimization 'turbo'"),
    (["run", "ide", "--opt", "tick-hz=0"], "outside"),
    (["reproduce", "--out", "/dev/null"], "not a directory"),
])
def test_bad_input_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("vmexit: error:")


def test_bad_guest_files(capsys, tmp_path):
    (tmp_path / "empty.elf").write_bytes(b"")
    (tmp_path / "text.elf").write_text("hello")
    good = build_guest(PRELUDE + "    hlt\n")
    (tmp_path / "cut.elf").write_bytes(good[:60])
    (tmp_path / "nomb.elf").write_bytes(build_guest("_start: hlt\n"))
    for name, message in (("empty.elf", "empty"), ("text.elf", "--symbols"), ("cut.elf", ""),
                          ("nomb.elf", "multiboot")):
        code, _, err = run_cli(capsys, "run", str(tmp_path / name))
        assert code == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1


def test_disk_image_is_not_modified(capsys, tmp_path):
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(1 << 20))
    code, out, _ = run_cli(capsys, "run", "ide", "--disk", str(disk))
    assert code == EXIT_OK and disk.read_bytes() == bytes(1 << 20)
    code, out, _ = run_cli(capsys, "run", "ide", "--disk", str(disk), "--disk-writable")
    assert code == EXIT_OK and disk.read_bytes() != bytes(1 << 20)


def test_no_traceback_reaches_the_user(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    r = subprocess.run([sys.executable, "-m", "vmexit", "report", str(tmp_path / "bad.npz")],
                       capture_output=True, text=True)
    assert r.returncode == EXIT_USAGE and "Traceback" not in r.stderr
    assert r.stderr.startswith("vmexit: error:")


def test_build_writes_a_bootable_elf(capsys, tmp_path):
    out_file = tmp_path / "ide64.elf"
    code, out, _ = run_cli(capsys, "build", "ide", "-D", "SECTORS=64", "-o", str(out_file))
    assert code == EXIT_OK and out_file.read_bytes()[:4] == b"\x7fELF"
    code, out, _ = run_cli(capsys, "run", str(out_file), "--by", "reason", "--format", "json")
    assert json.loads(out)["totals"]["status"] == "exited"


def test_segment_outside_ram_is_bad_input(capsys, tmp_path):
    from vmexit.asm import assemble, build_elf
    code, syms = assemble(PRELUDE + "    hlt\n", base=0x100000)
    path = tmp_path / "big.elf"
    path.write_bytes(build_elf(code, syms, syms["_start"], bss=200 << 20))
    code, _, err = run_cli(capsys, "run", str(path))
    assert code == EXIT_USAGE and "outside guest RAM" in err
    code, _, err = run_cli(capsys, "run", str(path), "--memory", "256M")
    assert code == EXIT_OK


def test_compare_two_runs(capsys, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run_cli(capsys, "run", "ide", "-o", str(a))[0] == EXIT_OK
    assert run_cli(capsys, "run", "ide", "-D", "SECTORS=4", "-o", str(b))[0] == EXIT_OK
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "--format", "json")
    doc = json.loads(out)
    rows = {r["key"]: r for r in doc["rows"]}
    # 11 taskfile outb per request: 32 requests before, 8 after
    assert code == EXIT_OK and rows["__ide_do_rw_disk"]["before"] == 352 and rows["__ide_do_rw_disk"]["after"] == 88
    assert doc["totals"]["matched_by"] == "function name"


def test_ctrl_c_keeps_the_trace(capsys, tmp_path, monkeypatch):
    from vmexit.devices import uart
    calls = []

    def interrupted(self, port, size, value):
        calls.append(port)
        if len(calls) == 20:
            raise KeyboardInterrupt
    monkeypatch.setattr(uart.UART16550, "write", interrupted)
    trace = tmp_path / "t.npz"
    code, _, err = run_cli(capsys, "run", "ide", "-o", str(trace))
    assert code == 130 and "interrupted" in err and "trace saved" in err
    t = load(trace)
    assert t.meta["status"] == "interrupted" and len(t.exits) >= 19


def test_huge_bss_is_refused_without_allocating(capsys, tmp_path):
    from vmexit.asm import assemble, build_elf
    code, syms = assemble(PRELUDE + "    hlt\n", base=0x100000)
    path = tmp_path / "huge.elf"
    path.write_bytes(build_elf(code, syms, syms["_start"], bss=0xFFF00000))
    code, _, err = run_cli(capsys, "run", str(path))
    assert code == EXIT_USAGE and "outside guest RAM" in err


def test_paper_beside_ours(capsys):
    code, out, _ = run_cli(capsys, "run", "specjbb", "--paper", "--format", "json")
    doc = json.loads(out)
    assert code == EXIT_OK and doc["by"] == "paper"
    paper_rows = [r for r in doc["rows"] if r["paper_rank"] is not None]
    assert [r["function"] for r in paper_rows] == ["ack_ioapic_irq", "__do_softirq", "timer_interrupt",
                                                   "smp_apic_timer_interrupt", "timer_interrupt"]
    assert paper_rows[0]["paper_exits"] == 607251 and paper_rows[0]["count"] == 20
    code, _, err = run_cli(capsys, "run", "ide", "--paper")
    assert code == EXIT_USAGE and "no table" in err


def test_network_peer_options(capsys):
    code, out, _ = run_cli(capsys, "run", "netperf", "--net-ack-every", "4", "--format", "json")
    net = json.loads(out)["totals"]["network"]
    assert code == EXIT_OK and net["frames_out"] == 192 and 192 // 4 - 2 <= net["frames_in"] <= 192 // 4
    code, _, err = run_cli(capsys, "run", "netperf", "--net-ack-every", "0")
    assert code == EXIT_USAGE and "--net-ack-every" in err


def test_optimizations_recorded_and_shown_in_compare(capsys, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run_cli(capsys, "run", "ide", "-o", str(a))[0] == EXIT_OK
    code, out, _ = run_cli(capsys, "run", "ide", "--opt", "coalesce", "-o", str(b))
    assert code == EXIT_OK
    assert "Optimization coalesce=64: 330 port accesses handled inside 34 exits" in out
    t = load(b)
    assert t.meta["options"]["optimizations"] == {"coalesce": 64}
    assert len(t.emulated) == 330
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "--by", "address")
    assert code == EXIT_OK and "Before: default; after: --opt coalesce=64" in out
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "--format", "json")
    doc = json.loads(out)
    rows = {r["key"]: r for r in doc["rows"]}
    assert (rows["__ide_do_rw_disk"]["before"], rows["__ide_do_rw_disk"]["after"]) == (352, 32)
    assert doc["totals"]["after"]["variant"] == "--opt coalesce=64"
    # re-pricing under another profile prices the emulated accesses too
    code, out, _ = run_cli(capsys, "report", str(b), "--profile", "kvm-skylake", "--format", "json")
    assert code == EXIT_OK


def test_sweep_rows_by_construction(capsys, tmp_path):
    plot = tmp_path / "sweep.svg"
    code, out, _ = run_cli(capsys, "sweep", "ide", "-D", "SECTORS=4,8", "--opt", "coalesce=off,64",
                           "--per", "SECTORS", "--format", "json", "--plot", str(plot), "--no-progress")
    assert code == EXIT_OK
    rows = {(r["-D SECTORS"], r["--opt coalesce"]): r for r in json.loads(out)["rows"]}
    assert len(rows) == 4
    # 15 exits a request, 2 requests a sector; coalesced, 5 a request
    assert rows[(8, "off")]["exits"] - rows[(4, "off")]["exits"] == 15 * 2 * 4
    assert rows[(8, 64)]["exits"] - rows[(4, 64)]["exits"] == 5 * 2 * 4
    assert rows[(8, "off")]["operations"] == 8
    assert rows[(8, "off")]["exits_per_op"] == rows[(8, "off")]["exits"] / 8
    if plot.exists():  # matplotlib installed
        assert plot.read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize("argv,message", [
    (["sweep", "ide"], "nothing to sweep"),
    (["sweep", "ide", "-D", "SECTORS=4", "--per", "NOPE"], "has no constant NOPE"),
    (["sweep", "ide", "--opt", "coalesce"], "NAME=V1,V2"),
    (["sweep", "ide", "-D", "SECTORS=4", "--plot", "x.pdf"], "must end in .png or .svg"),
])
def test_sweep_bad_input(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1


def test_fork_beside_seed_001(capsys):
    code, out, _ = run_cli(capsys, "run", "fork", "--paper", "--format", "json")
    assert code == EXIT_OK
    rows = json.loads(out)["rows"]
    assert [r["paper_us"] for r in rows] == [130, 451, 252]
    # per fork of 32 pages (BATCH=16, 8 pages touched): mmu_update 64/16 + 32/16, 8 update_va_mapping,
    # 4 mmuext_op, 8 bounced faults; offloaded, the 8 faults are fixed in Xen and need no hypercall
    assert [(r["exits_per_op"], r["hypercalls_per_op"]) for r in rows] == [(0, 0), (26, 18), (18, 10)]
    assert rows[0]["us"] < rows[2]["us"] < rows[1]["us"]


def test_sweep_of_the_batch_size_under_xen(capsys):
    code, out, _ = run_cli(capsys, "sweep", "fork", "--hypervisor", "xen-pv", "-D", "BATCH=1,2,4",
                           "--format", "json", "--no-progress")
    assert code == EXIT_OK
    exits = {r["-D BATCH"]: r["exits"] for r in json.loads(out)["rows"]}
    per_fork = {b: -(-64 // b) - (-32 // b) for b in (1, 2, 4)}   # ceil(2M/B) + ceil(M/B)
    assert exits[1] - exits[2] == 4 * (per_fork[1] - per_fork[2])
    assert exits[2] - exits[4] == 4 * (per_fork[2] - per_fork[4])


@pytest.mark.parametrize("argv,message", [
    (["run", "timer", "--input-file", "/nonexistent/typed.txt"], "cannot read --input-file"),
    (["run", "timer", "--input", "x", "--input-file", "f"], "not both"),
    (["run", "timer", "--disk1", "/nonexistent/slave.img"], "no such disk image"),
])
def test_pc_options_bad_input(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1


_WITHOUT_EMULATOR = r"""
import contextlib, importlib.abc, io, json, sys

BLOCKED = ("unicorn", "capstone", "keystone")


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here")
        return None


for name in BLOCKED:
    sys.modules[name] = None
sys.meta_path.insert(0, Blocked())

from vmexit.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    results.append([code, out.getvalue()])
loaded = sorted(m for m, module in sys.modules.items()
                if module is not None and m.partition(".")[0] in BLOCKED + ("vmexit",))
print(json.dumps({"results": results, "loaded": loaded}))
"""


def test_report_and_compare_need_no_emulator(tmp_path, capsys):
    """Every view of `report` and `compare`, in every format, from saved traces, in a Python where
    unicorn, capstone and keystone cannot be imported: the same output as here."""
    from vmexit import analysis, guests, session
    from vmexit.costs import load_profile
    from vmexit.hypervisors import HYPERVISORS
    from vmexit.render import RENDERERS
    runs = {"ide": ("ide", {}, {}), "ide-coalesce": ("ide", {}, {"optimizations": {"coalesce": 64}}),
            "ide4": ("ide", {"SECTORS": 4}, {}), "specjbb": ("specjbb", {}, {}),
            "fork": ("fork", {}, {"hypervisor": "xen-pv"})}
    for name, (guest, constants, options) in runs.items():
        profile = load_profile(HYPERVISORS[options.get("hypervisor", "kvm")].profile)
        session.run(guests.resolve(guest, constants), profile, session.RunOptions(**options)).save(
            tmp_path / f"{name}.npz")
    trace = {name: str(tmp_path / f"{name}.npz") for name in runs}
    argvs = [["report", trace[t], "--by", by, "--format", fmt] + (["--callers"] if callers else [])
             for t in ("ide", "specjbb", "fork") for by in analysis.BY_CHOICES for fmt in RENDERERS
             for callers in (False, True)]
    argvs += [["report", trace["ide"], "--profile", "kvm-skylake", "--by", "reason"]]
    argvs += [["compare", trace["ide"], trace[after], "--by", by, "--format", fmt]
              for after in ("ide-coalesce", "ide4") for by in analysis.COMPARE_CHOICES for fmt in RENDERERS]
    r = subprocess.run([sys.executable, "-c", _WITHOUT_EMULATOR, json.dumps(argvs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert not {"unicorn", "capstone", "keystone", "vmexit.session", "vmexit.guests"} & set(doc["loaded"])
    for argv, (code, out) in zip(argvs, doc["results"]):
        assert (code, out) == run_cli(capsys, *argv)[:2], argv


# scenarios of several domains: the CLI path, with a stand-in for vmexit.scenarios ----------------------
class _FakeScenarios:
    """run_scenario(name, constants, profile, options) -> (traces, host facts), as vmexit.scenarios
    offers it: the two-domain run of test_analysis, its throughput set by SHARED_BUFFERS."""

    class Entry:   # as scenarios.Scenario: name, summary, the profile it defaults to, its paper
        from vmexit.scenarios.xennet import beside_paper as _paper
        name, summary, profile = "xennet", "two domains", "xen-pv-q9550"
        paper = staticmethod(_paper)

    SCENARIOS = {"xennet": Entry()}

    def __init__(self):
        self.calls = []

    def run_scenario(self, name, constants, profile, options):
        from .test_analysis import HOST, two_domains
        self.calls.append((name, dict(constants), profile.name, options.hypervisor))
        mbit = 400.0 + 40.0 * constants.get("SHARED_BUFFERS", 0)
        host = {k: v for k, v in dict(HOST, throughput_mbit_s=mbit, slice_cycles=90_000_000, domains=2).items()
                if k != "name"}
        return two_domains(), host   # as Host.facts() gives them (plus the throughput)


@pytest.fixture
def scenarios(monkeypatch):
    from vmexit import cli
    fake = _FakeScenarios()
    monkeypatch.setattr(cli, "_scenarios", lambda: fake)
    return fake


def test_run_a_scenario_reports_the_merged_run_and_its_domains(capsys, tmp_path, scenarios):
    code, out, err = run_cli(capsys, "run", "xennet", "-D", "MSG_SIZE=2048", "-o", str(tmp_path / "x.npz"))
    assert code == EXIT_OK and err == ""
    assert scenarios.calls == [("xennet", {"MSG_SIZE": 2048}, "xen-pv-q9550", "xen-pv")]
    assert out.startswith("Hot functions (xennet)") and "d0:net_rx_action" in out
    assert "\nDomains (xennet)\n" in out and "Per packet (10 NIC frames): 1.10 exits" in out
    t = load(tmp_path / "x.npz")
    assert len(t.exits) == 11 and [d["name"] for d in t.meta["domains"]] == ["dom0", "domU"]
    code, out2, _ = run_cli(capsys, "report", str(tmp_path / "x.npz"), "--by", "domain")
    assert code == EXIT_OK and out2 in out   # the saved trace gives the same per-domain summary


def test_domain_restricts_a_scenario_run_and_a_saved_trace(capsys, tmp_path, scenarios):
    code, out, _ = run_cli(capsys, "run", "xennet", "--domain", "1", "--by", "hypercall", "-o", str(tmp_path / "x.npz"))
    assert code == EXIT_OK
    assert "event_channel_op:send" in out and "grant_table_op:map_grant_ref" in out and "copy" not in out
    code, out, _ = run_cli(capsys, "report", str(tmp_path / "x.npz"), "--domain", "1", "--format", "json")
    doc = json.loads(out)
    assert doc["title"] == "Hot functions (netfront)" and [r["function"] for r in doc["rows"]] == [
        "xennet_poll", "xennet_start_xmit"]
    code, out, _ = run_cli(capsys, "compare", str(tmp_path / "x.npz"), str(tmp_path / "x.npz"), "--domain", "0")
    assert code == EXIT_OK and "net_rx_action" in out and "xennet" not in out.split("\n", 2)[2]


def test_scenario_json_carries_the_domains(capsys, scenarios):
    code, out, _ = run_cli(capsys, "run", "xennet", "--by", "reason", "--format", "json")
    doc = json.loads(out)
    assert code == EXIT_OK and doc["by"] == "reason"
    assert [r["count"] for r in doc["domains"]["rows"]] == [6, 5]
    assert doc["totals"]["network"]["per_packet"]["notifications"] == 0.4


def test_scenario_beside_the_xen_network_paper(capsys, scenarios):
    code, out, err = run_cli(capsys, "run", "xennet", "--paper", "-D", "MSG_SIZE=1024")
    assert code == EXIT_OK, err
    assert [c[1] for c in scenarios.calls] == [{"MSG_SIZE": 1024, "SHARED_BUFFERS": 0},
                                               {"MSG_SIZE": 1024, "SHARED_BUFFERS": 1}]
    rows = [line.split() for line in out.splitlines() if line.startswith(("Native Xen", "Enhanced Xen"))]
    # paper 447.61 / 471.29 (1.053); ours 400 / 440 (1.100)
    assert rows == [["Native", "Xen", "-D", "SHARED_BUFFERS=0", "447.610", "400.000", "1.000", "1.000"],
                    ["Enhanced", "Xen", "-D", "SHARED_BUFFERS=1", "471.290", "440.000", "1.053", "1.100"]]
    code, out, _ = run_cli(capsys, "run", "xennet", "--paper")    # the spec's default MSG_SIZE, 4096
    assert code == EXIT_OK and "MSG_SIZE=4096" in out and "463.500" in out


@pytest.mark.parametrize("argv,message", [
    (["run", "xennet", "--paper", "-D", "MSG_SIZE=512"], "the paper measured MSG_SIZE 1024, 2048, 4096, not 512"),
    (["run", "xennet", "--paper", "-o", "x.npz"], "--paper runs the scenario once per system"),
    (["run", "xennet", "--domain", "2"], "the trace has no domain 2 (its domains: 0, 1)"),
    (["run", "timer", "--domain", "1"], "--domain 1: a run of one guest has only domain 0"),
    (["run", "xennet", "-o", "/nonexistent/x.npz"], "directory /nonexistent does not exist"),
])
def test_scenario_bad_input_one_line(capsys, scenarios, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE and err.count("\n") == 1 and message in err and "Traceback" not in err


def test_report_of_a_domain_the_trace_lacks(capsys, tmp_path):
    from .test_analysis import synthetic
    synthetic().save(tmp_path / "one.npz")
    code, _, err = run_cli(capsys, "report", str(tmp_path / "one.npz"), "--domain", "3")
    assert code == EXIT_USAGE and err == "vmexit: error: the trace has no domain 3 (its domains: 0)\n"
    code, out, _ = run_cli(capsys, "report", str(tmp_path / "one.npz"), "--domain", "0")
    assert code == EXIT_OK and out == run_cli(capsys, "report", str(tmp_path / "one.npz"))[1]
