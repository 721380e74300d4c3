# mmio_read.S -- vmexit calibrate: a 32-bit read where no memory slot is (0xd0000000): KVM_EXIT_MMIO to user space and back
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov eax, [0xd0000000]
    ret

.include "measure.S"
