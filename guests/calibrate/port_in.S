# port_in.S -- vmexit calibrate: a port read of an unclaimed port (0x80): KVM_EXIT_IO to user space and back
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    in al, 0x80
    ret

.include "measure.S"
