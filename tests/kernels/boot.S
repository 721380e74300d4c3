/* boot.S -- multiboot entry shared by the test kernels: a stack, then kmain(magic, info). */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x0
    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    xor %ebp, %ebp
    push %ebx
    push %eax
    call kmain
    push %eax
    call machine_exit

    .bss
    .align 16
    .space 16384
stack_top:
