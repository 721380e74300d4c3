# irq_off.S -- benchmark guest: spinlocks taken with interrupts off while a timer interrupt is pending.
#
# Linux's spin_lock_irqsave() is local_irq_save() (pushf; pop; cli) before the lock, and
# spin_unlock_irqrestore() puts the saved flags back with popf, as xv6's pushcli()/popcli() do around
# every acquire()/release(): a lock taken inside another one saves IF=0, so its restore leaves
# interrupts off, and only the outermost restore turns them on again.
#
# The hot loop is __wake_up() on a wait queue of WAITERS tasks: it holds q->lock with interrupts off
# while try_to_wake_up() takes and releases the runqueue lock once per waiter, as kernel/sched.c does.
# The PIT ticks at HZ (1000) and one __wake_up() lasts longer than a tick (47 instructions per waiter:
# WAITERS = 90000 is 4.2M instructions, 1.5 ms at the default profile's 2.83 GHz and CPI 1), so a tick
# is pending for about two thirds of the time interrupts are off: every nested popf runs under it and
# leaves IF=0, and the outer popf opens the interrupt window. The 8259A is in auto-EOI mode (Linux's
# init_8259A(1)), so the tick's handler makes no exit of its own and is short.
#
# Exits by construction (see tests/test_bench.py): the PIC and PIT setup and the end through
# isa-debug-exit; one EXTERNAL_INTERRUPT per PIT period (a tick that comes while one is pending is
# merged by the PIC, as on hardware); and per __wake_up() one tick, taken through one INTERRUPT_WINDOW
# exit at the popf of the _raw_spin_unlock_irqrestore called from __wake_up. Only a period ending in the
# few hundred cycles from that popf to the next cli (the window exit, the 23-instruction handler, the
# way back) would bring a tick of its own: about 1 chance in 5,000 per section at HZ=1000.
# tools/bench.py runs it under vmexit and runs `wake_up_loop` alone under bare Unicorn (no interrupts).
.include "../lib/boot.S"

.ifndef HZ
.set HZ, 1000
.endif
.ifndef SECTIONS
.set SECTIONS, 4                        # __wake_up() calls: each delivers one tick
.endif
.ifndef WAITERS
.set WAITERS, 90000                     # try_to_wake_up() calls inside one __wake_up()
.endif

.set CLOCK_TICK_RATE, 1193182
.set LATCH, (CLOCK_TICK_RATE + HZ / 2) / HZ
.set LATCH_LO, LATCH & 0xff
.set LATCH_HI, LATCH >> 8
.set PIT_CH0, 0x40
.set PIT_MODE, 0x43
.set PIC_MASTER_CMD, 0x20
.set PIC_MASTER_IMR, 0x21
.set PIC_SLAVE_IMR, 0xa1
.set FIRST_EXTERNAL_VECTOR, 0x20
.set NR_TASKS, 64                       # the tasks the wait queue cycles through (a power of two)
.set TASK_RUNNING, 0

# start_kernel(): the timer interrupt, the 8259A and the PIT at HZ, interrupts on, then the wake-ups.
start_kernel:
    push ebp
    mov ebp, esp
    call trap_init
    mov eax, irq0_interrupt
    push eax
    mov eax, FIRST_EXTERNAL_VECTOR
    push eax
    call set_intr_gate
    add esp, 8
    call init_8259A
    call setup_pit_timer
    sti
    call wake_up_loop
    xor eax, eax
    pop ebp
    ret

# init_8259A(): Linux's init_8259A(auto_eoi = 1) for the master (vectors 0x20-0x27, slave on IR2,
# "master does Auto EOI"), the slave left masked, only IRQ0 unmasked.
init_8259A:
    push ebp
    mov ebp, esp
    mov al, 0xff
    out PIC_MASTER_IMR, al              # mask all of 8259A-1
    out PIC_SLAVE_IMR, al               # and of 8259A-2
    mov al, 0x11
    out PIC_MASTER_CMD, al              # ICW1: edge, cascade, ICW4 needed
    mov al, FIRST_EXTERNAL_VECTOR
    out PIC_MASTER_IMR, al              # ICW2: IR0-7 -> 0x20-0x27
    mov al, 0x04
    out PIC_MASTER_IMR, al              # ICW3: slave on IR2
    mov al, 0x03
    out PIC_MASTER_IMR, al              # ICW4: 8086 mode, auto EOI
    mov al, 0xfe
    out PIC_MASTER_IMR, al              # OCW1: only the timer
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

# wake_up_loop(): SECTIONS wake-ups of the wait queue (the benchmark's driver; no Linux counterpart).
# Interrupts are on only between two __wake_up() calls. From here to wake_up_loop_end it executes
# 4 + SECTIONS * (53 + 47 * WAITERS) instructions, the timer interrupt (23 each) not included:
# tools/bench.py uses that count for bare Unicorn, and a test checks it.
wake_up_loop:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, SECTIONS
.Lwake_up_loop_next:
    mov eax, wait_queue
    push eax
    call __wake_up
    add esp, 4
    dec ebx
    jnz .Lwake_up_loop_next
wake_up_loop_end:
    pop ebx
    pop ebp
    ret

# __wake_up(q): wake every waiter of q with q->lock held and interrupts off (kernel/sched.c).
__wake_up:
    push ebp
    mov ebp, esp
    push esi
    push dword ptr [ebp + 8]
    call _raw_spin_lock_irqsave
    add esp, 4
    mov esi, eax                        # flags, saved with IF=1: the restore below turns interrupts on
    push dword ptr [ebp + 8]
    call __wake_up_common
    add esp, 4
    push esi
    push dword ptr [ebp + 8]
    call _raw_spin_unlock_irqrestore    # the pending tick comes in at its popf
    add esp, 8
    pop esi
    pop ebp
    ret

# __wake_up_common(q): try_to_wake_up() for each of the WAITERS entries (cycling over NR_TASKS tasks).
__wake_up_common:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, WAITERS
    xor esi, esi
.L__wake_up_common_next:
    lea eax, [task_structs + esi * 4]
    push eax
    call try_to_wake_up
    add esp, 4
    inc esi
    and esi, NR_TASKS - 1
    dec ebx
    jnz .L__wake_up_common_next
    pop esi
    pop ebx
    pop ebp
    ret

# try_to_wake_up(p): task_rq_lock() (the runqueue lock, irqsave: nested here, so it saves IF=0),
# activate_task() (p->state = TASK_RUNNING, rq->nr_running++), task_rq_unlock().
try_to_wake_up:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, runqueue
    push eax
    call _raw_spin_lock_irqsave
    add esp, 4
    mov ebx, eax                        # flags (IF=0: the caller holds q->lock)
    mov ecx, [ebp + 8]
    mov dword ptr [ecx], TASK_RUNNING
    inc dword ptr [runqueue + 4]
    push ebx
    mov eax, runqueue
    push eax
    call _raw_spin_unlock_irqrestore    # restores IF=0: no window, even with the tick pending
    add esp, 8
    pop ebx
    pop ebp
    ret

# _raw_spin_lock_irqsave(lock): local_irq_save(flags), then a test-and-set lock; returns flags.
# (One CPU: the lock is always free, the spin never loops.)
_raw_spin_lock_irqsave:
    push ebp
    mov ebp, esp
    pushfd
    pop eax
    cli
    mov edx, [ebp + 8]
.L_raw_spin_lock_irqsave_spin:
    mov ecx, 1
    xchg dword ptr [edx], ecx
    test ecx, ecx
    jnz .L_raw_spin_lock_irqsave_spin
    pop ebp
    ret

# _raw_spin_unlock_irqrestore(lock, flags): release the lock, local_irq_restore(flags).
_raw_spin_unlock_irqrestore:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    mov dword ptr [edx], 0
    push dword ptr [ebp + 12]
    popfd
    pop ebp
    ret

# irq0_interrupt: the IRQ0 entry (common_interrupt): save the scratch registers, do_IRQ, iret.
irq0_interrupt:
    push eax
    push ecx
    push edx
    call do_IRQ
    pop edx
    pop ecx
    pop eax
    iretd

# do_IRQ(): the timer's handler; the PIC needs no EOI in auto-EOI mode.
do_IRQ:
    push ebp
    mov ebp, esp
    call timer_interrupt
    pop ebp
    ret

# timer_interrupt(): do_timer().
timer_interrupt:
    push ebp
    mov ebp, esp
    call do_timer
    pop ebp
    ret

# do_timer(): jiffies++.
do_timer:
    push ebp
    mov ebp, esp
    inc dword ptr [jiffies]
    pop ebp
    ret

.align 4
jiffies:
    .long 0
wait_queue:                             # wait_queue_head_t: the lock
    .long 0
runqueue:                               # struct rq: the lock, nr_running
    .long 0, 0
task_structs:                           # one state word per task (TASK_INTERRUPTIBLE = 1)
    .fill NR_TASKS, 4, 1
