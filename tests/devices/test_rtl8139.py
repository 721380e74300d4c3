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
