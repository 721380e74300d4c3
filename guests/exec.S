# exec.S -- lmbench's "exec proc" memory side in miniature (the Chang Gung University report on Xen page faults): a process
# throws its address space away and runs a new program, whose first touch of each of its PAGES pages is
# a demand-zero fault; EXECS times. Linux 2.6: do_execve -> exec_mmap (the new mm) -> the program runs:
# do_page_fault -> handle_mm_fault -> do_anonymous_page (a zeroed page, ptep_establish); exit_mmap ->
# zap_pte_range of every entry, flush_tlb_mm; back to the parent's address space. Native or Xen PV and
# -D BATCH as in lib/pvmm.S; under --opt xen-pf-offload Xen zeroes and maps the pages itself.
#
# Exits by construction under Xen (tests/hypervisors/test_xen.py), per exec: PAGES demand-zero faults
# bounced to the guest (offloaded: fixed in Xen), each followed (BATCH >= 1) by one update_va_mapping,
# else (BATCH=0) one emulated store; zap_pte_range ceil(PAGES/B) mmu_update (BATCH=0: PAGES emulated
# stores); 3 mmuext_op (two base-pointer switches, one TLB flush).
.include "lib/boot.S"

.ifndef PAGES
.set PAGES, 32
.endif
.ifndef EXECS
.set EXECS, 4
.endif
.ifndef BATCH
.set BATCH, 16
.endif

.include "lib/pvmm.S"

# start_kernel(): find the hypervisor, set up paging, exec EXECS times, check the last program's pages.
start_kernel:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    call pv_boot
    mov eax, msg_start
    push eax
    call printk
    add esp, 4
    xor ebx, ebx
    xor esi, esi
.Lstart_exec:
    cmp ebx, EXECS
    jae .Lstart_done
    call do_execve
    add esi, eax
    call exit_mmap
    mov eax, PARENT_UPT
    push eax
    mov eax, PARENT_PD
    push eax
    call switch_mm
    add esp, 8
    inc ebx
    jmp .Lstart_exec
.Lstart_done:
    mov eax, msg_ok
    test esi, esi
    jz .Lstart_print
    mov eax, msg_bad
.Lstart_print:
    push eax
    call printk
    add esp, 4
    push esi                            # does not return
    call kernel_exit

# do_execve(): the new, empty address space (exec_mmap), then the program: it reads each of its
# pages (they must read as zero: demand-zero) and writes its page number there. Returns how many
# pages were not zero.
do_execve:
    push ebp
    mov ebp, esp
    mov eax, CHILD_UPT
    push eax
    mov eax, CHILD_PD
    push eax
    call switch_mm
    add esp, 8
    mov dword ptr [page_alloc_next], PAGE_POOL
    xor eax, eax
    xor ecx, ecx
.Lexecve_touch:
    mov edx, ecx
    shl edx, 12
    cmp dword ptr [USER_BASE + edx], 0  # the first touch: a demand-zero fault
    je .Lexecve_zero
    inc eax
.Lexecve_zero:
    mov dword ptr [USER_BASE + edx], ecx
    inc ecx
    cmp ecx, PAGES
    jb .Lexecve_touch
    pop ebp
    ret

msg_start:
    .asciz "exec: start\n"
msg_ok:
    .asciz "exec: ok\n"
msg_bad:
    .asciz "exec: a new page was not zero\n"
