# pvmm.S -- a paravirtualized Linux memory manager in miniature, shared by the fork and exec guests
# (guests/fork.S explains the workload side). Linux 2.6's pv_ops decide at boot: CPUID leaf 0x40000000
# "XenVMMXenVMM" selects the Xen paths -- hypercalls through hypercall_page (what Xen writes there:
# `mov eax, nr; int 0x82; ret` every 32 bytes), the page fault handler registered with set_trap_table,
# the faulting address from the shared info page, console_io and sched_op shutdown, page tables mapped
# read-only and loaded with mmuext_op -- and anything else the native ones (mov cr3, invlpg, the IDT,
# mov from cr2, the serial port, isa-debug-exit).
# Under Xen, BATCH picks how entries are written (arch/x86/xen/mmu.c): 0 stores them directly (Xen
# traps and emulates each store: writable page tables); 1 one mmu_update each; B > 1 lazy MMU mode:
# requests queue and go to Xen B at a time, and what is left when the mode ends. The fault path sets
# its one entry with update_va_mapping (ptep_establish), or with a store when BATCH=0. Natively entries
# are always plain stores. The including guest defines PAGES and BATCH first.

# physical memory, identity-mapped in the first 4 MiB (the kernel's lowmem)
.set PARENT_PD, 0x200000
.set CHILD_PD, 0x201000
.set KERNEL_PT, 0x202000
.set PARENT_UPT, 0x203000
.set CHILD_UPT, 0x204000
.set PT_FIRST, PARENT_PD                # the page-table frames: read-only to the guest under Xen
.set PT_END, 0x205000
.set PT_DWORDS, (PT_END - PT_FIRST) / 4
.set PARENT_PD_PFN, PARENT_PD >> 12
.set CHILD_PD_PFN, CHILD_PD >> 12
.set SHARED_INFO, 0x205000
.set SHARED_INFO_PFN, 0x205
.set USER_FRAMES, 0x300000              # the parent's pages
.set PAGE_POOL, 0x380000                # pages the fault handlers hand out, reused per process
.set PAGE_POOL_END, 0x400000
.set USER_BASE, 0x40000000              # the user address range: PDE 256
.set USER_END, USER_BASE + PAGES * 4096
.set USER_PDE, 256 * 4
.set PARENT_USER_PDE, PARENT_PD + USER_PDE   # one symbol per memory operand (see asm.py)
.set CHILD_USER_PDE, CHILD_PD + USER_PDE
.set PTE_P, 0x1
.set PTE_RW, 0x2
.set PTE_U, 0x4
.set PTE_KERNEL, PTE_P | PTE_RW
.set PTE_USER, PTE_P | PTE_RW | PTE_U
.set PTE_NOT_RW, 0xfffffffd
.set CR0_PG_WP, 0x80010000
# Xen's ABI (xen/include/public/xen.h)
.set HYPERVISOR_set_trap_table, 0
.set HYPERVISOR_mmu_update, 1
.set HYPERVISOR_memory_op, 12
.set HYPERVISOR_update_va_mapping, 14
.set HYPERVISOR_console_io, 18
.set HYPERVISOR_mmuext_op, 26
.set HYPERVISOR_sched_op, 29
.set HYPERVISOR_pf_offload_register, 48 # vmexit's Enhanced Xen (optimizations/pf_offload.py)
.set HYPERCALL_STUBS, 64
# call HYPERCALL_x: the stub for hypercall x in the hypercall page
.set HYPERCALL_console_io, hypercall_page + HYPERVISOR_console_io * 32
.set HYPERCALL_memory_op, hypercall_page + HYPERVISOR_memory_op * 32
.set HYPERCALL_mmu_update, hypercall_page + HYPERVISOR_mmu_update * 32
.set HYPERCALL_mmuext_op, hypercall_page + HYPERVISOR_mmuext_op * 32
.set HYPERCALL_sched_op, hypercall_page + HYPERVISOR_sched_op * 32
.set HYPERCALL_set_trap_table, hypercall_page + HYPERVISOR_set_trap_table * 32
.set HYPERCALL_pf_offload_register, hypercall_page + HYPERVISOR_pf_offload_register * 32
.set HYPERCALL_update_va_mapping, hypercall_page + HYPERVISOR_update_va_mapping * 32
.set MMUEXT_PIN_L2_TABLE, 1
.set MMUEXT_NEW_BASEPTR, 5
.set MMUEXT_TLB_FLUSH_LOCAL, 6
.set UVMF_INVLPG, 2
.set XENMEM_add_to_physmap, 7
.set CONSOLEIO_write, 0
.set SCHEDOP_shutdown, 2
.set DOMID_SELF, 0x7ff0
.set KERNEL_CS, 0x08
.set QUEUE_MAX, 64                      # mmu_update requests the lazy queue holds at most

# --- arch/x86/xen/enlighten.c: which paths to take ---
# pv_boot(): find the hypervisor; natively set up the serial console and the IDT with the page fault
# handler (under Xen the handler is registered by xen_setup); then the page tables (paging_init).
pv_boot:
    push ebp
    mov ebp, esp
    call xen_detect
    cmp dword ptr [pv_xen], 0
    jne .Lpv_boot_paging
    call early_serial_init
    call trap_init
    mov eax, page_fault
    push eax
    mov eax, 14
    push eax
    call set_intr_gate
    add esp, 8
.Lpv_boot_paging:
    call paging_init
    pop ebp
    ret

# xen_detect(): CPUID 0x40000000 says "XenVMMXenVMM" under Xen; then write the hypercall page (what
# Xen itself puts there: per hypercall nr, `mov eax, nr; int 0x82; ret` at hypercall_page + nr * 32).
xen_detect:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, 0x40000000
    cpuid
    cmp ebx, 0x566e6558                 # "XenV"
    jne .Lxen_detect_done
    cmp ecx, 0x65584d4d                 # "MMXe"
    jne .Lxen_detect_done
    mov dword ptr [pv_xen], 1
    xor ecx, ecx
.Lxen_detect_stub:
    mov edx, ecx
    shl edx, 5
    mov byte ptr [hypercall_page + edx], 0xb8
    mov dword ptr [hypercall_page + edx + 1], ecx
    mov word ptr [hypercall_page + edx + 5], 0x82cd
    mov byte ptr [hypercall_page + edx + 7], 0xc3
    inc ecx
    cmp ecx, HYPERCALL_STUBS
    jb .Lxen_detect_stub
.Lxen_detect_done:
    pop ebx
    pop ebp
    ret

# printk(str): the serial port natively, console_io under Xen.
printk:
    push ebp
    mov ebp, esp
    push ebx
    cmp dword ptr [pv_xen], 0
    jne .Lprintk_xen
    push dword ptr [ebp + 8]
    call early_printk
    add esp, 4
    jmp .Lprintk_done
.Lprintk_xen:
    mov edx, [ebp + 8]
    xor ecx, ecx
.Lprintk_len:
    cmp byte ptr [edx + ecx], 0
    je .Lprintk_call
    inc ecx
    jmp .Lprintk_len
.Lprintk_call:
    mov eax, CONSOLEIO_write
    mov ebx, eax
    call HYPERCALL_console_io
.Lprintk_done:
    pop ebx
    pop ebp
    ret

# kernel_exit(status): isa-debug-exit natively, sched_op(SCHEDOP_shutdown) under Xen.
kernel_exit:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, [ebp + 8]
    cmp dword ptr [pv_xen], 0
    jne .Lkernel_exit_xen
    push eax
    call machine_exit
    add esp, 4
    jmp .Lkernel_exit_done
.Lkernel_exit_xen:
    mov dword ptr [shutdown_reason], eax
    mov ebx, SCHEDOP_shutdown
    mov ecx, shutdown_reason
    call HYPERCALL_sched_op
.Lkernel_exit_done:
    pop ebx
    pop ebp
    ret

# --- arch/x86/mm/init_32.c, arch/x86/xen/mmu.c: the tables and how they are loaded ---
# paging_init(): the kernel's identity map of lowmem (page tables read-only under Xen), the parent's
# and the child's directories, the parent's user pages; then load the parent's directory.
paging_init:
    push ebp
    mov ebp, esp
    push ebx
    push edi
    mov edi, PT_FIRST                   # clear every table frame
    mov ecx, PT_DWORDS
    xor eax, eax
    rep stosd
    xor ebx, ebx                        # kernel PT: 1024 identity entries
.Lpaging_kernel_pte:
    mov eax, ebx
    shl eax, 12
    or eax, PTE_KERNEL
    cmp dword ptr [pv_xen], 0
    je .Lpaging_kernel_store
    mov edx, ebx
    shl edx, 12
    cmp edx, PT_FIRST
    jb .Lpaging_kernel_store
    cmp edx, PT_END
    jae .Lpaging_kernel_store
    and eax, PTE_NOT_RW                 # Xen: a page table is never mapped writable
.Lpaging_kernel_store:
    mov dword ptr [KERNEL_PT + ebx * 4], eax
    inc ebx
    cmp ebx, 1024
    jb .Lpaging_kernel_pte
    mov eax, KERNEL_PT + PTE_KERNEL
    mov dword ptr [PARENT_PD], eax
    mov dword ptr [CHILD_PD], eax
    mov eax, PARENT_UPT + PTE_USER
    mov dword ptr [PARENT_USER_PDE], eax
    mov eax, CHILD_UPT + PTE_USER
    mov dword ptr [CHILD_USER_PDE], eax
    xor ebx, ebx                        # the parent's PAGES user pages
.Lpaging_user_pte:
    mov eax, ebx
    shl eax, 12
    add eax, USER_FRAMES + PTE_USER
    mov dword ptr [PARENT_UPT + ebx * 4], eax
    inc ebx
    cmp ebx, PAGES
    jb .Lpaging_user_pte
    cmp dword ptr [pv_xen], 0
    jne .Lpaging_xen
    mov eax, PARENT_PD                  # native: load CR3, turn paging on with write protection
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG_WP
    mov cr0, eax
    jmp .Lpaging_done
.Lpaging_xen:
    call xen_setup
.Lpaging_done:
    pop edi
    pop ebx
    pop ebp
    ret

# xen_setup(): the shared info page, the page fault handler, pin both directories, load the parent's.
xen_setup:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, XENMEM_add_to_physmap
    mov ecx, xatp
    call HYPERCALL_memory_op
    mov ebx, trap_table
    call HYPERCALL_set_trap_table
    mov ebx, pf_offload                 # Enhanced Xen, if this Xen has it (else -ENOSYS: no matter)
    call HYPERCALL_pf_offload_register
    mov eax, PARENT_PD_PFN
    mov ecx, MMUEXT_PIN_L2_TABLE
    push eax
    push ecx
    call xen_mmuext
    add esp, 8
    mov eax, CHILD_PD_PFN
    mov ecx, MMUEXT_PIN_L2_TABLE
    push eax
    push ecx
    call xen_mmuext
    add esp, 8
    mov eax, PARENT_PD
    push eax
    call write_cr3
    add esp, 4
    pop ebx
    pop ebp
    ret

# xen_mmuext(cmd, arg1): one struct mmuext_op in one mmuext_op hypercall.
xen_mmuext:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov eax, [ebp + 8]
    mov dword ptr [mmuext_req], eax
    mov eax, [ebp + 12]
    mov dword ptr [mmuext_req + 4], eax
    mov ebx, mmuext_req
    mov ecx, 1
    xor edx, edx
    mov esi, DOMID_SELF
    call HYPERCALL_mmuext_op
    pop esi
    pop ebx
    pop ebp
    ret

# write_cr3(pd): switch_mm's load of the new directory.
write_cr3:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    cmp dword ptr [pv_xen], 0
    jne .Lwrite_cr3_xen
    mov cr3, eax
    pop ebp
    ret
.Lwrite_cr3_xen:
    shr eax, 12
    mov ecx, MMUEXT_NEW_BASEPTR
    push eax
    push ecx
    call xen_mmuext
    add esp, 8
    pop ebp
    ret

# flush_tlb_mm(): reload CR3 natively, MMUEXT_TLB_FLUSH_LOCAL under Xen.
flush_tlb_mm:
    push ebp
    mov ebp, esp
    cmp dword ptr [pv_xen], 0
    jne .Lflush_tlb_xen
    mov eax, cr3
    mov cr3, eax
    pop ebp
    ret
.Lflush_tlb_xen:
    xor eax, eax
    mov ecx, MMUEXT_TLB_FLUSH_LOCAL
    push eax
    push ecx
    call xen_mmuext
    add esp, 8
    pop ebp
    ret

# set_pte(ptep, val): natively, and under Xen with BATCH=0, a plain store (Xen traps and emulates it);
# under Xen with BATCH >= 1 an mmu_update request, queued while in lazy MMU mode.
set_pte:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    mov eax, [ebp + 12]
.if BATCH
    cmp dword ptr [pv_xen], 0
    je .Lset_pte_store
    push eax
    push edx
    call xen_queue_pt_update
    add esp, 8
    pop ebp
    ret
.endif
.Lset_pte_store:
    mov dword ptr [edx], eax
    pop ebp
    ret

.if BATCH
# xen_queue_pt_update(ptep, val): add {ptr, val} to the queue; send it when it holds BATCH requests
# (outside lazy mode that is at once, as Linux's xen_set_pte does with one mmu_update).
xen_queue_pt_update:
    push ebp
    mov ebp, esp
    mov ecx, [mmu_queue_len]
    shl ecx, 4
    mov eax, [ebp + 8]
    mov dword ptr [mmu_queue + ecx], eax
    mov dword ptr [mmu_queue + ecx + 4], 0
    mov eax, [ebp + 12]
    mov dword ptr [mmu_queue + ecx + 8], eax
    mov dword ptr [mmu_queue + ecx + 12], 0
    inc dword ptr [mmu_queue_len]
    cmp dword ptr [lazy_mmu], 0
    je .Lqueue_flush
    cmp dword ptr [mmu_queue_len], BATCH
    jb .Lqueue_done
.Lqueue_flush:
    call xen_mc_flush
.Lqueue_done:
    pop ebp
    ret

# xen_mc_flush(): send the queued requests in one mmu_update.
xen_mc_flush:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ecx, [mmu_queue_len]
    test ecx, ecx
    jz .Lmc_flush_done
    mov ebx, mmu_queue
    xor edx, edx
    mov esi, DOMID_SELF
    call HYPERCALL_mmu_update
    mov dword ptr [mmu_queue_len], 0
.Lmc_flush_done:
    pop esi
    pop ebx
    pop ebp
    ret
.endif

# arch_enter_lazy_mmu_mode() / arch_leave_lazy_mmu_mode(): batch, then send what is left.
arch_enter_lazy_mmu_mode:
    push ebp
    mov ebp, esp
    mov dword ptr [lazy_mmu], 1
    pop ebp
    ret

arch_leave_lazy_mmu_mode:
    push ebp
    mov ebp, esp
    mov dword ptr [lazy_mmu], 0
.if BATCH
    cmp dword ptr [pv_xen], 0
    je .Lleave_lazy_done
    call xen_mc_flush
.Lleave_lazy_done:
.endif
    pop ebp
    ret

# exit_mmap(): zap_pte_range() of the current address space in lazy MMU mode (pte_clear of every
# present entry), then flush_tlb_mm().
exit_mmap:
    push ebp
    mov ebp, esp
    push ebx
    push edi
    mov edi, [current_upt]
    call arch_enter_lazy_mmu_mode
    xor ebx, ebx
.Lzap_next:
    cmp dword ptr [edi + ebx * 4], 0
    je .Lzap_skip
    xor eax, eax
    push eax
    lea eax, [edi + ebx * 4]
    push eax
    call set_pte
    add esp, 8
    dec dword ptr [page_mapcount + ebx * 4]
.Lzap_skip:
    inc ebx
    cmp ebx, PAGES
    jb .Lzap_next
    call arch_leave_lazy_mmu_mode
    call flush_tlb_mm
    pop edi
    pop ebx
    pop ebp
    ret

# switch_mm(pd, upt): make (pd, its user page table) the current address space.
switch_mm:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 12]
    mov dword ptr [current_upt], eax
    push dword ptr [ebp + 8]
    call write_cr3
    add esp, 4
    pop ebp
    ret

# page_fault: the entry (error code on the stack), as arch/x86/kernel/entry_32.S's page_fault.
page_fault:
    pushad
    push ebp
    mov ebp, esp
    call do_page_fault
    pop ebp
    popad
    add esp, 4
    iretd

# do_page_fault(): the faulting address (read_cr2: natively CR2, under Xen the shared info page's
# vcpu_info[0].arch.cr2), then handle_mm_fault -> handle_pte_fault: a missing entry is a
# demand-zero fault (do_anonymous_page), a present one a write to a copy-on-write page (do_wp_page).
do_page_fault:
    push ebp
    mov ebp, esp
    cmp dword ptr [pv_xen], 0
    jne .Lpf_xen_cr2
    mov eax, cr2
    jmp .Lpf_have_cr2
.Lpf_xen_cr2:
    mov eax, [SHARED_INFO + 8]
.Lpf_have_cr2:
    push eax
    mov edx, eax
    sub edx, USER_BASE
    shr edx, 12
    mov ecx, [current_upt]
    test dword ptr [ecx + edx * 4], PTE_P
    jz .Lpf_anonymous
    call do_wp_page
    jmp .Lpf_done
.Lpf_anonymous:
    call do_anonymous_page
.Lpf_done:
    add esp, 4
    pop ebp
    ret

# alloc_page(): the next free frame of the pool (a bump allocator, reset by the workload).
alloc_page:
    push ebp
    mov ebp, esp
    mov eax, [page_alloc_next]
    add dword ptr [page_alloc_next], 0x1000
    pop ebp
    ret

# do_anonymous_page(address): a zeroed page, mapped writable.
do_anonymous_page:
    push ebp
    mov ebp, esp
    push edi
    call alloc_page
    push eax
    mov edi, eax                        # clear_user_highpage()
    mov ecx, 1024
    xor eax, eax
    rep stosd
    pop eax
    or eax, PTE_USER
    push eax
    push dword ptr [ebp + 8]
    call ptep_establish
    add esp, 8
    pop edi
    pop ebp
    ret

# do_wp_page(address): a private copy of the shared page, mapped writable.
do_wp_page:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov eax, [ebp + 8]
    sub eax, USER_BASE
    shr eax, 12
    mov ecx, [current_upt]
    mov esi, [ecx + eax * 4]
    and esi, 0xfffff000                 # the shared frame (identity-mapped lowmem)
    call alloc_page
    mov edi, eax
    push eax
    mov ecx, 1024                       # copy_user_highpage()
    rep movsd dword ptr es:[edi], dword ptr [esi]   # keystone wants the operands spelled out
    pop eax
    or eax, PTE_USER
    push eax
    push dword ptr [ebp + 8]
    call ptep_establish
    add esp, 8
    pop edi
    pop esi
    pop ebp
    ret

# ptep_establish(address, pte): under Xen with BATCH >= 1 one update_va_mapping(va, pte, UVMF_INVLPG);
# natively, and under Xen with BATCH=0, a store (trapped and emulated under Xen) and, natively, invlpg.
ptep_establish:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    and ebx, 0xfffff000
.if BATCH
    cmp dword ptr [pv_xen], 0
    je .Lestablish_store
    push dword ptr [ebp + 12]
    push ebx
    call xen_update_va_mapping
    add esp, 8
    jmp .Lestablish_done
.endif
.Lestablish_store:
    mov eax, ebx
    sub eax, USER_BASE
    shr eax, 12
    mov ecx, [current_upt]
    mov edx, [ebp + 12]
    mov dword ptr [ecx + eax * 4], edx
    cmp dword ptr [pv_xen], 0
    jne .Lestablish_done
    invlpg [ebx]
.Lestablish_done:
    pop ebx
    pop ebp
    ret

.if BATCH
# xen_update_va_mapping(va, pte)
xen_update_va_mapping:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    xor edx, edx
    mov esi, UVMF_INVLPG
    call HYPERCALL_update_va_mapping
    pop esi
    pop ebx
    pop ebp
    ret
.endif

.align 4
pv_xen:
    .long 0
lazy_mmu:
    .long 0
page_alloc_next:
    .long PAGE_POOL
current_upt:
    .long PARENT_UPT
shutdown_reason:
    .long 0
mmuext_req:                             # struct mmuext_op {cmd, arg1, arg2}
    .long 0, 0, 0
xatp:                                   # struct xen_add_to_physmap {domid, size, space, idx, gpfn}
    .word DOMID_SELF, 0
    .long 0, 0, SHARED_INFO_PFN
pf_offload:                             # struct pf_offload {start, end, next_free, pool_end}
    .long USER_BASE, USER_END, page_alloc_next, PAGE_POOL_END
trap_table:                             # struct trap_info {vector, flags, cs, address}, 0-terminated
    .byte 14, 0
    .word KERNEL_CS
    .long page_fault
    .long 0, 0
mmu_queue_len:
    .long 0
page_mapcount:
    .fill PAGES * 4, 1, 0
mmu_queue:                              # struct mmu_update {u64 ptr, u64 val}[QUEUE_MAX]
    .fill QUEUE_MAX * 16, 1, 0
.align 32
hypercall_page:                         # filled by xen_detect: one 32-byte stub per hypercall
    .fill HYPERCALL_STUBS * 32, 1, 0xcc
