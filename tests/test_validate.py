"""vmexit validate: access counts of the model, QEMU and KVM side by side (vmexit/validate.py).

The counting is checked on guests whose accesses are known by construction; the QEMU comparison runs
where qemu-system-i386 is installed (skipped elsewhere); a mismatch is made by giving the table two
models of different guest constants."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from vmexit import guests, validate
from vmexit.cli import EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, main
from vmexit.costs import load_profile
from vmexit.errors import VmexitError
from vmexit.exits import Direction
from vmexit.session import RunOptions, run

from .conftest import inline_image

QEMU = shutil.which(validate.QEMU)
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-i386 not installed")
IDE_PORTS = [0x1F0, 0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F7]


def _model_counts(image):
    trace = run(image, load_profile(None), RunOptions())
    return validate.counts(validate.trace_accesses(trace, image))


def test_string_io_counts_each_element():
    # rep outs of 2,000 / 3,000 / 1,200 bytes: 2 + 3 + 2 exits of at most 1,024 bytes (KVM's string-PIO
    # buffer), but 1,000 words, 3,000 bytes and 300 dwords: the accesses QEMU logs one by one
    image = inline_image("""
    mov esi, 0x200000
    mov dx, 0x80
    mov ecx, 1000
    rep outsw
    mov dx, 0x81
    mov ecx, 3000
    rep outsb
    mov dx, 0x82
    mov ecx, 300
    rep outsd
    in al, 0x83
    mov al, 0
    out 0xf4, al
""")
    assert _model_counts(image) == {("port", 0x80): 1000, ("port", 0x81): 3000, ("port", 0x82): 300,
                                    ("port", 0x83): 1, ("port", 0xF4): 1}


def test_ide_counts_by_construction():
    # IDENTIFY reads 256 words, each of the 2 x SECTORS one-sector requests moves 256 more; every
    # request loads the LBA48 taskfile (two writes to each of 0x1f1-0x1f5, one to 0x1f6)
    image = guests.resolve("ide", {"SECTORS": 3})
    got = _model_counts(image)
    assert got[("port", 0x1F0)] == 256 + 2 * 3 * 256
    assert [got[("port", p)] for p in (0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5)] == [2 * 2 * 3] * 5
    assert got[("port", 0xF4)] == 1


def test_string_unit_decodes_ins_and_outs():
    seg = dataclasses.make_dataclass("Seg", ["address", "data"])
    image = dataclasses.make_dataclass("Img", ["segments"])(
        [seg(0x1000, bytes.fromhex("f36c" "f36d" "66f36d" "f3666f" "ec" "2ef36e"))])
    assert [validate._string_unit(image, a) for a in (0x1000, 0x1002, 0x1004, 0x1007, 0x100a, 0x100b)] \
        == [1, 4, 2, 2, 0, 1]
    assert validate._string_unit(image, 0x5000) == 0   # not in the image: the exit's own size counts


QEMU_LOG = b"""\
memory_region_ops_write cpu -1 mr 0x55 addr 0xfee00000 value 0x0 size 4 name 'apic-msi'
memory_region_ops_read cpu 0 mr 0x56 addr 0x1f7 value 0x50 size 1 name 'ide'
memory_region_ops_write cpu 0 mr 0x57 addr 0x510 value 0xa size 2 name 'fwcfg'
memory_region_ops_read cpu 0 mr 0x57 addr 0x511 value 0x0 size 1 name 'fwcfg'
memory_region_ops_write cpu 0 mr 0x58 addr 0x3fb value 0x3 size 1 name 'serial'
memory_region_ops_read cpu 0 mr 0x56 addr 0x1f0 value 0x40 size 2 name 'ide'
memory_region_ops_read cpu 0 mr 0x56 addr 0x1f0 value 0x20 size 2 name 'ide'
memory_region_ops_write cpu -1 mr 0x55 addr 0xfee00000 value 0x0 size 4 name 'apic-msi'
memory_region_ops_write cpu 0 mr 0x59 addr 0xfee000b0 value 0x0 size 4 name 'apic-msi'
memory_region_ops_write cpu 0 mr 0x5a addr 0xf4 value 0x0 size 1 name 'isa-debug-exit'
"""


def test_qemu_log_keeps_the_guests_accesses_after_the_firmware():
    acc = validate.qemu_accesses(QEMU_LOG)
    assert validate.counts(acc) == {("port", 0x3FB): 1, ("port", 0x1F0): 2, ("mmio", 0xFEE000B0): 1,
                                    ("port", 0xF4): 1}
    assert list(acc["direction"]) == [Direction.OUT, Direction.IN, Direction.IN, Direction.OUT, Direction.OUT]
    assert list(acc["size"]) == [1, 2, 2, 4, 1] and acc["value"][1] == 0x40
    assert validate.qemu_accesses(QEMU_LOG.split(b"\n", 2)[2].replace(b"fwcfg", b"other")) is None


def _accesses(rows):
    out = np.zeros(len(rows), dtype=validate.ACCESS_DTYPE)
    for i, (port, direction, size, value) in enumerate(rows):
        out[i] = (False, port, direction, size, value, 1)
    return out


def test_bars_learnt_from_the_guests_reads_and_ports_moved_to_the_reference():
    o, i = Direction.OUT, Direction.IN

    def probe(nic, bmdma):   # the guest reads the NIC's BAR0 and the IDE function's BAR4, then uses them
        return _accesses([(0xCF8, o, 4, 0x80001810), (0xCFC, i, 4, nic | 1), (0xCF8, o, 4, 0x80000920),
                          (0xCFC, i, 4, bmdma | 1), (0xCF8, o, 4, 0x80000900), (0xCFC, i, 4, 0x70108086),
                          (nic + 0x37, i, 1, 0), (nic + 0x37, i, 1, 0), (bmdma + 2, i, 1, 0), (0xF4, o, 1, 0)])
    model, qemu = probe(0xC100, 0xC000), probe(0xC000, 0xC100)
    assert validate.pci_bars(model) == {(0, 3, 0, 0): 0xC100, (0, 1, 1, 4): 0xC000}
    assert validate.pci_bars(qemu) == {(0, 3, 0, 0): 0xC000, (0, 1, 1, 4): 0xC100}
    moved = validate.counts(validate.relocate(qemu, validate.pci_bars(qemu), validate.pci_bars(model)))
    assert moved == validate.counts(model)
    assert moved[("port", 0xC137)] == 2 and moved[("port", 0xC002)] == 1


def _model_of(constants):
    """A backend running the model on the guest built with other constants."""
    def run_with(subject):
        image = guests.resolve(subject.guest, constants)
        return validate.run_model(dataclasses.replace(subject, image=image))
    return validate.Backend("model", run_with, f"the model, {constants}")


def test_mismatch_is_flagged_where_the_counts_differ():
    backends = {"model": validate.BACKENDS["model"], "three": _model_of({"SECTORS": 3})}
    v = validate.validate("ide", {"SECTORS": 2}, backends)
    assert [o.state for o in v.outcomes] == ["ran", "ran"] and not v.agree
    flagged = {r["address"]: (r["model"], r["three"]) for r in v.mismatches}
    # only the disk's ports: 2 x SECTORS requests of 256 words, 2 writes per LBA48 register, and per
    # request one device select and three status reads (command, DRQ, completion)
    assert flagged[0x1F0] == (256 + 4 * 256, 256 + 6 * 256)
    assert flagged[0x1F2] == (2 * 4, 2 * 6) and flagged[0x1F6] == (1 + 4, 1 + 6)
    assert flagged[0x1F7][1] - flagged[0x1F7][0] == 3 * 2
    assert set(flagged) <= set(IDE_PORTS)
    assert all(r["flag"] == "MISMATCH" for r in v.mismatches)
    assert validate.summary_line(v).startswith(f"MISMATCH: {len(flagged)} of {len(v.rows)} ")


def _run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_code_6_on_a_mismatch_0_when_all_agree(capsys, monkeypatch):
    monkeypatch.setattr(validate, "BACKENDS", {"model": validate.BACKENDS["model"], "three": _model_of({"SECTORS": 3})})
    code, out, _ = _run_cli(capsys, "validate", "ide", "-D", "SECTORS=2")
    assert code == EXIT_MISMATCH == 6
    assert "MISMATCH" in out.splitlines()[-1] and "0x1f0" in out
    monkeypatch.setattr(validate, "BACKENDS", {"model": validate.BACKENDS["model"], "again": _model_of({"SECTORS": 2})})
    code, out, _ = _run_cli(capsys, "validate", "ide", "-D", "SECTORS=2", "--format", "json")
    doc = json.loads(out)
    assert code == EXIT_OK and doc["totals"]["agree"] and doc["totals"]["mismatches"] == 0
    row = next(r for r in doc["rows"] if r["address"] == 0x1F0)
    assert row["model"] == row["again"] == 256 + 4 * 256 and row["agree"]


def test_cli_bad_input(capsys):
    for argv in (["validate", "no-such-guest"], ["validate", "xennet"], ["validate", "ide", "--timeout", "0"]):
        code, out, err = _run_cli(capsys, *argv)
        assert code == EXIT_USAGE and out == "" and err.startswith("vmexit: error: ") and len(err.splitlines()) == 1


def test_kvm_hw_unavailable_and_unsupported_are_not_mismatches(monkeypatch, tmp_path):
    import vmexit.api
    image = guests.resolve("fork")
    subject = validate.Subject("fork", {}, image, tmp_path)

    def no_kvm(guest, **kw):
        raise VmexitError("/dev/kvm: permission denied")
    monkeypatch.setattr(vmexit.api, "run", no_kvm)
    o = validate.run_kvm_hw(subject)
    assert (o.state, o.detail) == ("unavailable", "KVM unavailable: /dev/kvm: permission denied")

    trace = vmexit.api.Trace.of(run(image, load_profile(None), RunOptions()))
    trace.meta.update(status="unsupported", detail="iret")
    monkeypatch.setattr(vmexit.api, "run", lambda guest, **kw: trace)
    o = validate.run_kvm_hw(subject)
    assert o.state == "cannot run" and o.detail.startswith("cannot run this guest here")
    backends = {"model": validate.BACKENDS["model"], "kvm-hw": validate.BACKENDS["kvm-hw"]}
    v = validate.validate("fork", None, backends)
    assert v.agree and [o.state for o in v.outcomes] == ["ran", "cannot run"]


# QEMU --------------------------------------------------------------------------------------------------
def _with_qemu(guest, constants=None):
    backends = {"model": validate.BACKENDS["model"], "qemu": validate.BACKENDS["qemu"]}
    v = validate.validate(guest, constants, backends)
    assert [o.state for o in v.outcomes] == ["ran", "ran"], [o.detail for o in v.outcomes]
    return v


@needs_qemu
@pytest.mark.parametrize("guest,constants", [("fork", None), ("exec", None), ("timer", {"WORK": 1, "TICKS": 8})])
def test_model_and_qemu_agree_exactly(guest, constants):
    v = _with_qemu(guest, constants)
    assert v.agree, v.mismatches
    assert len(v.rows) >= 7    # the serial console's six registers and the debug-exit port at least


@needs_qemu
def test_model_and_qemu_timer_ticks():
    # TICKS timer interrupts, each with its 3 accesses to 0x20 (specific EOI, OCW3 poll, poll read) and
    # 3 to 0x21 (IMR read, mask, unmask), plus init_8259A's ICW1 / ICW2-4 and masks
    v = _with_qemu("timer", {"WORK": 1, "TICKS": 8})
    rows = {r["address"]: r for r in v.rows}
    assert rows[0x20]["model"] == rows[0x20]["qemu"] == 3 * 8 + 1
    assert rows[0x21]["model"] == rows[0x21]["qemu"] == 3 * 8 + 5


@needs_qemu
def test_model_and_qemu_ide_agree_but_for_status_polls():
    # QEMU finishes a sector's I/O on its own thread: how often the driver polls the status register
    # before DRQ depends on the host; every other access, and the data moved, agree exactly
    v = _with_qemu("ide", {"SECTORS": 4})
    assert {r["address"] for r in v.mismatches} <= {0x1F7}
    status = next(r for r in v.rows if r["address"] == 0x1F7)
    assert status["qemu"] >= status["model"]
    assert next(r for r in v.rows if r["address"] == 0x1F0)["qemu"] == 256 + 2 * 4 * 256


@needs_qemu
def test_qemu_does_not_run_a_guest_of_the_models_network_peer():
    v = validate.validate("netperf", {"MESSAGES": 4}, {"model": validate.BACKENDS["model"],
                                                       "qemu": validate.BACKENDS["qemu"]})
    assert v.outcomes[1].state == "cannot run" and "TCP peer" in v.outcomes[1].detail
    assert validate.summary_line(v).startswith("Nothing compared: only model ran")


# KVM ---------------------------------------------------------------------------------------------------
def _kvm_problem() -> str | None:
    from vmexit.errors import KvmUnavailable
    try:
        from vmexit.engine.kvm import KvmEngine
        KvmEngine(2 << 20).close()
    except KvmUnavailable as e:
        return str(e)
    return None


needs_kvm = pytest.mark.skipif(_kvm_problem() is not None, reason="no usable /dev/kvm")


def _with_kvm(guest, constants=None):
    backends = {"model": validate.BACKENDS["model"], "kvm-hw": validate.BACKENDS["kvm-hw"]}
    return validate.validate(guest, constants, backends)


@needs_kvm
def test_model_and_kvm_hw_agree_on_ide():
    # interrupt-free: it runs on any KVM; every access, the 256 + 2 x 4 x 256 data words included, agree
    v = _with_kvm("ide", {"SECTORS": 4})
    assert [o.state for o in v.outcomes] == ["ran", "ran"], [o.detail for o in v.outcomes]
    assert v.agree, v.mismatches
    assert next(r for r in v.rows if r["address"] == 0x1F0)["kvm-hw"] == 256 + 2 * 4 * 256


@needs_kvm
def test_kvm_hw_that_cannot_run_the_guest_is_no_mismatch():
    # fork returns from its interrupt handlers with iret: a host whose KVM runs it must agree; one whose
    # KVM cannot (this project's nested AMD machines) says so, and nothing is flagged
    v = _with_kvm("fork")
    assert v.outcomes[1].state in ("ran", "cannot run"), v.outcomes[1].detail
    assert v.agree, v.mismatches
