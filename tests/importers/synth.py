"""Text files in the formats `vmexit import` reads, written here from a workload we choose, so every
count a test asserts follows from construction.

The workload is a 64-bit guest kernel (System.map below) doing, per request, the KVM paper's IDE
taskfile load: 11 `outb` at 11 addresses of __ide_do_rw_disk to ports 0x1f1..0x1f7, 0x3f6 (each exit
timed to its kvm_entry, ENTRY_US later, and handled in QEMU: kvm_userspace_exit); then per request one
LAPIC timer write (an MMIO exit at lapic_next_event to 0xfee00380, in the kernel, timed), and every
other request an HLT in native_safe_halt with no kvm_entry (the trace prices it), an MSR write
(TSC deadline, 0x6e0) and a PAUSE exit (a reason vmexit has no row for: UNKNOWN); every tenth request
an external interrupt that hit user space (RIP 0x00007f0012345678: kept as the unknown address 0).
"""
from __future__ import annotations

from dataclasses import dataclass

KERNEL = 0xFFFFFFFF81000000
SYSTEM_MAP = """\
0000000000000000 A __per_cpu_start
0000000000001000 D fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81234500 T __ide_do_rw_disk
ffffffff81234600 t ide_execute_command
ffffffff81235000 T native_safe_halt
ffffffff81236000 T lapic_next_event
ffffffff81236100 T native_write_msr
ffffffff81236200 T __pv_queued_spin_lock_slowpath
ffffffff82000000 D jiffies
ffffffffc0100000 t virtio_mmio_notify	[virtio_mmio]
"""
IDE = 0xFFFFFFFF81234500
TASKFILE_RIPS = [IDE + 0x10 + 4 * i for i in range(11)]
TASKFILE_PORTS = [0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6]
HLT_RIP = 0xFFFFFFFF81235000 + 1
LAPIC_RIP = 0xFFFFFFFF81236000 + 0x20
MSR_RIP = 0xFFFFFFFF81236100 + 0x8
PAUSE_RIP = 0xFFFFFFFF81236200 + 0x40
USER_RIP = 0x00007F0012345678
ENTRY_US = 3          # exit to entry of every timed exit
STEP_US = 10          # one exit every STEP_US


@dataclass
class Exit:
    vmx: str                # the reason as Intel names it
    svm: str                # and AMD
    rip: int
    extra: list             # (event, text) after the exit, before its entry
    timed: bool = True      # a kvm_entry follows
    info1: int = 0          # EXITINFO1 / exit qualification


def workload(requests: int) -> list[Exit]:
    out = []
    for r in range(requests):
        for i, (rip, port) in enumerate(zip(TASKFILE_RIPS, TASKFILE_PORTS)):
            out.append(Exit("IO_INSTRUCTION", "io", rip, [
                ("kvm_pio", f"pio_write at 0x{port:x} size 1 count 1 val 0x{(r + i) & 0xff:x} "),
                ("kvm_userspace_exit", "reason KVM_EXIT_IO (2)")]))
        out.append(Exit("EPT_MISCONFIG", "npf", LAPIC_RIP, [("kvm_mmio", f"mmio write len 4 gpa 0xfee00380 val 0x{r:x}")]))
        if r % 2 == 0:
            out.append(Exit("HLT", "hlt", HLT_RIP, [], timed=False))
            out.append(Exit("MSR_WRITE", "msr", MSR_RIP, [("kvm_msr", f"msr_write 6e0 = 0x{1000 * r:x}")], info1=1))
            out.append(Exit("PAUSE_INSTRUCTION", "pause", PAUSE_RIP, []))
        if r % 10 == 0:
            out.append(Exit("EXTERNAL_INTERRUPT", "interrupt", USER_RIP, []))
    return out


def exit_text(e: Exit, vcpu: int, svm: bool, variant: str) -> str:
    """kvm_exit's text in one kernel's format (events.py lists them)."""
    reason = e.svm if svm else e.vmx
    if variant == "2.6":
        return f"reason {reason} rip 0x{e.rip:x}"
    if variant == "4.x":
        return f"reason {reason} rip 0x{e.rip:x} info {e.info1:x} 0"
    if variant == "5.5":
        return f"vcpu {vcpu} reason {reason} rip 0x{e.rip:x} info {e.info1:x} 0"
    return (f"vcpu {vcpu} reason {reason} rip 0x{e.rip:x} info1 0x{e.info1:016x} info2 0x{0:016x} "
            f"intr_info 0x{0:08x} error_code 0x{0:08x} requests 0x{0:016x}")


def events(exits: list[Exit], svm: bool = False, variant: str = "6.x", t0_us: int = 100_000_000,
           vcpu: int = 0, entry: bool = True) -> list[tuple[int, str, str]]:
    """(microseconds, event, text) of every event of `exits`, one exit every STEP_US."""
    out = []
    for n, e in enumerate(exits):
        t = t0_us + n * STEP_US
        out.append((t, "kvm_exit", exit_text(e, vcpu, svm, variant)))
        out += [(t + 1, name, text) for name, text in e.extra]
        if e.timed and entry:
            out.append((t + ENTRY_US, "kvm_entry", f"vcpu {vcpu}, rip 0x{e.rip + 1:x} intr_info 0x80000000 "
                        f"error_code 0x00000000"))
    return out


def _seconds(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def perf_text(evs: list[tuple[int, str, str]], comm: str = "CPU 0/KVM", tid: int = 4242, pid: int | None = None,
              cpu: int = 3) -> str:
    """perf script's layout: comm right-aligned to 16, [PID/]TID, [CPU], time, kvm:EVENT right-aligned."""
    who = f"{pid}/{tid}" if pid is not None else f"{tid}"
    return "".join(f"{comm:>16} {who} [{cpu:03d}] {_seconds(t)}: {'kvm:' + name:>22}: {text}\n"
                   for t, name, text in evs)


def tracecmd_text(evs: list[tuple[int, str, str]], comm: str = "CPU 0/KVM", tid: int = 4242, cpu: int = 3) -> str:
    """trace-cmd report's layout: the cpus= header, COMM-TID right-aligned, [CPU], time, EVENT: padded."""
    return "cpus=4\n" + "".join(f"{comm + '-' + str(tid):>24} [{cpu:03d}] {_seconds(t)}: {name + ':':<22}{text}\n"
                                for t, name, text in evs)
