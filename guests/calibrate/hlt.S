# hlt.S -- vmexit calibrate: HLT with interrupts off and no in-kernel irqchip: KVM_EXIT_HLT to user space, which enters again
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    hlt
    ret

.include "measure.S"
