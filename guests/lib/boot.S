# boot.S -- what every bundled guest starts with: the multiboot header, the entry point, the early
# serial console and the IDT helpers. Included first by each guest (.include is expanded by vmexit
# before keystone runs). Register conventions are cdecl with frame pointers (push ebp; mov ebp, esp),
# so that vmexit can name the caller of every exit from [ebp+4].
# Keystone quirks to respect in every guest: it emits a 16-bit `push` (0x66 prefix) for `push CONSTANT`
# when the constant is a symbol, and a 16-bit `lidt` for `lidt [mem]`: push through a register and
# spell lidt out as bytes. It only accepts shifts and ~ in .set expressions, not in operands.

.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00000003              # page-align modules, give memory info
.set COM1, 0x3f8
.set DEBUG_EXIT, 0xf4                  # QEMU isa-debug-exit
.set BOOT_STACK_TOP, 0x90000           # conventional RAM below the EBDA, as in QEMU and on PCs
.set KERNEL_CS, 0x08                   # the flat code segment a multiboot loader leaves

multiboot_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

_start:
    mov esp, BOOT_STACK_TOP
    xor ebp, ebp                       # the outermost frame: unwinding stops here
    call start_kernel
    push eax
    call machine_exit                  # start_kernel's return value is the exit status

# machine_exit(status): end the run the way QEMU's isa-debug-exit does; hlt with IF=0 if it did not.
machine_exit:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    out DEBUG_EXIT, al
    cli
.Lmachine_exit_halt:
    hlt
    jmp .Lmachine_exit_halt

# early_serial_init(): 8250/16550 setup as Linux's early_serial_init() (arch/x86/kernel/early_printk.c):
# 8N1, no interrupts, no FIFO, DTR+RTS, divisor 1 (115200 baud) through the divisor latch.
early_serial_init:
    push ebp
    mov ebp, esp
    mov dx, COM1 + 3                   # LCR: 8 bits, no parity, 1 stop
    mov al, 0x03
    out dx, al
    mov dx, COM1 + 1                   # IER: no interrupts
    xor al, al
    out dx, al
    mov dx, COM1 + 2                   # FCR: no FIFO
    out dx, al
    mov dx, COM1 + 4                   # MCR: DTR + RTS
    mov al, 0x03
    out dx, al
    mov dx, COM1 + 3                   # set DLAB to reach the divisor
    in al, dx
    mov cl, al
    or al, 0x80
    out dx, al
    mov dx, COM1                       # DLL
    mov al, 0x01
    out dx, al
    mov dx, COM1 + 1                   # DLH
    xor al, al
    out dx, al
    mov dx, COM1 + 3                   # clear DLAB
    mov al, cl
    and al, 0x7f
    out dx, al
    pop ebp
    ret

# serial_putc(c): wait for THR empty (LSR bit 5), then write the byte: one in and one out per byte.
serial_putc:
    push ebp
    mov ebp, esp
    mov dx, COM1 + 5
.Lserial_putc_wait:
    in al, dx
    test al, 0x20
    jz .Lserial_putc_wait
    mov dx, COM1
    mov eax, [ebp + 8]
    out dx, al
    pop ebp
    ret

# early_printk(str): write a NUL-terminated string.
early_printk:
    push ebp
    mov ebp, esp
    push esi
    mov esi, [ebp + 8]
.Learly_printk_next:
    movzx eax, byte ptr [esi]
    test eax, eax
    jz .Learly_printk_done
    push eax
    call serial_putc
    add esp, 4
    inc esi
    jmp .Learly_printk_next
.Learly_printk_done:
    pop esi
    pop ebp
    ret

# set_intr_gate(vector, handler): a present, ring-0, 32-bit interrupt gate in idt_table.
set_intr_gate:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [ebp + 12]
    lea ecx, [idt_table + ecx * 8]
    mov word ptr [ecx], ax
    mov word ptr [ecx + 2], KERNEL_CS
    mov word ptr [ecx + 4], 0x8e00
    shr eax, 16
    mov word ptr [ecx + 6], ax
    pop ebp
    ret

# trap_init(): every vector to ignore_int, then load the IDT.
trap_init:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx
.Ltrap_init_next:
    mov eax, ignore_int
    push eax
    push ebx
    call set_intr_gate
    add esp, 8
    inc ebx
    cmp ebx, 256
    jb .Ltrap_init_next
    # lidt [idt_descr], spelled out: keystone adds a stray 0x66 prefix to lidt.
    .byte 0x0f, 0x01, 0x1d
    .long idt_descr
    pop ebx
    pop ebp
    ret

# ignore_int: an interrupt nobody expects; Linux prints "Unknown interrupt", we just return.
ignore_int:
    iretd

.align 8
idt_descr:
    .word 256 * 8 - 1
    .long idt_table
.align 8
idt_table:
    .fill 256, 8, 0
