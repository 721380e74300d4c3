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
    """QEMU's ide_ioport_read with the master there and the slave selected but absent: error, status and
    alternate status read 00h, the device register reads as written, and a command is ignored."""
    ide, irqs = make()
    ide.write(0x1F6, 1, 0xB0)
    assert [ide.read(p, 1) for p in (0x1F1, 0x1F6, 0x1F7, 0x3F6)] == [0, 0xB0, 0, 0]
    ide.write(0x1F7, 1, 0xEC)
    assert ide.read(0x1F7, 1) == 0 and irqs == [] and ide.aborted == {}
    ide.write(0x1F6, 1, 0xA0)
    assert ide.read(0x1F7, 1) == 0x50 and ide.read(0x1F1, 1) == 0


def test_absent_slave_reads_back_the_taskfile_written():
    """Each taskfile write reaches both drives' copies (QEMU ide_ioport_write), so the absent slave's
    count and LBA registers read what was written last, and with HOB set the byte written before it."""
    ide, _ = make()
    ide.write(0x1F6, 1, 0xB0)
    values = {0x1F2: (0x12, 0x34), 0x1F3: (0x56, 0x78), 0x1F4: (0x9A, 0xBC), 0x1F5: (0xDE, 0xF0)}
    for port, (first, second) in values.items():
        ide.write(port, 1, first)
        ide.write(port, 1, second)
    assert [ide.read(p, 1) for p in values] == [second for _, second in values.values()]
    ide.write(0x3F6, 1, 0x80)                                # HOB: the previous byte of each pair
    assert [ide.read(p, 1) for p in values] == [first for first, _ in values.values()]
    ide.write(0x3F6, 1, 0x00)
    ide.write(0x1F6, 1, 0xA0)                                # the master's copy holds the same values
    assert [ide.read(p, 1) for p in values] == [second for _, second in values.values()]


def test_a_command_changes_only_the_copy_of_the_drive_it_ran_on():
    """CHECK POWER MODE answers FFh in the master's sector count; the absent slave's copy keeps the
    value written (QEMU: the command sets s->nsector of the drive it ran on)."""
    ide, _ = make()
    ide.write(0x1F2, 1, 0x07)
    ide.write(0x1F6, 1, 0xA0)
    ide.write(0x1F7, 1, 0xE5)
    assert ide.read(0x1F2, 1) == 0xFF
    ide.write(0x1F6, 1, 0xB0)
    assert ide.read(0x1F2, 1) == 0x07


def test_power_on_taskfile_is_each_drives_signature(tmp_path):
    """QEMU resets the bus at power-on (ide_bus_reset -> ide_reset -> ide_set_signature): count 01h, LBA
    low 01h, LBA mid/high 00h/00h for a disk, FFh/FFh for no drive."""
    ide, _ = make()
    assert [ide.read(p, 1) for p in range(0x1F2, 0x1F6)] == [1, 1, 0, 0]
    ide.write(0x1F6, 1, 0xB0)
    assert [ide.read(p, 1) for p in range(0x1F2, 0x1F6)] == [1, 1, 0xFF, 0xFF]
    two = IDEDisk(Disk(size=4096), lambda: None, slave=Disk(size=4096))
    two.write(0x1F6, 1, 0xB0)
    assert [two.read(p, 1) for p in range(0x1F1, 0x1F8)] == [0, 1, 1, 0, 0, 0xB0, 0x50]


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
    """What libata's ata_devchk / ata_sff_dev_classify read: written registers read back on both devices
    (the absent slave too, as on QEMU, but with error and status 00h), and SRST leaves diagnostic code
    01h and signature 01h/01h/00h/00h on the master, 01h/01h/FFh/FFh (no device) on the absent slave."""
    ide, _ = make(size=1 << 20)
    for dev in (0xA0, 0xB0):
        ide.write(0x1F6, 1, dev)
        ide.write(0x1F2, 1, 0x55)
        ide.write(0x1F3, 1, 0xAA)
        assert (ide.read(0x1F2, 1), ide.read(0x1F3, 1)) == (0x55, 0xAA)
    assert [ide.read(p, 1) for p in (0x1F1, 0x1F7)] == [0, 0]
    for ctl in (0x08, 0x0C, 0x08):
        ide.write(0x3F6, 1, ctl)
    assert [ide.read(p, 1) for p in range(0x1F1, 0x1F8)] == [0x01, 1, 1, 0, 0, 0xA0, 0x50]
    ide.write(0x1F6, 1, 0xB0)
    assert [ide.read(p, 1) for p in range(0x1F1, 0x1F8)] == [0, 1, 1, 0xFF, 0xFF, 0xB0, 0]


def identify(ide):
    ide.write(0x1F6, 1, 0xA0)
    ide.write(0x1F7, 1, 0xEC)
    return [ide.read(0x1F0, 2) for _ in range(256)]


def xfermask(w):
    """libata's ata_id_xfermask: PIO from word 64 when word 53 bit 1 says it is valid, multiword DMA
    from word 63, Ultra DMA from word 88 when word 53 bit 2 says so."""
    pio = ((w[64] & 0x03) << 3 | 0x07) if w[53] & 2 else (1 << ((w[51] >> 8) + 1)) - 1
    return pio, w[63] & 0x07, w[88] & 0xFF if w[53] & 4 else 0


def test_identify_words_libata_checks():
    ide, _ = make(size=3 << 20)
    w = identify(ide)
    n = (3 << 20) // 512
    assert not w[0] & 0x8000                                # ata_id_is_ata
    assert w[49] & 0x0300 == 0x0300                         # ata_id_has_lba, ata_id_has_dma
    assert w[60] | w[61] << 16 == n                          # ata_id_u32(id, ATA_ID_LBA_CAPACITY)
    assert w[83] & 0xC000 == 0x4000 and w[83] & 0x0400      # ata_id_has_lba48 ...
    assert w[100] | w[101] << 16 | w[102] << 32 | w[103] << 48 == n  # ... and its capacity
    assert max(b for b in range(1, 15) if w[80] >> b & 1) == 6       # ata_id_major_version: ATA-6
    assert w[93] != 0                                       # not taken for SATA (ata_id_is_sata)
    assert w[83] & 0x1000 and w[86] & 0x1000 and w[85] & 0x0020      # FLUSH CACHE, write cache on
    pio, mwdma, udma = xfermask(w)
    assert (pio, mwdma, udma) == (0x1F, 0x07, 0x3F)         # PIO 0-4, MWDMA 0-2, UDMA 0-5
    # ata_piix's PIIX3 (piix_pata_mwdma): PIO 0-4, MWDMA 1-2, no UDMA: ata_dev_xfermask picks MWDMA2
    host_pio, host_mwdma, host_udma = 0x1F, 0x06, 0
    assert (pio & host_pio, (mwdma & host_mwdma).bit_length() - 1, udma & host_udma) == (0x1F, 2, 0)


def test_set_features_transfer_mode_shows_in_identify():
    """ata_dev_set_xfermode: feature 03h, the mode in the sector count; IDENTIFY's words 63/88 then show
    the selected mode (bits 8-10 / 8-13), which ata_dev_revalidate reads back."""
    ide, irqs = make(size=1 << 20)

    def set_mode(mode):
        ide.write(0x1F1, 1, 0x03)
        ide.write(0x1F2, 1, mode)
        ide.write(0x1F7, 1, 0xEF)
        return ide.read(0x1F7, 1)
    assert set_mode(0x22) == 0x50
    w = identify(ide)
    assert w[63] >> 8 == 0x04 and w[88] >> 8 == 0
    assert set_mode(0x45) == 0x50                           # UDMA5
    w = identify(ide)
    assert w[63] >> 8 == 0 and w[88] >> 8 == 0x20
    assert set_mode(0x0C) == 0x50                           # PIO4 (flow control): DMA selection stays
    assert identify(ide)[88] >> 8 == 0x20
    assert set_mode(0x23) == 0x51 and ide.read(0x1F1, 1) == 0x04    # MWDMA3 does not exist: ABRT
    ide.write(0x1F1, 1, 0x82)                                       # write cache off
    ide.write(0x1F7, 1, 0xEF)
    assert not identify(ide)[85] & 0x20 and ide.aborted == {0xEF: 1}


def test_power_and_flush_commands_complete():
    ide, irqs = make(size=1 << 20)
    for cmd in (0xE7, 0xEA, 0xE0, 0xE1):
        ide.write(0x1F7, 1, cmd)
        assert ide.read(0x1F7, 1) == 0x50 and ide.read(0x1F1, 1) == 0
    ide.write(0x1F2, 1, 0)
    ide.write(0x1F7, 1, 0xE5)                               # CHECK POWER MODE: active
    assert ide.read(0x1F2, 1) == 0xFF
    assert len(irqs) == 5 and ide.aborted == {}
    ide.write(0x1F7, 1, 0x2F)                               # READ LOG EXT: no GPL feature set here
    assert ide.read(0x1F7, 1) == 0x51 and ide.aborted == {0x2F: 1}
