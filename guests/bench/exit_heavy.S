# exit_heavy.S -- benchmark guest: port I/O every few instructions, through functions with frame
# pointers (so every exit gets a caller), like the ioread/iowrite accessors of a NIC driver.
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
    call device_poll
    dec ebx
    jnz .Lstart_loop
    xor eax, eax
    pop ebx
    pop ebp
    ret

# device_poll(): read a status register, write a command register: two exits.
device_poll:
    push ebp
    mov ebp, esp
    call ioread8
    push eax
    call iowrite8
    add esp, 4
    pop ebp
    ret

ioread8:
    push ebp
    mov ebp, esp
    mov dx, 0x1f7
    in al, dx
    movzx eax, al
    pop ebp
    ret

iowrite8:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov dx, 0x80
    out dx, al
    pop ebp
    ret
