# mmio.S -- benchmark guest: a loop of LAPIC register accesses (TPR read, EOI write).
.include "../lib/boot.S"

.ifndef ITERATIONS
.set ITERATIONS, 100000
.endif

start_kernel:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, ITERATIONS
.Lstart_loop:
    mov eax, dword ptr [0xfee00080]
    mov dword ptr [0xfee000b0], 0
    dec ebx
    jnz .Lstart_loop
    xor eax, eax
    pop ebx
    pop ebp
    ret
