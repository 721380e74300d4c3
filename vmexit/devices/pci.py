"""PCI configuration mechanism #1 (ports 0xcf8 address / 0xcfc-0xcff data) for the functions of an
i440FX/PIIX3 PC, as QEMU's `pc` machine has them after its firmware (SeaBIOS) ran:

  00:00.0 host bridge 8086:1237 (82441FX), class 0600
  00:01.0 PIIX3 ISA bridge 8086:7000, class 0601, multi-function (header type 0x80, without which
          Linux's pci_scan_slot never looks at 00:01.1), PIRQ route control 0x60-0x63 = IRQ 10, 10,
          11, 11 (SeaBIOS src/fw/pciinit.c pci_irqs; QEMU's i440FX wires slot s INTx to PIRQ (x + s - 1)
          mod 4, so 00:03.0 INTA# is PIRQC: 0x62 -> IRQ 11)
  00:01.1 PIIX3 IDE 8086:7010, class 0101 prog-if 0x80 (both channels in compatibility mode:
          0x1f0/0x3f6 IRQ 14, 0x170/0x376 IRQ 15; no interrupt pin), BAR4 the bus-master DMA
          registers (16 bytes, 16-bit I/O decode); IDETIM 0x40 = 0x8000 (primary decode enabled)
          and 0x42 = 0 (secondary off: vmexit models the primary channel only, and ata_piix's
          piix_pata_prereset then leaves that port alone)
  00:03.0 Realtek RTL8139C 10ec:8139 revision 0x10 (8139too refuses revision >= 0x20 as an 8139C+),
          BAR0 I/O 256 bytes at 0xc100 (the register file, devices/rtl8139.py), BAR1 memory 256 bytes
          (the same registers memory-mapped on the chip; vmexit does not decode it: 8139too built
          with CONFIG_8139TOO_PIO uses BAR0), interrupt pin INTA#, line 11

Register layout: PCI Local Bus Specification 3.0, 6.1-6.2; PIIX3 registers: Intel 82371SB datasheet.
Each function is 256 bytes with a write mask (which bits a guest may change) and the status register's
write-one-to-clear bits, so reads give what a real function gives: a BAR written all ones reads back
its size mask (Linux's __pci_read_base sizes every BAR that way), an unimplemented BAR or the expansion
ROM reads 0, read-only registers keep their values. Absent functions read all ones.

The devices sit at fixed ports: a guest that moves a BAR vmexit decodes (and turns decoding on) takes
a path vmexit does not model; the `unmodeled` callback gets one line naming it (with none given, the
lines are kept in `unmodeled_paths` and the function keeps answering where it was).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PORTS = (0xCF8, 0xCF9, 0xCFA, 0xCFB, 0xCFC, 0xCFD, 0xCFE, 0xCFF)
BMDMA_BASE = 0xC000
BMDMA_SIZE = 16          # SFF-8038i: 8 bytes per channel, two channels
NIC_BASE = 0xC100
NIC_SIZE = 0x100         # RTL8139 IOAR: 256 bytes (8139too wants at least RTL_MIN_IO_SIZE, 0x80)
NIC_MMIO_BASE = 0xFEBFF000
NIC_IRQ = 11
IDE_IRQS = (14, 15)      # compatibility mode: ISA IRQ 14 / 15 (libata's ATA_PRIMARY_IRQ / ATA_SECONDARY_IRQ)
PIRQ_ROUTES = (10, 10, 11, 11)   # PIIX3 PIRQRC[A-D], as SeaBIOS leaves them

CMD_IO, CMD_MEMORY = 0x0001, 0x0002
COMMAND_WRITABLE = 0x0547        # I/O, memory, bus master, parity, SERR#, INTx disable
STATUS_W1C = 0xF900              # parity error, system error, master/target abort, signaled target abort
STATUS = 0x0280                  # fast back-to-back capable, DEVSEL medium
COMMAND = 0x0007                 # I/O, memory and bus master on, as the firmware leaves them


@dataclass(frozen=True)
class Bar:
    index: int
    size: int
    io: bool
    base: int
    decoded: bool = True    # a vmexit device answers there (moving it is an unmodeled path)
    limit: int = 0xFFFFFFFF  # the address bits the function implements (PIIX3 decodes 16-bit I/O)

    @property
    def offset(self) -> int:
        return 0x10 + 4 * self.index

    @property
    def writable(self) -> int:
        return ~(self.size - 1) & (0xFFFFFFFC if self.io else 0xFFFFFFF0) & self.limit

    @property
    def flags(self) -> int:
        return 0x1 if self.io else 0x0   # I/O space; memory: 32-bit, not prefetchable


class Function:
    """One function's configuration space: its bytes, which bits are writable, which clear on a one."""

    def __init__(self, name: str, vendor: int, device: int, class_code: int, revision: int = 0,
                 header_type: int = 0, bars: tuple[Bar, ...] = (), pin: int = 0, line: int = 0,
                 writable: tuple[tuple[int, int], ...] = (), initial: dict[int, int] | None = None):
        self.name = name
        self.bars = bars
        self.config = bytearray(256)
        self.wmask = bytearray(256)
        self.w1c = bytearray(256)
        self._put(0x00, 4, vendor | device << 16)
        self._put(0x04, 4, COMMAND | STATUS << 16)
        self._put(0x08, 4, revision | class_code << 8)
        self.config[0x0E] = header_type
        self.config[0x3C], self.config[0x3D] = line, pin
        self._put(0x04, 2, COMMAND_WRITABLE, self.wmask)
        self._put(0x06, 2, STATUS_W1C, self.w1c)
        self.wmask[0x0C] = self.wmask[0x0D] = 0xFF          # cache line size, latency timer
        self.wmask[0x3C] = 0xFF                             # interrupt line (the firmware's note)
        for bar in bars:
            self._put(bar.offset, 4, bar.base | bar.flags)
            self._put(bar.offset, 4, bar.writable, self.wmask)
        for start, end in writable:                        # device-specific registers
            self.wmask[start:end] = b"\xff" * (end - start)
        for offset, value in (initial or {}).items():
            self.config[offset] = value

    def _put(self, offset: int, size: int, value: int, into: bytearray | None = None) -> None:
        (self.config if into is None else into)[offset:offset + size] = value.to_bytes(size, "little")

    def get(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(min(size, 256 - offset)):
            at, byte = offset + i, (value >> (8 * i)) & 0xFF
            mask = self.wmask[at]
            self.config[at] = (self.config[at] & ~mask | byte & mask) & ~(byte & self.w1c[at])

    def moved_bars(self) -> list[str]:
        """The decoded BARs that point away from their device while the command register decodes them."""
        command = self.get(0x04, 2)
        moved = []
        for bar in self.bars:
            if not bar.decoded or not command & (CMD_IO if bar.io else CMD_MEMORY):
                continue
            address = self.get(bar.offset, 4) & bar.writable
            if address not in (bar.base, bar.writable):   # all ones: a sizing probe, not a move
                moved.append(f"PCI {self.name} BAR{bar.index} moved to 0x{address:x}: vmexit's device "
                             f"answers at 0x{bar.base:x} only (fixed BARs)")
        return moved


def pc_functions() -> dict[tuple[int, int, int], Function]:
    """The i440FX/PIIX3 PC's functions by (bus, device, function)."""
    return {
        (0, 0, 0): Function("00:00.0", 0x8086, 0x1237, 0x060000, writable=((0x40, 0x100),)),
        (0, 1, 0): Function("00:01.0", 0x8086, 0x7000, 0x060100, header_type=0x80, writable=((0x40, 0x100),),
                            initial={0x60 + i: irq for i, irq in enumerate(PIRQ_ROUTES)}),
        (0, 1, 1): Function("00:01.1", 0x8086, 0x7010, 0x010180,
                            bars=(Bar(4, BMDMA_SIZE, True, BMDMA_BASE, limit=0xFFFF),),
                            writable=((0x40, 0x45),), initial={0x41: 0x80}),
        (0, 3, 0): Function("00:03.0", 0x10EC, 0x8139, 0x020000, revision=0x10,
                            bars=(Bar(0, NIC_SIZE, True, NIC_BASE), Bar(1, 0x100, False, NIC_MMIO_BASE, False)),
                            pin=1, line=NIC_IRQ),
    }


class PCIConfig:
    name = "pci"
    ports = PORTS

    def __init__(self, unmodeled: Callable[[str], None] | None = None) -> None:
        self.address = 0
        self.functions = pc_functions()
        self.unmodeled_paths: list[str] = []
        self._unmodeled = unmodeled

    def _target(self) -> tuple[Function | None, int]:
        if not self.address & 0x80000000 or self.address & 0x7F000000:  # disabled, or reserved bits
            return None, 0
        bus, dev, fn = (self.address >> 16) & 0xFF, (self.address >> 11) & 0x1F, (self.address >> 8) & 7
        return self.functions.get((bus, dev, fn)), self.address & 0xFC

    def read(self, port: int, size: int) -> int:
        mask = (1 << (8 * size)) - 1
        if port < 0xCFC:
            return (self.address >> (8 * (port - 0xCF8))) & mask
        function, reg = self._target()
        if function is None:
            return mask
        return function.get(reg + port - 0xCFC, size)

    def write(self, port: int, size: int, value: int) -> None:
        if port == 0xCF8 and size == 4:
            self.address = value & 0xFFFFFFFC
            return
        function, reg = self._target()
        if function is None or port < 0xCFC:
            return   # byte writes to 0xcf8-0xcfb (Linux's pci_check_type1 writes 0xcfb) select nothing
        function.write(reg + port - 0xCFC, size, value)
        for line in function.moved_bars():
            self._report(line)

    def _report(self, line: str) -> None:
        if line in self.unmodeled_paths:
            return
        self.unmodeled_paths.append(line)
        if self._unmodeled is not None:
            self._unmodeled(line)
