"""RTL8139: the receive ring as 8139too reads it, transmit descriptors, ISR/IMR interrupts."""
import struct
import zlib

from vmexit.devices.rtl8139 import CR_BUFE, ISR_ROK, ISR_RXOVW, ISR_TOK, MAC, RTL8139

BASE = 0xC100
RAM = 1 << 20


def make():
    ram = bytearray(RAM)
    irqs, sent = [], []

    def read(addr, n):
        return bytes(ram[addr:addr + n]) if addr + n <= RAM else None

    def write(addr, data):
        if addr + len(data) > RAM:
            return False
        ram[addr:addr + len(data)] = data
        return True
    nic = RTL8139(BASE, read, write, lambda: irqs.append(1), sent.append)
    nic.write(BASE + 0x30, 4, 0x40000)        # RBSTART
    nic.write(BASE + 0x44, 4, 0x0000000F)     # RCR: 8 KiB ring, accept all
    nic.write(BASE + 0x37, 1, 0x0C)           # RE | TE
    nic.write(BASE + 0x3C, 2, 0x0005)         # IMR: ROK | TOK
    return nic, ram, irqs, sent


def test_mac_and_empty_ring():
    nic, *_ = make()
    assert bytes(nic.read(BASE + i, 1) for i in range(6)) == MAC
    assert nic.read(BASE + 0x37, 1) & CR_BUFE


def test_receive_like_8139too_reads_it():
    nic, ram, irqs, _ = make()
    frame = bytes(range(60))
    assert nic.receive(frame)
    assert nic.read(BASE + 0x3E, 2) & ISR_ROK and irqs == [1]
    assert not nic.read(BASE + 0x37, 1) & CR_BUFE
    cur = (nic.read(BASE + 0x38, 2) + 16) & 0xFFFF
    status, length = struct.unpack_from("<HH", ram, 0x40000 + cur)
    assert status & 1 and length == 64
    assert ram[0x40000 + cur + 4:0x40000 + cur + 64] == frame
    assert struct.unpack_from("<I", ram, 0x40000 + cur + 64)[0] == zlib.crc32(frame)
    cur = (cur + length + 4 + 3) & ~3
    nic.write(BASE + 0x38, 2, cur - 16)       # rtl8139_rx: CAPR = cur_rx - 16
    assert nic.read(BASE + 0x37, 1) & CR_BUFE
    nic.write(BASE + 0x3E, 2, ISR_ROK)        # ack
    assert nic.read(BASE + 0x3E, 2) == 0


def test_ring_wraps_and_overflows():
    nic, ram, irqs, _ = make()
    frame = bytes(1500)
    accepted = sum(nic.receive(frame) for _ in range(6))
    assert accepted == 5 and nic.read(BASE + 0x3E, 2) & ISR_RXOVW  # 8 KiB holds five 1,508-byte slots
    nic.write(BASE + 0x38, 2, ((5 * 1508) - 16) & 0xFFFF)          # consume them all
    assert nic.receive(frame) and nic.cbr == (6 * 1508) % 8192


def test_transmit_descriptor():
    nic, ram, irqs, sent = make()
    ram[0x50000:0x50000 + 100] = bytes(range(100))
    nic.write(BASE + 0x24, 4, 0x50000)        # TSAD1
    nic.write(BASE + 0x14, 4, 100)            # TSD1: size 100, OWN clear: send
    assert sent == [bytes(range(100))]
    tsd = nic.read(BASE + 0x14, 4)
    assert tsd & (1 << 15) and tsd & (1 << 13)  # TOK, OWN
    assert nic.read(BASE + 0x3E, 2) & ISR_TOK and irqs == [1]


def test_napi_mask_and_unmask():
    nic, ram, irqs, _ = make()
    nic.write(BASE + 0x3C, 2, 0x0004)         # mask RX (NAPI poll scheduled)
    nic.receive(bytes(60))
    assert irqs == []                          # no interrupt while masked
    nic.write(BASE + 0x3C, 2, 0x0005)         # unmask with ROK still pending: interrupt
    assert irqs == [1]


def test_reset():
    nic, *_ = make()
    nic.receive(bytes(60))
    nic.write(BASE + 0x37, 1, 0x10)
    assert nic.read(BASE + 0x37, 1) == CR_BUFE and nic.read(BASE + 0x3E, 2) == 0
    assert bytes(nic.read(BASE + i, 1) for i in range(6)) == MAC


def test_dma_outside_ram_is_refused():
    nic, ram, irqs, sent = make()
    nic.write(BASE + 0x30, 4, RAM + 0x1000)   # RBSTART beyond guest RAM
    assert not nic.receive(bytes(60)) and nic.read(BASE + 0x3E, 2) & 0x02  # RER
    nic.write(BASE + 0x20, 4, RAM - 10)        # TSAD0 running off the end of RAM
    nic.write(BASE + 0x10, 4, 100)
    assert sent == [] and nic.read(BASE + 0x3E, 2) & 0x08  # TER, nothing sent


HW_REVID_MASK = 0x7CC00000


def hw_revid(b30, b29, b28, b27, b26, b23, b22):
    return b30 << 30 | b29 << 29 | b28 << 28 | b27 << 27 | b26 << 26 | b23 << 23 | b22 << 22


def test_chip_version_is_an_rtl8139c_and_stays():
    """rtl8139_init_board: TxConfig & HW_REVID_MASK against rtl_chip_info; "RTL-8139C" is
    HW_REVID(1, 1, 1, 0, 1, 0, 0). rtl8139_hw_start's TxConfig write and a reset leave the bits."""
    nic, *_ = make()
    assert nic.read(BASE + 0x40, 4) & HW_REVID_MASK == hw_revid(1, 1, 1, 0, 1, 0, 0)
    nic.write(BASE + 0x40, 4, 0x03000700)                 # rtl8139_tx_config
    assert nic.read(BASE + 0x40, 4) == hw_revid(1, 1, 1, 0, 1, 0, 0) | 0x03000700
    nic.write(BASE + 0x37, 1, 0x10)
    assert nic.read(BASE + 0x40, 4) == hw_revid(1, 1, 1, 0, 1, 0, 0)


def test_reset_clears_itself_at_once():
    """rtl8139_chip_reset polls ChipCmd until CmdReset reads 0: the first read does."""
    nic, *_ = make()
    nic.write(BASE + 0x37, 1, 0x10)
    assert nic.read(BASE + 0x37, 1) & 0x10 == 0


def read_eeprom(nic, location, addr_len):
    """8139too's read_eeprom, register access for register access (Cfg9346 at 0x50)."""
    cfg = BASE + 0x50
    ee_enb, ee_cs, ee_clk, ee_di, ee_do = 0x88, 0x08, 0x04, 0x02, 0x01
    read_cmd = location | (6 << addr_len)
    nic.write(cfg, 1, ee_enb & ~ee_cs)
    nic.write(cfg, 1, ee_enb)
    nic.read(cfg, 1)
    for i in range(4 + addr_len, -1, -1):
        data = ee_di if read_cmd & (1 << i) else 0
        nic.write(cfg, 1, ee_enb | data)
        nic.read(cfg, 1)
        nic.write(cfg, 1, ee_enb | data | ee_clk)
        nic.read(cfg, 1)
    nic.write(cfg, 1, ee_enb)
    nic.read(cfg, 1)
    value = 0
    for _ in range(16):
        nic.write(cfg, 1, ee_enb | ee_clk)
        nic.read(cfg, 1)
        value = value << 1 | (1 if nic.read(cfg, 1) & ee_do else 0)
        nic.write(cfg, 1, ee_enb)
        nic.read(cfg, 1)
    nic.write(cfg, 1, 0)
    nic.read(cfg, 1)
    return value


def test_mac_from_the_eeprom_as_rtl8139_init_one_reads_it():
    """addr_len = read_eeprom(ioaddr, 0, 8) == 0x8129 ? 8 : 6: a 93C46 takes 6 address bits, so the
    8-bit probe reads word 0 shifted by two (and word 1's top bits) and the driver uses 6; then words
    7-9 hold the MAC, low byte first."""
    nic, *_ = make()
    probe = read_eeprom(nic, 0, 8)
    assert probe == (0x8129 << 2 | 0x10EC >> 14) & 0xFFFF and probe != 0x8129
    assert read_eeprom(nic, 0, 6) == 0x8129
    words = [read_eeprom(nic, 7 + i, 6) for i in range(3)]
    assert b"".join(w.to_bytes(2, "little") for w in words) == MAC
    assert nic.read(BASE + 0x50, 1) == 0                   # out of programming mode: the register
    nic.write(BASE + 0x50, 1, 0xC0)                        # Cfg9346_Unlock
    assert nic.read(BASE + 0x50, 1) == 0xC0


def test_mii_link_up_at_100_full():
    """mdio_read for phy 32 maps MII 0/1/4/5 to BMCR/BMSR/ANAR/ANLPAR; mii_check_media: BMSR link bit,
    then mii_nway_result(advertise & lpa) -> 100 Mb/s full duplex (LPA_100FULL, 0x0100)."""
    nic, *_ = make()
    bmsr, anar, anlpar = (nic.read(BASE + off, 2) for off in (0x64, 0x66, 0x68))
    assert bmsr & 0x0004 and bmsr & 0x0020                  # link status, negotiation complete
    common = anar & anlpar
    assert common & 0x0100 and nic.read(BASE + 0x62, 2) & 0x1000
    assert nic.read(BASE + 0x58, 1) & 0x04 == 0             # MediaStatus: LINKB clear (link ok)


def test_interrupt_line_level():
    nic, ram, irqs, _ = make()
    assert not nic.irq_asserted()
    nic.receive(bytes(60))
    assert nic.irq_asserted()
    nic.write(BASE + 0x3C, 2, 0x0004)                       # RX masked: deasserted
    assert not nic.irq_asserted()
    nic.write(BASE + 0x3C, 2, 0x0005)
    nic.write(BASE + 0x3E, 2, 0x0001)                       # acked
    assert not nic.irq_asserted()
