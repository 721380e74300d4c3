/* editor.c -- a line editor on the serial port, driven by the UART's receive interrupt (IRQ4 through
 * the 8259): each byte typed is echoed, backspace erases, Enter ends the line and prints it back;
 * the line "quit" ends the machine. Idles in hlt between bytes. */
#include "kernel.h"

#define COM1 0x3f8
static char line[80];
static u32 len, lines;
static volatile int done;

static void got_char(char c)
{
    if (c == '\r' || c == '\n') {
        line[len] = 0;
        puts("\nline: ");
        puts(line);
        puts("\n");
        lines++;
        if (len == 4 && line[0] == 'q' && line[1] == 'u' && line[2] == 'i' && line[3] == 't')
            done = 1;
        len = 0;
    } else if (c == 0x7f || c == 0x08) {
        if (len) {
            len--;
            puts("\b \b");
        }
    } else if (len < sizeof(line) - 1) {
        line[len++] = c;
        putc(c);
    }
}

static void uart_irq(struct regs *r)
{
    (void)r;
    while (inb(COM1 + 5) & 0x01)
        got_char((char)inb(COM1));
    pic_eoi(4);
}

int kmain(u32 magic, u32 info)
{
    (void)magic; (void)info;
    serial_init();
    idt_init();
    pic_init(1 << 4);
    on_interrupt(0x24, uart_irq);
    outb(COM1 + 1, 0x01);               /* IER: received-data interrupt */
    puts("> ");
    while (!done) {
        __asm__ volatile("sti; hlt; cli");
    }
    puts("editor: ");
    putu(lines);
    puts(" lines\n");
    return 0;
}
