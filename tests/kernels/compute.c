/* compute.c -- a compute loop in C under a PIT tick at HZ: each iteration multiplies, adds and stores
 * once (the C library's linear congruential step into a 4 KiB buffer), the gcc -O1 twin of
 * guests/bench/exit_light.S. tools/bench.py builds it with -DITERATIONS=N -DHZ=100 and runs compute()
 * alone under bare Unicorn for its exit-light-gcc case. The tick's handler counts and sends the EOI;
 * at the end the kernel prints the last value and the ticks it saw. */
#include "kernel.h"

#ifndef ITERATIONS
#define ITERATIONS 2000000
#endif
#ifndef HZ
#define HZ 1000                         /* tools/bench.py builds it with HZ=100, as exit_light.S ticks */
#endif

u32 buffer[1024];
static volatile u32 ticks;

static void tick(struct regs *r)
{
    (void)r;
    ticks++;
    pic_eoi(0);
}

/* compute(n): not inlined, so that it is a function of its own to run alone. */
__attribute__((noinline)) u32 compute(u32 n)
{
    u32 x = 1;
    for (u32 i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        buffer[i & 1023] = x;
    }
    return x;
}

int kmain(u32 magic, u32 info)
{
    (void)magic; (void)info;
    serial_init();
    idt_init();
    on_interrupt(0x20, tick);
    pic_init(1 << 0);                   /* the PIT only */
    pit_init(HZ);
    sti();
    u32 x = compute(ITERATIONS);
    cli();
    puts("compute: ");
    putu(x);
    puts(" after ");
    putu(ticks);
    puts(" ticks\n");
    return 0;
}
