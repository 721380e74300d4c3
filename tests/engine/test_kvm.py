"""Guests on the host's real KVM (`--hypervisor kvm-hw`, engine/kvm.py, hwvcpu.py): the same exits as the
model at the same addresses, callers and ports, counted by construction; in-kernel exits absent; an
instruction this host's KVM cannot run ending `unsupported` (exit code 5) with the trace kept; the
real-time budget; and no /dev/kvm being bad input (exit code 2). The tests that need a usable /dev/kvm
skip without one; those of an unusable device run everywhere."""
from __future__ import annotations

import numpy as np
import pytest

import vmexit
from vmexit.cli import EXIT_BUDGET, EXIT_OK, EXIT_UNSUPPORTED, EXIT_USAGE, main
from vmexit.engine import kvmapi
from vmexit.errors import KvmUnavailable, VmexitError
from vmexit.exits import ExitReason
from vmexit.trace import load

LOOPS = 25
OUT_PORTS = tuple(range(0xE0, 0xE5)) + tuple(range(0x300, 0x306))   # 11 ports no device claims

# A guest of known exits: LOOPS x (11 outb, an LSR read, an I/O APIC write and read, a LAPIC read, a
# CPUID), each from its own function so that callers are known too; then HLT with interrupts off.
GUEST = f"""
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
_start:
    mov esp, 0x90000
    xor ebp, ebp
    call start_kernel
    cli
    hlt
start_kernel:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, {LOOPS}
.Lloop:
    call taskfile
    call poll
    call apic
    call probe_cpu
TRAP_HERE
    dec ebx
    jnz .Lloop
    pop ebx
    pop ebp
    ret
taskfile:
    push ebp
    mov ebp, esp
""" + "".join(f"    mov al, {i}\n    out {p:#x}, al\n" for i, p in enumerate(OUT_PORTS[:5])) + \
    "".join(f"    mov dx, {p:#x}\n    mov al, {i}\n    out dx, al\n" for i, p in enumerate(OUT_PORTS[5:])) + """
    pop ebp
    ret
poll:
    push ebp
    mov ebp, esp
    mov dx, 0x3fd
    in al, dx
    pop ebp
    ret
apic:
    push ebp
    mov ebp, esp
    mov dword ptr [0xfec00000], 1
    mov eax, [0xfec00000]
    mov eax, [0xfee00030]
    pop ebp
    ret
probe_cpu:
    push ebp
    mov ebp, esp
    push ebx
    xor eax, eax
    cpuid
    pop ebx
    pop ebp
    ret
"""


def _kvm_usable() -> str | None:
    try:
        from vmexit.engine.kvm import KvmEngine
        KvmEngine(2 << 20).close()
    except KvmUnavailable as e:
        return str(e)
    return None


NO_KVM = _kvm_usable()
needs_kvm = pytest.mark.skipif(NO_KVM is not None, reason=f"no usable KVM: {NO_KVM}")


def _guest(tmp_path, trap: str = "") -> str:
    path = tmp_path / "known.S"
    path.write_text(GUEST.replace("TRAP_HERE", trap))
    return str(path)


def _exits(trace, reason=None):
    e = trace.exits
    return e if reason is None else e[e["reason"] == reason]


# an unusable device: everywhere --------------------------------------------------------------------------
def test_no_kvm_device_is_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(kvmapi.DEVICE_ENV, str(tmp_path / "no-kvm"))
    with pytest.raises(KvmUnavailable, match="no KVM on this host: .*no-kvm does not exist"):
        vmexit.run(_guest(tmp_path), hypervisor="kvm-hw")
    assert main(["run", _guest(tmp_path), "--hypervisor", "kvm-hw", "-o", str(tmp_path / "t.npz")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vmexit: error: no KVM on this host") and "Traceback" not in err


def test_a_device_that_is_no_kvm_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "kvm"
    fake.write_bytes(b"")
    monkeypatch.setenv(kvmapi.DEVICE_ENV, str(fake))
    with pytest.raises(KvmUnavailable, match="is not a KVM device"):
        vmexit.run(_guest(tmp_path), hypervisor="kvm-hw")


def test_the_kvm_structures_have_the_kernels_layout():
    import ctypes
    assert ctypes.sizeof(kvmapi.Regs) == 144 and ctypes.sizeof(kvmapi.Sregs) == 312
    assert kvmapi.Run.exit.offset == 32 and kvmapi.Run.s.offset == 304
    assert kvmapi.RUN == 0xAE80 and kvmapi.SET_USER_MEMORY_REGION == 0x4020AE46 and kvmapi.GET_SREGS == 0x8138AE83


# on the host's KVM -----------------------------------------------------------------------------------------
@needs_kvm
def test_the_engine_enters_the_multiboot_state():
    from vmexit.machine import MBI_ADDRESS, X86Machine
    m = X86Machine(4 << 20, engine="kvm")
    try:
        m.boot_multiboot(0x100000)
        e = m.engine
        assert (e.reg("eax"), e.reg("ebx"), e.reg("eip"), e.reg("cs"), e.reg("ss")) == (0x2BADB002, MBI_ADDRESS,
                                                                                     0x100000, 0x08, 0x10)
        assert e.reg("cr0") & 1 and e.reg("gdtr")[2] == 23
        s = e.vm.sregs()
        assert (s.cs.base, s.cs.limit, s.cs.db, s.cs.type, s.ds.type) == (0, 0xFFFFFFFF, 1, 0xA, 0x2)
    finally:
        m.engine.close()


@needs_kvm
def test_kvm_hw_exits_are_the_models_at_the_same_addresses_and_callers(tmp_path):
    source = _guest(tmp_path)
    model = vmexit.run(source)
    real = vmexit.run(source, hypervisor="kvm-hw")
    assert real.status == model.status == "halted"
    # by construction: 11 port writes, an LSR read, 2 I/O APIC and 1 LAPIC accesses per loop, one HLT
    io = _exits(real, ExitReason.IO_INSTRUCTION)
    for port in OUT_PORTS + (0x3FD,):
        assert int((io["qualifier"] == port).sum()) == LOOPS
    assert len(_exits(real, ExitReason.EPT_VIOLATION)) == 2 * LOOPS
    assert len(_exits(real, ExitReason.APIC_ACCESS)) == LOOPS
    assert len(_exits(real, ExitReason.HLT)) == 1
    # CPUID is answered inside the kernel under real KVM: the model's LOOPS CPUID exits never reach vmexit
    assert len(_exits(model, ExitReason.CPUID)) == LOOPS and len(_exits(real, ExitReason.CPUID)) == 0
    kept = model.exits[model.exits["reason"] != ExitReason.CPUID]
    for field in ("rip", "reason", "direction", "qualifier", "size", "value", "caller"):
        assert np.array_equal(real.exits[field], kept[field]), field
    assert real.exits["stack"].tolist() == kept["stack"].tolist()
    assert real.report(by="function", top=0) and real.count(function="taskfile") == 11 * LOOPS


@needs_kvm
def test_kvm_hw_records_real_time_and_measured_costs(tmp_path):
    real = vmexit.run(_guest(tmp_path), hypervisor="kvm-hw", profile="kvm76-q9550")
    cycles = real.exits["cycles"].astype(np.int64)
    assert np.all(np.diff(cycles) >= 0) and np.all(real.exits["cost"] > 0)
    assert np.all(real.exits["icount"] == 0) and real.meta["instructions"] == 0
    assert real.meta["kvm_hw"]["kvm_exits"]["IO"] == 12 * LOOPS
    assert 0 < cycles[-1] <= real.meta["cycles"]


@needs_kvm
def test_the_ide_guest_moves_the_same_ports_and_bytes_on_real_kvm():
    model = vmexit.run("ide", constants={"SECTORS": 4})
    real = vmexit.run("ide", constants={"SECTORS": 4}, hypervisor="kvm-hw")
    assert real.status == model.status == "exited" and real.console == model.console

    def by_port(trace):
        io = trace.exits[trace.exits["reason"] == ExitReason.IO_INSTRUCTION]
        return io, {(int(p), int(d)) for p, d in zip(io["qualifier"], io["direction"])}

    (mio, mkeys), (rio, rkeys) = by_port(model), by_port(real)
    assert mkeys == rkeys
    for port, direction in mkeys:
        m = mio[(mio["qualifier"] == port) & (mio["direction"] == direction)]
        r = rio[(rio["qualifier"] == port) & (rio["direction"] == direction)]
        # string I/O may exit per element or per buffer, host by host; the bytes moved are the guest's
        assert int(r["size"].sum()) == int(m["size"].sum()), hex(port)
        assert set(r["rip"].tolist()) == set(m["rip"].tolist()), hex(port)
        if port != 0x1F0:
            assert len(r) == len(m), hex(port)


@needs_kvm
def test_an_instruction_kvm_cannot_run_ends_unsupported_with_the_trace_kept(tmp_path, capsys):
    source = _guest(tmp_path, trap="    int 0x80")
    trace = vmexit.run(source, hypervisor="kvm-hw")
    if trace.status == "crashed":
        pytest.skip("this host's KVM runs int n (the guest, with no IDT, triple-faulted)")
    assert trace.status == "unsupported"
    end = trace.meta["end_address"]   # the int 0x80 in start_kernel's loop, named with its address
    assert trace.symbols["start_kernel"] < end < trace.symbols["taskfile"]
    assert f"cannot run `int 0x80` at 0x{end:x}" in trace.meta["detail"]
    assert len(_exits(trace, ExitReason.IO_INSTRUCTION)) == 12   # the first loop's, before int 0x80
    out = tmp_path / "t.npz"
    assert main(["run", source, "--hypervisor", "kvm-hw", "-o", str(out)]) == EXIT_UNSUPPORTED
    err = capsys.readouterr().err
    assert err.startswith("vmexit: unsupported: this host's KVM cannot run `int 0x80` at 0x") and err.count("\n") == 1
    saved = load(out)
    assert saved.meta["status"] == "unsupported" and len(saved.exits) == 15


@needs_kvm
def test_a_runaway_guest_stops_at_the_real_time_budget(tmp_path, capsys):
    path = tmp_path / "spin.S"
    path.write_text(GUEST.replace("TRAP_HERE", "").replace("    cli\n    hlt", ".Lspin:\n    jmp .Lspin"))
    out = tmp_path / "spin.npz"
    code = main(["run", str(path), "--hypervisor", "kvm-hw", "--max-seconds", "0.05", "-o", str(out)])
    assert code == EXIT_BUDGET
    saved = load(out)
    assert saved.meta["status"] == "budget" and len(saved.exits) == 15 * LOOPS
    assert "real-time budget" in capsys.readouterr().err


@needs_kvm
def test_an_instruction_budget_is_refused_under_kvm_hw(tmp_path):
    with pytest.raises(VmexitError, match="kvm-hw counts no guest instructions"):
        vmexit.run(_guest(tmp_path), hypervisor="kvm-hw", max_instructions=1000)


@needs_kvm
def test_a_kvm_hw_trace_reports_and_compares(tmp_path, capsys):
    source = _guest(tmp_path)
    model, real = tmp_path / "model.npz", tmp_path / "real.npz"
    assert main(["run", source, "-o", str(model)]) == EXIT_OK
    assert main(["run", source, "--hypervisor", "kvm-hw", "-o", str(real)]) == EXIT_OK
    capsys.readouterr()
    assert main(["compare", str(model), str(real), "--by", "function"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "taskfile" in out and f"{11 * LOOPS}" in out


@needs_kvm
def test_registers_by_ioctl_give_the_same_trace_as_synced_ones(tmp_path, monkeypatch):
    """A host without KVM_CAP_SYNC_REGS: registers through KVM_GET/SET_(S)REGS, the same exits."""
    source = _guest(tmp_path)
    synced = vmexit.run(source, hypervisor="kvm-hw")
    monkeypatch.setattr(kvmapi, "CAP_SYNC_REGS", 0)   # capability 0 (KVM_CAP_IRQCHIP) gives no sync bits
    by_ioctl = vmexit.run(source, hypervisor="kvm-hw")
    assert synced.meta["kvm_hw"]["sync_regs"] and not by_ioctl.meta["kvm_hw"]["sync_regs"]
    for field in ("rip", "reason", "direction", "qualifier", "value", "caller", "stack"):
        assert np.array_equal(synced.exits[field], by_ioctl.exits[field]), field
