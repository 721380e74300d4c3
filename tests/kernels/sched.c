/* sched.c -- a timer-driven scheduler: two user processes in ring 3 each print their letter ROUNDS
 * times through int 0x80, spinning between prints. The local APIC timer (periodic, 1 kHz on vector
 * 0x20: KVM's 1 GHz APIC bus divided by 16, initial count 62,500; each tick acknowledged with an EOI
 * write) preempts them, and the timer handler switches to the other process by swapping the saved
 * register frames. When both have exited the kernel says so and ends. */
#include "kernel.h"

#define ROUNDS 6
#define SPIN 300000
#define SYS_WRITE 1
#define SYS_EXIT 2

struct task { struct regs frame; int alive; };
static struct task tasks[2];
static int current;
static u32 ticks, switches;
static u8 kernel_stack[4096] __attribute__((aligned(16)));
static u8 stacks[2][4096] __attribute__((aligned(16)));

static int syscall(u32 nr, u32 arg)
{
    int ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(arg) : "memory");
    return ret;
}

static void worker(const char *letter)
{
    for (int i = 0; i < ROUNDS; i++) {
        for (volatile int j = 0; j < SPIN; j++)
            ;
        syscall(SYS_WRITE, (u32)letter);
    }
    syscall(SYS_EXIT, 0);
}

static void task_a(void) { worker("A"); }
static void task_b(void) { worker("B"); }

static void switch_to(struct regs *r, int next)
{
    tasks[current].frame = *r;
    current = next;
    *r = tasks[current].frame;
    switches++;
}

#define APIC 0xfee00000
#define APIC_REG(off) (*(volatile u32 *)(APIC + (off)))

static void timer(struct regs *r)
{
    ticks++;
    APIC_REG(0xb0) = 0;                 /* EOI */
    if (tasks[!current].alive && (r->cs & 3) == 3)
        switch_to(r, !current);
}

static void sys_call(struct regs *r)
{
    if (r->eax == SYS_WRITE) {
        puts((const char *)r->ebx);
    } else if (r->eax == SYS_EXIT) {
        tasks[current].alive = 0;
        if (!tasks[!current].alive) {
            puts("\nsched: both done\n");
            machine_exit(0);
        }
        switch_to(r, !current);
    }
}

static void make_task(int i, void (*entry)(void))
{
    struct regs *f = &tasks[i].frame;
    f->eip = (u32)entry;
    f->cs = USER_CS;
    f->eflags = 0x202;
    f->user_esp = (u32)stacks[i] + sizeof(stacks[i]);
    f->user_ss = USER_DS;
    tasks[i].alive = 1;
}

int kmain(u32 magic, u32 info)
{
    (void)magic; (void)info;
    serial_init();
    gdt_init((u32)kernel_stack + sizeof(kernel_stack));
    idt_init();
    set_gate(0x80, syscall_stub, 3);
    on_interrupt(0x80, sys_call);
    on_interrupt(0x20, timer);
    make_task(0, task_a);
    make_task(1, task_b);
    pic_init(0);                        /* the 8259 all masked: the local APIC's timer only */
    APIC_REG(0xf0) = 0x1ff;             /* SVR: enabled, spurious vector 0xff */
    APIC_REG(0x3e0) = 0x3;              /* divide by 16 */
    APIC_REG(0x320) = 0x20020;          /* LVT timer: periodic, vector 0x20 */
    APIC_REG(0x380) = 62500;            /* initial count: 1 ms */
    enter_user(task_a, tasks[0].frame.user_esp);
    return 1;
}
