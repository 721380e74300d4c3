"""Realtek RTL8139C Fast Ethernet controller, port-I/O register file (Realtek RTL8139C(L) datasheet;
the registers Linux's 8139too and QEMU's hw/net/rtl8139.c use):

  0x00 IDR0-5 (MAC)   0x08 MAR0-7         0x10-0x1c TSD0-3    0x20-0x2c TSAD0-3   0x30 RBSTART
  0x37 CR (BUFE, TE, RE, RST)             0x38 CAPR           0x3a CBR            0x3c IMR
  0x3e ISR (write 1 to clear)             0x40 TCR            0x44 RCR            0x50 9346CR
  0x51/0x52 CONFIG0/1  0x58 MSR  0x62 BMCR  0x64 BMSR  0x66 ANAR  0x68 ANLPAR  0x6a ANER

The chip is an RTL8139C: TCR's hardware version bits (30-26, 23-22) read 11101b/00b, which 8139too's
rtl8139_init_board finds as "RTL-8139C" in rtl_chip_info (HW_REVID(1, 1, 1, 0, 1, 0, 0)); writes leave
them. (QEMU models the 8139C+, which 8139too declines by its PCI revision 0x20.) CR.RST clears itself at
once: rtl8139_chip_reset's poll sees it done on its first read. The built-in PHY (8139too's mdio_read
maps MII registers 0, 1, 4, 5, 6 to BMCR, BMSR, ANAR, ANLPAR, ANER) has its link up and has negotiated
100 Mb/s full duplex with the peer, so mii_check_media turns the carrier on.

The MAC address comes from a 93C46 serial EEPROM (64 x 16 bits) that the driver bit-bangs through
9346CR in programming mode (EEM = 10b: bit 3 chip select, bit 2 clock, bit 1 data in, bit 0 data out;
Microchip 93C46 / RTL8139C datasheet): a start bit, opcode 10b (READ) and 6 address bits, clocked in
on rising edges, then a dummy 0 and the word's 16 bits, most significant first, one per rising edge,
continuing into the next word while chip select stays up. Its contents follow the RTL8139 EEPROM
layout: word 0 the ID 8129h, 1-4 vendor, device, subsystem vendor and subsystem IDs, 7-9 the MAC.
8139too's read_eeprom first reads word 0 with 8 address bits, which a 93C46 answers shifted (it takes 6),
so the driver settles on 6-bit addresses, as on a board with a 93C46. Only READ is modeled: the other
opcodes (write enable, write, erase) are ignored, the contents never change.

Receive: the device writes each frame into the ring at RBSTART + CBR as {u16 status, u16 length incl.
CRC} + data + CRC, 4-byte aligned, and advances CBR; the driver reads at CAPR + 16 (the chip's
historical offset) and writes CAPR back; CR.BUFE says the ring is empty. Ring size 8 KiB << RCR.RBLEN
(+16 bytes); with RCR.WRAP a frame may run past the end instead of wrapping. No room: the frame is
dropped with ISR.RXOVW. Transmit: writing TSDn (size, OWN clear) sends the buffer at TSADn at once;
TSD gets OWN|TOK and ISR.TOK. The interrupt line is raised whenever ISR & IMR gains a bit.

Frames move through guest RAM only (the DMA callables given); transmitted frames go to `on_transmit`.
"""
from __future__ import annotations

import struct
import zlib
from typing import Callable

PORT_SIZE = 0x100
MAC = bytes.fromhex("525400123456")  # QEMU's default NIC address

HW_REVID_MASK = 0x7CC00000
HW_REVID_8139C = 0x74000000      # 8139too: HW_REVID(1, 1, 1, 0, 1, 0, 0), "RTL-8139C"
EEPROM_ID = 0x8129
MII_RESET = ((0x62, 0x1000),     # BMCR: auto-negotiation enabled
             (0x64, 0x782D),     # BMSR: 100/10 full/half capable, negotiation complete, link up
             (0x66, 0x01E1),     # ANAR: 100/10 full/half, IEEE 802.3
             (0x68, 0x41E1),     # ANLPAR: the peer offers the same and acknowledged
             (0x6A, 0x0001))     # ANER: the peer negotiates
ISR_ROK, ISR_RER, ISR_TOK, ISR_TER, ISR_RXOVW = 0x01, 0x02, 0x04, 0x08, 0x10
CR_BUFE, CR_TE, CR_RE, CR_RST = 0x01, 0x04, 0x08, 0x10
TSD_OWN, TSD_TOK = 1 << 13, 1 << 15
RX_STATUS_ROK, RX_STATUS_PAM, RX_STATUS_BAR = 0x0001, 0x4000, 0x2000


def eeprom_contents(mac: bytes) -> list[int]:
    """The 64 words of the card's 93C46 (RTL8139 EEPROM layout)."""
    words = [0] * 64
    words[0:5] = [EEPROM_ID, 0x10EC, 0x8139, 0x10EC, 0x8139]
    words[7:10] = [mac[i] | mac[i + 1] << 8 for i in (0, 2, 4)]
    return words


class EEPROM93C46:
    """The serial EEPROM's pins, as 9346CR drives them in programming mode."""

    def __init__(self, words: list[int]):
        self.words = words
        self.cs = self.sk = False
        self.out = 0              # DO
        self._deselect()

    def _deselect(self) -> None:
        self.state, self.bits, self.count = "idle", 0, 0
        self.out = 0

    def pins(self, cs: bool, sk: bool, di: int) -> None:
        rising = sk and not self.sk
        self.cs, self.sk = cs, sk
        if not cs:
            self._deselect()
        elif rising:
            self._clock(di)

    def _clock(self, di: int) -> None:
        if self.state == "idle":
            if di:                                    # the start bit: leading zeros are ignored
                self.state, self.bits, self.count = "command", 0, 0
        elif self.state == "command":
            self.bits, self.count = self.bits << 1 | di, self.count + 1
            if self.count == 8:                       # 2 opcode bits + 6 address bits
                if self.bits >> 6 == 0b10:            # READ: a dummy 0 first
                    self.state, self.address, self.count, self.out = "read", self.bits & 0x3F, 0, 0
                else:
                    self.state = "ignored"
        elif self.state == "read":
            self.out = (self.words[self.address] >> (15 - self.count)) & 1
            self.count += 1
            if self.count == 16:                      # sequential read: on into the next word
                self.address, self.count = (self.address + 1) & 0x3F, 0


class RTL8139:
    name = "rtl8139"
    affects_timers = True  # a transmit can schedule the peer's next frame (devices/netpeer.py)

    def __init__(self, base: int, read_memory: Callable[[int, int], bytes | None],
                 write_memory: Callable[[int, bytes], bool], irq: Callable[[], None],
                 on_transmit: Callable[[bytes], None] | None = None):
        self.base = base
        self.ports = tuple(range(base, base + PORT_SIZE))
        self._read_mem = read_memory
        self._write_mem = write_memory
        self._irq = irq
        self.on_transmit = on_transmit
        self.regs = bytearray(PORT_SIZE)
        self.regs[0:6] = MAC
        self.eeprom = EEPROM93C46(eeprom_contents(MAC))
        self._reset()
        self.rx_frames = self.rx_bytes = self.tx_frames = self.tx_bytes = self.rx_dropped = 0

    # register helpers -------------------------------------------------------------------------
    def _get(self, off: int, size: int) -> int:
        return int.from_bytes(self.regs[off:off + size], "little")

    def _set(self, off: int, size: int, value: int) -> None:
        self.regs[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def _reset(self) -> None:
        mac = bytes(self.regs[0:6])
        self.regs[:] = bytes(PORT_SIZE)
        self.regs[0:6] = mac
        for n in range(4):
            self._set(0x10 + 4 * n, 4, TSD_OWN)   # descriptors owned by the driver
        self._set(0x38, 2, 0xFFF0)                # CAPR: ring empty (CAPR + 16 == CBR == 0)
        self._set(0x40, 4, HW_REVID_8139C)        # TCR: the chip's version bits
        self.eeprom.pins(False, False, 0)         # 9346CR back in normal mode: chip select down
        self._set(0x58, 1, 0x10)                  # MSR: link up (LINKB clear), 100 Mb/s
        for off, value in MII_RESET:
            self._set(off, 2, value)
        self.isr = 0
        self.imr = 0
        self.cbr = 0
        self.capr = 0xFFF0

    @property
    def ring_size(self) -> int:
        return 8192 << ((self._get(0x44, 4) >> 11) & 3)

    def _used(self) -> int:
        return (self.cbr - ((self.capr + 16) & 0xFFFF)) % self.ring_size

    def irq_asserted(self) -> bool:
        """The INTA# level: a PCI interrupt stays asserted while an enabled cause is pending (for an
        interrupt controller that models level-triggered lines; `irq` is called on each new cause)."""
        return bool(self.isr & self.imr)

    def _update_irq(self, old: int) -> None:
        if (self.isr & self.imr) & ~(old & self.imr):
            self._irq()

    # frames ------------------------------------------------------------------------------------
    def receive(self, frame: bytes) -> bool:
        """A frame from the wire. Returns False if it was dropped."""
        cr = self.regs[0x37]
        if not cr & CR_RE:
            return False
        size = self.ring_size
        need = (4 + len(frame) + 4 + 3) & ~3
        if self._used() + need >= size:
            self.rx_dropped += 1
            old = self.isr
            self.isr |= ISR_RXOVW
            self._update_irq(old)
            return False
        status = RX_STATUS_ROK | (RX_STATUS_BAR if frame[:6] == b"\xff" * 6 else RX_STATUS_PAM)
        packet = struct.pack("<HH", status, len(frame) + 4) + frame + struct.pack("<I", zlib.crc32(frame))
        rbstart = self._get(0x30, 4)
        wrap = self._get(0x44, 4) & 0x80
        at = self.cbr
        if wrap or at + len(packet) <= size:
            ok = self._write_mem(rbstart + at, packet)
        else:
            first = size - at
            ok = self._write_mem(rbstart + at, packet[:first]) and self._write_mem(rbstart, packet[first:])
        if not ok:
            old = self.isr
            self.isr |= ISR_RER
            self._update_irq(old)
            return False
        self.cbr = (at + need) % size
        self.rx_frames += 1
        self.rx_bytes += len(frame)
        old = self.isr
        self.isr |= ISR_ROK
        self._update_irq(old)
        return True

    def _transmit(self, n: int, tsd: int) -> None:
        size = tsd & 0x1FFF
        old = self.isr
        frame = self._read_mem(self._get(0x20 + 4 * n, 4), size) if self.regs[0x37] & CR_TE else None
        if frame is None:
            self._set(0x10 + 4 * n, 4, tsd | TSD_OWN | (1 << 30))  # TABT: transmit aborted
            self.isr |= ISR_TER
        else:
            self._set(0x10 + 4 * n, 4, tsd | TSD_OWN | TSD_TOK)
            self.isr |= ISR_TOK
            self.tx_frames += 1
            self.tx_bytes += size
            if self.on_transmit is not None:
                self.on_transmit(frame)
        self._update_irq(old)

    # port interface ------------------------------------------------------------------------------
    def read(self, port: int, size: int) -> int:
        off = port - self.base
        if off == 0x37:
            return (self.regs[0x37] & ~CR_BUFE) | (CR_BUFE if self._used() == 0 else 0)
        if off in (0x38, 0x39):
            return (self.capr >> (8 * (off - 0x38))) & ((1 << (8 * size)) - 1)
        if off in (0x3A, 0x3B):
            return (self.cbr >> (8 * (off - 0x3A))) & ((1 << (8 * size)) - 1)
        if off in (0x3C, 0x3D):
            return (self.imr >> (8 * (off - 0x3C))) & ((1 << (8 * size)) - 1)
        if off in (0x3E, 0x3F):
            return (self.isr >> (8 * (off - 0x3E))) & ((1 << (8 * size)) - 1)
        if off == 0x50 and self.regs[0x50] >> 6 == 0b10:   # programming mode: EEDO is the EEPROM's
            return (self.regs[0x50] & 0xFE) | self.eeprom.out
        return self._get(off, size)

    def write(self, port: int, size: int, value: int) -> None:
        off = port - self.base
        value &= (1 << (8 * size)) - 1
        if off == 0x37:
            if value & CR_RST:
                self._reset()
                return
            self.regs[0x37] = value & (CR_TE | CR_RE)
        elif off == 0x38 and size >= 2:
            self.capr = value & 0xFFFF
        elif off == 0x3C and size >= 2:
            was_enabled = self.isr & self.imr
            self.imr = value & 0xE07F
            if (self.isr & self.imr) & ~was_enabled:  # unmasking a pending cause interrupts at once
                self._irq()
        elif off == 0x3E and size >= 2:
            self.isr &= ~value
        elif 0x10 <= off < 0x20 and size == 4 and off % 4 == 0:
            self._transmit((off - 0x10) // 4, value & ~TSD_OWN & ~TSD_TOK)
        elif off in (0x3A, 0x3B) or 0x58 <= off < 0x60:
            return  # read-only
        elif off == 0x50:
            self.regs[0x50] = value & 0xFF
            programming = value >> 6 == 0b10
            self.eeprom.pins(programming and bool(value & 0x08), programming and bool(value & 0x04),
                             (value >> 1) & 1)
        else:
            self._set(off, size, value)
            if off < 0x44 and off + size > 0x40:      # TCR: the version bits are read-only
                self._set(0x40, 4, self._get(0x40, 4) & ~HW_REVID_MASK | HW_REVID_8139C)
