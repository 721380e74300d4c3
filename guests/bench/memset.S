# memset.S -- benchmark guest: a kernel that clears MEGABYTES MiB above 1 MiB + 1 MiB with one
# `rep stosd` at boot, as kernels zero their memory. tools/bench.py runs it under vmexit (RAM sized to
# fit) and runs `fill` alone under bare Unicorn.
.include "../lib/boot.S"

.ifndef MEGABYTES
.set MEGABYTES, 200
.endif
.set FILL_BASE, 0x200000
.set FILL_DWORDS, MEGABYTES * 262144

start_kernel:
    push ebp
    mov ebp, esp
    call fill
    xor eax, eax
    pop ebp
    ret

# fill(): the whole region in one string instruction.
fill:
    push edi
    mov edi, FILL_BASE
    mov ecx, FILL_DWORDS
    mov eax, 0xa5a5a5a5
    rep stosd
    pop edi
fill_end:
    ret
