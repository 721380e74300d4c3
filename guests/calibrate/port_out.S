# port_out.S -- vmexit calibrate: a port write to an unclaimed port (0x80, POST codes): KVM_EXIT_IO to user space and back
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov al, 0
    out 0x80, al
    ret

.include "measure.S"
