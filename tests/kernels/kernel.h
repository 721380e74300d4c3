/* kernel.h -- what the test kernels share: port I/O, the serial console, descriptor tables with a
 * ring-3 code and data segment and a TSS, interrupt gates, the 8259 PIC and the 8254 PIT.
 * Written for vmexit's tests; every kernel boots as a multiboot ELF (boot.S, link.ld). */
#ifndef KERNEL_H
#define KERNEL_H

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_CS 0x1b
#define USER_DS 0x23
#define TSS_SEL 0x28

struct regs {               /* what the common entry stub pushes, lowest address first */
    u32 edi, esi, ebp, esp_dummy, ebx, edx, ecx, eax;
    u32 vector, error;
    u32 eip, cs, eflags, user_esp, user_ss;   /* user_esp/user_ss only from ring 3 */
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline void sti(void) { __asm__ volatile("sti"); }
static inline void cli(void) { __asm__ volatile("cli"); }
static inline void hlt(void) { __asm__ volatile("hlt"); }

void serial_init(void);
void putc(char c);
void puts(const char *s);
void putu(u32 v);
void gdt_init(u32 kernel_stack_top);
void idt_init(void);
void set_gate(int vector, void (*handler)(void), int dpl);
void pic_init(u16 unmask);
void pic_eoi(int irq);
void pit_init(u32 hz);
void machine_exit(int code) __attribute__((noreturn));
typedef void (*handler_t)(struct regs *r);
void on_interrupt(int vector, handler_t h);
extern void (*const vector_stubs[48])(void);
void syscall_stub(void);
void enter_user(void (*entry)(void), u32 user_stack);
u32 read_cr2(void);
#endif
