"""Bus-master IDE DMA: PRD tables in guest RAM, both directions, errors, the interrupt bit."""
import struct

from vmexit.devices.bmdma import BusMasterIDE
from vmexit.devices.ide import Disk, IDEDisk
from vmexit.devices.pci import BMDMA_BASE

RAM = 1 << 20


def make():
    ram = bytearray(RAM)
    irqs = []
    ide = IDEDisk(Disk(size=1 << 20), lambda: irqs.append(1))

    def read(addr, n):
        return bytes(ram[addr:addr + n]) if 0 <= addr and addr + n <= RAM else None

    def write(addr, data):
        if not (0 <= addr and addr + len(data) <= RAM):
            return False
        ram[addr:addr + len(data)] = data
        return True
    return ide, BusMasterIDE(ide, read, write), ram, irqs


def dma(ide, bm, lba, count, cmd, to_memory, prd):
    bm.write(BMDMA_BASE + 4, 4, prd)
    bm.write(BMDMA_BASE, 1, 0x08 if to_memory else 0)
    for reg, value in ((0x1F2, count), (0x1F3, lba & 0xFF), (0x1F4, lba >> 8), (0x1F5, 0), (0x1F6, 0xE0)):
        ide.write(reg, 1, value)
    ide.write(0x1F7, 1, cmd)
    bm.write(BMDMA_BASE, 1, (0x08 if to_memory else 0) | 1)


def test_write_then_read_through_two_prd_entries():
    ide, bm, ram, irqs = make()
    ram[0x10000:0x10000 + 1024] = bytes(range(256)) * 4
    struct.pack_into("<IHHIHH", ram, 0x8000, 0x10000, 512, 0, 0x10200, 512, 0x8000)
    dma(ide, bm, 5, 2, 0xCA, False, 0x8000)
    assert bm.read(BMDMA_BASE + 2, 1) & 0x04 and irqs == [1]
    assert ide.disk.read(5) == bytes(range(256)) * 2
    struct.pack_into("<IHH", ram, 0x9000, 0x20000, 1024, 0x8000)
    dma(ide, bm, 5, 2, 0xC8, True, 0x9000)
    assert ram[0x20000:0x20400] == bytes(range(256)) * 4
    bm.write(BMDMA_BASE + 2, 1, 0x06)  # write-1-to-clear
    assert bm.read(BMDMA_BASE + 2, 1) & 0x06 == 0 and bm.transfers == 2


def test_prd_outside_ram_sets_error_and_moves_nothing():
    ide, bm, ram, _ = make()
    struct.pack_into("<IHH", ram, 0x8000, RAM - 256, 512, 0x8000)
    dma(ide, bm, 0, 1, 0xC8, True, 0x8000)
    assert bm.read(BMDMA_BASE + 2, 1) & 0x02 and ide.read(0x1F7, 1) & 0x01
    dma(ide, bm, 0, 1, 0xC8, True, RAM + 0x1000)
    assert bm.read(BMDMA_BASE + 2, 1) & 0x02


def test_nien_keeps_the_interrupt_bit_low():
    ide, bm, ram, irqs = make()
    ide.write(0x3F6, 1, 0x02)
    struct.pack_into("<IHH", ram, 0x8000, 0x10000, 512, 0x8000)
    dma(ide, bm, 0, 1, 0xC8, True, 0x8000)
    assert bm.read(BMDMA_BASE + 2, 1) & 0x04 == 0 and irqs == [] and bm.transfers == 1


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def make_timed(rate=512):
    """An engine on a clock of 1 tick per second moving `rate` bytes a second: one sector per tick."""
    ram = bytearray(RAM)
    irqs, clock = [], Clock()
    ide = IDEDisk(Disk(size=1 << 20), lambda: irqs.append(1))

    def write(addr, data):
        ram[addr:addr + len(data)] = data
        return True
    bm = BusMasterIDE(ide, lambda a, n: bytes(ram[a:a + n]), write, clock, 1, rate)
    return ide, bm, ram, irqs, clock


def libata_read_dma(ide, bm, lba, count, prd):
    """ata_bmdma_setup (PRD address, read-modify-write of the command register with the direction,
    the ATA command) and ata_bmdma_start (read-modify-write setting the start bit)."""
    bm.write(BMDMA_BASE + 4, 4, prd)
    dmactl = bm.read(BMDMA_BASE, 1) & ~(0x08 | 0x01)
    bm.write(BMDMA_BASE, 1, dmactl | 0x08)              # device -> memory
    for reg, value in ((0x1F2, count), (0x1F3, lba), (0x1F4, 0), (0x1F5, 0), (0x1F6, 0xE0)):
        ide.write(reg, 1, value)
    ide.write(0x1F7, 1, 0xC8)
    bm.write(BMDMA_BASE, 1, bm.read(BMDMA_BASE, 1) | 0x01)


def test_status_bits_as_libata_reads_them():
    """ata_bmdma_status while the transfer runs: active, no interrupt; after the media time: interrupt,
    not active, no error, the drive ready (ata_bmdma_port_intr). ata_bmdma_stop, then
    ata_bmdma_irq_clear writes the status back, which clears the interrupt bit."""
    ide, bm, ram, irqs, clock = make_timed()
    ide.disk.write(3, b"\x5a" * 512)
    struct.pack_into("<IHH", ram, 0x8000, 0x10000, 1024, 0x8000)
    libata_read_dma(ide, bm, 3, 2, 0x8000)
    assert bm.next_event() == 2                        # two sectors at one sector per tick
    assert bm.read(BMDMA_BASE + 2, 1) & 0x07 == 0x01 and ide.read(0x3F6, 1) & 0x80
    clock.t = 2
    assert bm.advance(2) == 1
    assert bm.read(BMDMA_BASE + 2, 1) & 0x07 == 0x04 and ide.read(0x1F7, 1) == 0x50 and irqs == [1]
    assert ram[0x10000:0x10200] == b"\x5a" * 512
    bm.write(BMDMA_BASE, 1, bm.read(BMDMA_BASE, 1) & ~0x01)
    bm.write(BMDMA_BASE + 2, 1, bm.read(BMDMA_BASE + 2, 1))
    assert bm.read(BMDMA_BASE + 2, 1) == 0x20           # drive 0 DMA capable, nothing else


def test_stopping_a_transfer_under_way_abandons_it():
    ide, bm, ram, irqs, clock = make_timed()
    ide.disk.write(0, b"\x77" * 512)
    struct.pack_into("<IHH", ram, 0x8000, 0x10000, 512, 0x8000)
    libata_read_dma(ide, bm, 0, 1, 0x8000)
    bm.write(BMDMA_BASE, 1, 0x08)                       # ata_bmdma_stop before the end (EH timeout)
    clock.t = 10
    assert bm.next_event() is None and bm.advance(10) == 0
    assert ram[0x10000:0x10200] == bytes(512) and bm.transfers == 0 and bm.aborted == 1 and irqs == []


def test_software_reset_abandons_the_drive_side():
    ide, bm, ram, irqs, clock = make_timed()
    struct.pack_into("<IHH", ram, 0x8000, 0x10000, 512, 0x8000)
    libata_read_dma(ide, bm, 0, 1, 0x8000)
    for ctl in (0x08, 0x0C, 0x08):
        ide.write(0x3F6, 1, ctl)
    assert bm.next_event() is None and bm.read(BMDMA_BASE + 2, 1) & 0x01   # active until stopped
    assert ide.read(0x1F7, 1) == 0x50


def test_pio_interrupts_set_the_interrupt_bit():
    """piix_irq_check reads the interrupt bit to tell its own interrupt: it latches every INTRQ, PIO
    commands' too, and stays low while nIEN keeps INTRQ off."""
    ide, bm, ram, irqs = make()
    ide.write(0x3F6, 1, 0x0A)                           # nIEN
    ide.write(0x1F7, 1, 0xEC)
    assert bm.read(BMDMA_BASE + 2, 1) & 0x04 == 0 and irqs == []
    for _ in range(256):
        ide.read(0x1F0, 2)
    ide.write(0x3F6, 1, 0x08)
    ide.write(0x1F7, 1, 0xEC)
    assert bm.read(BMDMA_BASE + 2, 1) & 0x04 and irqs == [1]


def test_secondary_channel_registers_and_no_simplex():
    """ata_pci_bmdma_init: status bit 7 (simplex) clear on both channels, so both may do DMA; the second
    channel's registers at +8 hold what is written and never start anything."""
    ide, bm, ram, irqs = make()
    assert bm.read(BMDMA_BASE + 2, 1) & 0x80 == 0 and bm.read(BMDMA_BASE + 10, 1) == 0
    bm.write(BMDMA_BASE + 12, 4, 0x12345677)
    bm.write(BMDMA_BASE + 8, 1, 0x09)
    assert bm.read(BMDMA_BASE + 12, 4) == 0x12345674 and bm.read(BMDMA_BASE + 8, 1) == 0x09
    assert bm.read(BMDMA_BASE + 10, 1) == 0 and bm.transfers == 0 and bm.prd == 0


def test_ata_piix_probe_then_a_64k_dd_read():
    """The path Linux 6.1 takes, end to end over the PIIX3 function, the drive and the engine:
    piix_pata_prereset's IDETIM enable bit per port, BAR4 from config space, ata_pci_bmdma_init's simplex
    check, ata_sff_softreset (ata_devchk, SRST, classify), IDENTIFY (polled, nIEN) -> MWDMA2 with the
    PIIX3's masks, SET FEATURES XFER 0x22, then one 64 KiB READ DMA (128 sectors, one PRD entry of
    byte count 0 = 64 KiB) as dd bs=64k issues it, completed by the interrupt path."""
    from vmexit.devices.pci import PCIConfig
    pci = PCIConfig()

    def config(reg, size):
        pci.write(0xCF8, 4, 0x80000000 | 1 << 11 | 1 << 8 | reg & 0xFC)
        return pci.read(0xCFC + (reg & 3), size)
    assert [bool(config(r, 1) & 0x80) for r in (0x41, 0x43)] == [True, False]   # ata1 probed, ata2 not
    bmdma = config(0x20, 4) & 0xFFFC
    ide, bm, ram, irqs = make()
    assert bmdma == BMDMA_BASE and not bm.read(bmdma + 2, 1) & 0x80 and not bm.read(bmdma + 10, 1) & 0x80
    present = []
    for dev in (0xA0, 0xB0):                                 # ata_devchk
        ide.write(0x1F6, 1, dev)
        for nsect, lbal in ((0x55, 0xAA), (0xAA, 0x55), (0x55, 0xAA)):
            ide.write(0x1F2, 1, nsect)
            ide.write(0x1F3, 1, lbal)
        present.append((ide.read(0x1F2, 1), ide.read(0x1F3, 1)) == (0x55, 0xAA))
    assert present == [True, True]                           # as on QEMU: the registers answer for both
    for ctl in (0x08, 0x0C, 0x08):                           # ata_bus_softreset
        ide.write(0x3F6, 1, ctl)
    signature = [ide.read(p, 1) for p in (0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5)]
    assert signature == [0x01, 1, 1, 0, 0]                   # passed diagnostics, ATA device
    ide.write(0x1F6, 1, 0xB0)                                # ata_sff_dev_classify(device 1)
    signature = [ide.read(p, 1) for p in (0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5)]
    assert signature == [0, 1, 1, 0xFF, 0xFF]                # diag 00h, LBA mid/high FFh: not ATA or ATAPI
    ide.write(0x1F6, 1, 0xA0)
    ide.write(0x3F6, 1, 0x0A)                                # polled IDENTIFY: nIEN
    ide.write(0x1F7, 1, 0xEC)
    words = [ide.read(0x1F0, 4) for _ in range(128)]
    mwdma = (words[63 // 2] >> 16 * (63 % 2)) & 0x07 & 0x06  # PIIX3: mwdma1-2
    assert mwdma.bit_length() - 1 == 2
    ide.write(0x1F1, 1, 0x03)
    ide.write(0x1F2, 1, 0x20 | 2)
    ide.write(0x1F7, 1, 0xEF)
    assert ide.read(0x1F7, 1) == 0x50 and irqs == []
    ide.write(0x3F6, 1, 0x08)                                # ata_sff_irq_on
    bm.write(bmdma + 2, 1, bm.read(bmdma + 2, 1))            # ata_bmdma_irq_clear
    for lba in range(128):
        ide.disk.write(1000 + lba, bytes([lba]) * 512)
    struct.pack_into("<IHH", ram, 0x8000, 0x20000, 0, 0x8000)
    bm.write(bmdma + 4, 4, 0x8000)
    bm.write(bmdma, 1, 0x08)
    for reg, value in ((0x1F1, 0), (0x1F2, 128), (0x1F3, 1000 & 0xFF), (0x1F4, 1000 >> 8), (0x1F5, 0),
                       (0x1F6, 0xE0)):
        ide.write(reg, 1, value)
    ide.write(0x1F7, 1, 0xC8)
    bm.write(bmdma, 1, 0x09)
    assert irqs == [1] and bm.read(bmdma + 2, 1) & 0x07 == 0x04                    # ata_bmdma_port_intr
    assert ide.read(0x3F6, 1) == 0x50 and ide.read(0x1F7, 1) == 0x50
    assert bytes(ram[0x20000:0x30000]) == b"".join(bytes([i]) * 512 for i in range(128))
    assert bm.bytes_moved == 65536 and ide.sectors_read == 128
