# timer.S -- a Linux-like periodic tick (HZ=1000 by default), the path behind the KVM paper's Table 1.
#
# The PIT is programmed as Linux's init_pit_timer() does for a periodic clock event (mode 2, LATCH =
# (1193182 + HZ/2) / HZ); IRQ0 goes through the 8259A as a level IRQ: mask_and_ack_8259A() masks it and
# sends a specific EOI, timer_interrupt() acks with the OCW3 poll of the timer_ack path
# (arch/x86/kernel/time_32.c: outb 0x0c to 0x20, inb 0x20), do_timer() advances jiffies, irq_exit() runs
# __do_softirq() with interrupts re-enabled, and the IRQ is unmasked again at the end.
# The idle loop works for WORK iterations of a store loop, then idles in default_idle() (sti; hlt).
#
# Exits by construction (see tests/test_guests.py): per tick 6 port exits on the in-kernel PIC
# (inb 0x21, outb 0x21, outb 0x20 in mask_and_ack_8259A; outb 0x20, inb 0x20 in timer_interrupt;
# outb 0x21 in unmask_8259A_irq); every tick arrives either while the guest runs (EXTERNAL_INTERRUPT)
# or while it is halted (after one HLT exit).
.include "lib/boot.S"

.ifndef HZ
.set HZ, 1000
.endif
.ifndef TICKS
.set TICKS, 20                          # end after this many timer interrupts
.endif
.ifndef WORK
.set WORK, 1000000                      # store-loop iterations between idle periods
.endif

.set CLOCK_TICK_RATE, 1193182
.set LATCH, (CLOCK_TICK_RATE + HZ / 2) / HZ
.set LATCH_LO, LATCH & 0xff
.set LATCH_HI, LATCH >> 8
.set PIT_CH0, 0x40
.set PIT_MODE, 0x43
.set PIC_MASTER_CMD, 0x20
.set PIC_MASTER_IMR, 0x21
.set PIC_SLAVE_CMD, 0xa0
.set PIC_SLAVE_IMR, 0xa1
.set FIRST_EXTERNAL_VECTOR, 0x20
.set TIMER_IRQ, 0
.set TIMER_IRQ_BIT, 1 << TIMER_IRQ       # (keystone takes shifts only in .set)
.set TIMER_IRQ_CLEAR, ~TIMER_IRQ_BIT & 0xff
.set PIC_EOI_TIMER, 0x60 + TIMER_IRQ         # OCW2 specific EOI

# start_kernel(): bring up the console, interrupts and the tick, then idle until TICKS ticks.
start_kernel:
    push ebp
    mov ebp, esp
    call early_serial_init
    mov eax, msg_start
    push eax
    call early_printk
    add esp, 4
    call trap_init
    call init_IRQ
    call setup_pit_timer
    sti
    call cpu_idle
    mov eax, msg_done
    push eax
    call early_printk
    add esp, 4
    xor eax, eax
    pop ebp
    ret

# init_IRQ(): the 8259A pair as Linux's init_8259A(0): mask all, ICW1-4 for master (vectors 0x20-0x27,
# slave on IR2) and slave (0x28-0x2f), then restore the masks (only the timer unmasked).
init_IRQ:
    push ebp
    mov ebp, esp
    mov eax, irq0_entry
    push eax
    mov eax, FIRST_EXTERNAL_VECTOR + TIMER_IRQ
    push eax
    call set_intr_gate
    add esp, 8
    call init_8259A
    pop ebp
    ret

init_8259A:
    push ebp
    mov ebp, esp
    mov al, 0xff
    out PIC_MASTER_IMR, al              # mask all of 8259A-1
    out PIC_SLAVE_IMR, al               # mask all of 8259A-2
    mov al, 0x11
    out PIC_MASTER_CMD, al              # ICW1: edge, cascade, ICW4 needed
    mov al, FIRST_EXTERNAL_VECTOR
    out PIC_MASTER_IMR, al              # ICW2: IR0-7 -> 0x20-0x27
    mov al, 0x04
    out PIC_MASTER_IMR, al              # ICW3: slave on IR2
    mov al, 0x01
    out PIC_MASTER_IMR, al              # ICW4: 8086 mode, normal EOI
    mov al, 0x11
    out PIC_SLAVE_CMD, al
    mov al, FIRST_EXTERNAL_VECTOR + 8
    out PIC_SLAVE_IMR, al               # ICW2: IR0-7 -> 0x28-0x2f
    mov al, 0x02
    out PIC_SLAVE_IMR, al               # ICW3: cascade identity 2
    mov al, 0x01
    out PIC_SLAVE_IMR, al               # ICW4
    mov al, byte ptr [cached_master_mask]
    out PIC_MASTER_IMR, al
    mov al, 0xff
    out PIC_SLAVE_IMR, al
    pop ebp
    ret

# setup_pit_timer(): channel 0, lobyte/hibyte, mode 2 (rate generator), LATCH.
setup_pit_timer:
    push ebp
    mov ebp, esp
    mov al, 0x34
    out PIT_MODE, al
    mov al, LATCH_LO
    out PIT_CH0, al
    mov al, LATCH_HI
    out PIT_CH0, al
    pop ebp
    ret

# cpu_idle(): work, then halt until the next interrupt, until jiffies reaches TICKS.
cpu_idle:
    push ebp
    mov ebp, esp
.Lcpu_idle_loop:
    mov eax, dword ptr [jiffies]
    cmp eax, TICKS
    jae .Lcpu_idle_done
    call do_work
    call default_idle
    jmp .Lcpu_idle_loop
.Lcpu_idle_done:
    pop ebp
    ret

# do_work(): WORK iterations of a loop that stores into a 4 KiB buffer (a stand-in for user work).
do_work:
    push ebp
    mov ebp, esp
    mov ecx, WORK
    xor eax, eax
.Ldo_work_loop:
    mov dword ptr [work_area + eax * 4], ecx
    inc eax
    and eax, 1023
    dec ecx
    jnz .Ldo_work_loop
    pop ebp
    ret

# default_idle(): safe_halt() -- sti; hlt, so the wakeup cannot slip in between.
default_idle:
    push ebp
    mov ebp, esp
    sti
    hlt
    pop ebp
    ret

# irq0_entry: the interrupt stub (common_interrupt): save registers, do_IRQ(irq), restore, iret.
irq0_entry:
    pushad
    push ebp
    mov ebp, esp
    mov eax, TIMER_IRQ
    push eax
    call do_IRQ
    add esp, 4
    pop ebp
    popad
    iretd

# do_IRQ(irq): handle_level_irq(): mask and ack at the PIC, run the handler, irq_exit(), unmask.
do_IRQ:
    push ebp
    mov ebp, esp
    call mask_and_ack_8259A
    call timer_interrupt
    call irq_exit
    call unmask_8259A_irq
    pop ebp
    ret

# mask_and_ack_8259A(): dummy read of the IMR, mask the IRQ, specific EOI (0x60 + irq).
mask_and_ack_8259A:
    push ebp
    mov ebp, esp
    in al, PIC_MASTER_IMR
    mov al, byte ptr [cached_master_mask]
    or al, TIMER_IRQ_BIT
    mov byte ptr [cached_master_mask], al
    out PIC_MASTER_IMR, al
    mov al, PIC_EOI_TIMER
    out PIC_MASTER_CMD, al
    pop ebp
    ret

# unmask_8259A_irq(): clear the IRQ's bit in the cached mask and write it back.
unmask_8259A_irq:
    push ebp
    mov ebp, esp
    mov al, byte ptr [cached_master_mask]
    and al, TIMER_IRQ_CLEAR
    mov byte ptr [cached_master_mask], al
    out PIC_MASTER_IMR, al
    pop ebp
    ret

msg_start:
    .asciz "timer: start\n"
msg_done:
    .asciz "timer: done\n"
cached_master_mask:
    .byte 0xfa                          # everything but IRQ0 and the cascade (IR2) masked
.align 16
work_area:
    .fill 1024, 4, 0

.include "lib/tick.S"
