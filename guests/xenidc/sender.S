# sender.S -- domU 2 of the xenidc scenario: the sending end of a XenSocket stream (the "client" of
# xensocket.c, which connects). It sends STREAM_BYTES in sends of BUF bytes to the domU whose MAC is
# 00:16:3e:00:00:DEST, through pages that domain granted, if dom0's directory lists it on this host.
#
# Boot: hypercall page, shared info, our grant table frame, set_callbacks. xen_connect: the peer's MAC
# looked up in the directory (absent: refused -- a real agent would fall back to the network path);
# its descriptor mapped (GNTTABOP_map_grant_ref, under the ref the directory publishes), its event port
# bound (EVTCHNOP_bind_interdomain), its 2^order data pages mapped one map call each, following the
# chain of refs. Then xen_sendmsg(BUF) until STREAM_BYTES are sent; sender_has_shutdown set, one
# last notification, a result line, sched_op shutdown.
#
# By construction: map_grant_ref calls at setup: 1 + 2^order (no map on the data path); per send one
# EVTCHNOP_send; per full ring met: sender_is_blocking set, one EVTCHNOP_send, one sched_op block per
# wake-up until there is room. Bad input from the other end (an order beyond the 64 pages of our
# window, a ref it did not grant, free space beyond the ring) is refused with its error code, after
# unmapping what was mapped.
.include "../lib/boot.S"

.ifndef DEST
.set DEST, 1                            # the last byte of the receiver's MAC
.endif
.ifndef BAD_AVAIL
.set BAD_AVAIL, 0                       # tests: claim more free space than the ring has
.endif

# guest-physical layout (no paging; the image is at 1 MiB, the stack below 0x90000)
.set SHARED_INFO, 0x10000
.set GNTTAB, 0x11000                    # we grant nothing; the helpers want the name
.set SEND_BUF, 0x300000                 # the application's buffer
.set CONNECT_TRIES, 16                  # yields while the peer has not granted its descriptor yet

.include "../xennet/netif.S"
.include "xensock.S"

# where the peer's pages appear (our grant window): the descriptor, then the ring
.set GW_DESC, GRANT_WINDOW
.set GW_RING, GRANT_WINDOW + 0x1000
.set D_PORT, GW_DESC + DESC_SERVER_EVTCHN_PORT
.set D_ORDER, GW_DESC + DESC_BUFFER_ORDER
.set D_FIRST_GREF, GW_DESC + DESC_BUFFER_FIRST_GREF
.set D_SEND_OFFSET, GW_DESC + DESC_SEND_OFFSET
.set D_TOTAL_SENT, GW_DESC + DESC_TOTAL_SENT
.set D_BLOCKING, GW_DESC + DESC_SENDER_IS_BLOCKING
.set D_AVAIL, GW_DESC + DESC_AVAIL_BYTES
.set D_SHUTDOWN, GW_DESC + DESC_SENDER_HAS_SHUTDOWN
.set D_WAITING, GW_DESC + DESC_RECEIVER_IS_WAITING
.set MAX_RING_PAGES, 1 << MAX_RING_ORDER
.set GNTST_NEG_MASK, 0xffff

# start_kernel(): Xen's PV entry leaves start_info's address in ESI.
start_kernel:
    push ebp
    mov ebp, esp
    mov dword ptr [xen_start_info], esi
    call xs_start_kernel
    call xen_connect
.if BAD_AVAIL
    mov eax, [ring_bytes]
    add eax, 0x1000
    mov dword ptr [D_AVAIL], eax
    push dword ptr [evtchn_port]
    call notify_remote_via_evtchn
    add esp, 4
.endif
    call xs_send_stream
    call xen_shutdown
    push dword ptr [sent]
    mov eax, msg_sent
    push eax
    call xs_report
    add esp, 8
    call xen_poweroff
    xor eax, eax
    pop ebp
    ret

# xen_connect(): the client's half (xensocket.c's xen_connect): the peer, its descriptor, its event
# channel, its ring. Each failure is refused with its code.
xen_connect:
    push ebp
    mov ebp, esp
    mov eax, peer_mac
    push eax
    call xs_directory_lookup
    add esp, 4
    test eax, eax
    js .Lconnect_not_coresident
    mov dword ptr [otherend_id], eax
    push eax
    call xs_directory_desc_ref
    add esp, 4
    mov dword ptr [descriptor_gref], eax
    call client_map_descriptor_page
    test eax, eax
    jnz .Lconnect_map_failed
    call client_bind_event_channel
    test eax, eax
    jnz .Lconnect_no_port
    call client_map_buffer_pages
    test eax, eax
    jnz .Lconnect_map_failed
    pop ebp
    ret
.Lconnect_not_coresident:
    neg eax
    push eax
    mov eax, msg_not_coresident
    push eax
    call xs_refuse
.Lconnect_map_failed:
    neg eax
    push eax
    cmp dword ptr [evtchn_port], 0      # bound: tell the receiver we gave up (xen_connect's error path)
    je .Lconnect_map_refuse
    push dword ptr [evtchn_port]
    call notify_remote_via_evtchn
    add esp, 4
.Lconnect_map_refuse:
    mov eax, msg_map_failed
    push eax
    call xs_refuse
.Lconnect_no_port:
    neg eax
    push eax
    mov eax, msg_no_port
    push eax
    call xs_refuse

# xs_map_page(ref, host_addr) -> the GNTST status (0: mapped): one GNTTABOP_map_grant_ref of one op,
# read-write, from the peer; the handle is kept by page (host_addr's index in the window).
xs_map_page:
    push ebp
    mov ebp, esp
    mov edx, map_op
    mov eax, [ebp + 12]
    mov dword ptr [edx + MAP_HOST_ADDR], eax
    mov dword ptr [edx + MAP_HOST_ADDR + 4], 0
    mov dword ptr [edx + MAP_FLAGS], GNTMAP_host_map
    mov eax, [ebp + 8]
    mov dword ptr [edx + MAP_REF], eax
    mov eax, [otherend_id]
    mov word ptr [edx + MAP_DOM], ax
    mov eax, 1
    push eax
    push edx
    mov eax, GNTTABOP_map_grant_ref
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    mov edx, map_op
    movsx eax, word ptr [edx + MAP_STATUS]
    test eax, eax
    jnz .Lmap_page_done
    mov ecx, [ebp + 12]
    sub ecx, GRANT_WINDOW
    shr ecx, 12
    mov edx, [edx + MAP_HANDLE]
    mov dword ptr [handles + ecx * 4], edx
.Lmap_page_done:
    pop ebp
    ret

# client_map_descriptor_page() -> 0 or the GNTST status: map the peer's descriptor; while the peer
# has not granted it yet (GNTST_general_error), yield and try again, CONNECT_TRIES times.
client_map_descriptor_page:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, CONNECT_TRIES
.Lmap_desc_try:
    mov eax, GW_DESC
    push eax
    push dword ptr [descriptor_gref]
    call xs_map_page
    add esp, 8
    test eax, eax
    jz .Lmap_desc_done
    dec ebx
    jz .Lmap_desc_done
    xor eax, eax
    push eax
    mov eax, SCHEDOP_yield
    push eax
    call HYPERVISOR_sched_op
    add esp, 8
    jmp .Lmap_desc_try
.Lmap_desc_done:
    pop ebx
    pop ebp
    ret

# client_bind_event_channel() -> 0 or -errno: bind_interdomain to the port the descriptor names.
client_bind_event_channel:
    push ebp
    mov ebp, esp
    mov eax, [otherend_id]
    mov word ptr [evtchn_op_arg], ax
    mov eax, [D_PORT]
    mov dword ptr [evtchn_op_arg + 4], eax
    mov eax, evtchn_op_arg
    push eax
    mov eax, EVTCHNOP_bind_interdomain
    push eax
    call HYPERVISOR_event_channel_op
    add esp, 8
    test eax, eax
    jnz .Lbind_port_done
    mov eax, [evtchn_op_arg + 8]
    mov dword ptr [evtchn_port], eax
    mov ecx, xs_interrupt
    push ecx
    push eax
    call bind_evtchn_to_irqhandler
    add esp, 8
    xor eax, eax
.Lbind_port_done:
    pop ebp
    ret

# client_map_buffer_pages() -> 0, -EINVAL (an order beyond our window) or the failing GNTST status:
# page 0 under the descriptor's first ref, page i under the ref page i-1 holds; on failure every page
# mapped so far is unmapped again.
client_map_buffer_pages:
    push ebp
    mov ebp, esp
    push ebx
    mov ecx, [D_ORDER]
    cmp ecx, MAX_RING_ORDER
    ja .Lmap_ring_order
    mov eax, 1
    shl eax, cl
    mov dword ptr [ring_pages], eax
    shl eax, 12
    mov dword ptr [ring_bytes], eax
    xor ebx, ebx
.Lmap_ring_next:
    mov eax, [D_FIRST_GREF]
    test ebx, ebx
    jz .Lmap_ring_ref
    mov ecx, ebx
    dec ecx
    shl ecx, 12
    mov eax, [GW_RING + ecx]            # the chain: page ebx-1's first word
.Lmap_ring_ref:
    mov ecx, ebx
    shl ecx, 12
    add ecx, GW_RING
    push ecx
    push eax
    call xs_map_page
    add esp, 8
    test eax, eax
    jnz .Lmap_ring_failed
    inc ebx
    mov dword ptr [mapped_pages], ebx
    cmp ebx, [ring_pages]
    jb .Lmap_ring_next
    xor eax, eax
    pop ebx
    pop ebp
    ret
.Lmap_ring_order:
    call client_unmap_buffer_pages
    mov eax, EINVAL_NEG
    pop ebx
    pop ebp
    ret
.Lmap_ring_failed:
    push eax
    call client_unmap_buffer_pages
    pop eax
    pop ebx
    pop ebp
    ret

# client_unmap_buffer_pages(): unmap every data page mapped, then set sender_has_shutdown and unmap the
# descriptor (err_unmap_buffer and err_unmap_descriptor of xen_connect), one unmap call each, as
# xensocket.c does.
client_unmap_buffer_pages:
    push ebp
    mov ebp, esp
    push ebx
.Lunmap_next:
    mov ebx, [mapped_pages]
    test ebx, ebx
    jz .Lunmap_descriptor
    dec ebx
    mov dword ptr [mapped_pages], ebx
    mov eax, ebx
    shl eax, 12
    add eax, GW_RING
    push eax
    call xs_unmap_page
    add esp, 4
    jmp .Lunmap_next
.Lunmap_descriptor:
    mov dword ptr [D_SHUTDOWN], 1       # as client_unmap_descriptor_page: the receiver stops waiting
    mov eax, GW_DESC
    push eax
    call xs_unmap_page
    add esp, 4
    pop ebx
    pop ebp
    ret

# xs_unmap_page(host_addr): GNTTABOP_unmap_grant_ref of the handle kept for that page.
xs_unmap_page:
    push ebp
    mov ebp, esp
    mov edx, unmap_op
    mov eax, [ebp + 8]
    mov dword ptr [edx + UNMAP_HOST_ADDR], eax
    mov dword ptr [edx + UNMAP_HOST_ADDR + 4], 0
    sub eax, GRANT_WINDOW
    shr eax, 12
    mov eax, [handles + eax * 4]
    mov dword ptr [edx + UNMAP_HANDLE], eax
    mov eax, 1
    push eax
    push edx
    mov eax, GNTTABOP_unmap_grant_ref
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    pop ebp
    ret

# xs_send_stream(): STREAM_BYTES in xen_sendmsg calls of BUF bytes from the application's buffer.
xs_send_stream:
    push ebp
    mov ebp, esp
.Lsend_stream_next:
    cmp dword ptr [sent], STREAM_BYTES
    jae .Lsend_stream_done
    mov eax, BUF
    push eax
    mov eax, SEND_BUF
    push eax
    call xen_sendmsg
    add esp, 8
    test eax, eax
    js .Lsend_stream_bad
    add dword ptr [sent], eax
    jmp .Lsend_stream_next
.Lsend_stream_bad:
    push dword ptr [D_AVAIL]
    mov eax, msg_bad_descriptor
    push eax
    call xs_refuse
.Lsend_stream_done:
    pop ebp
    ret

# xen_sendmsg(buf, len) -> len, or -EINVAL for a descriptor whose free space or write offset lies
# beyond the ring: copy what fits, waiting (send_data_wait) while the ring is full; one notification
# when the whole send is in the ring (NOTIFY_EVERY_SEND=0: only if the receiver is waiting).
xen_sendmsg:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx                        # copied
.Lsendmsg_next:
    cmp ebx, [ebp + 12]
    jae .Lsendmsg_notify
    call xs_writable
    test eax, eax
    js .Lsendmsg_done
    jnz .Lsendmsg_copy
    call send_data_wait
    jmp .Lsendmsg_next
.Lsendmsg_copy:
    mov ecx, [ebp + 12]
    sub ecx, ebx
    cmp eax, ecx
    jbe .Lsendmsg_bytes
    mov eax, ecx
.Lsendmsg_bytes:
    push eax
    mov eax, [ebp + 8]
    add eax, ebx
    push eax
    call xs_copy_in
    add esp, 8
    add ebx, eax
    jmp .Lsendmsg_next
.Lsendmsg_notify:
.if NOTIFY_EVERY_SEND
.else
    xor eax, eax                        # take the flag (xchg is locked: the ring's new bytes are
    xchg dword ptr [D_WAITING], eax     # visible before): only the first send after the receiver
    test eax, eax                       # armed it notifies, as a push passing io/ring.h's req_event
    jz .Lsendmsg_quiet
.endif
    push dword ptr [evtchn_port]
    call notify_remote_via_evtchn
    add esp, 4
    inc dword ptr [notifications]
.Lsendmsg_quiet:
    mov eax, ebx
.Lsendmsg_done:
    pop ebx
    pop ebp
    ret

# xs_writable() -> the ring's free bytes (avail_bytes), or -EINVAL if they or the write offset lie
# beyond the ring (the receiver can write both: never trusted).
xs_writable:
    push ebp
    mov ebp, esp
    mov eax, [D_AVAIL]
    cmp eax, [ring_bytes]
    ja .Lwritable_bad
    mov ecx, [D_SEND_OFFSET]
    cmp ecx, [ring_bytes]
    jae .Lwritable_bad
    pop ebp
    ret
.Lwritable_bad:
    mov eax, EINVAL_NEG
    pop ebp
    ret

# is_writeable() -> nonzero if there is room (or the descriptor is bad): what send_data_wait wakes for.
is_writeable:
    push ebp
    mov ebp, esp
    call xs_writable
    pop ebp
    ret

# send_data_wait(): the ring is full: raise sender_is_blocking and tell the receiver (it may be asleep
# with data to take), then sleep until there is room; the flag is dropped once awake.
send_data_wait:
    push ebp
    mov ebp, esp
    mov dword ptr [D_BLOCKING], 1
    mfence
    push dword ptr [evtchn_port]
    call notify_remote_via_evtchn
    add esp, 4
    inc dword ptr [notifications]
.Lsend_wait_again:
    mov eax, is_writeable
    push eax
    call xs_wait_event
    add esp, 4
    inc dword ptr [waits]
    call is_writeable
    test eax, eax
    jz .Lsend_wait_again
    mov dword ptr [D_BLOCKING], 0
    pop ebp
    ret

# xs_copy_in(src, bytes) -> the bytes placed: one chunk up to the ring's end copied in from src, the
# write offset advanced, then the free space taken (lock sub: the receiver adds to it concurrently).
xs_copy_in:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [D_SEND_OFFSET]
    push dword ptr [ring_bytes]
    push dword ptr [ebp + 12]
    push esi
    call xs_chunk
    add esp, 12
    mov ebx, eax
    push ebx
    push dword ptr [ebp + 8]
    lea eax, [GW_RING + esi]
    push eax
    call memcpy
    add esp, 12
    lea eax, [esi + ebx]
    mov ecx, [ring_bytes]
    dec ecx
    and eax, ecx
    mov dword ptr [D_SEND_OFFSET], eax
    add dword ptr [D_TOTAL_SENT], ebx
    lock sub dword ptr [D_AVAIL], ebx
    mov eax, ebx
    pop esi
    pop ebx
    pop ebp
    ret

# xen_shutdown(): sender_has_shutdown, then one notification so a waiting receiver sees it.
xen_shutdown:
    push ebp
    mov ebp, esp
    mov dword ptr [D_SHUTDOWN], 1
    push dword ptr [evtchn_port]
    call notify_remote_via_evtchn
    add esp, 4
    inc dword ptr [notifications]
    pop ebp
    ret

peer_mac:
    .byte 0x00, 0x16, 0x3e, 0x00, 0x00, DEST
msg_sent:
    .asciz "xensock: sent "
msg_not_coresident:
    .asciz "xensock: peer not co-resident, refused: -errno "
msg_map_failed:
    .asciz "xensock: mapping the peer's pages failed, refused: -status "
msg_no_port:
    .asciz "xensock: no event channel, refused: -errno "
msg_bad_descriptor:
    .asciz "xensock: descriptor beyond the ring, refused: avail_bytes "
.align 4
xen_start_info:
    .long 0
otherend_id:
    .long 0
descriptor_gref:
    .long 0
evtchn_port:
    .long 0
ring_pages:
    .long 0
ring_bytes:
    .long 0
mapped_pages:
    .long 0
sent:
    .long 0
notifications:                          # EVTCHNOP_send to the receiver
    .long 0
waits:                                  # sched_op block on a full ring
    .long 0
map_op:                                 # struct gnttab_map_grant_ref
    .fill MAP_SIZE, 1, 0
unmap_op:                               # struct gnttab_unmap_grant_ref
    .fill UNMAP_SIZE, 1, 0
handles:                                # grant handle per window page (descriptor, then the ring)
    .fill (MAX_RING_PAGES + 1) * 4, 1, 0
