# pic_out.S -- vmexit calibrate: with KVM's in-kernel irqchip: a write of the 8259A mask (0x21), handled inside the kernel
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov al, 0xff
    out 0x21, al
    ret

.include "measure.S"
