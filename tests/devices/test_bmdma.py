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
