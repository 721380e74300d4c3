# tick.S -- the common tail of a Linux timer interrupt, shared by the timer and specjbb guests:
# timer_interrupt() with the timer_ack poll of the 8259A (arch/x86/kernel/time_32.c: outb 0x0c to 0x20,
# inb 0x20), do_timer(), and irq_exit() -> __do_softirq(), which runs the softirqs with interrupts
# enabled (sti ... cli). Included after a guest's own code; it brings its variables along.

.set TICK_PIC_MASTER_CMD, 0x20

# timer_interrupt(): the timer_ack path -- OCW3 poll command and read -- then the tick.
timer_interrupt:
    push ebp
    mov ebp, esp
    mov al, 0x0c
    out TICK_PIC_MASTER_CMD, al
    in al, TICK_PIC_MASTER_CMD
    call do_timer
    pop ebp
    ret

# do_timer(): jiffies++ and raise the timer softirq.
do_timer:
    push ebp
    mov ebp, esp
    inc dword ptr [jiffies]
    or dword ptr [softirq_pending], 1
    pop ebp
    ret

# irq_exit(): run pending softirqs.
irq_exit:
    push ebp
    mov ebp, esp
    cmp dword ptr [softirq_pending], 0
    je .Lirq_exit_done
    call __do_softirq
.Lirq_exit_done:
    pop ebp
    ret

# __do_softirq(): clear the pending mask and run the handlers with interrupts enabled.
__do_softirq:
    push ebp
    mov ebp, esp
    mov dword ptr [softirq_pending], 0
    sti
    call run_timer_softirq
    cli
    pop ebp
    ret

# run_timer_softirq(): expire timers; here, count the runs.
run_timer_softirq:
    push ebp
    mov ebp, esp
    inc dword ptr [timer_softirq_runs]
    pop ebp
    ret

.align 4
jiffies:
    .long 0
softirq_pending:
    .long 0
timer_softirq_runs:
    .long 0
