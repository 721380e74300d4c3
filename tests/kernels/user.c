/* user.c -- a user process in ring 3, entered with iret, asking the kernel for work through int 0x80:
 * write(string) prints on the serial port, exit(code) ends the machine. The kernel's stack for
 * interrupts from ring 3 is the TSS's ESP0. */
#include "kernel.h"

#define SYS_WRITE 1
#define SYS_EXIT 2

static u8 kernel_stack[4096] __attribute__((aligned(16)));
static u8 user_stack[4096] __attribute__((aligned(16)));
static u32 syscalls;

static int syscall(u32 nr, u32 arg)
{
    int ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(arg) : "memory");
    return ret;
}

static void user_main(void)
{
    syscall(SYS_WRITE, (u32)"user: hello from ring 3\n");
    syscall(SYS_WRITE, (u32)"user: second call\n");
    syscall(SYS_EXIT, 0);
}

static void sys_call(struct regs *r)
{
    syscalls++;
    if ((r->cs & 3) != 3) {
        puts("kernel: system call not from ring 3\n");
        machine_exit(4);
    }
    if (r->eax == SYS_WRITE) {
        puts((const char *)r->ebx);
        r->eax = 0;
    } else if (r->eax == SYS_EXIT) {
        puts("kernel: exit after ");
        putu(syscalls);
        puts(" system calls\n");
        machine_exit((int)r->ebx);
    }
}

int kmain(u32 magic, u32 info)
{
    (void)info;
    serial_init();
    puts(magic == 0x2BADB002 ? "kernel: multiboot\n" : "kernel: no multiboot\n");
    gdt_init((u32)kernel_stack + sizeof(kernel_stack));
    idt_init();
    set_gate(0x80, syscall_stub, 3);
    on_interrupt(0x80, sys_call);
    enter_user(user_main, (u32)user_stack + sizeof(user_stack));
    return 1;
}
