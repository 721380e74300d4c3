"""tools/linux/: the config fragment asks for what issue #19 names (always checked), and a kernel built by
build.sh carries it: the options stuck, the functions of the papers' tables exist, the bzImage and the
initramfs have the layout the boot protocol and init need (checked when a build is there)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "linux"
FRAGMENT = TOOLS / "vmexit.config"

# Issue #19's list of what the guest kernel must be: option -> value ("n" = not set).
REQUIRED = {
    "64BIT": "n", "M686": "y", "NOHIGHMEM": "y", "HIGHMEM4G": "n", "X86_PAE": "n", "SMP": "n",
    "MODULES": "n", "ACPI": "n", "HPET_TIMER": "n", "X86_TSC": "y",
    "X86_LOCAL_APIC": "y", "X86_IO_APIC": "y", "X86_UP_APIC": "y", "X86_UP_IOAPIC": "y", "X86_MPPARSE": "y",
    "HZ_1000": "y", "HZ": "1000",
    "FRAME_POINTER": "y", "UNWINDER_FRAME_POINTER": "y", "KALLSYMS": "y", "PRINTK": "y",
    "TTY": "y", "SERIAL_8250": "y", "SERIAL_8250_CONSOLE": "y",
    "BLK_DEV_INITRD": "y", "BINFMT_ELF": "y", "BINFMT_SCRIPT": "y", "MULTIUSER": "y",
    "DEVTMPFS": "y", "DEVTMPFS_MOUNT": "y", "PROC_FS": "y", "SYSFS": "y",
    "PCI": "y", "ATA": "y", "ATA_SFF": "y", "ATA_BMDMA": "y", "ATA_PIIX": "y", "SCSI": "y", "BLK_DEV_SD": "y",
    "NET": "y", "INET": "y", "UNIX": "y", "NETDEVICES": "y", "ETHERNET": "y", "NET_VENDOR_REALTEK": "y",
    "8139TOO": "y", "8139TOO_PIO": "y",
}

# Functions the papers' tables name (Linux 2.6.27) -> the 6.1 function doing that job, which a profile of the
# built guest will show instead. Sources: arch/x86/kernel/time.c, arch/x86/kernel/apic/{apic,io_apic}.c,
# arch/x86/kernel/i8259.c, kernel/softirq.c, lib/iomap.c, drivers/ata/libata-sff.c, 8139too.c.
PAPER_FUNCTIONS = {
    "timer_interrupt": "timer_interrupt",
    "smp_apic_timer_interrupt": "sysvec_apic_timer_interrupt",  # 5.8 turned the entry into an idtentry
    "ack_ioapic_irq": "ioapic_ack_level",  # the level-triggered ack; edge IRQs ack in apic_ack_edge
    "__do_softirq": "__do_softirq",
    "ioread8": "ioread8", "ioread16": "ioread16", "ioread32": "ioread32",
    "iowrite8": "iowrite8", "iowrite16": "iowrite16", "iowrite32": "iowrite32",
    "ata_sff_dev_select": "ata_sff_dev_select",
    "ata_bmdma_status": "ata_bmdma_status",
    "ata_bmdma_setup": "ata_bmdma_setup",
    "__ide_do_rw_disk": "ata_sff_tf_load",  # the taskfile writes: the drivers/ide path is gone since 4.x
    "mask_and_ack_8259A": "mask_and_ack_8259A",
    "lapic_next_event": "lapic_next_event",
    "rtl8139_start_xmit": "rtl8139_start_xmit",
    "rtl8139_interrupt": "rtl8139_interrupt",
    "rtl8139_poll": "rtl8139_poll",
}


def parse_config(text: str) -> dict[str, str]:
    """A Kconfig file as option -> value, `# CONFIG_X is not set` read as "n", quotes kept."""
    options = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"CONFIG_(\w+)=(.*)", line):
            options[m[1]] = m[2]
        elif m := re.fullmatch(r"# CONFIG_(\w+) is not set", line):
            options[m[1]] = "n"
    return options


def fragment() -> dict[str, str]:
    return parse_config(FRAGMENT.read_text())


@pytest.mark.parametrize("option", sorted(REQUIRED))
def test_fragment_asks_for_each_required_option(option):
    assert fragment().get(option) == REQUIRED[option]


def test_fragment_has_only_config_lines_and_comments():
    # A typo such as `CONFIG_FOO = y` would be silently ignored by kconfig and by build.sh's check.
    for line in FRAGMENT.read_text().splitlines():
        assert (not line or re.fullmatch(r"CONFIG_\w+=\S+", line) or line.startswith("# ")), line
    lines = [line for line in FRAGMENT.read_text().splitlines() if line.startswith("CONFIG_") or " is not set" in line]
    assert len(fragment()) == len(lines)  # no option given twice


@pytest.mark.parametrize("script, shell", [("init", "sh"), ("build.sh", "bash")])
def test_scripts_parse(script, shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    result = subprocess.run([shell, "-n", str(TOOLS / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_built_config_has_the_fragment(linux_kernel):
    built = parse_config(linux_kernel.config.read_text())
    wrong = {name: (value, built.get(name, "n")) for name, value in fragment().items()
             if built.get(name, "n") != value}
    assert not wrong, f"wanted vs built: {wrong}; rerun tools/linux/build.sh"


@pytest.mark.parametrize("paper, linux", sorted(PAPER_FUNCTIONS.items()))
def test_system_map_has_the_papers_functions(linux_kernel, paper, linux):
    assert linux in linux_kernel.symbols(), f"{linux} (the paper's {paper}) not in System.map"


def test_kernel_is_linked_at_page_offset_plus_physical_start(linux_kernel):
    # i386 without a VMSPLIT option: PAGE_OFFSET 0xC0000000; _text sits at PHYSICAL_START above it.
    config = parse_config(linux_kernel.config.read_text())
    start = int(config["PHYSICAL_START"], 16)
    assert linux_kernel.symbols()["_text"] == 0xC0000000 + start


def test_bzimage_has_a_boot_protocol_header(linux_kernel):
    # Documentation/x86/boot.rst: "HdrS" at 0x202, version at 0x206, loadflags bit 0 (LOADED_HIGH) at
    # 0x211; setup_sects at 0x1f1, so the protected-mode kernel starts at (setup_sects + 1) * 512.
    image = linux_kernel.bzimage.read_bytes()
    assert image[0x202:0x206] == b"HdrS"
    version = int.from_bytes(image[0x206:0x208], "little")
    assert version >= 0x020F  # 6.1 writes 2.15
    assert image[0x211] & 1
    setup_sects = image[0x1F1] or 4
    syssize = int.from_bytes(image[0x1F4:0x1F8], "little")  # in 16-byte paragraphs
    assert len(image) == (setup_sects + 1) * 512 + syssize * 16


def cpio_names(data: bytes) -> dict[str, int]:
    """A newc cpio archive as path -> mode (fields are 8 hex digits; header and data padded to 4 bytes)."""
    entries, at = {}, 0
    while True:
        assert data[at:at + 6] == b"070701", f"not a newc header at {at}"
        fields = [int(data[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name = data[at + 110: at + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return entries
        entries[name] = mode
        at = (at + 110 + namesize + 3) & ~3
        at = (at + filesize + 3) & ~3


def test_initramfs_holds_init_busybox_and_a_console(linux_kernel):
    entries = cpio_names(linux_kernel.initramfs.read_bytes())
    assert entries["init"] & 0o170111 == 0o100111  # a regular, executable file
    assert entries["bin/busybox"] & 0o170000 == 0o100000
    assert entries["dev/console"] & 0o170000 == 0o020000  # a character device: init's stdin/stdout


def test_initramfs_init_is_ours(linux_kernel):
    data = linux_kernel.initramfs.read_bytes()
    assert (TOOLS / "init").read_bytes() in data, "initramfs has another /init: rerun tools/linux/build.sh"
