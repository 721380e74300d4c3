"""PCI configuration space as Linux 6.1 probes it: arch/x86/pci/direct.c's type 1 check, probe.c's BAR
sizing, the header type that makes pci_scan_slot look past function 0, and the interrupt routing the
firmware left (pin, line, PIIX3 PIRQ route control)."""
from vmexit.devices.pci import (BMDMA_BASE, BMDMA_SIZE, NIC_BASE, NIC_IRQ, NIC_MMIO_BASE, NIC_SIZE, PCIConfig,
                                PIRQ_ROUTES)


def address(dev, fn=0, reg=0, bus=0):
    return 0x80000000 | bus << 16 | dev << 11 | fn << 8 | reg


def read(pci, dev, fn, reg, size=4):
    pci.write(0xCF8, 4, address(dev, fn, reg & 0xFC))
    return pci.read(0xCFC + (reg & 3), size)


def write(pci, dev, fn, reg, value, size=4):
    pci.write(0xCF8, 4, address(dev, fn, reg & 0xFC))
    pci.write(0xCFC + (reg & 3), size, value)


def size_bar(pci, dev, fn, reg):
    """__pci_read_base: save, write all ones, read the mask back, restore. Returns (mask, restored)."""
    saved = read(pci, dev, fn, reg)
    write(pci, dev, fn, reg, 0xFFFFFFFF)
    mask = read(pci, dev, fn, reg)
    write(pci, dev, fn, reg, saved)
    return mask, read(pci, dev, fn, reg) == saved


def bar_size(mask):
    """pci_size(): the lowest set address bit of the mask (I/O limited to 16 bits on x86)."""
    io = mask & 1
    bits = mask & (0xFFFC & 0xFFFF if io else 0xFFFFFFF0)
    return bits & -bits


def test_type1_probe_and_sanity_check():
    """pci_check_type1: outb 0x01 to 0xcfb, the address register reads back 0x80000000; pci_sanity_check
    finds the host bridge's class 0600 at 00:00.0."""
    pci = PCIConfig()
    pci.write(0xCFB, 1, 0x01)
    pci.write(0xCF8, 4, 0x80000000)
    assert pci.read(0xCF8, 4) == 0x80000000
    assert read(pci, 0, 0, 0x0A, 2) == 0x0600 and read(pci, 0, 0, 0x00, 2) == 0x8086


def test_the_pc_functions_and_absent_ones():
    pci = PCIConfig()
    ids = {(d, f): read(pci, d, f, 0) for d in range(32) for f in range(8)}
    present = {k: v for k, v in ids.items() if v != 0xFFFFFFFF}
    assert present == {(0, 0): 0x12378086, (1, 0): 0x70008086, (1, 1): 0x70108086, (3, 0): 0x813910EC}
    assert read(pci, 0, 0, 0, 4) == 0x12378086
    pci.write(0xCF8, 4, address(0, 0, 0, bus=1))
    assert pci.read(0xCFC, 4) == 0xFFFFFFFF
    pci.write(0xCF8, 4, address(0, 0, 0) & 0x7FFFFFFF)   # enable bit clear: no cycle
    assert pci.read(0xCFC, 2) == 0xFFFF


def test_multifunction_header_lets_linux_find_the_ide_function():
    """pci_scan_slot scans functions 1-7 only when function 0's header type has bit 7."""
    pci = PCIConfig()
    assert read(pci, 1, 0, 0x0E, 1) == 0x80
    assert read(pci, 1, 1, 0x0E, 1) == 0 and read(pci, 3, 0, 0x0E, 1) == 0 and read(pci, 0, 0, 0x0E, 1) == 0


def test_bar_sizing_returns_the_size_mask_and_keeps_the_bar():
    pci = PCIConfig()
    expected = {(1, 1, 0x20): (BMDMA_SIZE, BMDMA_BASE | 1), (3, 0, 0x10): (NIC_SIZE, NIC_BASE | 1),
                (3, 0, 0x14): (0x100, NIC_MMIO_BASE)}
    for (dev, fn, reg), (size, value) in expected.items():
        assert read(pci, dev, fn, reg) == value
        mask, restored = size_bar(pci, dev, fn, reg)
        assert bar_size(mask) == size and mask & 1 == value & 1 and restored
    assert size_bar(pci, 1, 1, 0x20)[0] == 0x0000FFF1    # PIIX3: 16-bit I/O decode
    assert size_bar(pci, 3, 0, 0x10)[0] == 0xFFFFFF01
    unimplemented = [(1, 1, r) for r in (0x10, 0x14, 0x18, 0x1C, 0x24, 0x30)] + \
                    [(3, 0, r) for r in (0x18, 0x1C, 0x20, 0x24, 0x30)] + [(0, 0, 0x10), (1, 0, 0x10)]
    for dev, fn, reg in unimplemented:
        assert size_bar(pci, dev, fn, reg) == (0, True), (dev, fn, hex(reg))
    assert pci.unmodeled_paths == []


def test_moving_a_decoded_bar_is_named():
    lines = []
    pci = PCIConfig(unmodeled=lines.append)
    write(pci, 3, 0, 0x04, 0x0000, 2)                    # decode off (as __pci_read_base does)
    write(pci, 3, 0, 0x10, 0xD001)
    assert lines == []                                   # not decoded: nothing yet
    write(pci, 3, 0, 0x04, 0x0005, 2)                    # I/O decode back on at the new place
    assert lines == ["PCI 00:03.0 BAR0 moved to 0xd000: vmexit's device answers at 0xc100 only (fixed BARs)"]
    write(pci, 3, 0, 0x10, NIC_BASE | 1)
    write(pci, 3, 0, 0x14, 0xE0000000)                   # BAR1: memory, not decoded by vmexit
    write(pci, 3, 0, 0x04, 0x0007, 2)
    assert len(lines) == 1 and read(pci, 3, 0, 0x14) == 0xE0000000
    assert pci.unmodeled_paths == lines


def test_read_only_registers_and_write_one_to_clear_status():
    pci = PCIConfig()
    write(pci, 3, 0, 0x00, 0x12345678)
    write(pci, 3, 0, 0x08, 0xFFFFFFFF)
    write(pci, 3, 0, 0x3D, 0x04, 1)                      # interrupt pin: read-only
    assert read(pci, 3, 0, 0x00) == 0x813910EC and read(pci, 3, 0, 0x08) == 0x02000010
    assert read(pci, 3, 0, 0x3D, 1) == 1
    fn = pci.functions[(0, 3, 0)]
    fn.config[0x07] |= 0x20                              # received master abort
    write(pci, 3, 0, 0x06, 0x2000, 2)
    assert read(pci, 3, 0, 0x06, 2) == 0x0280
    write(pci, 3, 0, 0x0D, 0x40, 1)                      # pcibios_set_master: latency timer
    write(pci, 3, 0, 0x3C, 0x0B, 1)
    assert read(pci, 3, 0, 0x0C) == 0x4000 and read(pci, 3, 0, 0x3C, 1) == 0x0B


def test_command_register_keeps_what_the_guest_enables():
    pci = PCIConfig()
    assert read(pci, 1, 1, 0x04, 2) == 0x0007
    write(pci, 1, 1, 0x04, 0xFFFF, 2)
    assert read(pci, 1, 1, 0x04, 2) == 0x0547
    write(pci, 1, 1, 0x04, 0x0005, 2)
    assert read(pci, 1, 1, 0x04) == 0x02800005


def test_interrupt_routing_the_firmware_left():
    """The NIC's INTA# is line 11; QEMU's i440FX wires slot 3 INTA to PIRQ (0 + 3 - 1) mod 4 = C, whose
    route register (0x62) holds 11. The IDE function has no pin: compatibility mode uses IRQ 14/15."""
    pci = PCIConfig()
    assert read(pci, 3, 0, 0x3C, 2) == 0x0100 | NIC_IRQ
    assert [read(pci, 1, 0, 0x60 + i, 1) for i in range(4)] == list(PIRQ_ROUTES)
    assert read(pci, 1, 0, 0x60 + ((0 + 3 - 1) & 3), 1) == NIC_IRQ
    assert read(pci, 1, 1, 0x3C, 2) == 0


def test_piix3_ide_function_as_ata_piix_reads_it():
    """Compatibility mode on both channels (prog-if bits 0 and 2 clear, bit 7 bus master); IDETIM's decode
    enable (0x41 bit 7) on for the primary channel only (piix_pata_prereset); piix_set_timings writes
    IDETIM and SIDETIM; the ISA bridge's 0x82 takes quirk_passive_release's write."""
    pci = PCIConfig()
    assert read(pci, 1, 1, 0x08) >> 8 == 0x010180
    assert read(pci, 1, 1, 0x41, 1) & 0x80 and not read(pci, 1, 1, 0x43, 1) & 0x80
    write(pci, 1, 1, 0x40, 0xE307, 2)
    write(pci, 1, 1, 0x44, 0x0B, 1)
    assert read(pci, 1, 1, 0x40, 2) == 0xE307 and read(pci, 1, 1, 0x44, 1) == 0x0B
    write(pci, 1, 1, 0x54, 0xFFFFFFFF)                    # IOCFG is an ICH register: reads 0 here
    assert read(pci, 1, 1, 0x54) == 0
    write(pci, 1, 0, 0x82, 0x02, 1)
    assert read(pci, 1, 0, 0x82, 1) == 0x02


def test_nic_revision_is_one_8139too_drives():
    """rtl8139_init_one declines revision >= 0x20 (an 8139C+, for 8139cp)."""
    pci = PCIConfig()
    assert read(pci, 3, 0, 0x08, 1) < 0x20


def test_byte_and_word_accesses_at_each_data_port():
    pci = PCIConfig()
    pci.write(0xCF8, 4, address(3, 0, 0x00))
    assert [pci.read(0xCFC + i, 1) for i in range(4)] == [0xEC, 0x10, 0x39, 0x81]
    assert pci.read(0xCFE, 2) == 0x8139
    pci.write(0xCF8, 4, address(3, 0, 0xFC))
    pci.write(0xCFF, 4, 0xFFFFFFFF)                      # runs off the end of the space: dropped
    assert pci.read(0xCFC, 4) == 0
