# fork.S -- lmbench's "fork proc" in miniature, the workload of the Chang Gung University report on Xen page faults: a parent
# with PAGES mapped pages forks, the child writes to TOUCH of them (copy-on-write faults) and exits, and
# the parent does it again, FORKS times. The memory code follows Linux 2.6 (mm/memory.c) and its Xen
# port (arch/x86/xen/mmu.c):
# - do_fork -> copy_page_range: per present PTE, ptep_set_wrprotect() on the parent's entry, then
#   set_pte_at() of the same read-only entry in the child's table; flush_tlb_mm(parent);
# - switch_mm -> write_cr3; the child's store faults: do_page_fault -> handle_mm_fault -> do_wp_page:
#   a new page, copy_user_highpage, and the writable PTE (ptep_establish: under Xen one
#   update_va_mapping(va, pte, UVMF_INVLPG), natively a store and invlpg);
# - exit_mmap -> zap_pte_range: pte_clear of every child PTE, then flush_tlb_mm; switch_mm(parent).
# The memory manager, native or Xen PV as Linux's pv_ops choose, and -D BATCH (how page-table entries
# reach Xen: 0 trapped stores, 1 one mmu_update each, B > 1 lazy-MMU batches) are in lib/pvmm.S.
#
# Exits by construction under Xen (tests/hypervisors/test_xen.py), per fork: copy_page_range 2*PAGES
# entries, zap_pte_range PAGES: with BATCH=B >= 1, ceil(2*PAGES/B) + ceil(PAGES/B) mmu_update calls;
# with BATCH=0, 3*PAGES emulated stores plus TOUCH (the fault path's own PTE stores); TOUCH page faults
# bounced to the guest, each followed (BATCH >= 1) by one update_va_mapping; 4 mmuext_op (two TLB
# flushes, two base-pointer switches).
.include "lib/boot.S"

.ifndef PAGES
.set PAGES, 32
.endif
.ifndef TOUCH
.set TOUCH, 8
.endif
.ifndef FORKS
.set FORKS, 4
.endif
.ifndef BATCH
.set BATCH, 16
.endif

.ifndef PAGES
.set PAGES, 32
.endif
.ifndef TOUCH
.set TOUCH, 8
.endif
.ifndef FORKS
.set FORKS, 4
.endif
.ifndef BATCH
.set BATCH, 16
.endif

.include "lib/pvmm.S"

# start_kernel(): find the hypervisor, build and load the page tables, fork FORKS times, check.
start_kernel:
    push ebp
    mov ebp, esp
    push ebx
    call pv_boot
    mov eax, msg_start
    push eax
    call printk
    add esp, 4
    call fill_user_pages
    xor ebx, ebx
.Lstart_fork:
    cmp ebx, FORKS
    jae .Lstart_check
    call do_fork
    call child_run
    call exit_mmap
    mov eax, PARENT_UPT
    push eax
    mov eax, PARENT_PD
    push eax
    call switch_mm
    add esp, 8
    inc ebx
    jmp .Lstart_fork
.Lstart_check:
    call check_user_pages
    mov ebx, eax
    mov eax, msg_ok
    test ebx, ebx
    jz .Lstart_print
    mov eax, msg_bad
.Lstart_print:
    push eax
    call printk
    add esp, 4
    push ebx                            # does not return
    call kernel_exit

# --- mm/memory.c ---
# fill_user_pages(): the parent writes its page number at the start of each page.
fill_user_pages:
    push ebp
    mov ebp, esp
    xor ecx, ecx
.Lfill_next:
    mov edx, ecx
    shl edx, 12
    mov dword ptr [USER_BASE + edx], ecx
    inc ecx
    cmp ecx, PAGES
    jb .Lfill_next
    pop ebp
    ret

# check_user_pages(): how many of the parent's pages lost their contents (0: copy-on-write held).
check_user_pages:
    push ebp
    mov ebp, esp
    xor eax, eax
    xor ecx, ecx
.Lcheck_next:
    mov edx, ecx
    shl edx, 12
    cmp dword ptr [USER_BASE + edx], ecx
    je .Lcheck_ok
    inc eax
.Lcheck_ok:
    inc ecx
    cmp ecx, PAGES
    jb .Lcheck_next
    pop ebp
    ret

# do_fork(): copy_page_range() in lazy MMU mode, then flush_tlb_mm() of the parent.
do_fork:
    push ebp
    mov ebp, esp
    call arch_enter_lazy_mmu_mode
    call copy_page_range
    call arch_leave_lazy_mmu_mode
    call flush_tlb_mm
    pop ebp
    ret

# copy_page_range(): per present parent PTE, write-protect it, then give the child the same entry.
copy_page_range:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    xor ebx, ebx
.Lcopy_next:
    mov esi, [PARENT_UPT + ebx * 4]
    test esi, PTE_P
    jz .Lcopy_skip
    and esi, PTE_NOT_RW
    push esi                            # ptep_set_wrprotect(src)
    lea eax, [PARENT_UPT + ebx * 4]
    push eax
    call set_pte
    add esp, 8
    push esi                            # set_pte_at(dst)
    lea eax, [CHILD_UPT + ebx * 4]
    push eax
    call set_pte
    add esp, 8
    inc dword ptr [page_mapcount + ebx * 4]
.Lcopy_skip:
    inc ebx
    cmp ebx, PAGES
    jb .Lcopy_next
    pop esi
    pop ebx
    pop ebp
    ret

# child_run(): switch to the child's directory and store into TOUCH of its pages (each faults: COW).
child_run:
    push ebp
    mov ebp, esp
    mov eax, CHILD_UPT
    push eax
    mov eax, CHILD_PD
    push eax
    call switch_mm
    add esp, 8
    mov dword ptr [page_alloc_next], PAGE_POOL
    xor ecx, ecx
.Lchild_touch:
    mov edx, ecx
    shl edx, 12
    mov eax, 0xc0de0000
    or eax, ecx
    mov dword ptr [USER_BASE + edx], eax
    inc ecx
    cmp ecx, TOUCH
    jb .Lchild_touch
    pop ebp
    ret

msg_start:
    .asciz "fork: start\n"
msg_ok:
    .asciz "fork: ok\n"
msg_bad:
    .asciz "fork: parent pages changed\n"
