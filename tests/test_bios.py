"""What the BIOS leaves: the MP tables (valid checksums, one CPU, one I/O APIC, ISA routing) and the
multiboot memory map, as a kernel finds them in guest memory."""
import struct

from vmexit import bios
from vmexit.machine import MBI_ADDRESS, X86Machine


def booted(ram=64 << 20):
    m = X86Machine(ram)
    m.boot_multiboot(0x100000)
    return m


def test_mp_floating_pointer_and_table():
    m = booted()
    ebda = struct.unpack_from("<H", m.ram, 0x40E)[0] << 4
    assert struct.unpack_from("<H", m.ram, 0x413)[0] == 639 and ebda == bios.EBDA
    fp = bytes(m.ram[ebda:ebda + 16])
    assert fp[:4] == b"_MP_" and sum(fp) & 0xFF == 0 and fp[9] == 4 and fp[12] & 0x80 == 0   # no IMCR
    table_at = struct.unpack_from("<I", fp, 4)[0]
    length = struct.unpack_from("<H", m.ram, table_at + 4)[0]
    table = bytes(m.ram[table_at:table_at + length])
    assert table[:4] == b"PCMP" and sum(table) & 0xFF == 0
    count, lapic = struct.unpack_from("<H", table, 34)[0], struct.unpack_from("<I", table, 36)[0]
    assert lapic == 0xFEE00000
    kinds, pos, routes, buses = [], 44, {}, {}
    for _ in range(count):
        kind = table[pos]
        kinds.append(kind)
        if kind == 1:
            buses[table[pos + 1]] = table[pos + 2:pos + 8]
        if kind == 3:
            flags, bus, irq, apic, pin = struct.unpack_from("<HBBBB", table, pos + 2)
            routes[buses[bus].strip(), irq] = (apic, pin, flags)
        pos += 20 if kind == 0 else 8
    assert kinds.count(0) == 1 and kinds.count(2) == 1 and kinds.count(4) == 2
    assert buses == {0: b"PCI   ", 1: b"ISA   "}    # the PCI bus's MP id is its bus number (Linux matches them)
    isa = {irq: r for (bus, irq), r in routes.items() if bus == b"ISA"}
    assert isa[0] == (1, 2, 0) and isa[14] == (1, 14, 0) and 2 not in isa and len(isa) == 15
    # the NIC, 00:03.0 INTA#: source IRQ device 3 << 2 | INTA (0), to pin 11, edge, active high
    assert {irq: r for (bus, irq), r in routes.items() if bus == b"PCI"} == {0x0C: (1, 11, 0x0005)}


def test_multiboot_memory_map_covers_guest_ram():
    m = booted(512 << 20)
    flags, lower, upper = struct.unpack_from("<III", m.ram, MBI_ADDRESS)
    assert flags & 0x41 == 0x41 and lower == 639 and upper == (512 << 10) - 1024
    length, addr = struct.unpack_from("<II", m.ram, MBI_ADDRESS + 44)
    entries = [struct.unpack_from("<IQQI", m.ram, addr + i) for i in range(0, length, 24)]
    assert [(base, size, kind) for _, base, size, kind in entries] == [
        (0, 0x9FC00, 1), (0x9FC00, 0x100000 - 0x9FC00, 2), (0x100000, (512 << 20) - 0x100000, 1)]
