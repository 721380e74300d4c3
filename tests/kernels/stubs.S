/* stubs.S -- one entry per vector 0-47: push a zero error code where the CPU pushes none, push the
 * vector, save the registers, call interrupt_dispatch(regs), restore, iret. */
    .text
.macro stub n
vector_\n:
    .if (\n == 8 || (\n >= 10 && \n <= 14) || \n == 17)
    .else
    pushl $0
    .endif
    pushl $\n
    jmp common
.endm

    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    stub \n
    .endr

    .globl syscall_stub
syscall_stub:
    pushl $0
    pushl $128
    jmp common

common:
    pusha
    push %ds
    push %es
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    lea 8(%esp), %eax
    push %eax
    call interrupt_dispatch
    add $4, %esp
    pop %es
    pop %ds
    popa
    add $8, %esp
    iret

    .section .rodata
    .globl vector_stubs
vector_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .long vector_\n
    .endr
