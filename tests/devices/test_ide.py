"""IDE PIO disk: LBA28/LBA48 taskfiles, IDENTIFY, data transfer, errors, and the user's image."""
import pytest

from vmexit.devices.ide import Disk, DiskError, IDEDisk


def make(**kw):
    irqs = []
    return IDEDisk(Disk(**kw), lambda: irqs.append(1)), irqs


def lba48(ide, lba, count, cmd):
    """ide_tf_load order: the HOB bytes first, then the low bytes, then device and command."""
    regs = (0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5)
    hob = (0, count >> 8, lba >> 24 & 0xFF, 0, 0)
    low = (0, count & 0xFF, lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF)
    for values in (hob, low):
        for reg, value in zip(regs, values):
            ide.write(reg, 1, value)
    ide.write(0x1F6, 1, 0xE0)
    ide.write(0x1F7, 1, cmd)


def test_identify():
    ide, irqs = make(size=1 << 20)
    ide.write(0x1F6, 1, 0xA0)
    ide.write(0x1F7, 1, 0xEC)
    assert ide.read(0x1F7, 1) & 0x08
    words = [ide.read(0x1F0, 2) for _ in range(256)]
    assert words[60] | (words[61] << 16) == 2048 and words[83] & 0x400
    assert ide.read(0x1F7, 1) == 0x50 and irqs == [1]


def test_write_then_read_lba48_and_lba28():
    ide, irqs = make(size=1 << 20)
    ide.write(0x3F6, 1, 0x02)  # nIEN
    lba48(ide, 300, 2, 0x34)
    for i in range(512):
        ide.write(0x1F0, 2, i)
    assert ide.disk.overlay.keys() == {300, 301}
    lba48(ide, 301, 1, 0x24)
    assert [ide.read(0x1F0, 2) for _ in range(3)] == [256, 257, 258]
    # LBA28 read of the same sector, 32-bit data port
    ide.write(0x1F2, 1, 1)
    ide.write(0x1F3, 1, 301 & 0xFF)
    ide.write(0x1F4, 1, 301 >> 8)
    ide.write(0x1F5, 1, 0)
    ide.write(0x1F6, 1, 0xE0)
    ide.write(0x1F7, 1, 0x20)
    assert ide.read(0x1F0, 4) == 256 | (257 << 16)
    assert irqs == []  # nIEN


def test_past_the_end_and_unknown_command():
    ide, _ = make(size=4096)
    lba48(ide, 8, 1, 0x24)
    assert ide.read(0x1F7, 1) & 0x01 and ide.read(0x1F1, 1) == 0x10
    ide.write(0x1F7, 1, 0x99)
    assert ide.read(0x1F1, 1) == 0x04


def test_slave_is_absent():
    ide, _ = make()
    ide.write(0x1F6, 1, 0xB0)
    assert ide.read(0x1F7, 1) == 0


def test_image_is_a_copy_unless_writable(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(b"\x11" * 2048)
    disk = Disk(img)
    disk.write(1, b"\x22" * 512)
    assert disk.read(1) == b"\x22" * 512 and disk.flush() == 0
    assert img.read_bytes() == b"\x11" * 2048
    disk = Disk(img, writable=True)
    disk.write(1, b"\x22" * 512)
    assert disk.flush() == 1
    assert img.read_bytes() == b"\x11" * 512 + b"\x22" * 512 + b"\x11" * 1024
    with pytest.raises(DiskError, match="no such"):
        Disk(tmp_path / "missing.img")
    img.chmod(0o444)
    import os
    if os.geteuid() != 0:
        with pytest.raises(DiskError, match="read-only"):
            Disk(img, writable=True)


def test_software_reset_leaves_the_ata_signature_and_selects_the_master():
    """What libata's ata_devchk / ata_sff_dev_classify read: written registers read back, the slave is
    absent (reads 0), and SRST leaves diagnostic code 01h and signature 01h/01h/00h/00h."""
    ide, _ = make(size=1 << 20)
    ide.write(0x1F2, 1, 0x55)
    ide.write(0x1F3, 1, 0xAA)
    assert (ide.read(0x1F2, 1), ide.read(0x1F3, 1)) == (0x55, 0xAA)
    ide.write(0x1F6, 1, 0xB0)
    assert [ide.read(p, 1) for p in (0x1F1, 0x1F2, 0x1F3, 0x1F7)] == [0, 0, 0, 0]
    for ctl in (0x08, 0x0C, 0x08):
        ide.write(0x3F6, 1, ctl)
    assert [ide.read(p, 1) for p in range(0x1F1, 0x1F8)] == [0x01, 1, 1, 0, 0, 0xA0, 0x50]
