# cpuid.S -- vmexit calibrate: CPUID leaf 0, answered inside the kernel (never reaches user space)
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:
    xor eax, eax
    cpuid
    ret

.include "measure.S"
