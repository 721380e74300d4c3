"""The KVM exit model, one mechanism at a time, on small inline guests whose exits are known exactly."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit.exits import Direction, ExitReason, Place
from vmexit.hypervisors.kvm import KVM_ENOSYS

from ..conftest import count, run_inline

EXIT = "    out 0xf4, al\n"
# An IDT at 0x10000 whose every gate points at `handler` (set up by the guest itself).
IDT_SETUP = """
    mov edi, 0x10000
    xor ecx, ecx
.Lidt_fill:
    mov eax, handler
    mov word ptr [edi + ecx * 8], ax
    mov word ptr [edi + ecx * 8 + 2], 0x08
    mov word ptr [edi + ecx * 8 + 4], 0x8e00
    shr eax, 16
    mov word ptr [edi + ecx * 8 + 6], ax
    inc ecx
    cmp ecx, 256
    jb .Lidt_fill
    .byte 0x0f, 0x01, 0x1d
    .long idt_descr
"""
IDT_DATA = """
.align 8
idt_descr:
    .word 2047
    .long 0x10000
"""


def _regs_at_exit(trace):
    return trace.meta


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


def test_hlt_with_interrupts_off_ends_the_run():
    t = run_inline("    cli\nstop:\n    hlt\n")
    assert t.meta["status"] == "halted"
    assert count(t, ExitReason.HLT) == 1
    assert int(t.exits["rip"][-1]) == t.symbols["stop"]


def test_hlt_forever_with_nothing_armed():
    t = run_inline("    sti\n    hlt\n")
    assert t.meta["status"] == "halted" and "forever" in t.meta["detail"]


PIT_1000HZ = """
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov al, 0xa9
    out 0x40, al
    mov al, 0x04
    out 0x40, al
"""
EOI_HANDLER = """
handler:
    push eax
    inc dword ptr [ticks]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd
.align 4
ticks:
    .long 0
"""


def test_interrupt_window_exit_at_sti():
    # Interrupts stay off well past the first tick (1193 PIT ticks = 2.83M cycles); at `sti` the
    # pending IRQ0 makes an INTERRUPT_WINDOW exit, and after sti's shadow (the nop) it is delivered.
    t = run_inline(IDT_SETUP + PIT_1000HZ + """
    mov ecx, 2000000
.Lspin:
    dec ecx
    jnz .Lspin
window:
    sti
shadow:
    nop
after:
    mov eax, dword ptr [ticks]
    out 0x80, al
""" + EXIT + EOI_HANDLER + IDT_DATA)
    w = t.exits[t.exits["reason"] == ExitReason.INTERRUPT_WINDOW]
    assert w["rip"].tolist() == [t.symbols["window"]]
    # the tick fired during the spin (a host interrupt in guest mode: one EXTERNAL_INTERRUPT exit
    # there), was held pending while IF=0, and was injected after the window opened
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert len(ext) == 1 and int(ext["rip"][0]) < t.symbols["window"] and int(ext["seq"][0]) < int(w["seq"][0])
    out = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert out["value"].tolist() == [1]  # the handler ran once, before `after`
    eoi = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x20)
                  & (t.exits["value"] == 0x20)]
    # the interrupt came after the nop in sti's shadow: its handler's EOI follows the window exit
    assert int(eoi["seq"][0]) == int(w["seq"][0]) + 1


def test_interrupt_window_at_popf_and_iret_paths():
    t = run_inline(IDT_SETUP + PIT_1000HZ + """
    pushfd
    or dword ptr [esp], 0x200
    mov ecx, 2000000
.Lspin:
    dec ecx
    jnz .Lspin
window:
    popfd
    nop
""" + EXIT + EOI_HANDLER + IDT_DATA)
    w = t.exits[t.exits["reason"] == ExitReason.INTERRUPT_WINDOW]
    assert w["rip"].tolist() == [t.symbols["window"]]


def test_external_interrupts_while_running_are_exits():
    t = run_inline(IDT_SETUP + PIT_1000HZ + """
    sti
.Lwait:
    cmp dword ptr [ticks], 3
    jb .Lwait
""" + EXIT + EOI_HANDLER + IDT_DATA)
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert len(ext) == 3 and set(ext["qualifier"].tolist()) == {0x20}
    # each one lands exactly at its due time (instruction granularity): tick k is due at
    # start + k * ceil(1193 * 3 * 2.83e9 / 3579545) cycles
    period = -(-1193 * 3 * 2830000000 // 3579545)
    starts = ext["cycles"].astype(np.int64)
    assert np.all(np.diff(starts) >= period - 100) and np.all(np.diff(starts) <= period + 100)


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


def test_triple_fault_without_idt():
    t = run_inline("    xor ecx, ecx\nfault:\n    div ecx\n" + EXIT)
    assert t.meta["status"] == "crashed" and "triple fault" in t.meta["detail"]
    assert t.meta["end_address"] == t.symbols["fault"]
    assert count(t, ExitReason.TRIPLE_FAULT) == 1


def test_jump_into_unmapped_memory():
    t = run_inline("    mov eax, 0x7ff00000\n    jmp eax\n")
    assert t.meta["status"] == "crashed" and "unmapped" in t.meta["detail"]


def test_budget_stops_a_runaway_guest_exactly():
    t = run_inline("spin:\n    jmp spin\n", max_instructions=12345)
    assert t.meta["status"] == "budget" and t.meta["instructions"] == 12345


def test_virtual_time_budget():
    t = run_inline("spin:\n    jmp spin\n", max_seconds=0.001)
    assert t.meta["status"] == "budget"
    assert t.meta["instructions"] == 2830000  # CPI 1 at 2.83 GHz, no exits


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


def test_interrupt_window_at_iret():
    # a fake interrupt frame with IF set, returned to with iret while IRQ0 is pending
    t = run_inline(IDT_SETUP + PIT_1000HZ + """
    mov ecx, 2000000
.Lspin:
    dec ecx
    jnz .Lspin
    pushfd
    or dword ptr [esp], 0x200
    push 8
    mov eax, back
    push eax
window:
    iretd
back:
    nop
""" + EXIT + EOI_HANDLER + IDT_DATA)
    w = t.exits[t.exits["reason"] == ExitReason.INTERRUPT_WINDOW]
    assert w["rip"].tolist() == [t.symbols["window"]]


def test_four_kib_pages_for_idt_and_stack():
    # paging with a 4 KiB page table; the IDT is reached through it when IRQ0 is delivered
    t = run_inline(IDT_SETUP + """
    # page table at 0x31000 identity-maps the first 4 MiB with 4 KiB pages
    mov edi, 0x31000
    xor ecx, ecx
.Lpt:
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov dword ptr [edi + ecx * 4], eax
    inc ecx
    cmp ecx, 1024
    jb .Lpt
    mov dword ptr [0x30000], 0x31003
    mov eax, 0x30000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
""" + PIT_1000HZ + """
    sti
.Lwait:
    cmp dword ptr [ticks], 2
    jb .Lwait
""" + EXIT + EOI_HANDLER + IDT_DATA)
    assert t.meta["status"] == "exited"
    assert count(t, ExitReason.EXTERNAL_INTERRUPT) == 2


@pytest.mark.parametrize("guest", ["timer", "ide"])
def test_fast_register_path_gives_identical_traces(guest, monkeypatch):
    from vmexit import _uc, guests, session
    from vmexit.costs import load_profile
    fast = session.run(guests.resolve(guest), load_profile(None), session.RunOptions()).to_bytes()
    monkeypatch.setattr(_uc.CpuState, "locate", classmethod(lambda cls, uc: None))
    slow = session.run(guests.resolve(guest), load_profile(None), session.RunOptions()).to_bytes()
    assert fast == slow


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


def test_runaway_loop_with_interrupts_off_hits_the_budget():
    t = run_inline("    cli\nspin:\n    jmp spin\n", max_instructions=100000)
    assert t.meta["status"] == "budget" and t.meta["instructions"] == 100000


def test_exits_recorded_between_slices_use_the_executed_count():
    # A tick ends a slice by count; the EXTERNAL_INTERRUPT recorded after it carries exactly the
    # instructions executed, the same count the trace's totals and the next exit continue from.
    t = run_inline(IDT_SETUP + PIT_1000HZ + """
    sti
.Lwait:
    cmp dword ptr [ticks], 1
    jb .Lwait
""" + EXIT + EOI_HANDLER + IDT_DATA)
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert len(ext) == 1
    row = ext[0]
    # cycles = instructions x CPI 1 + the cost of every earlier exit
    earlier = t.exits[: int(row["seq"])]
    assert int(row["cycles"]) == int(row["icount"]) + int(earlier["cost"].sum())
    # and the tick is due exactly then: the first instruction count at which time reaches the period
    period = -(-1193 * 3 * 2830000000 // 3579545)
    start = next(int(r["cycles"]) + int(r["cost"]) for r in t.exits if r["qualifier"] == 0x40 and r["value"] == 0x04)
    assert int(row["cycles"]) == start + period


RING3 = """
    mov edi, 0x10000                    # IDT: every vector to handler (DPL 0), vector 0x40 DPL 3
    mov ecx, 256
.Lidt:
    mov eax, handler
    mov word ptr [edi], ax
    mov word ptr [edi + 2], 0x08
    mov word ptr [edi + 4], 0x8e00
    shr eax, 16
    mov word ptr [edi + 6], ax
    add edi, 8
    loop .Lidt
    mov word ptr [0x10000 + 0x40 * 8 + 4], 0xee00
    mov dword ptr [0x11000], 0x0000ffff  # GDT 0x10000+0x1000: null, kernel code/data, user code/data, TSS
    mov dword ptr [0x11004], 0
    mov dword ptr [0x11008], 0x0000ffff
    mov dword ptr [0x1100c], 0x00cf9a00
    mov dword ptr [0x11010], 0x0000ffff
    mov dword ptr [0x11014], 0x00cf9200
    mov dword ptr [0x11018], 0x0000ffff
    mov dword ptr [0x1101c], 0x00cffa00
    mov dword ptr [0x11020], 0x0000ffff
    mov dword ptr [0x11024], 0x00cff200
    mov dword ptr [0x11028], 0x20000067  # TSS at 0x12000, limit 0x67
    mov dword ptr [0x1102c], 0x00008901
    mov dword ptr [0x12004], 0x80000     # ESP0
    mov dword ptr [0x12008], 0x10        # SS0
    mov dword ptr [0x13000], 0x0000002f  # GDT descriptor: limit, base 0x11000
    mov dword ptr [0x13002], 0x00011000
    .byte 0x0f, 0x01, 0x15               # lgdt [0x13000]
    .long 0x13000
    mov dword ptr [0x13010], 0x000007ff  # IDT descriptor
    mov dword ptr [0x13012], 0x00010000
    .byte 0x0f, 0x01, 0x1d               # lidt [0x13010]
    .long 0x13010
    mov ax, 0x28
    ltr ax
    mov eax, 0x23
    push eax
    mov eax, 0x70000
    push eax
    mov eax, 0x202
    push eax
    mov eax, 0x1b
    push eax
    mov eax, user
    push eax
    iretd
user:
    int 0x40                            # DPL 3: allowed
    int 0x41                            # DPL 0: #GP(0x41 * 8 + 2)
    jmp user_end
user_end:
    jmp user_end
handler:
    mov eax, [esp]
    out 0x80, eax                       # what the frame starts with
    mov eax, ss
    out 0x81, eax
    mov eax, [esp + 16]
    out 0x82, eax
    cmp dword ptr [esp], 0x020a         # the #GP's error code (0x41 * 8 + 2): done
    jne .Lback
    out 0xf4, al
.Lback:
    iretd
"""


def test_ring3_interrupts_use_the_tss_stack_and_check_the_gate_dpl():
    t = run_inline(RING3)
    assert t.meta["status"] == "exited"
    e = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    values = {q: e[e["qualifier"] == q]["value"].tolist() for q in (0x80, 0x81, 0x82)}
    user = t.symbols["user"]
    # int 0x40 (DPL 3): frame EIP past the int, and the user SS pushed (5 words: SS at [esp + 16]);
    # int 0x41 (DPL 0): #GP with error code 0x41 * 8 + 2 (IDT entry, bit 1), the user ESP at [esp + 16]
    assert values[0x81] == [0x10, 0x10]                # both handlers run on SS0
    assert values[0x82] == [0x23, 0x70000]
    assert values[0x80][1] == 0x41 * 8 + 2
    assert values[0x80][0] == user + 2


NESTED = IDT_SETUP + """
    mov eax, trap_handler               # vector 0x41 becomes a trap gate (type 0xf): IF stays set
    mov word ptr [0x10000 + 0x41 * 8], ax
    mov word ptr [0x10000 + 0x41 * 8 + 4], 0x8f00
    shr eax, 16
    mov word ptr [0x10000 + 0x41 * 8 + 6], ax
    mov eax, intr_handler               # vector 0x42 stays an interrupt gate: IF cleared
    mov word ptr [0x10000 + 0x42 * 8], ax
    shr eax, 16
    mov word ptr [0x10000 + 0x42 * 8 + 6], ax
    sti
    int 0x41
    int 0x42
    mov dword ptr [0xfee000f0], 0x1ff   # LAPIC on; periodic timer on vector 0x40 every 100 us
    mov dword ptr [0xfee003e0], 0xb
    mov dword ptr [0xfee00320], 0x20040
    mov dword ptr [0xfee00380], 100000
.Lwait:
    cmp dword ptr [ticks], 4
    jb .Lwait
    cli
    mov eax, [maxdepth]
    out 0x80, eax
    out 0xf4, al
handler:
    push eax
    inc dword ptr [depth]
    inc dword ptr [ticks]
    mov eax, [depth]
    cmp eax, [maxdepth]
    jbe .Lnot_deeper
    mov [maxdepth], eax
.Lnot_deeper:
    mov dword ptr [0xfee000b0], 0       # EOI first, so the next tick can nest
    cmp dword ptr [depth], 1
    jne .Linner
    mov eax, [ticks]
    sti                                 # the outer handler waits, interrupts on, for the next tick
spin:
    cmp [ticks], eax
    je spin
    cli
    jmp .Lleave
.Linner:
    mov eax, [esp + 4]                  # where the nested tick interrupted
    out 0x81, eax
.Lleave:
    dec dword ptr [depth]
    pop eax
    iretd
trap_handler:
    pushfd
    pop eax
    out 0x82, eax
    iretd
intr_handler:
    pushfd
    pop eax
    out 0x83, eax
    iretd
.align 4
ticks:
    .long 0
depth:
    .long 0
maxdepth:
    .long 0
""" + IDT_DATA


def test_nested_interrupts_and_trap_versus_interrupt_gates():
    t = run_inline(NESTED)
    assert t.meta["status"] == "exited"
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    out = {q: io[io["qualifier"] == q]["value"].tolist() for q in (0x80, 0x81, 0x82, 0x83)}
    assert out[0x82][0] & 0x200 and not out[0x83][0] & 0x200  # trap gate keeps IF, interrupt gate clears it
    # ticks 2 and 4 arrive inside the handlers of ticks 1 and 3, at the outer handler's wait loop
    assert out[0x80] == [2]
    spin = t.symbols["spin"]
    assert len(out[0x81]) == 2 and all(spin <= eip < spin + 8 for eip in out[0x81])
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert ext["qualifier"].tolist() == [0x40] * 4
    assert np.all(np.diff(ext["cycles"].astype(np.int64)) == 283000)
