"""PCI configuration mechanism #1 (ports 0xcf8 address / 0xcfc-0xcff data) for the functions of an
i440FX/PIIX3 PC, as QEMU's `pc` machine has them: 00:00.0 host bridge (8086:1237), 00:01.0 PIIX3 ISA
bridge (8086:7000), 00:01.1 PIIX3 IDE (8086:7010, class 0101, prog-if 0x80: bus master) whose BAR4 holds
the bus-master DMA registers. Register layout: PCI Local Bus Specification 3.0, 6.1; IDs: Intel 82371SB
datasheet; and 00:03.0, a Realtek RTL8139 NIC (10ec:8139) with its registers at BAR0 and interrupt line
11. BARs are fixed (a guest that moves one is ignored). Absent functions read all ones.
"""
from __future__ import annotations

PORTS = (0xCF8, 0xCF9, 0xCFA, 0xCFB, 0xCFC, 0xCFD, 0xCFE, 0xCFF)
BMDMA_BASE = 0xC000
NIC_BASE = 0xC100
NIC_IRQ = 11


def _function(vendor: int, device: int, class_code: int, bars: dict[int, int] | None = None,
              command: int = 0x0007) -> dict[int, int]:
    regs = {0x00: vendor | (device << 16), 0x04: command | (0x0280 << 16), 0x08: class_code << 8}
    for index, value in (bars or {}).items():
        regs[0x10 + 4 * index] = value
    return regs


class PCIConfig:
    name = "pci"
    ports = PORTS

    def __init__(self) -> None:
        self.address = 0
        self.functions = {
            (0, 0, 0): _function(0x8086, 0x1237, 0x060000),
            (0, 1, 0): _function(0x8086, 0x7000, 0x060100),
            (0, 1, 1): _function(0x8086, 0x7010, 0x010180, {4: BMDMA_BASE | 1}),
            (0, 3, 0): _function(0x10EC, 0x8139, 0x020000, {0: NIC_BASE | 1}),
        }
        self.functions[(0, 3, 0)][0x3C] = 0x0100 | NIC_IRQ  # interrupt pin INTA, line 11

    def _target(self) -> tuple[dict[int, int] | None, int]:
        if not self.address & 0x80000000:
            return None, 0
        bus, dev, fn = (self.address >> 16) & 0xFF, (self.address >> 11) & 0x1F, (self.address >> 8) & 7
        return self.functions.get((bus, dev, fn)), self.address & 0xFC

    def read(self, port: int, size: int) -> int:
        mask = (1 << (8 * size)) - 1
        if port < 0xCFC:
            return (self.address >> (8 * (port - 0xCF8))) & mask
        regs, reg = self._target()
        if regs is None:
            return mask
        return (regs.get(reg, 0) >> (8 * (port - 0xCFC))) & mask

    def write(self, port: int, size: int, value: int) -> None:
        if port == 0xCF8 and size == 4:
            self.address = value & 0xFFFFFFFC | (value & 0x80000000)
            return
        regs, reg = self._target()
        if regs is None or port < 0xCFC:
            return
        if reg == 0x04:  # command register: keep what the guest enables
            shift = 8 * (port - 0xCFC)
            mask = ((1 << (8 * size)) - 1) << shift
            regs[0x04] = (regs[0x04] & ~mask) | ((value << shift) & mask & 0xFFFF)
