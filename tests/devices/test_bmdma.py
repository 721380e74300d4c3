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
