# ioapic_read.S -- vmexit calibrate: with KVM's in-kernel irqchip: a read of the I/O APIC's register select (0xfec00000)
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov eax, [0xfec00000]
    ret

.include "measure.S"
