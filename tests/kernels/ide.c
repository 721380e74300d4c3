/* ide.c -- interrupt-driven PIO on both drives of the primary channel: per drive, WRITE SECTORS of one
 * sector (status poll for DRQ, outsl, then the completion interrupt on IRQ14), READ SECTORS back
 * (the interrupt says the data is there, insl), compare; then read the sector each image came with. */
#include "kernel.h"

#define DATA 0x1f0
#define STATUS 0x1f7
static volatile u32 irqs;
static u32 buf[128], back[128];

static void ide_irq(struct regs *r)
{
    (void)r;
    inb(STATUS);                        /* reading the status acknowledges INTRQ */
    irqs++;
    pic_eoi(14);
}

static void wait_irq(u32 n)
{
    while (irqs < n)
        __asm__ volatile("sti; hlt; cli");
}

static void command(int drive, u32 lba, u8 cmd)
{
    outb(0x1f6, (u8)(0xe0 | (drive << 4) | ((lba >> 24) & 0x0f)));
    outb(0x1f2, 1);
    outb(0x1f3, (u8)lba);
    outb(0x1f4, (u8)(lba >> 8));
    outb(0x1f5, (u8)(lba >> 16));
    outb(STATUS, cmd);
}

static int drive_test(int drive, u32 lba)
{
    u32 n = irqs;
    for (int i = 0; i < 128; i++)
        buf[i] = 0x1000u * (u32)(drive + 1) + (u32)i;
    command(drive, lba, 0x30);
    while (!(inb(STATUS) & 0x08))
        ;
    __asm__ volatile("cld; rep outsl" : : "S"(buf), "c"(128), "d"(DATA) : "memory");
    wait_irq(n + 1);
    command(drive, lba, 0x20);
    wait_irq(n + 2);
    __asm__ volatile("cld; rep insl" : : "D"(back), "c"(128), "d"(DATA) : "memory");
    for (int i = 0; i < 128; i++)
        if (back[i] != buf[i])
            return 1;
    return 0;
}

static u32 first_word(int drive)
{
    u32 n = irqs;
    command(drive, 0, 0x20);
    wait_irq(n + 1);
    __asm__ volatile("cld; rep insl" : : "D"(back), "c"(128), "d"(DATA) : "memory");
    return back[0];
}

int kmain(u32 magic, u32 info)
{
    (void)magic; (void)info;
    serial_init();
    idt_init();
    pic_init(1 << 14);
    on_interrupt(0x2e, ide_irq);
    outb(0x3f6, 0x00);                  /* nIEN clear: interrupts on */
    int bad = drive_test(0, 1) + drive_test(1, 2);
    puts(bad ? "ide: MISMATCH\n" : "ide: both drives ok\n");
    puts("master sector 0: ");
    putu(first_word(0));
    puts("\nslave sector 0: ");
    putu(first_word(1));
    puts("\nirqs ");
    putu(irqs);
    puts("\n");
    return bad;
}
