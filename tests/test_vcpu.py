"""The run loop every hypervisor model shares (vcpu.py): HLT, interrupt injection and windows, nested
interrupts, how runs end; exercised through the KVM model on small inline guests."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit.exits import ExitReason

from .conftest import count, run_inline
from .snippets import EOI_HANDLER, EXIT, IDT_DATA, IDT_SETUP, PIT_1000HZ, wait_for_ticks


def test_hlt_with_interrupts_off_ends_the_run():
    t = run_inline("    cli\nstop:\n    hlt\n")
    assert t.meta["status"] == "halted"
    assert count(t, ExitReason.HLT) == 1
    assert int(t.exits["rip"][-1]) == t.symbols["stop"]


def test_hlt_forever_with_nothing_armed():
    t = run_inline("    sti\n    hlt\n")
    assert t.meta["status"] == "halted" and "forever" in t.meta["detail"]


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


def test_external_interrupts_while_running_are_exits():
    t = run_inline(wait_for_ticks(3))
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert len(ext) == 3 and set(ext["qualifier"].tolist()) == {0x20}
    # each one lands exactly at its due time (instruction granularity): tick k is due at
    # start + k * ceil(1193 * 3 * 2.83e9 / 3579545) cycles
    period = -(-1193 * 3 * 2830000000 // 3579545)
    starts = ext["cycles"].astype(np.int64)
    assert np.all(np.diff(starts) >= period - 100) and np.all(np.diff(starts) <= period + 100)


def test_exits_recorded_between_slices_use_the_executed_count():
    # A tick ends a slice by count; the EXTERNAL_INTERRUPT recorded after it carries exactly the
    # instructions executed, the same count the trace's totals and the next exit continue from.
    t = run_inline(wait_for_ticks(1))
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


def test_runaway_loop_with_interrupts_off_hits_the_budget():
    t = run_inline("    cli\nspin:\n    jmp spin\n", max_instructions=100000)
    assert t.meta["status"] == "budget" and t.meta["instructions"] == 100000


@pytest.mark.parametrize("guest", ["timer", "ide"])
def test_fast_register_path_gives_identical_traces(guest, monkeypatch):
    from vmexit import guests, session
    from vmexit.engine import _uc
    from vmexit.costs import load_profile
    fast = session.run(guests.resolve(guest), load_profile(None), session.RunOptions()).to_bytes()
    monkeypatch.setattr(_uc.CpuState, "locate", classmethod(lambda cls, uc: None))
    slow = session.run(guests.resolve(guest), load_profile(None), session.RunOptions()).to_bytes()
    assert fast == slow


def test_host_timer_hz_delivers_guest_timers_on_the_host_tick():
    # The PIT's 1000 Hz period (1193 PIT clocks, 2,829,569.1 cycles) is a little shorter than the
    # host's 1 ms tick (2,830,000 cycles): each tick fires at the first host tick at or after it.
    body = wait_for_ticks(3)
    exact = run_inline(body)
    host = run_inline(body, host_timer_hz=1000)
    tick = 2830000
    due = exact.exits[exact.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]["cycles"].astype(np.int64)
    got = host.exits[host.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]["cycles"].astype(np.int64)
    assert len(got) == len(due) == 3
    assert np.all(got % tick == 0) and np.all(got == -(-due // tick) * tick)
    assert host.meta["options"]["host_timer_hz"] == 1000


def test_host_timer_hz_is_ignored_without_a_host():
    body = wait_for_ticks(2)
    a = run_inline(body, hypervisor="native")
    b = run_inline(body, hypervisor="native", host_timer_hz=1000)
    assert a.meta["virtual_seconds"] == b.meta["virtual_seconds"]


# the virtual time stamp counter and traps found in the code the guest runs (issue 14) --------------
TSC_LOOP = """
    mov ecx, 1000
    rdtsc
    mov esi, eax
.Lloop:
    dec ecx
    jnz .Lloop
    rdtsc
    sub eax, esi
    mov dx, 0x80
    out dx, eax
    rdtscp
    mov edi, eax
    mov ebx, ecx
    mov ecx, 0x10
    rdmsr
    sub eax, edi
    mov dx, 0x81
    out dx, eax
    mov eax, ebx
    out 0x82, al
""" + EXIT


def test_rdtsc_reads_the_virtual_cycles_of_the_loop_between():
    # between the two rdtsc: mov, 1000 x (dec, jnz), the second rdtsc = 2002 instructions at CPI 1 and
    # no exit; rdtscp to the rdmsr of the TSC MSR (0x10): mov, mov, mov, rdmsr = 4 cycles; TSC_AUX is 0
    a, b = run_inline(TSC_LOOP), run_inline(TSC_LOOP)
    out = {int(r["qualifier"]): int(r["value"]) for r in a.exits[a.exits["reason"] == ExitReason.IO_INSTRUCTION]}
    assert out[0x80] == 2002 and out[0x81] == 4 and out[0x82] == 0
    assert a.to_bytes() == b.to_bytes()


def test_cpuid_reports_an_invariant_tsc():
    t = run_inline("""
    mov eax, 0x80000000
    cpuid
    out 0x80, al
    mov eax, 0x80000007
    cpuid
    mov eax, edx
    shr eax, 8
    out 0x81, al
""" + EXIT)
    out = {int(r["qualifier"]): int(r["value"]) for r in t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]}
    assert out[0x80] == 0x07 and out[0x81] & 1 == 1


def test_an_sti_the_guest_writes_over_a_nop_opens_the_window_there():
    # `target` runs once as nop; nop; ret (its code is seen without a trap), then, with IRQ0 pending
    # and IF=0, the guest writes sti over the first nop and calls it again: the window exit is at the
    # new sti, and the tick is delivered after it
    t = run_inline(IDT_SETUP + PIT_1000HZ + """
    call target
    mov ecx, 2000000
.Lspin:
    dec ecx
    jnz .Lspin
    mov byte ptr [patch], 0xfb
    call target
    mov eax, dword ptr [ticks]
    out 0x80, al
""" + EXIT + """
target:
patch:
    nop
    nop
    ret
""" + EOI_HANDLER + IDT_DATA)
    w = t.exits[t.exits["reason"] == ExitReason.INTERRUPT_WINDOW]
    assert w["rip"].tolist() == [t.symbols["patch"]]
    out = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x80)]
    assert out["value"].tolist() == [1]
