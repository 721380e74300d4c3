"""vmexit import trace-cmd: trace-cmd report text we write ourselves, on AMD's reason names, gives the same
exits as the perf script text of the same workload on Intel's; and the layouts recorded on this machine."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vmexit import cli
from vmexit.exits import Direction, ExitReason
from vmexit.importers import import_file, perf, tracecmd
from vmexit.importers.events import ImportFormatError

from . import synth

DATA = Path(__file__).resolve().parent / "data"
REQUESTS = 40
FIELDS = ("seq", "cycles", "rip", "reason", "place", "direction", "qualifier", "size", "value", "cost", "domain")


@pytest.fixture
def smap(tmp_path):
    path = tmp_path / "System.map"
    path.write_text(synth.SYSTEM_MAP)
    return path


def _write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("variant", ["4.x", "6.x"])
def test_amd_names_give_the_intel_exits(tmp_path, smap, variant):
    """io, npf, hlt, msr (EXITINFO1 1: a write), interrupt, pause: the same records as IO_INSTRUCTION,
    EPT_MISCONFIG, HLT, MSR_WRITE, EXTERNAL_INTERRUPT, PAUSE_INSTRUCTION."""
    work = synth.workload(REQUESTS)
    amd = _write(tmp_path, "amd.txt", synth.tracecmd_text(synth.events(work, svm=True, variant=variant)))
    intel = _write(tmp_path, "intel.txt", synth.perf_text(synth.events(work, variant=variant)))
    a, i = import_file("trace-cmd", amd, smap), import_file("perf", intel, smap)
    for name in FIELDS:
        assert np.array_equal(a.exits[name], i.exits[name]), name
    assert a.symbols == i.symbols
    assert a.meta["import"]["isa"] == ["SVM"] and a.meta["import"]["tool"] == "trace-cmd report"
    assert a.meta["import"]["kernel_reasons"]["pause"] == REQUESTS // 2
    assert int((a.exits["reason"] == ExitReason.UNKNOWN).sum()) == REQUESTS // 2


def test_amd_msr_direction(tmp_path):
    """AMD's one msr exit: a kvm_msr of the exit decides; without one, EXITINFO1 (1: WRMSR)."""
    lines = [(1_000_000, "kvm_exit", "vcpu 0 reason msr rip 0xc0100010 info 1 0"),
             (1_000_010, "kvm_exit", "vcpu 0 reason msr rip 0xc0100020 info 0 0"),
             (1_000_020, "kvm_exit", "vcpu 0 reason msr rip 0xc0100030 info 0 0"),
             (1_000_021, "kvm_msr", "msr_write 6e0 = 0x10"),
             (1_000_030, "kvm_exit", "vcpu 0 reason msr rip 0xc0100040 info 1 0"),
             (1_000_031, "kvm_msr", "msr_read 1b = 0xfee00900 (#GP)")]
    e = import_file("trace-cmd", _write(tmp_path, "t.txt", synth.tracecmd_text(lines))).exits
    W, R = ExitReason.MSR_WRITE, ExitReason.MSR_READ
    assert list(e["reason"]) == [W, R, W, R]
    assert list(e["direction"]) == [Direction.OUT, Direction.IN, Direction.OUT, Direction.IN]
    assert list(e["qualifier"]) == [0, 0, 0x6E0, 0x1B]


def test_kernel_trace_file_layout_and_extras(tmp_path):
    """The kernel's own trace file (irq-flags column), an instance's name first, --ts-diff's (+N), a
    lost-events line, other events: all read; the exits are the two kvm_exit."""
    text = """# tracer: nop
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
       CPU 0/KVM-14299   [001] ..... 15861.238814: kvm_exit: vcpu 0 reason HLT rip 0x100a40 info 0 0
       CPU 0/KVM-14299   [001] d.... 15861.238816: kvm_inj_virq: IRQ 0x20 [reinjected]
vm1:   CPU 0/KVM-14299 [001] 15861.238820: (+4)   kvm_entry:    vcpu 0, rip 0x100a41
CPU:1 [LOST 12 EVENTS]
CPU 1 is empty
vm1:   CPU 0/KVM-14299 [001] 15861.238830: (+10)  kvm_exit:     vcpu 0 reason IO_INSTRUCTION rip 0x100a09 info 0 0
vm1:   CPU 0/KVM-14299 [001] 15861.238831: (+1)   kvm_pio:      pio_read at 0x21 size 1 count 1 val 0xfb
"""
    trace = import_file("trace-cmd", _write(tmp_path, "t.txt", text))
    e = trace.exits
    assert list(e["reason"]) == [ExitReason.HLT, ExitReason.IO_INSTRUCTION]
    assert list(e["rip"]) == [0x100A40, 0x100A09]
    assert (int(e["qualifier"][1]), int(e["direction"][1]), int(e["value"][1])) == (0x21, Direction.IN, 0xFB)
    assert trace.meta["import"]["skipped_events"] == {"kvm_inj_virq": 1}
    assert trace.meta["import"]["costs_measured"] == 1      # the HLT, 6 us to its entry


def test_latency_layout_is_refused_with_its_line(tmp_path, capsys):
    text = "cpus=2\nvm1: CPU 0/KV-14299   1..... 15861.238814: kvm_exit: reason HLT rip 0x1 info 0 0\n"
    path = _write(tmp_path, "lat.txt", text)
    assert cli.main(["import", "trace-cmd", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vmexit: error: {path}:2: not a trace-cmd report line") and err.count("\n") == 1


def test_tracecmd_cli_report_by_port(tmp_path, smap, capsys):
    path = _write(tmp_path, "t.txt", synth.tracecmd_text(synth.events(synth.workload(REQUESTS), svm=True)))
    assert cli.main(["import", "trace-cmd", str(path), "--symbols", str(smap), "--by", "port", "--format", "csv",
                     "--top", "0"]) == 0
    rows = {line.split(",")[0]: int(line.split(",")[1]) for line in capsys.readouterr().out.splitlines()[1:]
            if line.startswith("0x")}
    assert rows == {**{f"0x{p:x}:POUT": 2 * REQUESTS for p in range(0x1F1, 0x1F6)}, "0x1f6:POUT": REQUESTS}


# the layouts as this machine's perf 6.1 and trace-cmd 3.1.6 printed them (our own recording) --------------
def test_real_perf_script_lines():
    lines = (DATA / "real-perf.txt").read_text().splitlines()
    assert perf.split(lines[1]) == (-1, 13188, 15819_498262000, "kvm_pio", "qemu-system-i38",
                                    "pio_write at 0x70 size 1 count 1 val 0x8f ")
    assert perf.split(lines[6])[:4] == (13185, 13188, 15819_753896128, "kvm_mmio")   # -F +pid --ns


def test_real_tracecmd_report_lines():
    lines = (DATA / "real-tracecmd.txt").read_text().splitlines()
    assert tracecmd.split(lines[0]) is None                                          # cpus=2
    assert tracecmd.split(lines[1]) == (-1, 14299, 15861_238814000, "kvm_pio", "CPU 0/KVM",
                                        "pio_write at 0x70 size 1 count 1 val 0x8f ")


@pytest.mark.parametrize("fmt,name,found", [
    ("perf", "real-perf.txt", "2 kvm_mmio, 3 kvm_pio, 3 kvm_userspace_exit"),
    ("trace-cmd", "real-tracecmd.txt", "2 kvm_mmio, 4 kvm_pio"),
])
def test_real_recordings_without_kvm_exit_say_so(fmt, name, found):
    """This machine's KVM (kvm_pvm) fires kvm_pio and kvm_mmio but never kvm_exit: the import says what
    the file has and what to record."""
    with pytest.raises(ImportFormatError, match=rf"no kvm_exit events .*\(it has {found}\); record kvm:kvm_exit"):
        import_file(fmt, DATA / name)
