"""vmexit import perf: perf script text we write ourselves (synth.py) -> a trace with the exits, addresses,
ports, costs and names the text says, by construction."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import vmexit
from vmexit import analysis, cli, guests
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason, Place
from vmexit.api import Trace
from vmexit.importers import events
from vmexit.importers.events import ImportFormatError
from vmexit.render import RENDERERS
from vmexit.trace import load

from . import synth

def import_file(fmt, path, symbols=None, **kwargs) -> Trace:
    """The import through the Python API (vmexit.import_trace), which adds the queries (Trace.count)."""
    return vmexit.import_trace(fmt, path, symbols=symbols, **kwargs)


GOLDEN = Path(__file__).resolve().parent / "golden"
REQUESTS = 100
PROFILE = load_profile(None)
TIMED = synth.ENTRY_US * PROFILE.freq_hz // 1_000_000   # a timed exit's cost: ENTRY_US at the profile's clock


@pytest.fixture
def files(tmp_path):
    """The workload as perf script text, and the kernel's System.map."""
    perf = tmp_path / "perf.txt"
    perf.write_text(synth.perf_text(synth.events(synth.workload(REQUESTS))))
    smap = tmp_path / "System.map"
    smap.write_text(synth.SYSTEM_MAP)
    return perf, smap


def _count(trace, **fields) -> int:
    mask = np.ones(len(trace.exits), dtype=bool)
    for k, v in fields.items():
        mask &= trace.exits[k] == v
    return int(mask.sum())


def test_taskfile_exits_at_their_eleven_addresses(files):
    trace = import_file("perf", files[0], files[1])
    io = int(ExitReason.IO_INSTRUCTION)
    assert _count(trace, reason=io) == 11 * REQUESTS
    for rip, port in zip(synth.TASKFILE_RIPS, synth.TASKFILE_PORTS):
        assert _count(trace, reason=io, rip=rip & 0xFFFFFFFF, qualifier=port, direction=Direction.OUT) == REQUESTS
    assert trace.count(function="__ide_do_rw_disk") == 11 * REQUESTS
    assert trace.count(reason="io", port=0x1F1) == 2 * REQUESTS      # 0x1f1..0x1f5 twice a request
    assert trace.count(reason="io", port=0x1F6) == REQUESTS
    assert _count(trace, reason=io, place=Place.USER, size=1, cost=TIMED) == 11 * REQUESTS


def test_every_other_kind_of_exit(files):
    trace = import_file("perf", files[0], files[1])
    e = trace.exits
    mmio = _count(trace, reason=ExitReason.EPT_VIOLATION, qualifier=0xFEE00380, direction=Direction.OUT, size=4)
    assert mmio == REQUESTS == trace.count(function="lapic_next_event")
    assert _count(trace, reason=ExitReason.EPT_VIOLATION, place=Place.KERNEL, cost=TIMED) == REQUESTS
    half = (REQUESTS + 1) // 2
    # HLT has no kvm_entry: the profile's price of a HLT handled in the kernel
    assert _count(trace, reason=ExitReason.HLT, cost=PROFILE.cost(ExitReason.HLT)) == half
    assert _count(trace, reason=ExitReason.MSR_WRITE, qualifier=0x6E0, direction=Direction.OUT) == half
    assert _count(trace, reason=ExitReason.UNKNOWN) == half == trace.count(function="__pv_queued_spin_lock_slowpath")
    tenth = (REQUESTS + 9) // 10
    assert _count(trace, reason=ExitReason.EXTERNAL_INTERRUPT, rip=0) == tenth   # a user-space RIP: unknown
    assert trace.count(function="[unknown]") == tenth
    assert not e["caller"].any() and not e["stack"].any() and not e["icount"].any()
    assert list(e["seq"]) == list(range(len(e)))
    step = synth.STEP_US * PROFILE.freq_hz // 1_000_000
    assert list(e["cycles"][:3]) == [0, step, 2 * step]


def test_meta_says_where_the_exits_came_from(files):
    meta = import_file("perf", files[0], files[1]).meta
    imp = meta["import"]
    half = (REQUESTS + 1) // 2
    assert imp["kernel_reasons"] == {"IO_INSTRUCTION": 11 * REQUESTS, "EPT_MISCONFIG": REQUESTS, "HLT": half,
                                     "MSR_WRITE": half, "PAUSE_INSTRUCTION": half,
                                     "EXTERNAL_INTERRUPT": (REQUESTS + 9) // 10}
    assert imp["costs_priced"] == half and imp["costs_measured"] == meta_exits(meta) - half
    assert imp["rips_not_kept"] == (REQUESTS + 9) // 10
    assert imp["tool"] == "perf script" and imp["source"] == "perf.txt" and imp["symbols"] == "System.map"
    assert imp["isa"] == ["VMX"] and imp["first_timestamp_s"] == "100.000000000"
    assert meta["status"] == "imported" and meta["freq_hz"] == PROFILE.freq_hz


def meta_exits(meta) -> int:
    return sum(meta["import"]["kernel_reasons"].values())


def test_system_map_keeps_code_symbols_only(files):
    trace = import_file("perf", files[0], files[1])
    assert trace.symbols["__ide_do_rw_disk"] == 0x81234500
    assert trace.symbols["virtio_mmio_notify"] == 0xC0100000       # a module's, after its [module] column
    assert "jiffies" not in trace.symbols and "__per_cpu_start" not in trace.symbols


@pytest.mark.parametrize("variant", ["2.6", "4.x", "5.5", "6.x"])
def test_every_kernels_kvm_exit_text(variant, tmp_path, files):
    """The same exits whichever kernel printed them (events.py lists the variants)."""
    path = tmp_path / f"perf-{variant}.txt"
    path.write_text(synth.perf_text(synth.events(synth.workload(10), variant=variant)))
    got = import_file("perf", path, files[1]).exits
    want = import_file("perf", files[0], files[1]).exits
    want = want[: len(got)]
    for name in ("rip", "reason", "qualifier", "direction", "size", "cost", "place"):
        assert np.array_equal(got[name], want[name]), name


def test_failed_vmentry_flag_and_ns_timestamps(tmp_path):
    text = (" CPU 0/KVM 4242 [000] 5.000000100: kvm:kvm_exit: vcpu 0 reason EXTERNAL_INTERRUPT FAILED_VMENTRY "
            "rip 0x100a09 info 0 0\n"
            " CPU 0/KVM 4242 [000] 5.000001100: kvm:kvm_entry: vcpu 0\n")
    path = tmp_path / "p.txt"
    path.write_text(text)
    trace = import_file("perf", path)
    assert list(trace.exits["reason"]) == [ExitReason.EXTERNAL_INTERRUPT]
    assert int(trace.exits["cost"][0]) == PROFILE.freq_hz // 1_000_000     # 1000 ns
    assert trace.meta["guest_sha256"] is None


def test_same_file_same_trace_bytes(files):
    assert import_file("perf", *files).to_bytes() == import_file("perf", *files).to_bytes()


def test_string_io_counts_its_bytes(tmp_path):
    text = ("CPU 0/KVM 7 [000] 1.000000: kvm:kvm_exit: reason IO_INSTRUCTION rip 0x100ade info 1f00018 0\n"
            "CPU 0/KVM 7 [000] 1.000001: kvm:kvm_pio: pio_write at 0x1f0 size 2 count 128 val 0x1 (...)\n"
            "CPU 0/KVM 7 [000] 1.000002: kvm:kvm_pio: pio_write at 0x1f0 size 2 count 128 val 0x2 (...)\n")
    path = tmp_path / "p.txt"
    path.write_text(text)
    e = import_file("perf", path).exits
    assert (int(e["qualifier"][0]), int(e["size"][0]), int(e["value"][0])) == (0x1F0, 512, 1)


# several VMs in one file ------------------------------------------------------------------------------
def _two_vms(tmp_path) -> Path:
    """VM A (pid 100, two vCPU threads) does 3 requests on each vCPU; VM B (pid 200) 1 request."""
    a0 = synth.events(synth.workload(3), t0_us=1_000_000)
    a1 = synth.events(synth.workload(3), t0_us=1_000_005, vcpu=1)
    b = synth.events(synth.workload(1), t0_us=1_000_002)
    lines = [(t, synth.perf_text([(t, n, x)], pid=100, tid=101)) for t, n, x in a0]
    lines += [(t, synth.perf_text([(t, n, x)], comm="CPU 1/KVM", pid=100, tid=102)) for t, n, x in a1]
    lines += [(t, synth.perf_text([(t, n, x)], pid=200, tid=201)) for t, n, x in b]
    path = tmp_path / "two.txt"
    path.write_text("".join(text for _, text in sorted(lines, key=lambda x: x[0])))
    return path


def test_each_process_is_a_domain(tmp_path, files):
    path = _two_vms(tmp_path)
    per_request_a = len(synth.workload(3))
    trace = import_file("perf", path, files[1])
    assert [d["pid"] for d in trace.meta["domains"]] == [100, 200]
    assert _count(trace, domain=0) == 2 * per_request_a and _count(trace, domain=1) == len(synth.workload(1))
    rows = {r["name"]: r["count"] for r in analysis.report(trace, "domain").rows}
    assert rows == {"pid 100 (CPU 0/KVM)": 2 * per_request_a, "pid 200 (CPU 0/KVM)": len(synth.workload(1))}
    d1 = analysis.report(trace, "function", domain=1)
    assert {r["function"]: r["count"] for r in d1.rows}["__ide_do_rw_disk"] == 11
    # a vCPU's events are paired on its own thread: every taskfile exit got its port and its entry
    assert _count(trace, reason=ExitReason.IO_INSTRUCTION, cost=TIMED, direction=Direction.OUT) == 11 * 7


def test_pid_picks_one_vm_or_thread(tmp_path, files):
    path = _two_vms(tmp_path)
    assert len(import_file("perf", path, files[1], pid=200).exits) == len(synth.workload(1))
    assert len(import_file("perf", path, files[1], pid=102).exits) == len(synth.workload(3))
    assert "domains" not in import_file("perf", path, files[1], pid=100).meta
    with pytest.raises(ImportFormatError, match="no kvm_exit of process or thread 300 .*100, 200"):
        import_file("perf", path, pid=300)


# the command line -------------------------------------------------------------------------------------
def test_import_prints_the_report_and_saves_the_trace(files, tmp_path, capsys, update_golden):
    out = tmp_path / "imported.npz"
    assert cli.main(["import", "perf", str(files[0]), "--symbols", str(files[1]), "-o", str(out)]) == 0
    printed, err = capsys.readouterr()
    assert err.splitlines() == [
        f"vmexit: note: {REQUESTS // 2} exits of reasons vmexit has no row for count as UNKNOWN: PAUSE_INSTRUCTION {REQUESTS // 2}",
        f"vmexit: note: {REQUESTS // 10} exits at 64-bit addresses outside the kernel's top 4 GiB (guest user space) "
        "are at the unknown address 0"]
    assert cli.main(["report", str(out)]) == 0
    assert capsys.readouterr().out == printed
    _golden("import-perf.txt", printed, update_golden)
    assert cli.main(["import", "perf", str(files[0]), "--symbols", str(files[1]), "--by", "reason"]) == 0
    _golden("import-perf-reason.txt", capsys.readouterr().out, update_golden)


def _golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
    assert text == path.read_text()


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("", "no kvm_exit events in perf script output"),
    (" CPU 0/KVM 7 [000] 1.000001: kvm:kvm_pio: pio_write at 0x70 size 1 count 1 val 0x8f \n",
     r"no kvm_exit events .*\(it has 1 kvm_pio\); record kvm:kvm_exit"),
    ("# header\n CPU 0/KVM 7 [000] 1.0: kvm:kvm_exit: reason HLT rip 0x1\nnot a perf line\n",
     r"p\.txt:3: not a perf script line"),
    (" CPU 0/KVM 7 [000] 1.0: kvm:kvm_exit: reason HLT rip 0x1\n CPU 0/KVM 7 [000] 1.1: kvm:kvm_exit: why\n",
     r"p\.txt:2: kvm_exit text not in any known kernel's format: 'why'"),
    (" CPU 0/KVM 7 [000] 1.0: kvm:kvm_exit: reason HLT rip 0x1\n CPU 0/KVM 7 [000] 1.1: kvm:kvm_pio: pio at 1\n",
     r"p\.txt:2: kvm_pio text"),
    (b"\xff\xfe binary", r"p\.txt:1: not UTF-8 text"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "p.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ImportFormatError, match=message):
        import_file("perf", path)
    out = tmp_path / "never.npz"
    assert cli.main(["import", "perf", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vmexit: error: ") and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("content,message", [
    ("ffffffff81000000 T _stext\nnonsense\n", r"System.map:2: not a System.map line"),
    ("ffffffff82000000 D jiffies\n", "no code symbols"),
    (b"\x7fELF\x02\x01\x01" + bytes(20), "malformed ELF"),
])
def test_bad_symbols_file(tmp_path, files, capsys, content, message):
    smap = tmp_path / "System.map"
    smap.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert cli.main(["import", "perf", str(files[0]), "--symbols", str(smap)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err)


# an imported trace beside a modeled one ---------------------------------------------------------------
def _perf_of(trace) -> str:
    """The perf script text a real host would print for a modeled run's exits (port I/O only: ide),
    timestamps in nanoseconds (--ns) from the run's cycles, each exit's kvm_entry after its cost."""
    freq = trace.freq_hz
    lines = []
    for e in trace.exits:
        t = int(e["cycles"]) * 1_000_000_000 // freq
        size = int(e["size"])
        width, count = (size, 1) if size in (1, 2, 4) else (2, size // 2)
        rw = "write" if e["direction"] == Direction.OUT else "read"
        lines.append((t, "kvm_exit", f"vcpu 0 reason IO_INSTRUCTION rip 0x{int(e['rip']):x} info 0 0"))
        lines.append((t + 1, "kvm_pio", f"pio_{rw} at 0x{int(e['qualifier']):x} size {width} count {count} "
                                        f"val 0x{int(e['value']):x}"))
        if e["place"] == Place.USER:
            lines.append((t + 2, "kvm_userspace_exit", "reason KVM_EXIT_IO (2)"))
        lines.append((t + int(e["cost"]) * 1_000_000_000 // freq, "kvm_entry", "vcpu 0"))
    return "".join(f"CPU 0/KVM 9 [001] {t // 10**9}.{t % 10**9:09d}: kvm:{n}: {x}\n" for t, n, x in lines)


def test_compare_imported_with_modeled(vmexit_run, tmp_path, capsys):
    """The ide guest's modeled exits, written as a real host's perf script and imported with the guest's
    ELF as symbols: compare matches every site (same image: by address) with no difference."""
    model = vmexit_run("ide")
    path = tmp_path / "ide-perf.txt"
    path.write_text(_perf_of(model))
    elf = guests.guests_dir() / "ide.elf"
    imported = import_file("perf", path, elf)
    assert imported.meta["guest_sha256"] == model.meta["guest_sha256"]
    for name in ("rip", "reason", "qualifier", "direction", "size", "value", "place"):
        assert np.array_equal(imported.exits[name], model.exits[name]), name
    rep = analysis.compare(model, imported, "address")
    assert rep.totals["matched_by"] == "address" and rep.rows
    assert all(r["delta"] == 0 and r["before"] == r["after"] > 0 for r in rep.rows)
    by_function = {r["key"]: (r["before"], r["after"]) for r in analysis.compare(model, imported).rows}
    assert by_function["__ide_do_rw_disk"] == (model.count(function="__ide_do_rw_disk"),) * 2
    # and through the command line, from files: a model trace against an imported one of another kernel
    model_path, imported_path = tmp_path / "model.npz", tmp_path / "imported.npz"
    model.save(model_path)
    smap = tmp_path / "System.map"
    smap.write_text(synth.SYSTEM_MAP)
    work = tmp_path / "perf.txt"
    work.write_text(synth.perf_text(synth.events(synth.workload(REQUESTS))))
    assert cli.main(["import", "perf", str(work), "--symbols", str(smap), "-o", str(imported_path)]) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(model_path), str(imported_path), "--format", "json"]) == 0
    text = capsys.readouterr().out
    assert "matched by function name" in text and '"key": "__ide_do_rw_disk"' in text
    rows = {r["key"]: r for r in analysis.compare(model, load(imported_path)).rows}
    assert (rows["__ide_do_rw_disk"]["before"], rows["__ide_do_rw_disk"]["after"]) == \
        (model.count(function="__ide_do_rw_disk"), 11 * REQUESTS)


def test_report_renders_every_format(files):
    trace = import_file("perf", *files)
    for fmt, render in RENDERERS.items():
        assert "__ide_do_rw_disk" in render(analysis.report(trace, "function")), fmt


def test_events_after_the_entry_are_not_the_exits(tmp_path):
    """A kvm_pio after the exit's kvm_entry (its kvm_exit lost, say) is no part of the exit, and only the
    first kvm_entry times it; another thread's events never are."""
    text = ("CPU 0/KVM 7 [000] 1.000000: kvm:kvm_exit: reason IO_INSTRUCTION rip 0x100a09 info 0 0\n"
            "CPU 1/KVM 8 [001] 1.000001: kvm:kvm_pio: pio_read at 0x60 size 1 count 1 val 0x1\n"
            "CPU 1/KVM 8 [001] 1.000001: kvm:kvm_entry: vcpu 1\n"
            "CPU 0/KVM 7 [000] 1.000002: kvm:kvm_entry: vcpu 0\n"
            "CPU 0/KVM 7 [000] 1.000003: kvm:kvm_pio: pio_write at 0x20 size 1 count 1 val 0x20\n"
            "CPU 0/KVM 7 [000] 1.000009: kvm:kvm_entry: vcpu 0\n")
    path = tmp_path / "p.txt"
    path.write_text(text)
    e = import_file("perf", path).exits
    assert len(e) == 1
    assert (int(e["qualifier"][0]), int(e["direction"][0]), int(e["size"][0])) == (0, Direction.NONE, 0)
    assert int(e["cost"][0]) == 2 * PROFILE.freq_hz // 1_000_000


def test_without_kvm_entry_every_exit_is_priced(tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text(synth.perf_text(synth.events(synth.workload(10), entry=False)))
    trace = import_file("perf", path)
    assert np.array_equal(trace.exits["cost"], PROFILE.price(trace.exits))
    assert trace.meta["import"]["costs_measured"] == 0
    assert cli.main(["import", "perf", str(path), "--profile", "kvm-skylake"]) == 0
    assert "vmexit: note: no kvm_exit has a kvm_entry after it: every exit is priced by kvm-skylake" in \
        capsys.readouterr().err


def test_events_packed_in_chunks_give_the_same_trace(files, monkeypatch):
    whole = import_file("perf", *files).to_bytes()
    monkeypatch.setattr(events, "CHUNK", 7)
    assert import_file("perf", *files).to_bytes() == whole
