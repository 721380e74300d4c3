# specjbb.S -- a compute-bound guest with the timer path of the KVM paper's Table 1 (SPECjbb): Linux
# 2.6.27 on an SMP kernel with an I/O APIC, HZ=1000, as KVM-76 ran it.
#
# Two timers tick at HZ: the local APIC timer (setup_APIC_timer: divide by 16, periodic, vector 0xef)
# enters apic_timer_interrupt -> smp_apic_timer_interrupt, which acknowledges with ack_APIC_irq (an
# EOI write to the LAPIC) and runs update_process_times; the PIT (setup_pit_timer, mode 2) reaches the
# CPU through I/O APIC pin 2 (setup_IO_APIC_irq: vector 0x31, edge) and enters common_interrupt ->
# do_IRQ -> handle_edge_irq, whose ack_ioapic_irq is again ack_APIC_irq, then timer_interrupt with the
# timer_ack poll of the 8259A (outb 0x0c to 0x20, inb 0x20) and do_timer. Both end in irq_exit ->
# __do_softirq, which runs the softirqs with interrupts enabled (sti ... cli): an interrupt that
# arrived in between makes an INTERRUPT_WINDOW exit there. The main loop never halts.
#
# Exits by construction (tests/test_guests.py): per LAPIC tick 1 EXTERNAL_INTERRUPT and 1 APIC_ACCESS
# (the EOI in smp_apic_timer_interrupt); per PIT tick 1 EXTERNAL_INTERRUPT, 1 APIC_ACCESS (the EOI in
# ack_ioapic_irq) and 2 in-kernel port exits in timer_interrupt.
.include "lib/boot.S"

.ifndef HZ
.set HZ, 1000
.endif
.ifndef TICKS
.set TICKS, 20                          # stop after this many PIT ticks (jiffies)
.endif

.set CLOCK_TICK_RATE, 1193182
.set LATCH, (CLOCK_TICK_RATE + HZ / 2) / HZ
.set LATCH_LO, LATCH & 0xff
.set LATCH_HI, LATCH >> 8
.set APIC_BASE, 0xfee00000
.set APIC_TASKPRI, APIC_BASE + 0x80
.set APIC_EOI, APIC_BASE + 0xb0
.set APIC_SPIV, APIC_BASE + 0xf0
.set APIC_LVTT, APIC_BASE + 0x320
.set APIC_TMICT, APIC_BASE + 0x380
.set APIC_TDCR, APIC_BASE + 0x3e0
.set APIC_TDR_DIV_16, 0x3
.set APIC_DIVISOR, 16
.set APIC_LVT_TIMER_PERIODIC, 0x20000
.set LOCAL_TIMER_VECTOR, 0xef
.set SPURIOUS_APIC_VECTOR, 0xff
.set APIC_BUS_HZ, 1000000000            # KVM's APIC bus: 1 ns per cycle
.set APIC_TMICT_VALUE, APIC_BUS_HZ / HZ / APIC_DIVISOR
.set LVTT_VALUE, LOCAL_TIMER_VECTOR + APIC_LVT_TIMER_PERIODIC
.set IOAPIC_REGSEL, 0xfec00000
.set IOAPIC_WIN, 0xfec00010
.set TIMER_PIN, 2                       # ISA IRQ0 -> I/O APIC pin 2 (interrupt source override)
.set TIMER_REDIR_LO, 0x10 + 2 * TIMER_PIN
.set TIMER_REDIR_HI, TIMER_REDIR_LO + 1
.set TIMER_VECTOR, 0x31                 # FIRST_DEVICE_VECTOR in 2.6.27
.set PIC_MASTER_CMD, 0x20
.set PIC_MASTER_IMR, 0x21
.set PIC_SLAVE_IMR, 0xa1

# start_kernel(): console, IDT, local APIC, I/O APIC, PIT, local APIC timer; work until TICKS jiffies.
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
    call setup_local_APIC
    call setup_IO_APIC
    call setup_pit_timer
    call setup_APIC_timer
    sti
    call specjbb_main
    cli
    mov eax, msg_done
    push eax
    call early_printk
    add esp, 4
    xor eax, eax
    pop ebp
    ret

# init_IRQ(): interrupt gates for the local timer and the PIT's vector; the 8259A pair masked.
init_IRQ:
    push ebp
    mov ebp, esp
    mov eax, apic_timer_interrupt
    push eax
    mov eax, LOCAL_TIMER_VECTOR
    push eax
    call set_intr_gate
    add esp, 8
    mov eax, common_interrupt
    push eax
    mov eax, TIMER_VECTOR
    push eax
    call set_intr_gate
    add esp, 8
    mov al, 0xff
    out PIC_MASTER_IMR, al
    out PIC_SLAVE_IMR, al
    pop ebp
    ret

# setup_local_APIC(): TPR 0, then software-enable through the spurious-interrupt register.
setup_local_APIC:
    push ebp
    mov ebp, esp
    mov dword ptr [APIC_TASKPRI], 0
    mov eax, dword ptr [APIC_SPIV]
    and eax, 0xffffff00
    or eax, SPURIOUS_APIC_VECTOR + 0x100
    mov dword ptr [APIC_SPIV], eax
    pop ebp
    ret

# setup_IO_APIC(): pin 2 -> TIMER_VECTOR, fixed, physical destination 0, edge, unmasked.
setup_IO_APIC:
    push ebp
    mov ebp, esp
    mov dword ptr [IOAPIC_REGSEL], TIMER_REDIR_HI
    mov dword ptr [IOAPIC_WIN], 0
    mov dword ptr [IOAPIC_REGSEL], TIMER_REDIR_LO
    mov dword ptr [IOAPIC_WIN], TIMER_VECTOR
    pop ebp
    ret

# setup_pit_timer(): channel 0, lobyte/hibyte, mode 2 (rate generator), LATCH.
setup_pit_timer:
    push ebp
    mov ebp, esp
    mov al, 0x34
    out 0x43, al
    mov al, LATCH_LO
    out 0x40, al
    mov al, LATCH_HI
    out 0x40, al
    pop ebp
    ret

# setup_APIC_timer(): __setup_APIC_LVTT(calibration_result): divide by 16, periodic, then the count.
setup_APIC_timer:
    push ebp
    mov ebp, esp
    mov dword ptr [APIC_TDCR], APIC_TDR_DIV_16
    mov dword ptr [APIC_LVTT], LVTT_VALUE
    mov dword ptr [APIC_TMICT], APIC_TMICT_VALUE
    pop ebp
    ret

# specjbb_main(): the transactions -- a store-heavy loop -- until jiffies reaches TICKS.
specjbb_main:
    push ebp
    mov ebp, esp
    xor eax, eax
.Lspecjbb_loop:
    mov ecx, 1000
.Lspecjbb_txn:
    mov dword ptr [heap + eax * 4], ecx
    inc eax
    and eax, 1023
    dec ecx
    jnz .Lspecjbb_txn
    cmp dword ptr [jiffies], TICKS
    jb .Lspecjbb_loop
    pop ebp
    ret

# apic_timer_interrupt: entry stub for LOCAL_TIMER_VECTOR.
apic_timer_interrupt:
    pushad
    push ebp
    mov ebp, esp
    call smp_apic_timer_interrupt
    pop ebp
    popad
    iretd

# smp_apic_timer_interrupt(): ack_APIC_irq() (inlined: the EOI write), then the local tick.
smp_apic_timer_interrupt:
    push ebp
    mov ebp, esp
    mov dword ptr [APIC_EOI], 0
    call local_apic_timer_interrupt
    call irq_exit
    pop ebp
    ret

# local_apic_timer_interrupt(): the per-CPU tick: update_process_times() raises the timer softirq.
local_apic_timer_interrupt:
    push ebp
    mov ebp, esp
    call update_process_times
    pop ebp
    ret

update_process_times:
    push ebp
    mov ebp, esp
    inc dword ptr [local_ticks]
    or dword ptr [softirq_pending], 1
    pop ebp
    ret

# common_interrupt: entry stub for device vectors; do_IRQ(TIMER_VECTOR).
common_interrupt:
    pushad
    push ebp
    mov ebp, esp
    call do_IRQ
    pop ebp
    popad
    iretd

# do_IRQ(): handle_edge_irq: ack at the chip, run the handler, irq_exit().
do_IRQ:
    push ebp
    mov ebp, esp
    call ack_ioapic_irq
    call timer_interrupt
    call irq_exit
    pop ebp
    ret

# ack_ioapic_irq(): the I/O APIC chip's ack is ack_APIC_irq(): an EOI write to the local APIC.
ack_ioapic_irq:
    push ebp
    mov ebp, esp
    mov dword ptr [APIC_EOI], 0
    pop ebp
    ret

msg_start:
    .asciz "specjbb: start\n"
msg_done:
    .asciz "specjbb: done\n"
.align 4
local_ticks:
    .long 0
.align 16
heap:
    .fill 1024, 4, 0

.include "lib/tick.S"
