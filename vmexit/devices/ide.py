"""ATA/IDE disk on the primary channel (command block 0x1f0-0x1f7, control block 0x3f6): PIO, and DMA
through the PIIX3's bus-master engine (bmdma.py).

Commands (ATA/ATAPI-6, T13/1410D): IDENTIFY DEVICE (0xEC), READ SECTORS (0x20/0x21), WRITE SECTORS
(0x30/0x31), READ/WRITE SECTORS EXT (0x24/0x34, LBA48), FLUSH CACHE (0xE7/0xEA), SET FEATURES (0xEF:
transfer mode 03h, write cache on/off 02h/82h; other subcommands abort), the power commands libata
sends at shutdown (0xE0-0xE3, CHECK POWER MODE 0xE5: active), INITIALIZE DEVICE PARAMETERS (0x91),
RECALIBRATE (0x10), and READ/WRITE DMA (0xC8/0xCA, EXT 0x25/0x35) when a bus-master engine is
attached. Any other command aborts (error ABRT), as a drive without that feature set does, and
`aborted` counts it by opcode, naming what a guest asked for that vmexit does not model. The taskfile registers are two-deep FIFOs for LBA48, as on real drives: the first
write of a pair is the "previous" (HOB) byte, so Linux's __ide_do_rw_disk writes feature, nsector,
lbal, lbam, lbah twice and then the device register: the 11 `outb` of the KVM paper.

The drive is never busy in virtual time: after a command DRQ is up at once, so a driver's status poll
succeeds on its first read (one status read per sector, by construction). IRQ14 is raised per
sector when nIEN (device control bit 1) is clear, and each INTRQ edge also reaches the bus-master
engine's interrupt bit (bmdma.py). The master is always there; a slave exists when a
second image is given (--disk1). A command runs on the drive the device register selects.

Two drives, one channel, as QEMU's PIIX IDE models it (hw/ide/core.c): each drive keeps its own copy of
the taskfile registers, and a register write goes to both copies (ide_ioport_write writes ifs[0] and
ifs[1]), while a read answers from the selected drive's copy (ide_ioport_read reads
idebus_active_if()). So the two copies differ only where a command (CHECK POWER MODE here) or a
reset left them apart. With the slave absent and selected, ide_ioport_read answers, the master being
there: nsector, LBA low/mid/high (and their HOB bytes) from the slave's copy, i.e. the values written
(which is what makes libata's ata_devchk, writing 55h/AAh and reading them back, find a "device 1" on
QEMU); the device register as written; the error register, the status and the alternate status
(ide_status_read) 00h. Commands to the absent slave are ignored (ide_exec_cmd). A reset (power-on:
ide_bus_reset; SRST: ide_bus_perform_srst) puts each drive's signature in its copy (ide_set_signature):
sector count 01h, LBA low 01h, LBA mid/high 00h/00h for a disk and FFh/FFh for an absent drive, which
libata's ata_dev_classify takes for an unknown device.

The disk is a copy: writes go to an overlay of sectors, and reach the user's file only when the
machine was told the image is writable.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import VmexitError

SECTOR = 512
PORTS = tuple(range(0x1F0, 0x1F8)) + (0x3F6,)

ST_ERR, ST_DRQ, ST_DSC, ST_DRDY, ST_BSY = 0x01, 0x08, 0x10, 0x40, 0x80
ER_ABRT, ER_IDNF = 0x04, 0x10


class DiskError(VmexitError, OSError):
    """A disk image that cannot be used."""


class Disk:
    """Sectors of an image file (or zeros), with writes kept in an overlay."""

    def __init__(self, path: str | Path | None = None, size: int = 16 << 20, writable: bool = False):
        self.path = Path(path) if path else None
        self.writable = writable
        if self.path is not None:
            try:
                self._base = self.path.read_bytes()
            except FileNotFoundError:
                raise DiskError(f"{self.path}: no such disk image") from None
            except OSError as e:
                raise DiskError(f"{self.path}: cannot read disk image ({e.strerror})") from None
            if writable:
                import os
                if not os.access(self.path, os.W_OK):
                    raise DiskError(f"{self.path}: --disk-writable given but the image is read-only")
        else:
            self._base = b""
            self._size = size
        self.sectors = (len(self._base) // SECTOR) if self.path is not None else size // SECTOR
        self.overlay: dict[int, bytes] = {}

    def read(self, lba: int) -> bytes:
        if lba in self.overlay:
            return self.overlay[lba]
        chunk = self._base[lba * SECTOR:(lba + 1) * SECTOR]
        return chunk + bytes(SECTOR - len(chunk))

    def write(self, lba: int, data: bytes) -> None:
        self.overlay[lba] = bytes(data)

    def flush(self) -> int:
        """Write the overlay back to the image file if writable; returns sectors written."""
        if not (self.writable and self.path is not None and self.overlay):
            return 0
        with open(self.path, "r+b") as f:
            for lba in sorted(self.overlay):
                f.seek(lba * SECTOR)
                f.write(self.overlay[lba])
        return len(self.overlay)


def _ata_string(text: str, words: int) -> list[int]:
    raw = text.ljust(2 * words)[: 2 * words].encode("ascii")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


@dataclass
class DriveSettings:
    """What SET FEATURES changed on one drive (IDENTIFY words 63, 85, 88 show it)."""
    mwdma_selected: int = 0x0400    # power-on transfer mode: multiword DMA 2 (word 63 bit 10)
    udma_selected: int = 0
    write_cache: bool = True


class IDEDisk:
    name = "ide"
    ports = PORTS

    def __init__(self, disk: Disk, irq14: Callable[[], None], slave: Disk | None = None):
        self.disks = [disk, slave]
        self.active = disk      # the drive the last command went to: its transfer stays with it
        self._irq = irq14
        # per drive: register -> [cur, hob]; power-on is a reset (QEMU: ide_bus_reset -> ide_reset)
        self.taskfile = [self._signature(d) for d in self.disks]
        self.device = 0xA0
        self.devctl = 0
        self.status = ST_DRDY | ST_DSC
        self.error = 0
        self.buffer = bytearray()
        self.pos = 0
        self.remaining = 0       # sectors left in the current command
        self.lba = 0
        self.writing = False
        self.commands = 0
        self.sectors_read = 0
        self.sectors_written = 0
        self.dma_engine = None        # set by a bus-master DMA engine (devices/bmdma.py)
        self.dma_pending: tuple[int, int, bool] | None = None
        self.settings = [DriveSettings(), DriveSettings()]   # per drive: SET FEATURES' choices
        self.aborted: dict[int, int] = {}   # opcode -> times answered with ABRT (commands not modeled)
        self._opcode = 0

    # helpers ---------------------------------------------------------------------------------
    @property
    def disk(self) -> Disk:
        """The selected drive's image (the device register's DEV bit)."""
        return self.disks[(self.device >> 4) & 1]

    @property
    def regs(self) -> dict[str, list[int]]:
        """The selected drive's copy of the taskfile registers."""
        return self.taskfile[(self.device >> 4) & 1]

    def _selected_absent(self) -> bool:
        return self.disks[(self.device >> 4) & 1] is None

    @staticmethod
    def _signature(disk: Disk | None) -> dict[str, list[int]]:
        """A drive's taskfile after a reset, as QEMU's ide_reset and ide_set_signature leave it: count
        01h, LBA low 01h, LBA mid/high 00h/00h (the ATA signature) for a disk, FFh/FFh where no drive
        is; HOB bytes and feature 00h."""
        mid_high = 0 if disk is not None else 0xFF
        return {"feature": [0, 0], "nsect": [1, 0], "lbal": [1, 0], "lbam": [mid_high, 0],
                "lbah": [mid_high, 0]}

    def _raise(self) -> None:
        if not self.devctl & 0x02:
            self._irq()
            if self.dma_engine is not None:
                self.dma_engine.drive_interrupt()

    def _lba28(self) -> tuple[int, int]:
        r = self.regs
        lba = r["lbal"][0] | (r["lbam"][0] << 8) | (r["lbah"][0] << 16) | ((self.device & 0x0F) << 24)
        return lba, r["nsect"][0] or 256

    def _lba48(self) -> tuple[int, int]:
        r = self.regs
        lba = (r["lbal"][0] | (r["lbam"][0] << 8) | (r["lbah"][0] << 16)
               | (r["lbal"][1] << 24) | (r["lbam"][1] << 32) | (r["lbah"][1] << 40))
        count = r["nsect"][0] | (r["nsect"][1] << 8)
        return lba, count or 65536

    def _abort(self, error: int) -> None:
        if error == ER_ABRT:
            self.aborted[self._opcode] = self.aborted.get(self._opcode, 0) + 1
        self.error = error
        self.status = ST_DRDY | ST_DSC | ST_ERR
        self.remaining = 0
        self._raise()

    def _identify(self) -> bytes:
        """IDENTIFY DEVICE data (ATA/ATAPI-6 table 27): the words libata's ata_dev_configure and
        ata_id_xfermask read. An ATA-6 parallel drive (word 93 set: ata_id_is_sata() would take an ATA-5+
        drive with word 93 zero for SATA) with LBA48, PIO 0-4, multiword DMA 0-2 and Ultra DMA 0-5 (the
        PIIX3 masks Ultra DMA off: ata_piix's piix_pata_mwdma), a write cache that is on and FLUSH CACHE
        (EXT): so sd issues flushes as on a real disk."""
        w = [0] * 256
        n = self.disk.sectors
        mine = self.settings[(self.device >> 4) & 1]
        w[0] = 0x0040                              # fixed device, ATA
        w[1], w[3], w[6] = min(n // (16 * 63), 16383), 16, 63
        w[10:20] = _ata_string("VMEXIT0001", 10)
        w[23:27] = _ata_string("1.0", 4)
        w[27:47] = _ata_string("VMEXIT HARDDISK", 20)
        w[47] = 0x8010                             # READ/WRITE MULTIPLE up to 16 sectors (none set: w59)
        w[49] = 0x0B00                             # IORDY, LBA and DMA supported
        w[51] = 0x0200                             # PIO mode 2 timing (for drives without word 64)
        w[53] = 0x0006                             # words 64-70 and 88 valid
        w[60], w[61] = min(n, 0x0FFFFFFF) & 0xFFFF, min(n, 0x0FFFFFFF) >> 16
        w[63] = 0x0007 | mine.mwdma_selected       # multiword DMA 0-2 supported, the selected one
        w[64] = 0x0003                             # PIO 3 and 4
        w[65:69] = [120, 120, 120, 120]            # minimum cycle times (ns): MWDMA, PIO, PIO with IORDY
        w[80] = 0x007E                             # ATA-1..6
        w[82] = 0x4020                             # write cache supported (bit 14: NOP)
        w[83] = 0x7400                             # LBA48, FLUSH CACHE, FLUSH CACHE EXT (bit 14: valid)
        w[84] = 0x4000
        w[85] = 0x0020 if mine.write_cache else 0
        w[86] = 0x3400                             # LBA48, FLUSH CACHE (EXT) enabled
        w[87] = 0x4000
        w[88] = 0x003F | mine.udma_selected        # Ultra DMA 0-5 supported, the selected one
        w[93] = 0x400B                             # parallel: device 0 passed diagnostics, set by jumper
        w[100], w[101], w[102], w[103] = n & 0xFFFF, (n >> 16) & 0xFFFF, (n >> 32) & 0xFFFF, 0
        return b"".join(x.to_bytes(2, "little") for x in w)

    def _set_features(self) -> None:
        """SET FEATURES (ATA/ATAPI-6 8.37): the subcommand in the feature register."""
        sub, value = self.regs["feature"][0], self.regs["nsect"][0]
        mine = self.settings[(self.device >> 4) & 1]
        if sub == 0x03:       # set transfer mode: nsect = PIO 08h-0Ch, MWDMA 20h-22h, UDMA 40h-45h
            kind, mode = value >> 3, value & 7
            if kind == 0x01 and mode <= 4 or kind == 0 and mode <= 1:
                pass          # PIO (flow control) mode: the DMA selections stay
            elif kind == 0x04 and mode <= 2:
                mine.mwdma_selected, mine.udma_selected = 0x100 << mode, 0
            elif kind == 0x08 and mode <= 5:
                mine.mwdma_selected, mine.udma_selected = 0, 0x100 << mode
            else:
                self._abort(ER_ABRT)
                return
        elif sub in (0x02, 0x82):
            mine.write_cache = sub == 0x02
        else:
            self._abort(ER_ABRT)
            return
        self._done()

    def _done(self) -> None:
        """A non-data command completed."""
        self.status = ST_DRDY | ST_DSC
        self.error = 0
        self._raise()

    def _start_transfer(self, lba: int, count: int, writing: bool) -> None:
        if lba + count > self.disk.sectors:
            self._abort(ER_IDNF)
            return
        self.lba, self.remaining, self.writing = lba, count, writing
        self.error = 0
        if writing:
            self.buffer = bytearray(SECTOR)
            self.pos = 0
            self.status = ST_DRDY | ST_DSC | ST_DRQ
        else:
            self._load_sector()

    def _load_sector(self) -> None:
        self.buffer = bytearray(self.active.read(self.lba))
        self.pos = 0
        self.status = ST_DRDY | ST_DSC | ST_DRQ
        self.sectors_read += 1
        self._raise()

    def _command(self, cmd: int) -> None:
        self.commands += 1
        self._opcode = cmd
        if self._selected_absent():
            return
        self.active = self.disk
        if cmd == 0xEC:
            self.buffer = bytearray(self._identify())
            self.pos = 0
            self.remaining = 1
            self.writing = False
            self.lba = -1
            self.status = ST_DRDY | ST_DSC | ST_DRQ
            self._raise()
        elif cmd in (0x20, 0x21):
            self._start_transfer(*self._lba28(), writing=False)
        elif cmd in (0x30, 0x31):
            self._start_transfer(*self._lba28(), writing=True)
        elif cmd == 0x24:
            self._start_transfer(*self._lba48(), writing=False)
        elif cmd == 0x34:
            self._start_transfer(*self._lba48(), writing=True)
        elif cmd in (0xC8, 0xCA, 0x25, 0x35) and self.dma_engine is not None:
            lba, count = self._lba48() if cmd in (0x25, 0x35) else self._lba28()
            if lba + count > self.disk.sectors:
                self._abort(ER_IDNF)
                return
            self.dma_pending = (lba, count, cmd in (0xCA, 0x35))
            self.error = 0
            self.status = ST_DRDY | ST_DSC | ST_BSY
            self.dma_engine.kick()
        elif cmd == 0xEF:
            self._set_features()
        elif cmd == 0xE5:      # CHECK POWER MODE: FFh, active or idle
            self.regs["nsect"][0] = 0xFF
            self._done()
        elif cmd in (0xE7, 0xEA, 0x91, 0x10, 0xE0, 0xE1, 0xE2, 0xE3):
            self._done()
        else:
            self._abort(ER_ABRT)

    def _data_read(self, size: int) -> int:
        if not self.status & ST_DRQ or self.writing:
            return (1 << (8 * size)) - 1
        take = min(size, SECTOR - self.pos)  # an access straddling the sector end gets the rest only
        value = int.from_bytes(self.buffer[self.pos:self.pos + take], "little")
        self.pos += take
        if self.pos >= SECTOR:
            self.remaining -= 1
            if self.remaining > 0:
                self.lba += 1
                self._load_sector()
            else:
                self.status = ST_DRDY | ST_DSC
        return value

    def _data_write(self, size: int, value: int) -> None:
        if not self.status & ST_DRQ or not self.writing:
            return
        take = min(size, SECTOR - self.pos)
        self.buffer[self.pos:self.pos + take] = value.to_bytes(size, "little")[:take]
        self.pos += take
        if self.pos >= SECTOR:
            self.active.write(self.lba, self.buffer)
            self.sectors_written += 1
            self.remaining -= 1
            self.lba += 1
            if self.remaining > 0:
                self.buffer = bytearray(SECTOR)
                self.pos = 0
            else:
                self.status = ST_DRDY | ST_DSC
            self._raise()

    def _software_reset(self) -> None:
        # ATA/ATAPI-6, software reset protocol: SRST selects device 0 and leaves the diagnostic code (01h: passed) in the
        # error register and the ATA signature in the taskfile (sector count 01h, LBA low 01h,
        # LBA mid/high 00h), which libata's ata_sff_dev_classify() reads to tell ATA from ATAPI;
        # an absent slave's copy gets FFh/FFh (QEMU ide_bus_perform_srst resets both drives).
        self.status = ST_DRDY | ST_DSC
        self.error = 0x01
        self.remaining = 0
        self.device = 0xA0
        self.dma_pending = None
        if self.dma_engine is not None:
            self.dma_engine.abandon()
        self.taskfile = [self._signature(d) for d in self.disks]

    # port interface --------------------------------------------------------------------------
    def read(self, port: int, size: int) -> int:
        if port == 0x1F0:
            return self._data_read(size)
        hob = 1 if self.devctl & 0x80 else 0
        if port == 0x1F1:      # QEMU ide_ioport_read: 0 for an absent slave
            return 0 if self._selected_absent() else self.error
        if port == 0x1F2:
            return self.regs["nsect"][hob]
        if port == 0x1F3:
            return self.regs["lbal"][hob]
        if port == 0x1F4:
            return self.regs["lbam"][hob]
        if port == 0x1F5:
            return self.regs["lbah"][hob]
        if port == 0x1F6:
            return self.device
        if port in (0x1F7, 0x3F6):
            return 0 if self._selected_absent() else self.status
        return 0xFF

    def write(self, port: int, size: int, value: int) -> None:
        if port == 0x1F0:
            self._data_write(size, value)
            return
        value &= 0xFF
        names = {0x1F1: "feature", 0x1F2: "nsect", 0x1F3: "lbal", 0x1F4: "lbam", 0x1F5: "lbah"}
        if port in names:      # both drives' copies (QEMU ide_ioport_write)
            for regs in self.taskfile:
                reg = regs[names[port]]
                reg[1], reg[0] = reg[0], value
            self.devctl &= 0x7F  # a taskfile write clears HOB
        elif port == 0x1F6:
            self.device = value | 0xA0
        elif port == 0x1F7:
            self._command(value)
        elif port == 0x3F6:
            if value & 0x04 and not self.devctl & 0x04:
                self._software_reset()
            self.devctl = value
