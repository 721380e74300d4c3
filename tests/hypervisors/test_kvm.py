"""The KVM exit model, one mechanism at a time, on small inline guests whose exits are known exactly."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason, Place
from vmexit.hypervisors.kvm import KVM_ENOSYS

from ..conftest import count, run_inline
from ..snippets import EXIT, IDT_DATA, IDT_SETUP


def test_port_io_records_address_port_size_value():
    t = run_inline("""
    mov al, 0x12
out_site:
    out 0x80, al
    mov dx, 0x1234
    mov ax, 0xbeef
    out dx, ax
    mov eax, 0xcafef00d
    out dx, eax
in_site:
    in al, 0x81
    in eax, dx
""" + EXIT)
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    assert io["qualifier"].tolist() == [0x80, 0x1234, 0x1234, 0x81, 0x1234, 0xF4]
    assert io["size"].tolist() == [1, 2, 4, 1, 4, 1]
    assert io["direction"].tolist() == [2, 2, 2, 1, 1, 2]
    assert io["value"].tolist()[:5] == [0x12, 0xBEEF, 0xCAFEF00D, 0xFF, 0xFFFFFFFF]  # nothing there: all ones
    assert int(io["rip"][0]) == t.symbols["out_site"] and int(io["rip"][3]) == t.symbols["in_site"]
    assert np.all(io["place"][:5] == Place.USER)  # unclaimed ports go to QEMU
    assert io["seq"].tolist() == list(range(6))


def test_instruction_counts_and_time_are_exact():
    # 3 instructions before the first out (mov esp in the prelude, 2 nops), the out is the 4th.
    t = run_inline("    nop\n    nop\n    out 0x80, al\n    nop\n" + EXIT)
    e = t.exits
    assert e["icount"].tolist() == [4, 6]
    cost = int(e["cost"][0])
    # CPI 1: cycles = instructions + the cost of the exits before
    assert e["cycles"].tolist() == [4, 6 + cost]
    assert t.meta["instructions"] == 6
    assert t.meta["cycles"] == 6 + int(e["cost"].sum())


def test_rep_string_io_exits_once_per_kib():
    t = run_inline("""
    mov edi, 0x20000
    mov ecx, 1024
    mov dx, 0x1f0
    rep insw
    mov esi, 0x20000
    mov ecx, 3
    rep outsb
""" + EXIT)
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    # 2,048 bytes in: two 1,024-byte exits; 3 bytes out: one exit
    assert io["size"].tolist() == [1024, 1024, 3, 1]
    assert io["qualifier"].tolist() == [0x1F0, 0x1F0, 0x1F0, 0xF4]


def test_vmcall_kvm_abi():
    t = run_inline("""
    mov eax, 1
    mov ebx, 11
    vmcall
    mov esi, eax
    mov eax, 0x77
    vmcall
    mov edi, eax
    mov eax, esi
    out 0x80, eax
    mov eax, edi
    out 0x80, eax
""" + EXIT)
    v = t.exits[t.exits["reason"] == ExitReason.VMCALL]
    assert v["qualifier"].tolist() == [1, 0x77]
    io = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert io["value"].tolist() == [0, (-KVM_ENOSYS) & 0xFFFFFFFF]


def test_cpuid_exits_with_kvm_signature():
    t = run_inline("""
    mov eax, 0x40000000
    cpuid
    mov eax, ebx
    out 0x80, eax
    mov eax, 1
    cpuid
    mov eax, ecx
    out 0x80, eax
""" + EXIT)
    c = t.exits[t.exits["reason"] == ExitReason.CPUID]
    assert c["qualifier"].tolist() == [0x40000000, 1]
    io = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert int(io["value"][0]) == int.from_bytes(b"KVMK", "little")
    assert int(io["value"][1]) & (1 << 31)  # hypervisor present


def test_msr_read_write_and_unknown_msr_gp():
    t = run_inline(IDT_SETUP + """
    mov ecx, 0x1b
    rdmsr
    out 0x80, eax
    mov ecx, 0x174
    mov eax, 0x10
    xor edx, edx
    wrmsr
    rdmsr
    out 0x80, eax
    mov ecx, 0xdead
    rdmsr
    out 0x80, al
""" + EXIT + """
handler:
    mov al, 0x47
    out 0x81, al
""" + EXIT + IDT_DATA)
    assert count(t, ExitReason.MSR_READ) == 3 and count(t, ExitReason.MSR_WRITE) == 1
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    assert io["qualifier"].tolist() == [0x80, 0x80, 0x81, 0xF4]
    assert io["value"].tolist()[:2] == [0xFEE00900, 0x10]
    # the unknown MSR raised #GP in the guest (not a trapped exception: no EXCEPTION_NMI exit)
    assert count(t, ExitReason.EXCEPTION_NMI) == 0


def test_trapped_exceptions_follow_the_profile():
    # #UD is trapped by KVM in both profiles
    t = run_inline(IDT_SETUP + """
    ud2
""" + EXIT + "handler:\n    add dword ptr [esp], 2\n    iretd\n" + IDT_DATA)
    assert count(t, ExitReason.EXCEPTION_NMI, qualifier=6) == 1
    assert t.meta["status"] == "exited"


PAGING = """
    # page directory at 0x30000: 4 MiB PSE identity pages for the first 8 MiB; 8-12 MiB not present
    mov dword ptr [0x30000], 0x83
    mov dword ptr [0x30004], 0x400083
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, 0x30000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


@pytest.mark.parametrize("profile,trapped", [("kvm76-q9550", 3), ("kvm-skylake", 0)])
def test_page_faults_are_delivered_and_reset_each_time(profile, trapped):
    # Three faults in a row: each is handled by mapping the page; Unicorn would turn the 2nd into #DF
    # and the 3rd into a triple fault if its exception state were not reset after each delivery.
    t = run_inline(IDT_SETUP + PAGING + """
    mov dword ptr [0x800000], 1
    mov dword ptr [0x800000], 2
    mov dword ptr [0x800000], 3
    mov eax, dword ptr [faults]
    out 0x80, al
""" + EXIT + """
handler:
    add esp, 4                      # the error code
    inc dword ptr [faults]
    mov eax, dword ptr [faults]
    cmp eax, 3
    jb .Lkeep_unmapped
    mov dword ptr [0x30008], 0x800083
.Lkeep_unmapped:
    mov eax, cr3
    mov cr3, eax
    iretd
.align 4
faults:
    .long 0
""" + IDT_DATA, profile=profile)
    assert t.meta["status"] == "exited"
    out = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert out["value"].tolist() == [3]
    assert count(t, ExitReason.EXCEPTION_NMI, qualifier=14) == trapped


def test_mmio_exits_at_the_accessing_instruction():
    t = run_inline("""
    mov eax, 5
apic_write:
    mov dword ptr [0xfee000b0], eax
hpet_read:
    mov ebx, dword ptr [0xfed00000]
    mov eax, ebx
    out 0x80, eax
""" + EXIT)
    apic = t.exits[t.exits["reason"] == ExitReason.APIC_ACCESS]
    assert apic["rip"].tolist() == [t.symbols["apic_write"]]
    assert apic["qualifier"].tolist() == [0xFEE000B0] and apic["direction"].tolist() == [Direction.OUT]
    assert apic["value"].tolist() == [5] and apic["place"].tolist() == [Place.KERNEL]
    ept = t.exits[t.exits["reason"] == ExitReason.EPT_VIOLATION]
    assert ept["rip"].tolist() == [t.symbols["hpet_read"]] and ept["qualifier"].tolist() == [0xFED00000]
    out = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert out["value"].tolist() == [0xFFFFFFFF]  # nothing behind it: all ones


def test_lapic_timer_interrupts_and_eoi_exits():
    # Enable the LAPIC, periodic timer on vector 0x40 every 100,000 bus cycles (100 us = 283,000
    # cycles at 2.83 GHz), wait for 4 ticks; the handler EOIs through the LAPIC: one APIC_ACCESS each.
    t = run_inline(IDT_SETUP + """
    mov dword ptr [0xfee000f0], 0x1ff
    mov dword ptr [0xfee003e0], 0xb
    mov dword ptr [0xfee00320], 0x20040
    mov dword ptr [0xfee00380], 100000
    sti
.Lwait:
    cmp dword ptr [ticks], 4
    jb .Lwait
    cli
""" + EXIT + """
handler:
    inc dword ptr [ticks]
eoi:
    mov dword ptr [0xfee000b0], 0
    iretd
.align 4
ticks:
    .long 0
""" + IDT_DATA)
    assert t.meta["status"] == "exited"
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert len(ext) == 4 and set(ext["qualifier"].tolist()) == {0x40}
    eoi = t.exits[(t.exits["reason"] == ExitReason.APIC_ACCESS) & (t.exits["rip"] == t.symbols["eoi"])]
    assert len(eoi) == 4 and set(eoi["qualifier"].tolist()) == {0xFEE000B0}
    # periods are exact: 100,000 bus cycles at 1 GHz = 283,000 CPU cycles
    assert np.all(np.diff(ext["cycles"].astype(np.int64)) == 283000)


def test_pit_through_the_ioapic():
    # PIC fully masked; the PIT's IRQ0 reaches I/O APIC pin 2, routed to vector 0x31 (edge)
    t = run_inline(IDT_SETUP + """
    mov al, 0xff
    out 0x21, al
    out 0xa1, al
    mov dword ptr [0xfee000f0], 0x1ff
    mov dword ptr [0xfec00000], 0x14
    mov dword ptr [0xfec00010], 0x31
    mov al, 0x34
    out 0x43, al
    mov al, 0xa9
    out 0x40, al
    mov al, 0x04
    out 0x40, al
    sti
.Lwait:
    cmp dword ptr [ticks], 2
    jb .Lwait
    cli
""" + EXIT + """
handler:
    inc dword ptr [ticks]
    mov dword ptr [0xfee000b0], 0
    iretd
.align 4
ticks:
    .long 0
""" + IDT_DATA)
    assert t.meta["status"] == "exited"
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert ext["qualifier"].tolist() == [0x31, 0x31]
    ioapic = t.exits[(t.exits["reason"] == ExitReason.EPT_VIOLATION) & (t.exits["place"] == Place.KERNEL)]
    assert ioapic["qualifier"].tolist() == [0xFEC00000, 0xFEC00010]


def test_self_modifying_code():
    # patch the immediate of a later `mov al, 1` to 7 before running it
    t = run_inline("""
    mov byte ptr [patched + 1], 7
patched:
    mov al, 1
    out 0x80, al
""" + EXIT)
    out = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert out["value"].tolist() == [7]




def test_msr_instructions_in_code_written_at_run_time_exit_too():
    # the guest writes `rdmsr; ret` into a buffer and calls it: the code scanner finds it there
    t = run_inline("""
    mov dword ptr [buffer], 0x00c3320f
    mov ecx, 0x1b
    call buffer
    out 0x80, al
""" + EXIT + """
.align 16
buffer:
    .long 0, 0
""")
    m = t.exits[t.exits["reason"] == ExitReason.MSR_READ]
    assert m["rip"].tolist() == [t.symbols["buffer"]] and m["qualifier"].tolist() == [0x1B]
    assert int(m["value"][0]) == 0xFEE00900


def test_cpuid_leaf_0x15_gives_the_tsc_and_apic_clocks():
    t = run_inline("""
    xor eax, eax
    cpuid
    out 0x80, eax
    mov eax, 0x15
    cpuid
    out 0x81, eax
    mov eax, ebx
    out 0x82, eax
    mov eax, ecx
    out 0x83, eax
""" + EXIT)
    out = {int(r["qualifier"]): int(r["value"]) for r in t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]}
    # the default profile's 2.83 GHz TSC over the LAPIC's 1 GHz crystal: 283/100
    freq = load_profile(None).freq_hz
    assert out[0x80] == 0x15 and out[0x83] == 1_000_000_000
    assert out[0x83] * out[0x82] // out[0x81] == freq and (out[0x81], out[0x82]) == (100, 283)


def test_page_fault_error_code_says_write_for_push_and_call():
    # 8-12 MiB mapped present but read-only (PDE 0x81, CR0.WP on): a push and a call with ESP there
    # fault as "present, write" (error code 3); a plain read of the page does not fault. The handler
    # prints each error code, then makes the page writable.
    t = run_inline(IDT_SETUP + PAGING + """
    mov dword ptr [0x30008], 0x800081
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    mov eax, cr3
    mov cr3, eax
    mov ebx, dword ptr [0x800100]
    mov esp, 0x800100
    push eax
    mov dword ptr [0x30008], 0x800081
    mov eax, cr3
    mov cr3, eax
    call target
    mov al, 0x55
    out 0x81, al
""" + EXIT + """
target:
    ret
handler:
    pop eax                          # the error code
    out 0x80, al
    mov dword ptr [0x30008], 0x800083
    mov eax, cr3
    mov cr3, eax
    iretd
""" + IDT_DATA)
    assert t.meta["status"] == "exited"
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    assert io["qualifier"].tolist() == [0x80, 0x80, 0x81, 0xF4]
    assert io["value"].tolist()[:2] == [3, 3]
