"""The bundled guests: exit counts derived from their code, determinism, and the committed ELF files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason, Place

from .conftest import count

ROOT = Path(__file__).resolve().parent.parent
# early_serial_init: 8 outb + 1 inb; every console byte: 1 LSR inb + 1 THR outb; the final outb 0xf4.
SERIAL_INIT = 9


def _ports(trace, direction):
    io = trace.exits[(trace.exits["reason"] == ExitReason.IO_INSTRUCTION) & (trace.exits["direction"] == direction)]
    ports, counts = np.unique(io["qualifier"], return_counts=True)
    return dict(zip(ports.tolist(), counts.tolist()))


def test_timer_counts_by_construction(timer_trace):
    ticks = 20
    t = timer_trace
    assert t.meta["status"] == "exited" and t.meta["guest_value"] == 0
    assert t.meta["console"] == "timer: start\ntimer: done\n"
    chars = len(t.meta["console"])
    outs, ins = _ports(t, Direction.OUT), _ports(t, Direction.IN)
    # 8259A: init_8259A writes 0x21 five times and 0xa1 five times, 0x20 and 0xa0 once (ICW1);
    # per tick: inb 0x21 + outb 0x21 + outb 0x20 (mask_and_ack), outb 0x20 + inb 0x20 (timer_ack), outb 0x21 (unmask)
    assert ins[0x21] == ticks and ins[0x20] == ticks
    assert outs[0x21] == 5 + 2 * ticks and outs[0x20] == 1 + 2 * ticks
    assert outs[0xA1] == 5 and outs[0xA0] == 1
    assert outs[0x43] == 1 and outs[0x40] == 2          # mode byte, LATCH low and high
    assert ins[0x3FD] == chars and outs[0x3F8] == chars + 1  # + the divisor latch low byte
    assert outs[0xF4] == 1
    ext = count(t, ExitReason.EXTERNAL_INTERRUPT)
    hlt = count(t, ExitReason.HLT)
    # Every tick is taken once: while running (EXTERNAL_INTERRUPT) or out of one HLT.
    assert ext + hlt == ticks
    # do_work is 4M instructions = 1.41 ticks of 2.83M cycles: each idle-loop pass sees one tick
    # while working and is woken by the next one while halted.
    assert ext == hlt == ticks // 2
    assert count(t, ExitReason.INTERRUPT_WINDOW) == 0
    assert np.all(t.exits["qualifier"][t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT] == 0x20)
    # The PIC's exits are handled in the kernel, the UART's in user space.
    pic = t.exits[np.isin(t.exits["qualifier"], [0x20, 0x21]) & (t.exits["reason"] == ExitReason.IO_INSTRUCTION)]
    assert np.all(pic["place"] == Place.KERNEL)
    uart = t.exits[(t.exits["qualifier"] == 0x3F8) & (t.exits["reason"] == ExitReason.IO_INSTRUCTION)]
    assert np.all(uart["place"] == Place.USER)


def test_timer_exit_sites_and_callers(timer_trace):
    t = timer_trace
    sym = {v: k for k, v in t.symbols.items()}
    io = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x20)
                 & (t.exits["direction"] == Direction.IN)]
    # the timer_ack inb sits in timer_interrupt, called from do_IRQ
    funcs = {max(a for a in sym if a <= rip) for rip in io["rip"].tolist()}
    assert {sym[a] for a in funcs} == {"timer_interrupt"}
    callers = {max(a for a in sym if a <= c) for c in io["caller"].tolist()}
    assert {sym[a] for a in callers} == {"do_IRQ"}


def test_ide_counts_by_construction(ide_trace):
    t = ide_trace
    sectors = 16
    requests = 2 * sectors
    assert t.meta["status"] == "exited" and t.meta["guest_value"] == 0
    assert t.meta["console"] == "ide: start\nide: ok\n"
    chars = len(t.meta["console"])
    rw = t.symbols["__ide_do_rw_disk"]
    end = min(a for a in t.symbols.values() if a > rw)
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    taskfile = io[(io["rip"] >= rw) & (io["rip"] < end)]
    # 11 successive outb per request, at exactly 11 addresses, each hit once per request
    sites, hits = np.unique(taskfile["rip"], return_counts=True)
    assert len(sites) == 11 and set(hits.tolist()) == {requests}
    assert [int(p) for p in taskfile["qualifier"][:11]] == [0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5,
                                                           0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6]
    # 15 exits per request, + ide_init (6), serial init, console bytes, the final outb
    assert len(io) == 15 * requests + 6 + SERIAL_INIT + 2 * chars + 1
    # each 512-byte rep insw/outsw is one string-PIO exit (KVM moves up to 1 KiB per exit)
    data = io[io["qualifier"] == 0x1F0]
    assert len(data) == requests + 1 and set(data["size"].tolist()) == {512}
    assert t.meta["ide"] == {"commands": requests + 1, "sectors_read": sectors, "sectors_written": sectors,
                             "dma_transfers": 0}


def test_ide_sectors_constant(vmexit_run):
    t = vmexit_run("ide", constants={"SECTORS": 5})
    assert t.console.endswith("ide: ok\n")
    assert t.count(reason="io", function="__ide_do_rw_disk") == 11 * 2 * 5


def test_timer_hz_constant(vmexit_run):
    t = vmexit_run("timer", constants={"HZ": 100, "TICKS": 4})
    outs = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["qualifier"] == 0x40)]
    latch = (1193182 + 50) // 100
    assert [int(v) for v in outs["value"]] == [latch & 0xFF, latch >> 8]
    # 10 ms ticks are far longer than do_work: every tick comes out of HLT
    assert count(t, ExitReason.HLT) == 4 and count(t, ExitReason.EXTERNAL_INTERRUPT) == 0


def test_same_guest_same_trace_bytes():
    for name in guests.GUESTS:
        a = session.run(guests.resolve(name), load_profile(None), session.RunOptions()).to_bytes()
        b = session.run(guests.resolve(name), load_profile(None), session.RunOptions()).to_bytes()
        assert a == b, name


def test_committed_elf_files_are_fresh():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_guests.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_committed_elf_is_what_runs():
    for name in guests.GUESTS:
        image = guests.resolve(name)
        assert (guests.guests_dir() / f"{name}.elf").read_bytes() == image.elf


def test_specjbb_timer_paths_by_construction(vmexit_run):
    t = vmexit_run("specjbb")
    assert t.meta["status"] == "exited" and t.meta["console"] == "specjbb: start\nspecjbb: done\n"
    sym = t.symbols

    def in_function(name):
        start = sym[name]
        end = min(a for a in sym.values() if a > start)
        return (t.exits["rip"] >= start) & (t.exits["rip"] < end)

    jiffies = 20
    apic = t.exits["reason"] == ExitReason.APIC_ACCESS
    # every PIT tick: one EOI in ack_ioapic_irq and the timer_ack pair in timer_interrupt
    assert int((apic & in_function("ack_ioapic_irq")).sum()) == jiffies
    io = t.exits["reason"] == ExitReason.IO_INSTRUCTION
    assert int((io & in_function("timer_interrupt")).sum()) == 2 * jiffies
    # every LAPIC tick that was taken: one EOI in smp_apic_timer_interrupt
    local_ticks = t.meta["lapic"]["timer_interrupts"]
    eois = int((apic & in_function("smp_apic_timer_interrupt")).sum())
    # every timer event fired while the guest ran: one EXTERNAL_INTERRUPT (a last LAPIC tick may fire
    # after the final cli and never be taken)
    assert count(t, ExitReason.EXTERNAL_INTERRUPT) == jiffies + local_ticks
    assert eois in (local_ticks, local_ticks - 1)
    ext = t.exits[t.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT]
    assert set(ext["qualifier"].tolist()) == {0x31, 0xEF}
    # setup: TPR write, SVR read and write, two I/O APIC register pairs, three LAPIC timer writes
    assert int((t.exits["reason"] == ExitReason.EPT_VIOLATION).sum()) == 4
    assert int((apic & in_function("setup_local_APIC")).sum()) == 3
    assert int((apic & in_function("setup_APIC_timer")).sum()) == 3


def test_specjbb_on_a_low_resolution_host_has_table_1s_softirq_window(vmexit_run):
    # With both guest timers delivered on the host's 1 ms tick, the PIT and the LAPIC timer expire
    # together: one host interrupt (one EXTERNAL_INTERRUPT) per tick, the LAPIC tick taken first
    # (higher priority), and the PIT's interrupt pending until __do_softirq re-enables interrupts:
    # one INTERRUPT_WINDOW exit there per tick, Table 1's second row.
    t = vmexit_run("specjbb", host_timer_hz=1000)
    assert t.meta["status"] == "exited"
    jiffies = 20
    window = t.exits[t.exits["reason"] == ExitReason.INTERRUPT_WINDOW]
    softirq = t.symbols["__do_softirq"]
    end = min(a for a in t.symbols.values() if a > softirq)
    assert len(window) == jiffies and np.all((window["rip"] >= softirq) & (window["rip"] < end))
    assert count(t, ExitReason.EXTERNAL_INTERRUPT) == jiffies
    assert t.meta["lapic"]["timer_interrupts"] == jiffies


def test_bonnie_dma_path_by_construction(vmexit_run):
    t = vmexit_run("bonnie")
    assert t.meta["status"] == "exited" and t.meta["console"] == "bonnie: start\nbonnie: ok\n"
    requests = 2 * 64 // 8
    assert t.meta["ide"]["dma_transfers"] == requests
    io, funcs, callers = _io_by_function(t)
    sites = io["caller"]
    # probe (ata_eh_reset): ata_devchk x2 (select + 6 writes + 2 reads each; both devices read back
    # what was written, as on QEMU, so devmask is 3), select 0, SRST (3 control writes),
    # wait_after_reset (wait_ready: 1 status read; for device 1: select, nsect and lbal reads,
    # wait_ready; then selects 0, 1, 0), classify x2 (select, tf_read = 7 reads; the master shows the
    # ATA signature and one status read tells an ATA disk from nobody; the absent slave's error 00h
    # and LBA mid/high FFh/FFh make it "present with a failed diagnostic": ATA, no status read),
    # postreset (select 1 and select 0, both classes being ATA, control write). A select is one
    # iowrite8 and one ioread8.
    selects_at_probe = 2 + 1 + 4 + 2 + 2
    probe_writes = 2 * 6 + 3 + 1 + selects_at_probe
    probe_reads = 2 * 2 + (1 + 2 + 1) + 2 * 7 + 1 + selects_at_probe
    # per request: iowrite8 x17 (select 1, tf_load 11, setup 1, exec_command 1, start 1, stop 1,
    # irq_clear 1); ioread8 x11 (ata_dev_select's two ata_wait_idle, the select's pause, tf_load's
    # ata_wait_idle, setup, exec_command's pause, start, stop x2, irq_clear, check_status) + the polls
    polls = int(((funcs == "ioread8") & (callers == "ata_bmdma_status")).sum())
    assert int((funcs == "iowrite8").sum()) == 17 * requests + probe_writes
    assert int((funcs == "ioread8").sum()) == 11 * requests + polls + probe_reads
    assert int((funcs == "iowrite32").sum()) == requests
    assert set(callers[funcs == "iowrite32"]) == {"ata_bmdma_setup"}
    # Table 3 by call site: the select's one iowrite8 call runs once a request and at every probe
    # select; each of tf_load's eleven runs once a request
    w8 = funcs == "iowrite8"
    site, n = np.unique(sites[w8], return_counts=True)
    by_site = dict(zip(site.tolist(), n.tolist()))
    select_site = int(sites[w8 & (callers == "ata_sff_dev_select")][0])
    assert by_site[select_site] == requests + selects_at_probe
    tf_sites = set(sites[w8 & (callers == "ata_sff_tf_load")].tolist())
    assert len(tf_sites) == 11 and {by_site[s] for s in tf_sites} == {requests}
    assert max(by_site.values()) == by_site[select_site]
    # the disk takes 4 KiB / 70 MB/s = 58.5 us a request: the status is polled until then, every poll
    # one exit of about 6.8 us (the ioread8 exit plus the loop), and the completion is one interrupt
    assert polls > 6 * requests
    assert count(t, ExitReason.EXTERNAL_INTERRUPT) == requests
    assert int(((funcs == "acpi_pm_read") & (callers == "verify_pmtmr_rate")).sum()) == 64
    assert int((funcs == "ata_pci_init").sum()) == 7


def _io_by_function(t):
    sym = {v: k for k, v in t.symbols.items()}
    io = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    funcs = np.array([sym[max(a for a in sym if a <= rip)] for rip in io["rip"].tolist()])
    callers = np.array([sym[max(a for a in sym if a <= c)] if c else "-" for c in io["caller"].tolist()])
    return io, funcs, callers


def test_netperf_by_construction(vmexit_run):
    for napi in (1, 0):
        t = vmexit_run("netperf", constants={"NAPI": napi})
        assert t.meta["status"] == "exited" and t.meta["console"] == "netperf: start\nnetperf: done\n"
        nic = t.meta["nic"]
        frames = 64 * 3  # MSG_SIZE 4096 = 1448 + 1448 + 1200
        assert nic["tx_frames"] == frames and nic["rx_dropped"] == 0
        io, funcs, callers = _io_by_function(t)
        # one TSD write per frame sent
        assert int(((funcs == "iowrite32") & (callers == "rtl8139_start_xmit")).sum()) == frames
        # per ACK taken off the ring: one CAPR write and the ISR read of rtl8139_isr_ack (the last
        # ACKs may reach the ring after the guest stopped reading it)
        capr = int(((funcs == "iowrite16") & (callers == "rtl8139_rx")).sum())
        assert nic["rx_frames"] - 2 <= capr <= nic["rx_frames"]
        assert int(((funcs == "ioread16") & (callers == "rtl8139_isr_ack")).sum()) == capr
        # the RX interrupt masks RX in IMR only with NAPI
        imr_writes = int(((funcs == "iowrite16") & (callers == "rtl8139_interrupt")
                          & (io["qualifier"] == 0xC100 + 0x3C)).sum())
        assert (imr_writes > 0) == bool(napi)
        # the peer acks every second frame; the last ones may still be in flight at the end
        assert frames // 2 - 2 <= nic["rx_frames"] <= frames // 2


def test_netperf_receive_mode(vmexit_run):
    t = vmexit_run("netperf", constants={"RECEIVE": 1}, net_peer_sends=True)
    assert t.meta["status"] == "exited" and t.meta["console"] == "netperf: start\nnetperf: done\n"
    nic = t.meta["nic"]
    payload = 1514 - 54
    needed = -(-64 * 4096 // payload)           # data frames to carry MESSAGES x MSG_SIZE
    assert needed <= nic["rx_frames"] <= needed + 16   # the window may have more in flight at the end
    # one ACK per two data frames, sent from the main loop, which stops once the last frame is in
    assert nic["tx_frames"] == (needed - 1) // 2
    assert 90 < nic["throughput_mbit_s"] <= 100        # the peer's 100 Mb/s link is the bottleneck
    io, funcs, callers = _io_by_function(t)
    capr = int(((funcs == "iowrite16") & (callers == "rtl8139_rx")).sum())
    assert needed <= capr <= nic["rx_frames"]


def test_bonnie_redundant_work_variants(vmexit_run):
    """-D PMTMR_VERIFY=0 removes exactly the PM-timer reads; -D ELEVATOR=0 (FIFO) removes only guest
    instructions -- the sort of an already sequential stream -- and not one exit."""
    def run(**constants):
        return vmexit_run("bonnie", constants=constants)

    base, no_verify, fifo = run(), run(PMTMR_VERIFY=0), run(ELEVATOR=0)
    for t in (base, no_verify, fifo):
        assert t.meta["console"] == "bonnie: start\nbonnie: ok\n"
    _, funcs, _ = _io_by_function(no_verify)
    assert "acpi_pm_read" not in set(funcs)
    assert len(base.exits) - len(no_verify.exits) == 64
    assert no_verify.meta["instructions"] < base.meta["instructions"]
    assert len(fifo.exits) == len(base.exits)
    assert np.array_equal(np.sort(fifo.exits["qualifier"]), np.sort(base.exits["qualifier"]))
    # elv_dispatch_sort's walk, 8 requests a pass: one comparison each (the stream is sequential)
    assert 0 < base.meta["instructions"] - fifo.meta["instructions"] < 20 * 16
