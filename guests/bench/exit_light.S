# exit_light.S -- benchmark guest: a compute loop with memory stores, the PIT at HZ (100), few exits.
# tools/bench.py runs it under vmexit and runs the loop `compute` alone under bare Unicorn.
.include "../lib/boot.S"

.ifndef ITERATIONS
.set ITERATIONS, 20000000
.endif
.ifndef HZ
.set HZ, 100
.endif
.set LATCH, (1193182 + HZ / 2) / HZ
.set LATCH_LO, LATCH & 0xff
.set LATCH_HI, LATCH >> 8

start_kernel:
    push ebp
    mov ebp, esp
    call trap_init
    mov eax, tick
    push eax
    mov eax, 0x20
    push eax
    call set_intr_gate
    add esp, 8
    call init_pic
    mov al, 0x34                        # PIT channel 0, mode 2, HZ
    out 0x43, al
    mov al, LATCH_LO
    out 0x40, al
    mov al, LATCH_HI
    out 0x40, al
    sti
    call compute
    xor eax, eax
    pop ebp
    ret

# init_pic(): vectors 0x20-0x2f, only IRQ0 unmasked.
init_pic:
    push ebp
    mov ebp, esp
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    pop ebp
    ret

# compute(): ITERATIONS of a store loop over a 4 KiB buffer.
compute:
    push ebp
    mov ebp, esp
    mov ecx, ITERATIONS
    xor eax, eax
.Lcompute_loop:
    mov dword ptr [buffer + eax * 4], ecx
    add edx, ecx
    inc eax
    and eax, 1023
    dec ecx
    jnz .Lcompute_loop
compute_end:
    pop ebp
    ret

# tick: the timer interrupt: count and EOI.
tick:
    push eax
    inc dword ptr [ticks]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd

.align 4
ticks:
    .long 0
.align 16
buffer:
    .fill 1024, 4, 0
