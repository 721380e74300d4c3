# receiver.S -- domU 1 of the xenidc scenario: the receiving end of a XenSocket stream (the "server"
# of xensocket.c, which binds). No NIC and no netfront: its peer is a co-resident domU, reached through
# pages it grants.
#
# Boot: hypercall page, shared info, our grant table frame, set_callbacks. xen_bind: the peer's MAC
# looked up in dom0's directory (not there, or ourselves: refused); the descriptor page granted under
# ref 8 (the ref the directory publishes for us), an unbound event port for the peer written into it,
# 2^RING_ORDER data pages granted under refs 9.. and chained (page i-1's first word is page i's ref).
# Then STREAM_BYTES are received with xen_recvmsg(BUF) calls; a result line; sched_op shutdown.
#
# By construction: grant entries written at setup: 1 + 2^RING_ORDER; hypercalls at setup: setup_table,
# alloc_unbound; per chunk copied out of the ring: one EVTCHNOP_send if the sender is blocking; per
# empty ring met: one sched_op block. Bad input from the other end -- free space beyond the ring or a
# read offset outside it -- ends the stream with a message, never a read outside our pages.
.include "../lib/boot.S"

.ifndef PEER
.set PEER, 2                            # the last byte of the sender's MAC, 00:16:3e:00:00:PEER
.endif
.ifndef BAD_ORDER
.set BAD_ORDER, 0                       # tests: announce a ring 2^BAD_ORDER times the one granted
.endif

# guest-physical layout (no paging; the image is at 1 MiB, the stack below 0x90000)
.set SHARED_INFO, 0x10000
.set GNTTAB, 0x11000
.set DESC_PAGE, 0x12000
.set RING_BASE, 0x200000                # the data pages, contiguous (up to 64 pages)
.set RECV_BUF, 0x300000                 # the application's buffer

.include "../xennet/netif.S"
.include "xensock.S"

.set RING_PAGES, 1 << RING_ORDER
.set RING_BYTES, RING_PAGES << 12
.set RING_MASK_BYTES, RING_BYTES - 1
.set ANNOUNCED_ORDER, RING_ORDER + BAD_ORDER
.set DESC_PFN, DESC_PAGE >> 12
.set RING_PFN, RING_BASE >> 12
.set D_PORT, DESC_PAGE + DESC_SERVER_EVTCHN_PORT
.set D_ORDER, DESC_PAGE + DESC_BUFFER_ORDER
.set D_FIRST_GREF, DESC_PAGE + DESC_BUFFER_FIRST_GREF
.set D_RECV_OFFSET, DESC_PAGE + DESC_RECV_OFFSET
.set D_TOTAL_RECEIVED, DESC_PAGE + DESC_TOTAL_RECEIVED
.set D_BLOCKING, DESC_PAGE + DESC_SENDER_IS_BLOCKING
.set D_AVAIL, DESC_PAGE + DESC_AVAIL_BYTES
.set D_SHUTDOWN, DESC_PAGE + DESC_SENDER_HAS_SHUTDOWN
.set D_WAITING, DESC_PAGE + DESC_RECEIVER_IS_WAITING

# start_kernel(): Xen's PV entry leaves start_info's address in ESI.
start_kernel:
    push ebp
    mov ebp, esp
    mov dword ptr [xen_start_info], esi
    call xs_start_kernel
    call xen_bind
    call xs_receive_stream
    push dword ptr [received]
    mov eax, msg_received
    push eax
    call xs_report
    add esp, 8
    call xen_poweroff
    xor eax, eax
    pop ebp
    ret

# xen_bind(): the server's half of the connection (xensocket.c's xen_bind): who the peer is, then the
# descriptor, the event channel and the data pages.
xen_bind:
    push ebp
    mov ebp, esp
    mov eax, peer_mac
    push eax
    call xs_directory_lookup
    add esp, 4
    test eax, eax
    js .Lbind_not_coresident
    mov dword ptr [otherend_id], eax
    call server_allocate_descriptor_page
    call server_allocate_event_channel
    test eax, eax
    jnz .Lbind_no_port
    call server_allocate_buffer_pages
    pop ebp
    ret
.Lbind_not_coresident:
    neg eax
    push eax
    mov eax, msg_not_coresident
    push eax
    call xs_refuse
.Lbind_no_port:
    neg eax
    push eax
    mov eax, msg_no_port
    push eax
    call xs_refuse

# server_allocate_descriptor_page(): initialize_descriptor_page (no port, no ring yet, the ring's
# free space 0) and grant it read-write to the peer under XS_DESC_REF.
server_allocate_descriptor_page:
    push ebp
    mov ebp, esp
    push edi
    mov edi, DESC_PAGE
    mov ecx, 1024
    xor eax, eax
    rep stosd dword ptr es:[edi], eax
    mov dword ptr [D_PORT], -1
    mov dword ptr [D_ORDER], -1
    mov dword ptr [D_FIRST_GREF], -28   # -ENOSPC, as XenSocket leaves it until the pages exist
    xor eax, eax
    push eax
    mov eax, DESC_PFN
    push eax
    push dword ptr [otherend_id]
    mov eax, XS_DESC_REF
    push eax
    call gnttab_grant_foreign_access_ref
    add esp, 16
    pop edi
    pop ebp
    ret

# server_allocate_event_channel() -> 0 or -errno: EVTCHNOP_alloc_unbound {DOMID_SELF, the peer}; the
# port goes into the descriptor for the peer to bind, and to our handler.
server_allocate_event_channel:
    push ebp
    mov ebp, esp
    mov word ptr [evtchn_op_arg], DOMID_SELF
    mov eax, [otherend_id]
    mov word ptr [evtchn_op_arg + 2], ax
    mov eax, evtchn_op_arg
    push eax
    mov eax, EVTCHNOP_alloc_unbound
    push eax
    call HYPERVISOR_event_channel_op
    add esp, 8
    test eax, eax
    jnz .Lalloc_port_done
    mov eax, [evtchn_op_arg + 4]
    mov dword ptr [evtchn_port], eax
    mov dword ptr [D_PORT], eax
    mov ecx, xs_interrupt
    push ecx
    push eax
    call bind_evtchn_to_irqhandler
    add esp, 8
    xor eax, eax
.Lalloc_port_done:
    pop ebp
    ret

# server_allocate_buffer_pages(): grant the RING_PAGES data pages, chain their refs (page i-1 holds
# page i's ref), then publish the first ref, the order and the free space -- the order last, as the
# peer reads it to know the ring exists.
server_allocate_buffer_pages:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx
.Lbuffer_grant:
    xor eax, eax
    push eax
    mov eax, RING_PFN
    add eax, ebx
    push eax
    push dword ptr [otherend_id]
    mov eax, XS_BUFFER_REF
    add eax, ebx
    push eax
    call gnttab_grant_foreign_access_ref
    add esp, 16
    test ebx, ebx
    jz .Lbuffer_next
    mov eax, XS_BUFFER_REF              # chain: page ebx-1 holds ref XS_BUFFER_REF + ebx
    add eax, ebx
    mov ecx, ebx
    dec ecx
    shl ecx, 12
    mov dword ptr [RING_BASE + ecx], eax
.Lbuffer_next:
    inc ebx
    cmp ebx, RING_PAGES
    jb .Lbuffer_grant
    mov dword ptr [D_FIRST_GREF], XS_BUFFER_REF
    mov dword ptr [D_AVAIL], RING_BYTES
    mov dword ptr [D_ORDER], ANNOUNCED_ORDER
    pop ebx
    pop ebp
    ret

# xs_receive_stream(): STREAM_BYTES in xen_recvmsg calls of BUF bytes; stops early if the sender shut
# down; a bad descriptor refuses the rest.
xs_receive_stream:
    push ebp
    mov ebp, esp
.Lstream_next:
    cmp dword ptr [received], STREAM_BYTES
    jae .Lstream_done
    mov eax, BUF
    push eax
    mov eax, RECV_BUF
    push eax
    call xen_recvmsg
    add esp, 8
    test eax, eax
    js .Lstream_bad
    jz .Lstream_done
    add dword ptr [received], eax
    jmp .Lstream_next
.Lstream_bad:
    push dword ptr [D_AVAIL]
    mov eax, msg_bad_descriptor
    push eax
    call xs_refuse
.Lstream_done:
    pop ebp
    ret

# xen_recvmsg(buf, size) -> bytes copied (0: the sender shut down with the ring empty; -EINVAL: the
# descriptor says more is free or readable than the ring holds). Returns once something was copied and
# the ring is empty (target 1 byte, no MSG_WAITALL), else waits for data.
xen_recvmsg:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    xor ebx, ebx                        # copied
.Lrecv_next:
    cmp ebx, [ebp + 12]
    jae .Lrecv_done
    call xs_readable
    test eax, eax
    js .Lrecv_done_eax
    jnz .Lrecv_copy
    test ebx, ebx
    jnz .Lrecv_done
    cmp dword ptr [D_SHUTDOWN], 0
    jne .Lrecv_done
    call receive_data_wait
    jmp .Lrecv_next
.Lrecv_copy:
    mov ecx, [ebp + 12]
    sub ecx, ebx
    cmp eax, ecx
    jbe .Lrecv_bytes
    mov eax, ecx
.Lrecv_bytes:
    push eax
    push ebx
    push dword ptr [ebp + 8]
    call xs_copy_out
    add esp, 12
    add ebx, eax
    jmp .Lrecv_next
.Lrecv_done:
    mov eax, ebx
.Lrecv_done_eax:
    pop esi
    pop ebx
    pop ebp
    ret

# receive_data_wait(): sleep until data, the sender's shutdown or a bad descriptor. With
# NOTIFY_EVERY_SEND=0 the sender notifies only while receiver_is_waiting is up: raised before the last
# look at the ring (mfence: the sender's write of the ring and our read of it cannot both miss).
receive_data_wait:
    push ebp
    mov ebp, esp
.if NOTIFY_EVERY_SEND
.else
    mov dword ptr [D_WAITING], 1
    mfence
.endif
    mov eax, is_readable
    push eax
    call xs_wait_event
    add esp, 4
    inc dword ptr [waits]
.if NOTIFY_EVERY_SEND
.else
    mov dword ptr [D_WAITING], 0
.endif
    pop ebp
    ret

# xs_readable() -> bytes the ring holds (RING_BYTES - avail_bytes), or -EINVAL if the free space or
# our read offset lies beyond the ring (the sender can write both: never trusted).
xs_readable:
    push ebp
    mov ebp, esp
    mov ecx, [D_AVAIL]
    cmp ecx, RING_BYTES
    ja .Lreadable_bad
    cmp dword ptr [D_RECV_OFFSET], RING_BYTES
    jae .Lreadable_bad
    mov eax, RING_BYTES
    sub eax, ecx
    pop ebp
    ret
.Lreadable_bad:
    mov eax, EINVAL_NEG
    pop ebp
    ret

# is_readable() -> nonzero if data waits, the descriptor is bad, or the sender shut down: what
# receive_data_wait wakes for.
is_readable:
    push ebp
    mov ebp, esp
    call xs_readable
    or eax, [D_SHUTDOWN]
    pop ebp
    ret

# xs_copy_out(buf, copied, bytes) -> the bytes taken: one chunk up to the ring's end copied to
# buf + copied, the offsets and the free space updated, and the sender notified if it is blocking.
xs_copy_out:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [D_RECV_OFFSET]
    mov eax, RING_BYTES
    push eax
    push dword ptr [ebp + 16]
    push esi
    call xs_chunk
    add esp, 12
    mov ebx, eax
    push ebx
    lea eax, [RING_BASE + esi]
    push eax
    mov eax, [ebp + 8]
    add eax, [ebp + 12]
    push eax
    call memcpy
    add esp, 12
    lea eax, [esi + ebx]
    and eax, RING_MASK_BYTES
    mov dword ptr [D_RECV_OFFSET], eax
    add dword ptr [D_TOTAL_RECEIVED], ebx
    lock add dword ptr [D_AVAIL], ebx
    cmp dword ptr [D_BLOCKING], 0
    je .Lcopy_out_done
    push dword ptr [evtchn_port]
    call notify_remote_via_evtchn
    add esp, 4
    inc dword ptr [notifications]
.Lcopy_out_done:
    mov eax, ebx
    pop esi
    pop ebx
    pop ebp
    ret

peer_mac:
    .byte 0x00, 0x16, 0x3e, 0x00, 0x00, PEER
msg_received:
    .asciz "xensock: received "
msg_not_coresident:
    .asciz "xensock: peer not co-resident, refused: -errno "
msg_no_port:
    .asciz "xensock: no event channel, refused: -errno "
msg_bad_descriptor:
    .asciz "xensock: descriptor beyond the ring, refused: avail_bytes "
.align 4
xen_start_info:
    .long 0
otherend_id:
    .long 0
evtchn_port:
    .long 0
received:
    .long 0
notifications:                          # EVTCHNOP_send to the sender (it was blocking)
    .long 0
waits:                                  # sched_op block on an empty ring
    .long 0
