/* paging.c -- demand paging: the first 4 MiB are identity-mapped, the next 4 MiB have no pages; the
 * page fault handler maps a frame from a pool at the faulting address on first touch. The kernel then
 * writes and sums PAGES pages. */
#include "kernel.h"

#define PAGES 16
#define DEMAND_BASE 0x400000
#define POOL 0x800000

static u32 page_dir[1024] __attribute__((aligned(4096)));
static u32 low_table[1024] __attribute__((aligned(4096)));
static u32 demand_table[1024] __attribute__((aligned(4096)));
static u32 next_frame = POOL, faults;

static void page_fault(struct regs *r)
{
    u32 addr = read_cr2();
    if (addr < DEMAND_BASE || addr >= DEMAND_BASE + 0x400000 || (r->error & 1)) {
        puts("paging: bad fault\n");
        machine_exit(5);
    }
    demand_table[(addr - DEMAND_BASE) >> 12] = next_frame | 3;
    next_frame += 4096;
    faults++;
}

int kmain(u32 magic, u32 info)
{
    (void)magic; (void)info;
    serial_init();
    idt_init();
    on_interrupt(14, page_fault);
    for (u32 i = 0; i < 1024; i++)
        low_table[i] = (i << 12) | 3;
    page_dir[0] = (u32)low_table | 3;
    page_dir[1] = (u32)demand_table | 3;
    __asm__ volatile("mov %0, %%cr3\nmov %%cr0, %%eax\nor $0x80010000, %%eax\nmov %%eax, %%cr0"
                     : : "r"(page_dir) : "eax");
    u32 sum = 0;
    for (u32 i = 0; i < PAGES; i++)
        *(volatile u32 *)(DEMAND_BASE + i * 4096 + 8) = i + 1;
    for (u32 i = 0; i < PAGES; i++)
        sum += *(volatile u32 *)(DEMAND_BASE + i * 4096 + 8);
    puts("paging: ");
    putu(faults);
    puts(" faults, sum ");
    putu(sum);
    puts("\n");
    return 0;
}
