# rdmsr.S -- vmexit calibrate: RDMSR of IA32_APIC_BASE (0x1b), answered inside the kernel
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov ecx, 0x1b
    rdmsr
    ret

.include "measure.S"
