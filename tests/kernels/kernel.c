/* kernel.c -- the shared part of the test kernels (see kernel.h). */
#include "kernel.h"

#define COM1 0x3f8

void serial_init(void)
{
    outb(COM1 + 1, 0x00);           /* no interrupts */
    outb(COM1 + 3, 0x80);           /* divisor latch */
    outb(COM1 + 0, 0x01);           /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);           /* 8N1 */
}

void putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

void putu(u32 v)
{
    char buf[12];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        putc(buf[--i]);
}

void machine_exit(int code)
{
    outb(0xf4, (u8)code);
    for (;;) {
        cli();
        hlt();
    }
}

/* descriptor tables ------------------------------------------------------------------------------ */
static u32 gdt[12];
static u32 tss[26];
static u32 idt[2 * 256];

static void gdt_set(int i, u32 base, u32 limit, u8 access, u8 flags)
{
    gdt[2 * i] = (limit & 0xffff) | (base << 16);
    gdt[2 * i + 1] = ((base >> 16) & 0xff) | ((u32)access << 8) | (limit & 0xf0000)
                     | ((u32)flags << 20) | (base & 0xff000000);
}

void gdt_init(u32 kernel_stack_top)
{
    struct { u16 limit; u32 base; } __attribute__((packed)) d;
    gdt_set(0, 0, 0, 0, 0);
    gdt_set(1, 0, 0xfffff, 0x9a, 0xc);     /* kernel code */
    gdt_set(2, 0, 0xfffff, 0x92, 0xc);     /* kernel data */
    gdt_set(3, 0, 0xfffff, 0xfa, 0xc);     /* user code, DPL 3 */
    gdt_set(4, 0, 0xfffff, 0xf2, 0xc);     /* user data, DPL 3 */
    gdt_set(5, (u32)tss, sizeof(tss) - 1, 0x89, 0x0);   /* 32-bit TSS */
    tss[1] = kernel_stack_top;             /* ESP0 */
    tss[2] = KERNEL_DS;                    /* SS0 */
    d.limit = sizeof(gdt) - 1;
    d.base = (u32)gdt;
    __asm__ volatile("lgdt %0" : : "m"(d));
    __asm__ volatile("ljmp $0x08, $1f\n1:\n"
                     "mov $0x10, %%ax\nmov %%ax, %%ds\nmov %%ax, %%es\nmov %%ax, %%ss\n"
                     "mov %%ax, %%fs\nmov %%ax, %%gs\n" : : : "eax");
    __asm__ volatile("ltr %w0" : : "r"(TSS_SEL));
}

static handler_t handlers[256];

void set_gate(int vector, void (*handler)(void), int dpl)
{
    u32 a = (u32)handler;
    idt[2 * vector] = (a & 0xffff) | (KERNEL_CS << 16);
    idt[2 * vector + 1] = (a & 0xffff0000) | 0x8e00 | ((u32)dpl << 13);   /* interrupt gate */
}

void idt_init(void)
{
    struct { u16 limit; u32 base; } __attribute__((packed)) d;
    for (int v = 0; v < 48; v++)
        set_gate(v, vector_stubs[v], 0);
    d.limit = sizeof(idt) - 1;
    d.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(d));
}

void on_interrupt(int vector, handler_t h)
{
    handlers[vector] = h;
}

void interrupt_dispatch(struct regs *r)
{
    if (r->vector < 256 && handlers[r->vector]) {
        handlers[r->vector](r);
        return;
    }
    puts("unexpected interrupt ");
    putu(r->vector);
    puts(" at ");
    putu(r->eip);
    puts("\n");
    machine_exit(3);
}

/* 8259 PIC, 8254 PIT ---------------------------------------------------------------------------- */
void pic_init(u16 unmask)
{
    outb(0x20, 0x11); outb(0xa0, 0x11);   /* ICW1: edge, cascade, ICW4 */
    outb(0x21, 0x20); outb(0xa1, 0x28);   /* vectors 0x20 and 0x28 */
    outb(0x21, 0x04); outb(0xa1, 0x02);   /* cascade on IRQ2 */
    outb(0x21, 0x01); outb(0xa1, 0x01);   /* 8086 mode */
    if (unmask & 0xff00)
        unmask |= 1 << 2;                 /* the cascade */
    outb(0x21, (u8)~unmask);
    outb(0xa1, (u8)~(unmask >> 8));
}

void pic_eoi(int irq)
{
    if (irq >= 8)
        outb(0xa0, 0x20);
    outb(0x20, 0x20);
}

void pit_init(u32 hz)
{
    u32 latch = (1193182 + hz / 2) / hz;
    outb(0x43, 0x34);
    outb(0x40, (u8)latch);
    outb(0x40, (u8)(latch >> 8));
}

u32 read_cr2(void)
{
    u32 v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

void enter_user(void (*entry)(void), u32 user_stack)
{
    __asm__ volatile("mov $0x23, %%ax\nmov %%ax, %%ds\nmov %%ax, %%es\nmov %%ax, %%fs\nmov %%ax, %%gs\n"
                     "pushl $0x23\npushl %1\npushl $0x202\npushl $0x1b\npushl %0\niret\n"
                     : : "r"(entry), "r"(user_stack) : "eax", "memory");
    for (;;)
        ;
}
