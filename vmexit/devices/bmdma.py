"""Bus-master IDE DMA of the PIIX3 IDE function (SFF-8038i): per channel a command register
(+0: bit 0 start/stop, bit 3 direction, 1 = write to memory), status (+2: bit 0 active, bit 1 error,
bit 2 interrupt -- both write-1-to-clear -- bits 5/6 drive DMA capable, bit 7 simplex, 0: both
channels may run DMA at once) and PRD table address (+4), the primary channel at the I/O base in PCI
BAR4 (devices/pci.py), the secondary at +8. The secondary channel has no drive (ide.py models the
primary only): its registers hold what is written and never start a transfer, so libata's
ata_pci_bmdma_init reads a clear simplex bit there as on the chip.

The interrupt bit is set by every rising edge of the drive's INTRQ (SFF-8038i; QEMU's bmdma_irq does
the same), PIO commands included, which is what ata_piix's piix_irq_check reads to tell its interrupt
from a shared line's. Clearing the start bit while a transfer runs aborts it (libata's error handler
does so through ata_bmdma_stop): nothing more reaches memory or the disk. PRD entries are {u32 address, u16 byte count (0 =
64 KiB), u16 flags, bit 15 = end of table} in guest RAM.

A transfer starts when both the DMA command (READ/WRITE DMA, 0xc8/0xca, and the EXT forms 0x25/0x35)
and the start bit are there, whatever their order, and completes after the media time of its bytes at
`rate` bytes per virtual second (default 70 MB/s, derived: the sequential media rate of a 2008
7,200 rpm SATA disk; the papers give no disk figure), so a driver polling the status sees it busy for a
while, as on a real disk. A PRD table or buffer outside guest RAM sets the error bit and moves nothing:
DMA reaches guest RAM only.
"""
from __future__ import annotations

import struct
from typing import Callable

from .ide import SECTOR, ST_DRDY, ST_DSC, ST_ERR, IDEDisk
from .pci import BMDMA_BASE, BMDMA_SIZE

PORTS = tuple(range(BMDMA_BASE, BMDMA_BASE + BMDMA_SIZE))
CMD_START, CMD_TO_MEMORY = 0x01, 0x08
ST_ACTIVE, ST_ERROR, ST_IRQ, ST_DMA_CAPABLE0, ST_SIMPLEX = 0x01, 0x02, 0x04, 0x20, 0x80
MAX_PRD_ENTRIES = 8192  # a PRD table may not cross a 64 KiB boundary: 64 KiB / 8 bytes


DISK_RATE = 70_000_000


class BusMasterIDE:
    name = "bmdma"
    ports = PORTS
    irq = 14

    def __init__(self, drive: IDEDisk, read_memory: Callable[[int, int], bytes | None],
                 write_memory: Callable[[int, bytes], bool], now: Callable[[], int] | None = None,
                 freq_hz: int = 1, rate: int = DISK_RATE):
        self.drive = drive
        self._now = now
        self._freq = freq_hz
        self._rate = rate
        self._due: int | None = None
        self._job: tuple[int, int, bool] | None = None
        drive.dma_engine = self
        self._read = read_memory
        self._write = write_memory
        self.command = 0
        self.status = ST_DMA_CAPABLE0
        self.prd = 0
        self.secondary = bytearray(8)   # the second channel's registers: no drive behind them
        self.transfers = 0
        self.bytes_moved = 0
        self.aborted = 0

    def read(self, port: int, size: int) -> int:
        off = port - BMDMA_BASE
        if off >= 8:
            return int.from_bytes(self.secondary[off - 8:off - 8 + size], "little")
        if off == 0:
            return self.command
        if off == 2:
            return self.status
        if 4 <= off <= 7:
            return (self.prd >> (8 * (off - 4))) & ((1 << (8 * size)) - 1)
        return 0

    def write(self, port: int, size: int, value: int) -> None:
        off = port - BMDMA_BASE
        if off >= 8:
            self._write_secondary(off - 8, size, value)
        elif off == 0:
            was = self.command & CMD_START
            self.command = value & (CMD_START | CMD_TO_MEMORY)
            if value & CMD_START and not was:
                self.status |= ST_ACTIVE
                self.kick()
            elif not value & CMD_START:
                self._stop()
        elif off == 2:
            value &= 0xFF
            self.status = (self.status & ~(value & (ST_ERROR | ST_IRQ))) & ~0x60 | (value & 0x60)
        elif 4 <= off <= 7:
            shift = 8 * (off - 4)
            mask = ((1 << (8 * size)) - 1) << shift
            self.prd = ((self.prd & ~mask) | ((value << shift) & mask)) & 0xFFFFFFFC

    def _write_secondary(self, off: int, size: int, value: int) -> None:
        for i in range(min(size, 8 - off)):
            at, byte = off + i, (value >> (8 * i)) & 0xFF
            if at == 0:
                self.secondary[0] = byte & (CMD_START | CMD_TO_MEMORY)
            elif at == 2:   # interrupt and error write-1-to-clear, the capable bits as written
                self.secondary[2] = self.secondary[2] & ~(byte & (ST_ERROR | ST_IRQ)) & ~0x60 | byte & 0x60
            elif at >= 4:
                self.secondary[at] = byte & (0xFC if at == 4 else 0xFF)

    def _stop(self) -> None:
        """Start bit cleared: the engine stops, and a transfer still under way is abandoned."""
        self.status &= ~ST_ACTIVE
        self.abandon()

    def abandon(self) -> None:
        """A transfer under way never completes: the start bit was cleared, or the drive was reset (SRST;
        then the engine stays active until the driver clears the start bit, as on the chip)."""
        if self._job is not None:
            self._job, self._due = None, None
            self.aborted += 1

    def drive_interrupt(self) -> None:
        """The drive raised INTRQ (ide.py): the interrupt bit latches it."""
        self.status |= ST_IRQ

    def _prd_entries(self) -> list[tuple[int, int]] | None:
        entries, at = [], self.prd
        for _ in range(MAX_PRD_ENTRIES):
            raw = self._read(at, 8)
            if raw is None:
                return None
            address, count, flags = struct.unpack("<IHH", raw)
            entries.append((address & 0xFFFFFFFE, count or 0x10000))
            if flags & 0x8000:
                return entries
            at += 8
        return None

    def kick(self) -> None:
        """Start the pending DMA command if the engine is started; it completes after its media time."""
        pending = self.drive.dma_pending
        if pending is None or not self.status & ST_ACTIVE:
            return
        self.drive.dma_pending = None
        if self._now is None:  # no clock: complete at once
            self._complete(*pending)
            return
        nbytes = pending[1] * SECTOR
        self._job = pending
        self._due = self._now() + max(1, -(-nbytes * self._freq // self._rate))

    def next_event(self) -> int | None:
        return self._due

    def advance(self, now: int) -> int:
        if self._due is None or self._due > now:
            return 0
        job, self._job, self._due = self._job, None, None
        self._complete(*job)
        return 1

    def _complete(self, lba: int, count: int, writing: bool) -> None:
        entries = self._prd_entries()
        need = count * SECTOR
        ok = entries is not None and sum(n for _, n in entries) >= need
        if ok and writing:  # memory -> disk
            data = bytearray()
            for address, n in entries:
                chunk = self._read(address, min(n, need - len(data)))
                if chunk is None:
                    ok = False
                    break
                data += chunk
                if len(data) >= need:
                    break
            if ok:
                for i in range(count):
                    self.drive.active.write(lba + i, bytes(data[i * SECTOR:(i + 1) * SECTOR]))
                self.drive.sectors_written += count
        elif ok:  # disk -> memory
            data = b"".join(self.drive.active.read(lba + i) for i in range(count))
            at = 0
            for address, n in entries:
                if at >= need:
                    break
                if not self._write(address, data[at:at + min(n, need - at)]):
                    ok = False
                    break
                at += n
            self.drive.sectors_read += count
        self.status &= ~ST_ACTIVE
        if ok:
            self.transfers += 1
            self.bytes_moved += need
            self.drive.status = ST_DRDY | ST_DSC
        else:
            self.status |= ST_ERROR
            self.drive.status = ST_DRDY | ST_DSC | ST_ERR
        # The interrupt bit follows the drive's INTRQ (drive_interrupt), which nIEN keeps low: a
        # driver that polls the bit must leave nIEN clear.
        self.drive._raise()
