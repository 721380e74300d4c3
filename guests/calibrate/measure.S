# measure.S -- the calibration loop every micro-guest of `vmexit calibrate` shares (vmexit/calibrate.py).
# A kind's file defines `probe` (the one instruction whose round trip is measured, then ret) and includes
# this file last. No interrupts, no IDT, no iret and no int n: the guest runs on any KVM that can run
# port I/O, MMIO, HLT and rdtsc. For each of SAMPLES samples, the TSC is read before and after
# `call probe`, and the difference stored as a 32-bit count at RESULTS + 4 * i; the empty probe
# (none.S) measures the loop itself, which vmexit subtracts. Then the guest writes to the debug-exit
# port and halts with interrupts off.

.ifndef SAMPLES
.set SAMPLES, 1000
.endif
.set RESULTS, 0x200000                 # 2 MiB: above the image, inside the 4 MiB calibration guest
.set DEBUG_EXIT, 0xf4

_start:
    mov esp, 0x90000
    xor ebp, ebp                       # the outermost frame
    call calibrate
    out DEBUG_EXIT, al
    cli
.Lhalt:
    hlt
    jmp .Lhalt

# calibrate(): SAMPLES round trips of probe; probe may clobber eax, ebx, ecx and edx only.
calibrate:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov edi, RESULTS
.Lsample:
    lfence                             # rdtsc is not ordered: wait for what came before
    rdtsc
    mov esi, eax
    call probe
    lfence
    rdtsc
    sub eax, esi                       # a round trip is far below 2^32 TSC ticks
    mov [edi], eax
    add edi, 4
    cmp edi, RESULTS + 4 * SAMPLES
    jb .Lsample
    pop edi
    pop esi
    pop ebp
    ret
