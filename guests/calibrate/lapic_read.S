# lapic_read.S -- vmexit calibrate: with KVM's in-kernel irqchip: a read of the local APIC version register (0xfee00030)
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov eax, [0xfee00030]
    ret

.include "measure.S"
