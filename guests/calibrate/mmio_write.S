# mmio_write.S -- vmexit calibrate: a 32-bit write where no memory slot is (0xd0000000): KVM_EXIT_MMIO to user space and back
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov [0xd0000000], eax
    ret

.include "measure.S"
