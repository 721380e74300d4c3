"""What a PC BIOS and a multiboot loader leave in low memory for the kernel to find.

- BIOS data area (IBM PC/AT technical reference): COM1 at 0x400, the EBDA segment at 0x40E, base
  memory in KiB at 0x413 (639: the EBDA takes the last KiB below 640 KiB).
- MP tables (Intel MultiProcessor Specification 1.4): the floating pointer in the first KiB of the
  EBDA (the first place the spec says to search) and the configuration table after it: one processor
  (the bootstrap CPU, LAPIC id 0, version 0x14 as KVM reports), the PCI bus (MP bus id 0: Linux's
  IO_APIC_get_PCI_irq_vector matches a PCI bus number against the MP source bus id, so the ids follow
  the PCI numbering and the ISA bus comes after, as SeaBIOS's src/fw/mptable.c lays them out), the ISA
  bus (id 1), one I/O APIC (id 1, version 0x11, 0xfec00000), I/O interrupt entries for ISA IRQs 0-15
  (IRQ0 to pin 2, the others to their own pins; IRQ2 is the cascade and has none), one for each PCI
  function's INTx (source IRQ = device << 2 | pin - 1, spec table 4-16: the NIC's INTA# to pin 11, its
  interrupt line; edge-triggered, active high, as the NIC model raises a new edge per new cause) and
  the local interrupts (ExtINT on LINT0, NMI on LINT1). Feature byte 2 bit 7 clear: virtual-wire mode,
  no IMCR. Every checksum is valid.
- Multiboot memory map (Multiboot 0.6.96, section 3.3): usable RAM below the EBDA, the EBDA and the
  BIOS area reserved, usable RAM from 1 MiB to the end of guest memory.
"""
from __future__ import annotations

import struct

EBDA = 0x9FC00
BASE_MEMORY_KIB = EBDA // 1024
MP_TABLE = EBDA + 16
IOAPIC_ID, IOAPIC_ADDRESS = 1, 0xFEC00000
PCI_BUS, ISA_BUS = 0, 1
#: PCI functions with an INTx pin routed through the I/O APIC: (device, pin 1-4 = INTA#-INTD#, I/O APIC pin).
#: Only the NIC (devices/pci.py: 00:03.0, INTA#, line 11); the IDE function runs in compatibility mode
#: on ISA IRQs 14/15.
PCI_INTERRUPTS = ((3, 1, 11),)
EDGE_ACTIVE_HIGH = 0x0005   # MP spec table 4-10: polarity 01 active high, trigger mode 01 edge


def _checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def bios_data_area() -> list[tuple[int, bytes]]:
    return [(0x400, struct.pack("<H", 0x3F8)), (0x40E, struct.pack("<H", EBDA >> 4)),
            (0x413, struct.pack("<H", BASE_MEMORY_KIB))]


def mp_tables(cpu_signature: int) -> list[tuple[int, bytes]]:
    entries = [struct.pack("<BBBBII", 0, 0, 0x14, 0x03, cpu_signature, 0x0781ABFD) + bytes(8)]  # processor, 20 B
    entries.append(struct.pack("<BB6s", 1, PCI_BUS, b"PCI   "))                                      # buses
    entries.append(struct.pack("<BB6s", 1, ISA_BUS, b"ISA   "))
    entries.append(struct.pack("<BBBBI", 2, IOAPIC_ID, 0x11, 0x01, IOAPIC_ADDRESS))                  # I/O APIC
    for irq in range(16):
        if irq == 2:
            continue
        pin = 2 if irq == 0 else irq
        entries.append(struct.pack("<BBHBBBB", 3, 0, 0, ISA_BUS, irq, IOAPIC_ID, pin))              # INT, conforming
    for device, pin, apic_pin in PCI_INTERRUPTS:
        entries.append(struct.pack("<BBHBBBB", 3, 0, EDGE_ACTIVE_HIGH, PCI_BUS, device << 2 | (pin - 1),
                                   IOAPIC_ID, apic_pin))
    entries.append(struct.pack("<BBHBBBB", 4, 3, 0, ISA_BUS, 0, 0, 0))                              # ExtINT -> LINT0
    entries.append(struct.pack("<BBHBBBB", 4, 1, 0, ISA_BUS, 0, 0xFF, 1))                           # NMI -> LINT1
    body = b"".join(entries)
    header = bytearray(struct.pack("<4sHBB8s12sIHHIHBB", b"PCMP", 44 + len(body), 4, 0, b"VMEXIT  ",
                                   b"VIRTUAL PC  ", 0, 0, len(entries), 0xFEE00000, 0, 0, 0))
    table = bytes(header) + body
    header[7] = _checksum(table)
    table = bytes(header) + body
    fp = bytearray(struct.pack("<4sIBBBBBBBB", b"_MP_", MP_TABLE, 1, 4, 0, 0, 0, 0, 0, 0))
    fp[10] = _checksum(bytes(fp))
    return [(EBDA, bytes(fp)), (MP_TABLE, table)]


def memory_regions(ram_size: int) -> list[tuple[int, int, int]]:
    """(base, length, type) of the PC's memory, in e820 types (1 usable, 2 reserved): usable RAM below
    the EBDA, the EBDA and the BIOS area reserved, usable RAM from 1 MiB to the end of guest memory."""
    return [(0, EBDA, 1), (EBDA, 0x100000 - EBDA, 2), (0x100000, ram_size - 0x100000, 1)]


def memory_map(ram_size: int) -> bytes:
    """Multiboot mmap entries: {size = 20, u64 base, u64 length, u32 type (1 usable, 2 reserved)}."""
    return b"".join(struct.pack("<IQQI", 20, base, length, kind) for base, length, kind in memory_regions(ram_size))
