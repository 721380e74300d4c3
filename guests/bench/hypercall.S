# hypercall.S -- benchmark guest: a loop of KVM_HC_VAPIC_POLL_IRQ hypercalls (a no-op that only exits).
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
    mov eax, 1
    vmcall
    dec ebx
    jnz .Lstart_loop
    xor eax, eax
    pop ebx
    pop ebp
    ret
