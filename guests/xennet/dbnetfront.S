# dbnetfront.S -- netfront's DBNET=1 mode (seed 002): no backend, no grants. The front end registers an
# rx ring (io/ring.h, netif rx slots; a request names its buffer by guest-physical address) with the
# NIC driver in the hypervisor and gets the event port it is notified on; each frame is sent with one
# dbnet_op(DBNETOP_xmit) hypercall from a buffer of ours (the hypervisor copies it out before it
# returns, so nothing is owed back). netfront.S jumps here from netfront_probe, xennet_start_xmit
# and xennet_do_work.
.set DBNET_RX_BUFS, 64                  # rx buffers kept posted (Linux's RX_DFL_MIN_TARGET)
.set DBNET_RX_ID_MASK, DBNET_RX_BUFS - 1
.set DBNET_TX_BUF, TX_BUFS

# dbnet_probe(): rx ring set up and filled, connected, the port bound to xennet_interrupt.
dbnet_probe:
    push ebp
    mov ebp, esp
    mov eax, RX_RING_PAGE
    push eax
    mov eax, rx_ring
    push eax
    call setup_ring
    add esp, 8
    call dbnet_alloc_rx_buffers
    mov dword ptr [dbnet_arg], RX_RING_PAGE
    mov eax, dbnet_arg
    push eax
    mov eax, DBNETOP_connect
    push eax
    call HYPERVISOR_dbnet_op
    add esp, 8
    test eax, eax
    jnz .Ldbnet_probe_done
    mov eax, [dbnet_arg + 4]
    mov dword ptr [evtchn], eax
    mov eax, xennet_interrupt
    push eax
    push dword ptr [evtchn]
    call bind_evtchn_to_irqhandler
    add esp, 8
.Ldbnet_probe_done:
    pop ebp
    ret

# dbnet_alloc_rx_buffers(): keep DBNET_RX_BUFS requests posted; the hypervisor reads req_prod when
# a frame comes, so no notification is needed.
dbnet_alloc_rx_buffers:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [rx_ring_prod_pvt]
.Ldbnet_alloc_next:
    mov eax, ebx
    sub eax, [rx_ring_cons]
    cmp eax, DBNET_RX_BUFS
    jae .Ldbnet_alloc_push
    mov eax, NETIF_RX_SLOT
    push eax
    push ebx
    mov eax, rx_ring
    push eax
    call ring_slot
    add esp, 12
    mov ecx, ebx
    and ecx, DBNET_RX_ID_MASK
    mov word ptr [eax + RXREQ_ID], cx
    shl ecx, 11                         # * MTU_BUFFER
    add ecx, RX_PAGES
    mov dword ptr [eax + RXREQ_GREF], ecx
    inc ebx
    jmp .Ldbnet_alloc_next
.Ldbnet_alloc_push:
    mov dword ptr [rx_ring_prod_pvt], ebx
    mov eax, rx_ring
    push eax
    call ring_push_requests_and_check_notify
    add esp, 4
    pop ebx
    pop ebp
    ret

# dbnet_poll(): every response up the stack, buffers re-posted, re-armed (rsp_event) and checked again.
dbnet_poll:
    push ebp
    mov ebp, esp
    push ebx
    mov dword ptr [napi_scheduled], 0
.Ldbnet_poll_next:
    mov ebx, [rx_ring_cons]
    cmp ebx, [RX_SRING_RSP_PROD]
    je .Ldbnet_poll_final
    mov eax, NETIF_RX_SLOT
    push eax
    push ebx
    mov eax, rx_ring
    push eax
    call ring_slot
    add esp, 12
    movsx ecx, word ptr [eax + RXRSP_STATUS]
    test ecx, ecx
    jle .Ldbnet_poll_error
    push ecx
    movzx eax, word ptr [eax + RXRSP_ID]
    shl eax, 11
    add eax, RX_PAGES
    push eax
    call netif_receive_skb
    add esp, 8
    jmp .Ldbnet_poll_consumed
.Ldbnet_poll_error:
    inc dword ptr [rx_errors]
.Ldbnet_poll_consumed:
    inc dword ptr [rx_ring_cons]
    jmp .Ldbnet_poll_next
.Ldbnet_poll_final:
    call dbnet_alloc_rx_buffers
    mov eax, rx_ring
    push eax
    call ring_final_check_for_responses
    add esp, 4
    test eax, eax
    jnz .Ldbnet_poll_next
    pop ebx
    pop ebp
    ret

# dbnet_do_work(): the rx poll the event scheduled (transmits complete inside their hypercall).
dbnet_do_work:
    push ebp
    mov ebp, esp
    mov dword ptr [tx_gc_due], 0
    cmp dword ptr [napi_scheduled], 0
    je .Ldbnet_do_work_done
    call dbnet_poll
.Ldbnet_do_work_done:
    pop ebp
    ret

# dbnet_start_xmit(len) -> 0, or 1 (busy: no free descriptor in the NIC; retried after an event).
dbnet_start_xmit:
    push ebp
    mov ebp, esp
    mov eax, DBNET_TX_BUF
    push eax
    call xennet_build_header
    add esp, 4
    mov dword ptr [dbnet_arg], DBNET_TX_BUF
    mov eax, [ebp + 8]
    mov dword ptr [dbnet_arg + 4], eax
    mov eax, dbnet_arg
    push eax
    mov eax, DBNETOP_xmit
    push eax
    call HYPERVISOR_dbnet_op
    add esp, 8
    test eax, eax
    jnz .Ldbnet_xmit_busy
    inc dword ptr [tx_frames]
    jmp .Ldbnet_xmit_done
.Ldbnet_xmit_busy:
    mov eax, 1
.Ldbnet_xmit_done:
    pop ebp
    ret

.align 4
dbnet_arg:
    .long 0, 0
