# none.S -- vmexit calibrate: the empty probe: the loop's own cost (call, ret, lfence, rdtsc), subtracted from every kind
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003
multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

probe:

    ret

.include "measure.S"
