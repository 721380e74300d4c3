"""`vmexit reproduce --linux` (linuxpaper.py): the KVM paper's Tables 1-3 from Linux 6.1's workloads.
Without a kernel: the error, the runs' settings and the paper's 6.1 sites as data. With the kernel of
tools/linux/build.sh: each workload's exits in its window, counted by construction, and the tables."""
from __future__ import annotations

from dataclasses import replace

import pytest

from vmexit import grid, linuxpaper, papers
from vmexit.api import Trace
from vmexit.cli import main
from vmexit.costs import load_profile
from vmexit.devices.pci import NIC_BASE      # the RTL8139's I/O BAR, which Linux keeps
from vmexit.exits import Direction, ExitReason
from vmexit.trace import from_bytes


from .conftest import count

ATA_COMMAND = 0x1F7        # the primary channel's command register
BLOCKS, KIB, ITERATIONS = 8, 64, 3000   # small workloads: a boot each is most of a run's time


def test_no_kernel_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VMEXIT_LINUX_DIR", str(tmp_path))
    with pytest.raises(linuxpaper.LinuxNotBuilt, match="run tools/linux/build.sh"):
        linuxpaper.check_built(linuxpaper.linux_dir())
    assert main(["reproduce", "--linux", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "no Linux kernel built in" in capsys.readouterr().err


def test_every_run_boots_the_kernel_to_its_workload_and_ends_at_its_done_line(tmp_path):
    jobs = linuxpaper.jobs(load_profile(None), tmp_path)
    assert [j.label for j in jobs] == list(linuxpaper.RUNS)
    for job, run in zip(jobs, linuxpaper.RUNS.values()):
        assert job.guest == str(tmp_path / "bzImage") and job.image["initrd"] == str(tmp_path / "initramfs.cpio")
        assert f"vmexit.workload={run.workload} vmexit.count={run.count}" in job.image["cmdline"]
        assert job.options.until_console == f"vmexit: workload {run.workload} done"
        assert job.options.optimizations == run.opts


def test_each_paper_row_says_where_its_exit_is_in_linux_6_1():
    for table in ("table1", "table2", "table3"):
        for row in papers.kvm_paper()["tables"][table]["rows"]:
            site = row["linux61"]
            assert site["why"] and ".c" in site["why"], (table, row["function"])   # names its source file


# with the kernel -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linux():
    d = linuxpaper.linux_dir()
    try:
        return linuxpaper.check_built(d)
    except linuxpaper.LinuxNotBuilt:
        pytest.skip("Linux kernel not built: run tools/linux/build.sh")


def test_the_paper_functions_6_1_sites_exist_in_the_kernel(linux):
    from vmexit.bzimage import read_symbols
    names = read_symbols(linux / "System.map")
    for table in ("table1", "table2", "table3"):
        for row in papers.kvm_paper()["tables"][table]["rows"]:
            site = row["linux61"]
            for name in (site.get("function"), site.get("caller"), site.get("within")):
                assert name is None or name in names, (table, row["function"], name)


SMALL = {"linux-specjbb": replace(linuxpaper.RUNS["linux-specjbb"], count=ITERATIONS),
         "linux-specjbb-pit": replace(linuxpaper.RUNS["linux-specjbb-pit"], count=ITERATIONS),
         "linux-netperf": replace(linuxpaper.RUNS["linux-netperf"], count=KIB),
         "linux-netperf-receive": linuxpaper.RUNS["linux-netperf-receive"],
         "linux-bonnie": replace(linuxpaper.RUNS["linux-bonnie"], count=BLOCKS)}


@pytest.fixture(scope="module")
def runs(linux):
    outcomes = grid.run(linuxpaper.jobs(load_profile(None), linux, SMALL), lambda outcome: None, workers=2)
    traces = {name: from_bytes(o.data) for name, o in zip(SMALL, outcomes)}
    for name, t in traces.items():
        assert t.meta["status"] == "console", (name, t.meta["detail"], t.meta["console"][-300:])
    return traces


def window(runs, name):
    return Trace.of(linuxpaper.between(runs[name], *SMALL[name].window()))


def test_disk_one_dma_command_per_block_each_way(runs):
    w = window(runs, "linux-bonnie")
    # dd writes BLOCKS blocks of 64 KiB with O_DIRECT (then conv=fsync: one FLUSH CACHE), then reads
    # them back: 128 sectors, one WRITE DMA / READ DMA each
    commands = w.exits["value"][w.mask(port=ATA_COMMAND, direction="out")]
    assert sorted(commands.tolist()) == [0xC8] * BLOCKS + [0xCA] * BLOCKS + [0xE7]
    # libata's issue path per command: ata_sff_dev_select's device-register write (the flush's too),
    # ata_bmdma_setup's write of the PRD table's address, and ata_bmdma_status's read at its end
    io = "IO_INSTRUCTION"
    assert w.count(function="iowrite8", caller="ata_sff_dev_select", reason=io) == 2 * BLOCKS + 1
    assert w.count(function="iowrite32", caller="ata_bmdma_setup", reason=io) == 2 * BLOCKS
    assert w.count(function="ioread8", caller="ata_bmdma_status", reason=io) == 2 * BLOCKS


def test_net_every_byte_reaches_the_peer_one_tsd_write_per_frame(runs):
    t = runs["linux-netperf"]
    assert t.meta["net_peer"]["tcp"][0]["bytes_received"] == KIB * 1024
    tsd = sum(count(t, ExitReason.IO_INSTRUCTION, qualifier=NIC_BASE + 0x10 + 4 * i, direction=Direction.OUT)
              for i in range(4))
    assert tsd == t.meta["nic"]["tx_frames"] > KIB
    w = window(runs, "linux-netperf")
    assert w.count(function="ioread16", caller="rtl8139_interrupt") > 0


def test_net_receive_takes_the_peers_mebibyte(runs):
    t = runs["linux-netperf-receive"]
    assert t.meta["net_peer"]["tcp"][0]["bytes_sent"] == 1 << 20 and t.meta["net_peer"]["tcp"][0]["port"] == 5002
    # every frame received is taken by rtl8139_poll's loop (inlined rtl8139_rx): its RxBufEmpty test
    # reads the command register once per frame and once more when the ring is empty
    w = window(runs, "linux-netperf-receive")
    frames = t.meta["nic"]["rx_frames"]
    assert frames <= w.count(function="ioread8", caller="rtl8139_poll", reason="io") <= 2 * frames


def test_compute_one_lapic_tick_and_eoi_per_millisecond(runs):
    w = window(runs, "linux-specjbb")
    ticks = w.meta["virtual_seconds"] * 1000   # HZ=1000 on the LAPIC timer, periodic
    eois = w.count(function="native_apic_mem_write", within="__sysvec_apic_timer_interrupt")
    assert abs(eois - ticks) <= 1, (eois, ticks)


def test_compute_with_noapictimer_ticks_through_the_io_apic(runs):
    # the PIT's IRQ0 on I/O APIC pin 2, acked by an EOI to the local APIC from apic_ack_edge, as every
    # I/O APIC interrupt is: the ticks, and the serial port's transmitter-empty interrupt or two after
    # the start line; no LAPIC timer interrupt at all
    w = window(runs, "linux-specjbb-pit")
    ticks = w.meta["virtual_seconds"] * 1000
    eois = w.count(function="native_apic_mem_write", within="apic_ack_edge")
    assert 0 <= eois - ticks <= 3, (eois, ticks)
    assert w.count(within="__sysvec_apic_timer_interrupt") == 0


def test_the_tables_beside_the_paper(runs):
    rep = linuxpaper.beside_paper(window(runs, "linux-bonnie"), "table3", "linux-bonnie")
    by_paper = {r["paper_rank"]: r for r in rep.rows if r["paper_rank"] is not None}
    assert by_paper[4]["site"] == "iowrite32 <- ata_bmdma_setup (IO_INSTRUCTION)" and by_paper[4]["count"] == 2 * BLOCKS
    assert by_paper[1]["count"] is None and by_paper[1]["site"].startswith("-")   # no ACPI PM timer here
    assert [r["rank"] for r in rep.rows if r["paper_rank"] is None] == list(range(1, linuxpaper.OURS_SHOWN + 1))


def test_a_kernel_that_ends_before_its_workload_is_exit_code_4(tmp_path, monkeypatch, capsys):
    # the synthetic bzImage of test_bzimage prints its command line and exits: no workload, no tables
    from vmexit.asm import assemble

    from .test_bzimage import KERNEL, make_bzimage
    d = tmp_path / "linux"
    d.mkdir()
    (d / "bzImage").write_bytes(make_bzimage(assemble(KERNEL, base=0x100000)[0]))
    (d / "initramfs.cpio").write_bytes(b"cpio")
    (d / "System.map").write_text("c1000000 T _text\n")
    (d / "READY").write_text("")
    monkeypatch.setenv("VMEXIT_LINUX_DIR", str(d))
    assert main(["reproduce", "--linux", "--out", str(tmp_path / "out"), "--jobs", "1", "--no-progress"]) == 4
    err = capsys.readouterr().err
    assert "run linux-bonnie: exited" in err and f"no tables; 0 of {len(linuxpaper.RUNS)} runs finished" in err
    assert not (tmp_path / "out" / "linux.md").exists()
