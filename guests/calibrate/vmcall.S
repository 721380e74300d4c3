# vmcall.S -- vmexit calibrate: VMCALL (Intel) with an unknown hypercall number: KVM answers -KVM_ENOSYS inside the kernel
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    mov eax, 0xffff
    vmcall
    ret

.include "measure.S"
