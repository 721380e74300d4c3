# netif.S -- what netfront (domU) and netback (dom0) share: Xen's ABI numbers (xen/include/public/
# xen.h, event_channel.h, grant_table.h, sched.h, memory.h), the start_info page and vmexit's net wiring
# in it (vmexit/scenarios/base.py), the shared ring of io/ring.h and the netif structs of io/netif.h, the
# ring macros as functions, the event-channel upcall (Linux's drivers/xen/events.c), the grant table
# helpers (drivers/xen/grant-table.c) and the hypercall wrappers (arch/x86/include/asm/xen/hypercall.h).
#
# Both domains run without paging (linear = physical) in their own RAM, so a "frame" below is simply a
# guest-physical page number. Functions are cdecl with frame pointers: every hypercall exit is named
# by the Linux function that called the HYPERVISOR_* wrapper.
#
# The including guest defines first: SHARED_INFO (the page it places shared info at) and GNTTAB (the
# page its grant table frame goes to; only the granting side sets it up).

# --- hypercall numbers (xen.h __HYPERVISOR_*) ---
.set __HYPERVISOR_set_callbacks, 4
.set __HYPERVISOR_memory_op, 12
.set __HYPERVISOR_xen_version, 17
.set __HYPERVISOR_console_io, 18
.set __HYPERVISOR_grant_table_op, 20
.set __HYPERVISOR_sched_op, 29
.set __HYPERVISOR_event_channel_op, 32
.set __HYPERVISOR_physdev_op, 33
.set HYPERCALL_STUBS, 64
.set HYPERCALL_set_callbacks, hypercall_page + __HYPERVISOR_set_callbacks * 32
.set HYPERCALL_memory_op, hypercall_page + __HYPERVISOR_memory_op * 32
.set HYPERCALL_xen_version, hypercall_page + __HYPERVISOR_xen_version * 32
.set HYPERCALL_console_io, hypercall_page + __HYPERVISOR_console_io * 32
.set HYPERCALL_grant_table_op, hypercall_page + __HYPERVISOR_grant_table_op * 32
.set HYPERCALL_sched_op, hypercall_page + __HYPERVISOR_sched_op * 32
.set HYPERCALL_event_channel_op, hypercall_page + __HYPERVISOR_event_channel_op * 32
.set HYPERCALL_physdev_op, hypercall_page + __HYPERVISOR_physdev_op * 32

# --- sub-operations ---
.set XENMEM_add_to_physmap, 7
.set PHYSDEVOP_set_iopl, 6                # physdev.h
.set XENMAPSPACE_shared_info, 0
.set XENMAPSPACE_grant_table, 1
.set CONSOLEIO_write, 0
.set SCHEDOP_yield, 0
.set SCHEDOP_block, 1
.set SCHEDOP_shutdown, 2
.set SHUTDOWN_poweroff, 0
.set EVTCHNOP_bind_interdomain, 0
.set EVTCHNOP_close, 3
.set EVTCHNOP_send, 4
.set EVTCHNOP_alloc_unbound, 6
.set EVTCHNOP_unmask, 9
.set GNTTABOP_map_grant_ref, 0
.set GNTTABOP_unmap_grant_ref, 1
.set GNTTABOP_setup_table, 2
.set GNTTABOP_transfer, 4
.set GNTTABOP_copy, 5
.set DOMID_SELF, 0x7ff0
.set KERNEL_CS, 0x08

# --- grant table v1 (grant_table.h): 8-byte entries {u16 flags, u16 domid, u32 frame} ---
.set GTF_permit_access, 1
.set GTF_accept_transfer, 2
.set GTF_readonly, 4
.set GTF_reading, 8
.set GTF_writing, 16
.set GTF_transfer_committed, 4
.set GTF_transfer_completed, 8
.set GTF_in_use, GTF_reading | GTF_writing
.set GNTMAP_host_map, 2
.set GNTMAP_readonly, 4
.set GNTST_okay, 0
.set GREF_FLAGS, 0
.set GREF_DOMID, 2
.set GREF_FRAME, 4
.set GRANT_ENTRY_SIZE, 8
.set GRANT_WINDOW, 0x40000000            # where a mapping domain's host_addr must lie (spec)
# gnttab_map_grant_ref (32 B), gnttab_unmap_grant_ref (24 B), gnttab_transfer (16 B), setup_table (16 B)
.set MAP_HOST_ADDR, 0
.set MAP_FLAGS, 8
.set MAP_REF, 12
.set MAP_DOM, 16
.set MAP_STATUS, 18
.set MAP_HANDLE, 20
.set MAP_SIZE, 32
.set UNMAP_HOST_ADDR, 0
.set UNMAP_HANDLE, 16
.set UNMAP_STATUS, 20
.set UNMAP_SIZE, 24
.set XFER_MFN, 0
.set XFER_DOMID, 4
.set XFER_REF, 8
.set XFER_STATUS, 12
.set XFER_SIZE, 16

# --- start_info (x86_32 start_info_t) and vmexit's net wiring at +0x800 (stands in for XenStore) ---
.set START_INFO, 0x9000
.set SI_NR_PAGES, 32
.set SI_FLAGS, 40
.set SIF_PRIVILEGED, 1
.set SIF_INITDOMAIN, 2
.set SI_NET, START_INFO + 0x800
.set NET_DOMID, SI_NET + 0x00
.set NET_PEER_DOMID, SI_NET + 0x04
.set NET_PORT, SI_NET + 0x08
.set NET_TX_RING_REF, SI_NET + 0x0c
.set NET_RX_RING_REF, SI_NET + 0x10
.set NET_BUFS_REF, SI_NET + 0x14
.set NET_BUFS_COUNT, SI_NET + 0x18
.set NET_MAC, SI_NET + 0x1c
.set NET_PEER_MAC, SI_NET + 0x24              # the peer's MAC, when the host wires one (PEER_MAC_WIRED)

# --- shared info (x86_32): vcpu_info[0] at 0, the port bitmaps at 0x800 / 0x880 ---
.set VCPU_UPCALL_PENDING, SHARED_INFO + 0
.set VCPU_UPCALL_MASK, SHARED_INFO + 1
.set VCPU_PENDING_SEL, SHARED_INFO + 4
.set EVTCHN_PENDING, SHARED_INFO + 0x800
.set EVTCHN_MASK, SHARED_INFO + 0x880
.set NR_EVENT_CHANNELS, 1024
.set SHARED_INFO_PFN, SHARED_INFO >> 12
.set GNTTAB_PFN, GNTTAB >> 12
.set GNTTAB_FLAGS, GNTTAB + GREF_FLAGS      # entry n's fields at [GNTTAB_x + n * 8]
.set GNTTAB_DOMID, GNTTAB + GREF_DOMID
.set GNTTAB_FRAME, GNTTAB + GREF_FRAME

# --- io/ring.h: a page: {req_prod, req_event, rsp_prod, rsp_event, pad[48]} then the slots ---
.set SRING_REQ_PROD, 0
.set SRING_REQ_EVENT, 4
.set SRING_RSP_PROD, 8
.set SRING_RSP_EVENT, 12
.set SRING_RING, 64
.set RING_SIZE, 256                      # both netif rings: 256 slots (__CONST_RING_SIZE)
.set RING_MASK, RING_SIZE - 1
# a driver's private view of a ring (Linux's struct {front,back}_ring): the index it produces
# privately (req_prod_pvt / rsp_prod_pvt), the index it consumes at (rsp_cons / req_cons), the page
.set RING_PVT, 0
.set RING_CONS, 4
.set RING_SRING, 8

# --- io/netif.h ---
.set NETIF_TX_SLOT, 12                   # tx request {u32 gref, u16 offset, flags, id, size}; response {u16 id, i16 status}
.set NETIF_RX_SLOT, 8                    # rx request {u16 id, pad, u32 gref}; response {u16 id, offset, flags, i16 status}
.set TXREQ_GREF, 0
.set TXREQ_OFFSET, 4
.set TXREQ_FLAGS, 6
.set TXREQ_ID, 8
.set TXREQ_SIZE, 10
.set TXRSP_ID, 0
.set TXRSP_STATUS, 2
.set RXREQ_ID, 0
.set RXREQ_GREF, 4
.set RXRSP_ID, 0
.set RXRSP_OFFSET, 2
.set RXRSP_FLAGS, 4
.set RXRSP_STATUS, 6
.set NETIF_RSP_OKAY, 0
.set NETIF_RSP_ERROR, 0xffff             # -1 as the i16 status
.set NETIF_RSP_DROPPED, 0xfffe           # -2
# seed 000's transmit change (vmexit's flag, not netif.h's): the frame's first bytes are in the
# request id's slot of the pre-shared header array; gref/offset then describe only the payload
.set XEN_NETTXF_shared_header, 0x10

# --- the frames both domains move (TCP_STREAM as the netperf guest: MSS segments, 60-byte ACKs) ---
.set PAGE_SIZE, 4096
.set ETH_HLEN, 14
.set HEADERS, 54                         # Ethernet 14 + IP 20 + TCP 20
.set MSS, 1448
.set ACK_FRAME, 60
.set TX_HDR_SLOT, 64                     # one header-array slot: an ACK fits whole
.set TX_HDR_SLOTS, PAGE_SIZE / TX_HDR_SLOT
.set MTU_BUFFER, 2048                    # seed 000's MTU-sized buffers: two per page

# ==== hypercall page and wrappers (asm/xen/hypercall.h) ====

# xen_init_hypercall_page(): what Xen's domain builder writes into a PV kernel's hypercall page: per
# hypercall nr, `mov eax, nr; int 0x82; ret` at hypercall_page + nr * 32.
xen_init_hypercall_page:
    push ebp
    mov ebp, esp
    xor ecx, ecx
.Lhcpage_stub:
    mov edx, ecx
    shl edx, 5
    mov byte ptr [hypercall_page + edx], 0xb8
    mov dword ptr [hypercall_page + edx + 1], ecx
    mov word ptr [hypercall_page + edx + 5], 0x82cd
    mov byte ptr [hypercall_page + edx + 7], 0xc3
    inc ecx
    cmp ecx, HYPERCALL_STUBS
    jb .Lhcpage_stub
    pop ebp
    ret

# HYPERVISOR_set_callbacks(event_address, failsafe_address): both in the kernel code segment.
HYPERVISOR_set_callbacks:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, KERNEL_CS
    mov ecx, [ebp + 8]
    mov edx, KERNEL_CS
    mov esi, [ebp + 12]
    call HYPERCALL_set_callbacks
    pop esi
    pop ebx
    pop ebp
    ret

# xen_register_callbacks(): Xen enters xen_hypervisor_callback for events and xen_failsafe_callback when
# it cannot return to the guest (arch/x86/xen/setup.c registers both at boot).
xen_register_callbacks:
    push ebp
    mov ebp, esp
    mov eax, xen_failsafe_callback
    push eax
    mov eax, xen_hypervisor_callback
    push eax
    call HYPERVISOR_set_callbacks
    add esp, 8
    pop ebp
    ret

# HYPERVISOR_memory_op(cmd, arg)
HYPERVISOR_memory_op:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    call HYPERCALL_memory_op
    pop ebx
    pop ebp
    ret

# HYPERVISOR_xen_version(cmd, arg): also the way to have pending events delivered
# (xen_force_evtchn_callback).
HYPERVISOR_xen_version:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    call HYPERCALL_xen_version
    pop ebx
    pop ebp
    ret

# HYPERVISOR_console_io(cmd, count, buffer)
HYPERVISOR_console_io:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    mov edx, [ebp + 16]
    call HYPERCALL_console_io
    pop ebx
    pop ebp
    ret

# HYPERVISOR_grant_table_op(cmd, uop, count): one call carries `count` operations.
HYPERVISOR_grant_table_op:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    mov edx, [ebp + 16]
    call HYPERCALL_grant_table_op
    pop ebx
    pop ebp
    ret

# HYPERVISOR_sched_op(cmd, arg)
HYPERVISOR_sched_op:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    call HYPERCALL_sched_op
    pop ebx
    pop ebp
    ret

# HYPERVISOR_event_channel_op(cmd, arg)
HYPERVISOR_event_channel_op:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    call HYPERCALL_event_channel_op
    pop ebx
    pop ebp
    ret

# HYPERVISOR_physdev_op(cmd, arg)
HYPERVISOR_physdev_op:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    call HYPERCALL_physdev_op
    pop ebx
    pop ebp
    ret

# ==== small kernel services ====

# xen_block(): sched_op(SCHEDOP_block). Xen re-enables event delivery (upcall_mask = 0) and returns
# at once if an event is pending, so a caller that checked for work with events masked loses no wake-up.
xen_block:
    push ebp
    mov ebp, esp
    xor eax, eax
    push eax
    mov eax, SCHEDOP_block
    push eax
    call HYPERVISOR_sched_op
    add esp, 8
    pop ebp
    ret

# xen_poweroff(): sched_op(SCHEDOP_shutdown, poweroff) -- the domain is done.
xen_poweroff:
    push ebp
    mov ebp, esp
    mov dword ptr [shutdown_reason], SHUTDOWN_poweroff
    mov eax, shutdown_reason
    push eax
    mov eax, SCHEDOP_shutdown
    push eax
    call HYPERVISOR_sched_op
    add esp, 8
    pop ebp
    ret

# xen_raw_console_write(str): the string through console_io (one hypercall).
xen_raw_console_write:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    xor ecx, ecx
.Lconsole_len:
    cmp byte ptr [edx + ecx], 0
    je .Lconsole_call
    inc ecx
    jmp .Lconsole_len
.Lconsole_call:
    push edx
    push ecx
    mov eax, CONSOLEIO_write
    push eax
    call HYPERVISOR_console_io
    add esp, 12
    pop ebp
    ret

# sprint_decimal(buffer, value) -> the address after the digits (no NUL): for the result line.
sprint_decimal:
    push ebp
    mov ebp, esp
    push ebx
    push edi
    mov edi, [ebp + 8]
    mov eax, [ebp + 12]
    mov ebx, 10
    xor ecx, ecx
.Lsprint_digit:
    xor edx, edx
    div ebx
    add dl, 0x30
    push edx
    inc ecx
    test eax, eax
    jnz .Lsprint_digit
.Lsprint_store:
    pop eax
    mov byte ptr [edi], al
    inc edi
    loop .Lsprint_store
    mov eax, edi
    pop edi
    pop ebx
    pop ebp
    ret

# memcpy(dst, src, len): whole dwords (rounded up; buffers are slot-sized, so the tail is harmless).
memcpy:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov edi, [ebp + 8]
    mov esi, [ebp + 12]
    mov ecx, [ebp + 16]
    add ecx, 3
    shr ecx, 2
    rep movsd dword ptr es:[edi], dword ptr [esi]
    pop edi
    pop esi
    pop ebp
    ret

# xen_add_to_physmap(space, idx, gpfn): place a Xen-owned page (shared info, a grant frame) in our RAM.
xen_add_to_physmap:
    push ebp
    mov ebp, esp
    mov word ptr [xatp], DOMID_SELF
    mov eax, [ebp + 8]
    mov dword ptr [xatp + 4], eax
    mov eax, [ebp + 12]
    mov dword ptr [xatp + 8], eax
    mov eax, [ebp + 16]
    mov dword ptr [xatp + 12], eax
    mov eax, xatp
    push eax
    mov eax, XENMEM_add_to_physmap
    push eax
    call HYPERVISOR_memory_op
    add esp, 8
    pop ebp
    ret

# xen_setup_shared_info(): the shared info page at SHARED_INFO (Xen zeroes it: every port unmasked).
xen_setup_shared_info:
    push ebp
    mov ebp, esp
    mov eax, SHARED_INFO_PFN
    push eax
    xor eax, eax
    push eax
    mov eax, XENMAPSPACE_shared_info
    push eax
    call xen_add_to_physmap
    add esp, 12
    pop ebp
    ret

# ==== event channels (drivers/xen/events.c, arch/x86/xen/irq.c) ====

# xen_irq_disable() / xen_irq_enable(): a PV kernel's cli/sti are the vcpu_info's upcall mask; on
# enable, an event that came while masked is delivered by any hypercall (xen_force_evtchn_callback).
xen_irq_disable:
    push ebp
    mov ebp, esp
    mov byte ptr [VCPU_UPCALL_MASK], 1
    pop ebp
    ret

xen_irq_enable:
    push ebp
    mov ebp, esp
    mov byte ptr [VCPU_UPCALL_MASK], 0
    mfence                              # the unmask before the pending check (barrier())
    cmp byte ptr [VCPU_UPCALL_PENDING], 0
    je .Lirq_enable_done
    call xen_force_evtchn_callback
.Lirq_enable_done:
    pop ebp
    ret

# xen_force_evtchn_callback(): xen_version(0), a hypercall that does nothing but return -- on its way
# back into the guest Xen enters the callback for the pending event.
xen_force_evtchn_callback:
    push ebp
    mov ebp, esp
    xor eax, eax
    push eax
    push eax
    call HYPERVISOR_xen_version
    add esp, 8
    pop ebp
    ret

# bind_evtchn_to_irqhandler(port, handler): remember who handles the port (the irq layer, flattened:
# one handler per port, called with the port).
bind_evtchn_to_irqhandler:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [ebp + 12]
    cmp ecx, NR_EVENT_CHANNELS
    jae .Lbind_handler_done
    mov dword ptr [evtchn_to_handler + ecx * 4], eax
.Lbind_handler_done:
    pop ebp
    ret

# notify_remote_via_evtchn(port): EVTCHNOP_send -- one hypercall, the other end's upcall.
notify_remote_via_evtchn:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov dword ptr [evtchn_op_arg], eax
    mov eax, evtchn_op_arg
    push eax
    mov eax, EVTCHNOP_send
    push eax
    call HYPERVISOR_event_channel_op
    add esp, 8
    pop ebp
    ret

# xen_hypervisor_callback: the entry Xen enters with {EIP, CS, EFLAGS} on the stack and upcall_mask
# set (set_callbacks' event address). Every register is the interrupted code's.
xen_hypervisor_callback:
    pushad
    push ebp
    mov ebp, esp
    call xen_evtchn_do_upcall
    pop ebp
    popad
    iretd

# xen_failsafe_callback: Xen could not load a segment on return; nothing of ours reloads them.
xen_failsafe_callback:
    iretd

# xen_evtchn_do_upcall(): clear upcall_pending, take the selector (xchg: Xen may set bits meanwhile),
# handle every pending & ~mask port of each selected word, then unmask event delivery; an event that
# arrived in between (upcall_pending set again) is delivered by forcing a callback.
xen_evtchn_do_upcall:
    push ebp
    mov ebp, esp
    push ebx
    inc dword ptr [upcalls]
    mov byte ptr [VCPU_UPCALL_PENDING], 0
    xor ebx, ebx
    xchg dword ptr [VCPU_PENDING_SEL], ebx
.Ldo_upcall_word:
    bsf ecx, ebx
    jz .Ldo_upcall_unmask
    btr ebx, ecx
    push ecx
    call evtchn_do_word
    add esp, 4
    jmp .Ldo_upcall_word
.Ldo_upcall_unmask:
    mov byte ptr [VCPU_UPCALL_MASK], 0
    mfence
    cmp byte ptr [VCPU_UPCALL_PENDING], 0
    je .Ldo_upcall_done
    call xen_force_evtchn_callback
.Ldo_upcall_done:
    pop ebx
    pop ebp
    ret

# evtchn_do_word(word): every port of pending[word] & ~mask[word], lowest first; each pending bit is
# cleared (clear_evtchn) before its handler runs, so an event sent during the handler is not lost.
evtchn_do_word:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
.Ldo_word_next:
    mov ebx, [EVTCHN_PENDING + esi * 4]
    mov eax, [EVTCHN_MASK + esi * 4]
    not eax
    and ebx, eax
    bsf ecx, ebx
    jz .Ldo_word_done
    lock btr dword ptr [EVTCHN_PENDING + esi * 4], ecx
    mov eax, esi
    shl eax, 5
    add eax, ecx
    push eax
    call generic_handle_irq
    add esp, 4
    jmp .Ldo_word_next
.Ldo_word_done:
    pop esi
    pop ebx
    pop ebp
    ret

# generic_handle_irq(port): the handler bound to the port, if any.
generic_handle_irq:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [evtchn_to_handler + ecx * 4]
    test eax, eax
    jz .Lhandle_irq_done
    push ecx
    call eax
    add esp, 4
.Lhandle_irq_done:
    pop ebp
    ret

# ==== grant table (drivers/xen/grant-table.c): entries in our own GNTTAB frame ====

# gnttab_init(): place grant frame 0 at GNTTAB (add_to_physmap, as an HVM guest does: our domains
# have no machine frames), then setup_table, which reports where the frame is.
gnttab_init:
    push ebp
    mov ebp, esp
    mov eax, GNTTAB_PFN
    push eax
    xor eax, eax
    push eax
    mov eax, XENMAPSPACE_grant_table
    push eax
    call xen_add_to_physmap
    add esp, 12
    mov word ptr [gnttab_setup], DOMID_SELF
    mov dword ptr [gnttab_setup + 4], 1
    mov eax, gnttab_frames
    mov dword ptr [gnttab_setup + 12], eax
    mov eax, 1
    push eax
    mov eax, gnttab_setup
    push eax
    mov eax, GNTTABOP_setup_table
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    movsx eax, word ptr [gnttab_setup + 8]
    pop ebp
    ret

# gnttab_grant_foreign_access_ref(ref, domid, frame, readonly): domid and frame first, then (wmb)
# the flags that make the entry valid -- Xen reads the flags first.
gnttab_grant_foreign_access_ref:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [ebp + 12]
    mov word ptr [GNTTAB_DOMID + ecx * 8], ax
    mov eax, [ebp + 16]
    mov dword ptr [GNTTAB_FRAME + ecx * 8], eax
    mov eax, GTF_permit_access
    cmp dword ptr [ebp + 20], 0
    je .Lgrant_access_flags
    or eax, GTF_readonly
.Lgrant_access_flags:
    mov word ptr [GNTTAB_FLAGS + ecx * 8], ax
    pop ebp
    ret

# gnttab_end_foreign_access_ref(ref) -> 1 if the grant is revoked, 0 if the other end still has it
# mapped (GTF_reading / GTF_writing): the flags are cleared only as they were seen (cmpxchg).
gnttab_end_foreign_access_ref:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
.Lend_access_retry:
    movzx eax, word ptr [GNTTAB_FLAGS + edx * 8]
    test eax, GTF_in_use
    jnz .Lend_access_busy
    xor ecx, ecx
    lock cmpxchg word ptr [GNTTAB_FLAGS + edx * 8], cx
    jne .Lend_access_retry
    mov eax, 1
    pop ebp
    ret
.Lend_access_busy:
    xor eax, eax
    pop ebp
    ret

# gnttab_grant_foreign_transfer_ref(ref, domid, pfn): offer a page to be replaced by one the other
# domain transfers (page flipping); pfn is where the flipped page's contents will be.
gnttab_grant_foreign_transfer_ref:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [ebp + 12]
    mov word ptr [GNTTAB_DOMID + ecx * 8], ax
    mov eax, [ebp + 16]
    mov dword ptr [GNTTAB_FRAME + ecx * 8], eax
    mov word ptr [GNTTAB_FLAGS + ecx * 8], GTF_accept_transfer
    pop ebp
    ret

# gnttab_end_foreign_transfer_ref(ref) -> the frame that arrived, or 0 if no transfer started (the
# offer is then withdrawn). A committed transfer is waited for until completed.
gnttab_end_foreign_transfer_ref:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
.Lend_transfer_uncommitted:
    movzx eax, word ptr [GNTTAB_FLAGS + edx * 8]
    test eax, GTF_transfer_committed
    jnz .Lend_transfer_wait
    xor ecx, ecx
    lock cmpxchg word ptr [GNTTAB_FLAGS + edx * 8], cx
    jne .Lend_transfer_uncommitted
    xor eax, eax
    pop ebp
    ret
.Lend_transfer_wait:
    movzx eax, word ptr [GNTTAB_FLAGS + edx * 8]
    test eax, GTF_transfer_completed
    jz .Lend_transfer_wait
    mov eax, [GNTTAB_FRAME + edx * 8]
    mov word ptr [GNTTAB_FLAGS + edx * 8], 0
    pop ebp
    ret

# ==== rings (io/ring.h's macros as functions over a private ring view) ====

# shared_ring_init(sring): SHARED_RING_INIT -- both producers at 0, both events at 1 (notify on the
# first entry).
shared_ring_init:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov dword ptr [eax + SRING_REQ_PROD], 0
    mov dword ptr [eax + SRING_RSP_PROD], 0
    mov dword ptr [eax + SRING_REQ_EVENT], 1
    mov dword ptr [eax + SRING_RSP_EVENT], 1
    pop ebp
    ret

# ring_init(ring, sring): FRONT_RING_INIT / BACK_RING_INIT -- private indices at 0, the page.
ring_init:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov ecx, [ebp + 12]
    mov dword ptr [eax + RING_PVT], 0
    mov dword ptr [eax + RING_CONS], 0
    mov dword ptr [eax + RING_SRING], ecx
    pop ebp
    ret

# ring_push_and_check_notify(ring, prod offset, event offset) -> 1 if the other end must be told:
# wmb, publish the private producer, mb, then notify iff (new - event) < (new - old), unsigned -- the
# other end asked to be woken at an index this push passed.
ring_push_and_check_notify:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
    mov ebx, [esi + RING_SRING]
    add ebx, [ebp + 12]                 # &sring->prod
    mov ecx, [ebx]                      # old
    mov edx, [esi + RING_PVT]           # new
    mov dword ptr [ebx], edx            # (entries were written before: x86 keeps stores in order)
    mfence
    mov ebx, [esi + RING_SRING]
    add ebx, [ebp + 16]
    mov eax, edx
    sub eax, [ebx]                      # new - event
    sub edx, ecx                        # new - old
    cmp eax, edx
    setb al
    movzx eax, al
    pop esi
    pop ebx
    pop ebp
    ret

# ring_push_requests_and_check_notify(ring): RING_PUSH_REQUESTS_AND_CHECK_NOTIFY (front end).
ring_push_requests_and_check_notify:
    push ebp
    mov ebp, esp
    mov eax, SRING_REQ_EVENT
    push eax
    mov eax, SRING_REQ_PROD
    push eax
    push dword ptr [ebp + 8]
    call ring_push_and_check_notify
    add esp, 12
    pop ebp
    ret

# ring_push_responses_and_check_notify(ring): RING_PUSH_RESPONSES_AND_CHECK_NOTIFY (back end).
ring_push_responses_and_check_notify:
    push ebp
    mov ebp, esp
    mov eax, SRING_RSP_EVENT
    push eax
    mov eax, SRING_RSP_PROD
    push eax
    push dword ptr [ebp + 8]
    call ring_push_and_check_notify
    add esp, 12
    pop ebp
    ret

# ring_has_unconsumed_requests(ring) -> how many requests the back end may take: those produced, but
# never more than the slots its own unpublished responses leave (RING_HAS_UNCONSUMED_REQUESTS).
ring_has_unconsumed_requests:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov edx, [ecx + RING_SRING]
    mov eax, [edx + SRING_REQ_PROD]
    sub eax, [ecx + RING_CONS]          # req = req_prod - req_cons
    mov edx, [ecx + RING_CONS]
    sub edx, [ecx + RING_PVT]
    neg edx
    add edx, RING_SIZE                  # rsp = RING_SIZE - (req_cons - rsp_prod_pvt)
    cmp eax, edx
    jbe .Lunconsumed_req_done
    mov eax, edx
.Lunconsumed_req_done:
    pop ebp
    ret

# ring_has_unconsumed_responses(ring) -> rsp_prod - rsp_cons (RING_HAS_UNCONSUMED_RESPONSES).
ring_has_unconsumed_responses:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov edx, [ecx + RING_SRING]
    mov eax, [edx + SRING_RSP_PROD]
    sub eax, [ecx + RING_CONS]
    pop ebp
    ret

# ring_final_check_for_requests(ring) -> more work: if none, ask to be notified at the next request
# (req_event = req_cons + 1), mb, and look again -- the request that raced the re-arm is seen here.
ring_final_check_for_requests:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 8]
    call ring_has_unconsumed_requests
    test eax, eax
    jnz .Lfinal_req_done
    mov ecx, [esp]
    mov edx, [ecx + RING_SRING]
    mov eax, [ecx + RING_CONS]
    inc eax
    mov dword ptr [edx + SRING_REQ_EVENT], eax
    mfence
    call ring_has_unconsumed_requests
.Lfinal_req_done:
    add esp, 4
    pop ebp
    ret

# ring_final_check_for_responses(ring) -> more work: the same for the front end (rsp_event).
ring_final_check_for_responses:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 8]
    call ring_has_unconsumed_responses
    test eax, eax
    jnz .Lfinal_rsp_done
    mov ecx, [esp]
    mov edx, [ecx + RING_SRING]
    mov eax, [ecx + RING_CONS]
    inc eax
    mov dword ptr [edx + SRING_RSP_EVENT], eax
    mfence
    call ring_has_unconsumed_responses
.Lfinal_rsp_done:
    add esp, 4
    pop ebp
    ret

# ring_slot(ring, index, slot size) -> the address of slot index & RING_MASK (RING_GET_REQUEST /
# RING_GET_RESPONSE: requests and responses share the slots).
ring_slot:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [ebp + 12]
    and eax, RING_MASK
    imul eax, [ebp + 16]
    add eax, [ecx + RING_SRING]
    add eax, SRING_RING
    pop ebp
    ret

.align 4
upcalls:                                # callbacks entered (the domain's own count)
    .long 0
shutdown_reason:
    .long 0
evtchn_op_arg:                          # the argument of one event_channel_op (largest: 12 bytes)
    .long 0, 0, 0
gnttab_setup:                           # struct gnttab_setup_table {u16 dom, nr_frames, i16 status, frame_list}
    .long 0, 0, 0, 0
gnttab_frames:                          # the frame list setup_table fills
    .long 0
xatp:                                   # struct xen_add_to_physmap {u16 domid, u16 size, space, idx, gpfn}
    .long 0, 0, 0, 0
evtchn_to_handler:                      # port -> handler
    .fill NR_EVENT_CHANNELS * 4, 1, 0
.align 32
hypercall_page:                         # filled by xen_init_hypercall_page
    .fill HYPERCALL_STUBS * 32, 1, 0xcc
