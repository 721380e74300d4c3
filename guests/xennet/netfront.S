# netfront.S -- domU (domid 1): a Xen PV kernel whose only network device is netfront
# (drivers/net/xen-netfront.c, and the 2.6.18 netfront.c for page flipping), running netperf
# TCP_STREAM over it. No NIC, no paging: everything reaches the outside through dom0's netback.
#
# Boot: the hypercall page, shared info and our grant table frame placed (memory_op add_to_physmap),
# set_callbacks; then what xennet's probe and talk_to_netback do: both ring pages initialised and
# granted to the backend under the refs start_info names (XenStore's tx-ring-ref / rx-ring-ref), rx
# buffers posted (xennet_alloc_rx_buffers), our event port bound to xennet_interrupt, and one event on
# it: "connected" (the backend waits for it, as for XenbusStateConnected).
#
# SHARED_BUFFERS=0 (Native Xen): each rx request offers a page for a transfer (GTF_accept_transfer):
# netback flips one page per packet and xennet_poll ends the transfer; each tx frame is granted
# read-only for netback to map (ended when its response comes back).
# SHARED_BUFFERS=1 (Enhanced, seed 000): RX_TARGET MTU-sized buffers, two per page, and one page of
# TX_HDR_SLOT-byte header slots are granted once at boot under bufs_ref.. (netback maps them once);
# an rx request names a buffer, netback copies into it. A tx frame's headers go into its id's header
# slot; only a payload beyond them is granted per frame -- an ACK needs no grant at all.
#
# The workload (RECEIVE=1, the seed's): netperf connects (a header-only SYN), the peer streams,
# netif_receive_skb counts the payload of frames for our MAC (eth_type_trans) and every ACK_EVERY data
# frames queues an ACK sent through xennet_start_xmit, until MESSAGES * MSG_SIZE bytes have arrived. RECEIVE=0: we send MESSAGES messages of MSG_SIZE bytes as MSS frames with at
# most SOCKBUF bytes (in whole frames) unacknowledged; each ACK frame acknowledges ACK_EVERY frames.
# Idle: sched_op block with events masked (Xen unmasks). Done: a result line on the console
# (console_io), then sched_op shutdown.
#
# Per data frame received, by construction: Native: no hypercall of ours except notifications (the
# flip is netback's); one grant entry re-offered. Enhanced: no grant operation at all. Per ACK sent:
# Native one grant entry written (netback maps it); Enhanced none. Notifications: one
# EVTCHNOP_send per push whose new requests pass netback's req_event (io/ring.h).
.include "../lib/boot.S"

.ifndef MESSAGES
.set MESSAGES, 256
.endif
.ifndef MSG_SIZE
.set MSG_SIZE, 4096
.endif
.ifndef SOCKBUF
.set SOCKBUF, 8192
.endif
.ifndef RECEIVE
.set RECEIVE, 1
.endif
.ifndef SHARED_BUFFERS
.set SHARED_BUFFERS, 0
.endif
.ifndef DBNET
.set DBNET, 0                           # 1: seed 002's DBNet -- the NIC driver in the hypervisor (dbnetfront.S)
.endif
.ifndef PEER_MAC_WIRED
.set PEER_MAC_WIRED, 0                  # 1: the peer's MAC from start_info (another domU on the host's
.endif                                  # bridge); 0: the external TCP peer's (peer_mac below)
.ifndef SHARED_BUF_PAGES
.set SHARED_BUF_PAGES, 33               # seed 000's pages: 2..129: (n - 1) pages of two rx buffers + the
.endif                                  # tx header page (the host puts the count in start_info)

# guest-physical layout (no paging; the image is at 1 MiB, the stack below 0x90000)
.set SHARED_INFO, 0x10000
.set GNTTAB, 0x11000
.set TX_RING_PAGE, 0x12000
.set RX_RING_PAGE, 0x13000
.set TX_HEADERS, 0x14000                # seed 000's header array: one TX_HDR_SLOT slot per tx id
.set TX_BUFS, 0x200000                  # one MTU_BUFFER per tx id, two per page
.set RX_PAGES, 0x300000                 # Native: a page per rx id; Enhanced: the MTU buffers

.include "netif.S"
.include "dbnet.S"

.set TARGET_BYTES, MESSAGES * MSG_SIZE
.set ACK_EVERY, 2                       # delayed ACKs: one per two full segments (RFC 1122)
.set WINDOW_FRAMES, SOCKBUF / MSS       # whole segments the socket buffer holds
.set NET_TX_IDS, 64                     # tx requests in flight at most (TX_HEADERS: 64 * 64 B)
.set RX_SHARED_PAGES, SHARED_BUF_PAGES - 1   # the rx buffers' pages, two buffers each
.if SHARED_BUFFERS
.set RX_TARGET, RX_SHARED_PAGES * 2     # rx buffers kept posted: every shared one
.else
.set RX_TARGET, 64                      # rx pages kept posted (Linux's RX_DFL_MIN_TARGET)
.endif
.set TX_HEADER_PAGE_INDEX, RX_SHARED_PAGES     # the last shared page
.set RX_GREF_BASE, 160                  # Native: rx id n offered under ref 160 + n (above bufs_ref..)
.set TX_GREF_BASE, 256                  # tx id n granted under ref 256 + n
.set TX_ID_MASK, NET_TX_IDS - 1
.set TX_RING_PFN, TX_RING_PAGE >> 12        # (shifts only in .set: keystone)
.set RX_RING_PFN, RX_RING_PAGE >> 12
.set TX_HEADERS_PFN, TX_HEADERS >> 12
.set RX_SRING_RSP_PROD, RX_RING_PAGE + SRING_RSP_PROD   # (one symbol per memory operand)
.set TX_SRING_REQ_PROD, TX_RING_PAGE + SRING_REQ_PROD
.set TX_SRING_RSP_PROD, TX_RING_PAGE + SRING_RSP_PROD
.set TX_SRING_RSP_EVENT, TX_RING_PAGE + SRING_RSP_EVENT
.set ETH_P_IP_BE, 0x0008                # 0x0800 in network order, as a little-endian word
.set MAC_SRC, 6
.set MAC_TYPE, 12

# start_kernel(): Xen's PV entry leaves start_info's address in ESI (_start does not touch it).
start_kernel:
    push ebp
    mov ebp, esp
    mov dword ptr [xen_start_info], esi
    call xen_start_kernel
    call netfront_probe
.if RECEIVE
    call netperf_recv
.else
    call netperf_send
.endif
    call netperf_report
    call xen_poweroff
    xor eax, eax
    pop ebp
    ret

# xen_start_kernel(): hypercall page, shared info, grant table, the event callback.
xen_start_kernel:
    push ebp
    mov ebp, esp
    call xen_init_hypercall_page
    call xen_setup_shared_info
    call gnttab_init
    call xen_register_callbacks
    pop ebp
    ret

# netfront_probe(): the backend's id and our port from start_info, then connect.
netfront_probe:
.if DBNET
    jmp dbnet_probe
.endif
    push ebp
    mov ebp, esp
    mov eax, [NET_PEER_DOMID]
    mov dword ptr [backend_id], eax
    mov eax, [NET_PORT]
    mov dword ptr [evtchn], eax
.if PEER_MAC_WIRED
    mov eax, [NET_PEER_MAC]
    mov dword ptr [peer_mac], eax
    mov ax, word ptr [NET_PEER_MAC + 4]
    mov word ptr [peer_mac + 4], ax
.endif
    call talk_to_netback
    call xennet_connect
    pop ebp
    ret

# talk_to_netback(): setup_netfront's rings, granted read-write under the refs the toolstack chose.
talk_to_netback:
    push ebp
    mov ebp, esp
    mov eax, TX_RING_PAGE
    push eax
    mov eax, tx_ring
    push eax
    call setup_ring
    add esp, 8
    mov eax, TX_RING_PFN
    push eax
    push dword ptr [NET_TX_RING_REF]
    call grant_to_backend
    add esp, 8
    mov eax, RX_RING_PAGE
    push eax
    mov eax, rx_ring
    push eax
    call setup_ring
    add esp, 8
    mov eax, RX_RING_PFN
    push eax
    push dword ptr [NET_RX_RING_REF]
    call grant_to_backend
    add esp, 8
.if SHARED_BUFFERS
    call xennet_setup_shared_buffers
.endif
    pop ebp
    ret

# setup_ring(ring, page): SHARED_RING_INIT + FRONT_RING_INIT.
setup_ring:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 12]
    call shared_ring_init
    push dword ptr [ebp + 8]
    call ring_init
    add esp, 8
    pop ebp
    ret

# grant_to_backend(ref, frame): read-write access for the backend domain.
grant_to_backend:
    push ebp
    mov ebp, esp
    xor eax, eax
    push eax
    push dword ptr [ebp + 12]
    push dword ptr [backend_id]
    push dword ptr [ebp + 8]
    call gnttab_grant_foreign_access_ref
    add esp, 16
    pop ebp
    ret

.if SHARED_BUFFERS
# xennet_setup_shared_buffers(): seed 000's pages, granted once: the rx buffer pages, then the tx
# header page, under bufs_ref, bufs_ref + 1, ...
xennet_setup_shared_buffers:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx
.Lshared_rx_page:
    mov eax, ebx
    shl eax, 12
    add eax, RX_PAGES
    shr eax, 12
    push eax
    mov eax, [NET_BUFS_REF]
    add eax, ebx
    push eax
    call grant_to_backend
    add esp, 8
    inc ebx
    cmp ebx, RX_SHARED_PAGES
    jb .Lshared_rx_page
    mov eax, TX_HEADERS_PFN
    push eax
    mov eax, [NET_BUFS_REF]
    add eax, TX_HEADER_PAGE_INDEX
    push eax
    call grant_to_backend
    add esp, 8
    pop ebx
    pop ebp
    ret
.endif

# xennet_connect(): post the rx buffers, take our port's events, tell the backend we are connected.
xennet_connect:
    push ebp
    mov ebp, esp
    call xennet_alloc_rx_buffers
    mov eax, xennet_interrupt
    push eax
    push dword ptr [evtchn]
    call bind_evtchn_to_irqhandler
    add esp, 8
    push dword ptr [evtchn]
    call notify_remote_via_evtchn
    add esp, 4
    pop ebp
    ret

# xennet_interrupt(port): the backend pushed responses (or wants our requests): schedule the rx poll
# and the tx garbage collection; the work runs outside the upcall.
xennet_interrupt:
    push ebp
    mov ebp, esp
    mov dword ptr [napi_scheduled], 1
    mov dword ptr [tx_gc_due], 1
    pop ebp
    ret

# ==== receive ====

# xennet_alloc_rx_buffers(): keep RX_TARGET requests posted; one push for all of them, and a
# notification only if the backend asked for one (it waits for requests).
xennet_alloc_rx_buffers:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [rx_ring_prod_pvt]
.Lalloc_rx_next:
    mov eax, ebx
    sub eax, [rx_ring_cons]
    cmp eax, RX_TARGET
    jae .Lalloc_rx_push
    push ebx
    call xennet_post_rx_request
    add esp, 4
    inc ebx
    jmp .Lalloc_rx_next
.Lalloc_rx_push:
    cmp ebx, [rx_ring_prod_pvt]
    je .Lalloc_rx_done
    mov dword ptr [rx_ring_prod_pvt], ebx
    mov eax, rx_ring
    push eax
    call ring_push_requests_and_check_notify
    add esp, 4
    test eax, eax
    jz .Lalloc_rx_done
    push dword ptr [evtchn]
    call notify_remote_via_evtchn
    add esp, 4
.Lalloc_rx_done:
    pop ebx
    pop ebp
    ret

# xennet_post_rx_request(index): the request in slot index: id = index mod RX_TARGET (responses come
# back in order, so an id is free again when its slot comes round) and the grant it names.
xennet_post_rx_request:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, NETIF_RX_SLOT
    push eax
    push dword ptr [ebp + 8]
    mov eax, rx_ring
    push eax
    call ring_slot
    add esp, 12
    mov ebx, eax
    mov eax, [ebp + 8]
    xor edx, edx
    mov ecx, RX_TARGET
    div ecx
    mov eax, edx
    mov word ptr [ebx + RXREQ_ID], ax
    push eax
    call xennet_rx_grant
    add esp, 4
    mov dword ptr [ebx + RXREQ_GREF], eax
    pop ebx
    pop ebp
    ret

.if SHARED_BUFFERS
# xennet_rx_grant(id) -> the ref of buffer id's page, granted at boot: nothing to do per packet.
xennet_rx_grant:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    shr eax, 1
    add eax, [NET_BUFS_REF]
    pop ebp
    ret
.else
# xennet_rx_grant(id) -> ref: offer page id for a transfer (gnttab_grant_foreign_transfer_ref).
xennet_rx_grant:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov eax, ebx
    shl eax, 12
    add eax, RX_PAGES
    shr eax, 12
    push eax
    push dword ptr [backend_id]
    lea eax, [ebx + RX_GREF_BASE]
    push eax
    call gnttab_grant_foreign_transfer_ref
    add esp, 12
    lea eax, [ebx + RX_GREF_BASE]
    pop ebx
    pop ebp
    ret
.endif

# xennet_poll(): every rx response up to rsp_prod handed up, the buffers re-posted, then
# RING_FINAL_CHECK_FOR_RESPONSES (re-arms rsp_event): more work loops, none completes the poll.
xennet_poll:
    push ebp
    mov ebp, esp
    mov dword ptr [napi_scheduled], 0
.Lpoll_again:
    call xennet_rx_responses
    call xennet_alloc_rx_buffers
    mov eax, rx_ring
    push eax
    call ring_final_check_for_responses
    add esp, 4
    test eax, eax
    jnz .Lpoll_again
    pop ebp
    ret

# xennet_rx_responses(): consume the responses published so far.
xennet_rx_responses:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov eax, [RX_SRING_RSP_PROD]
    mov esi, eax                        # rp (read once: rmb)
.Lrx_rsp_next:
    mov ebx, [rx_ring_cons]
    cmp ebx, esi
    je .Lrx_rsp_done
    mov eax, NETIF_RX_SLOT
    push eax
    push ebx
    mov eax, rx_ring
    push eax
    call ring_slot
    add esp, 12
    push eax
    call xennet_get_responses
    add esp, 4
    inc dword ptr [rx_ring_cons]
    jmp .Lrx_rsp_next
.Lrx_rsp_done:
    pop esi
    pop ebx
    pop ebp
    ret

# xennet_get_responses(rsp): where the frame is, then up the stack; an error status is a drop.
xennet_get_responses:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    movsx eax, word ptr [ebx + RXRSP_STATUS]
    test eax, eax
    jle .Lget_rsp_error
    push eax
    movzx eax, word ptr [ebx + RXRSP_ID]
    push eax
    call xennet_rx_buffer
    add esp, 4
    movzx ecx, word ptr [ebx + RXRSP_OFFSET]
    add eax, ecx
    push eax
    call netif_receive_skb
    add esp, 8
    pop ebx
    pop ebp
    ret
.Lget_rsp_error:
    inc dword ptr [rx_errors]
    movzx eax, word ptr [ebx + RXRSP_ID]   # a transfer offer not taken is withdrawn all the same
    push eax
    call xennet_rx_buffer
    add esp, 4
    pop ebx
    pop ebp
    ret

.if SHARED_BUFFERS
# xennet_rx_buffer(id) -> the page of buffer id (the response's offset says which half).
xennet_rx_buffer:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    shr eax, 1
    shl eax, 12
    add eax, RX_PAGES
    pop ebp
    ret
.else
# xennet_rx_buffer(id) -> the page the transfer filled (gnttab_end_foreign_transfer_ref's frame: in
# our domains the flipped contents land in the frame we offered), 0 if none arrived.
xennet_rx_buffer:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    add eax, RX_GREF_BASE
    push eax
    call gnttab_end_foreign_transfer_ref
    add esp, 4
    shl eax, 12
    pop ebp
    ret
.endif

# netif_receive_skb(data, len): the TCP receiver: a data frame's payload is counted and every
# ACK_EVERY of them owe an ACK; a minimum-size frame carries no payload (Ethernet pads a bare TCP
# segment to 60 bytes): an ACK of ours (RECEIVE=0).
netif_receive_skb:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 8]
    call eth_type_trans
    add esp, 4
    test eax, eax
    jz .Lreceive_skb_done
    inc dword ptr [rx_frames]
    mov eax, [ebp + 12]
    cmp eax, ACK_FRAME
    jbe .Lreceive_skb_ack
    sub eax, HEADERS
    add dword ptr [rx_payload], eax
    inc dword ptr [rx_data_frames]
    test dword ptr [rx_data_frames], ACK_EVERY - 1
    jnz .Lreceive_skb_done
    inc dword ptr [acks_due]
    jmp .Lreceive_skb_done
.Lreceive_skb_ack:
    add dword ptr [acked_frames], ACK_EVERY
    mov eax, [tx_data_frames]
    cmp dword ptr [acked_frames], eax
    jbe .Lreceive_skb_done
    mov dword ptr [acked_frames], eax
.Lreceive_skb_done:
    pop ebp
    ret

# eth_type_trans(data) -> 1 if the frame is for our MAC; another host's frame (PACKET_OTHERHOST) is
# counted and dropped, as IP would drop it.
eth_type_trans:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov esi, [ebp + 8]
    mov edi, NET_MAC
    mov ecx, 6
    repe cmpsb byte ptr [esi], byte ptr es:[edi]
    sete al
    movzx eax, al
    jz .Leth_type_trans_done
    inc dword ptr [rx_other_host]
.Leth_type_trans_done:
    pop edi
    pop esi
    pop ebp
    ret

# ==== transmit ====

# xennet_start_xmit(len) -> 0, or 1 (NETDEV_TX_BUSY) when NET_TX_IDS requests are in flight: the
# frame into its id's buffers, the request, one push, a notification if netback sleeps on the ring.
xennet_start_xmit:
.if DBNET
    jmp dbnet_start_xmit
.endif
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, [tx_ring_prod_pvt]
    mov eax, ebx
    sub eax, [tx_ring_cons]
    cmp eax, NET_TX_IDS
    jae .Lstart_xmit_busy
    mov eax, NETIF_TX_SLOT
    push eax
    push ebx
    mov eax, tx_ring
    push eax
    call ring_slot
    add esp, 12
    mov esi, eax
    and ebx, TX_ID_MASK
    mov word ptr [esi + TXREQ_ID], bx
    mov eax, [ebp + 8]
    mov word ptr [esi + TXREQ_SIZE], ax
    push esi
    call xennet_make_txreq
    add esp, 4
    inc dword ptr [tx_ring_prod_pvt]
    inc dword ptr [tx_frames]
    call xennet_tx_push
    xor eax, eax
    jmp .Lstart_xmit_done
.Lstart_xmit_busy:
    mov eax, 1
.Lstart_xmit_done:
    pop esi
    pop ebx
    pop ebp
    ret

# xennet_tx_push(): RING_PUSH_REQUESTS_AND_CHECK_NOTIFY on the tx ring; notify if asked.
xennet_tx_push:
    push ebp
    mov ebp, esp
    mov eax, tx_ring
    push eax
    call ring_push_requests_and_check_notify
    add esp, 4
    test eax, eax
    jz .Ltx_push_done
    push dword ptr [evtchn]
    call notify_remote_via_evtchn
    add esp, 4
.Ltx_push_done:
    pop ebp
    ret

.if SHARED_BUFFERS
# xennet_make_txreq(req): seed 000: the headers into the id's header slot; a payload beyond them
# stays in the id's buffer and is granted for this frame alone (the scatter/gather part).
xennet_make_txreq:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
    movzx ebx, word ptr [esi + TXREQ_ID]
    mov word ptr [esi + TXREQ_FLAGS], XEN_NETTXF_shared_header
    mov eax, ebx
    shl eax, 6                          # * TX_HDR_SLOT
    add eax, TX_HEADERS
    push eax
    call xennet_build_header
    add esp, 4
    mov dword ptr [esi + TXREQ_GREF], 0
    mov word ptr [esi + TXREQ_OFFSET], 0
    mov dword ptr [tx_grant + ebx * 4], 0
    movzx eax, word ptr [esi + TXREQ_SIZE]
    cmp eax, TX_HDR_SLOT
    jbe .Lmake_txreq_done
    push esi
    call xennet_grant_tx_buffer
    add esp, 4
.Lmake_txreq_done:
    pop esi
    pop ebx
    pop ebp
    ret
.else
# xennet_make_txreq(req): the whole frame in the id's buffer, granted read-only for this frame.
xennet_make_txreq:
    push ebp
    mov ebp, esp
    push esi
    mov esi, [ebp + 8]
    mov word ptr [esi + TXREQ_FLAGS], 0
    movzx eax, word ptr [esi + TXREQ_ID]
    shl eax, 11                         # * MTU_BUFFER
    add eax, TX_BUFS
    push eax
    call xennet_build_header
    add esp, 4
    push esi
    call xennet_grant_tx_buffer
    add esp, 4
    pop esi
    pop ebp
    ret
.endif

# xennet_grant_tx_buffer(req): grant the page of the id's buffer read-only; gref and offset name it.
xennet_grant_tx_buffer:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
    movzx ebx, word ptr [esi + TXREQ_ID]
    mov eax, ebx
    shl eax, 11
    add eax, TX_BUFS
    mov ecx, eax
    and ecx, PAGE_SIZE - 1
    mov word ptr [esi + TXREQ_OFFSET], cx
    shr eax, 12
    mov ecx, 1
    push ecx
    push eax
    push dword ptr [backend_id]
    lea eax, [ebx + TX_GREF_BASE]
    mov dword ptr [esi + TXREQ_GREF], eax
    mov dword ptr [tx_grant + ebx * 4], eax
    push eax
    call gnttab_grant_foreign_access_ref
    add esp, 16
    pop esi
    pop ebx
    pop ebp
    ret

# xennet_build_header(at): the Ethernet header (to the peer, from our MAC, IPv4); IP and TCP headers
# are not parsed by anyone, so their bytes stay as they are.
xennet_build_header:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov edi, [ebp + 8]
    mov esi, peer_mac
    movsd dword ptr es:[edi], dword ptr [esi]
    movsw word ptr es:[edi], word ptr [esi]
    mov esi, NET_MAC
    movsd dword ptr es:[edi], dword ptr [esi]
    movsw word ptr es:[edi], word ptr [esi]
    mov word ptr [edi], ETH_P_IP_BE
    pop edi
    pop esi
    pop ebp
    ret

# xennet_tx_buf_gc(): every tx response: end the frame's grant. Then ask for an event when half of
# what is still in flight has completed (rsp_event), and look again in case responses raced that.
xennet_tx_buf_gc:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov dword ptr [tx_gc_due], 0
.Ltx_gc_again:
    mov esi, [TX_SRING_RSP_PROD]
.Ltx_gc_next:
    mov ebx, [tx_ring_cons]
    cmp ebx, esi
    je .Ltx_gc_event
    mov eax, NETIF_TX_SLOT
    push eax
    push ebx
    mov eax, tx_ring
    push eax
    call ring_slot
    add esp, 12
    movzx eax, word ptr [eax + TXRSP_ID]
    push eax
    call xennet_tx_end_grant
    add esp, 4
    inc dword ptr [tx_ring_cons]
    jmp .Ltx_gc_next
.Ltx_gc_event:
    mov eax, [TX_SRING_REQ_PROD]
    sub eax, esi
    shr eax, 1
    lea eax, [eax + esi + 1]
    mov dword ptr [TX_SRING_RSP_EVENT], eax
    mfence
    cmp esi, [TX_SRING_RSP_PROD]
    jne .Ltx_gc_again
    pop esi
    pop ebx
    pop ebp
    ret

# xennet_tx_end_grant(id): revoke the frame's grant, if it had one (netback has unmapped it).
xennet_tx_end_grant:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    and ecx, TX_ID_MASK
    mov eax, [tx_grant + ecx * 4]
    test eax, eax
    jz .Ltx_end_grant_done
    mov dword ptr [tx_grant + ecx * 4], 0
    push eax
    call gnttab_end_foreign_access_ref
    add esp, 4
    test eax, eax
    jnz .Ltx_end_grant_done
    inc dword ptr [tx_grant_busy]       # still mapped: netback broke the protocol
.Ltx_end_grant_done:
    pop ebp
    ret

# ==== netperf ====

# xennet_do_work(): the rx poll and tx gc the event scheduled.
xennet_do_work:
.if DBNET
    jmp dbnet_do_work
.endif
    push ebp
    mov ebp, esp
    cmp dword ptr [napi_scheduled], 0
    je .Ldo_work_tx
    call xennet_poll
.Ldo_work_tx:
    cmp dword ptr [tx_gc_due], 0
    je .Ldo_work_done
    call xennet_tx_buf_gc
.Ldo_work_done:
    pop ebp
    ret

# xennet_idle(extra): with events masked, block unless an event's work or the caller's (extra != 0)
# is waiting; sched_op block unmasks, so an event between the check and the block wakes it at once.
xennet_idle:
    push ebp
    mov ebp, esp
    call xen_irq_disable
    mov eax, [napi_scheduled]
    or eax, [tx_gc_due]
    or eax, [ebp + 8]
    jnz .Lidle_enable
    call xen_block
    jmp .Lidle_done
.Lidle_enable:
    call xen_irq_enable
.Lidle_done:
    pop ebp
    ret

.if RECEIVE
# netperf_recv(): open the connection (netperf's connect: our SYN, a header-only frame), then
# TCP_STREAM receive until TARGET_BYTES of payload arrived; owed ACKs first.
netperf_recv:
    push ebp
    mov ebp, esp
    inc dword ptr [acks_due]            # the SYN goes out as the first header-only frame
.Lrecv_loop:
    cmp dword ptr [rx_payload], TARGET_BYTES
    jae .Lrecv_done
    call xennet_do_work
    cmp dword ptr [acks_due], 0
    je .Lrecv_idle
    mov eax, ACK_FRAME
    push eax
    call xennet_start_xmit
    add esp, 4
    test eax, eax
    jnz .Lrecv_wait_tx
    dec dword ptr [acks_due]
    jmp .Lrecv_loop
.Lrecv_wait_tx:                         # all tx ids in flight: wait for responses
    xor eax, eax
    push eax
    call xennet_idle
    add esp, 4
    jmp .Lrecv_loop
.Lrecv_idle:
    push dword ptr [acks_due]
    call xennet_idle
    add esp, 4
    jmp .Lrecv_loop
.Lrecv_done:
    pop ebp
    ret
.else
# netperf_send(): MESSAGES messages of MSG_SIZE bytes, each cut into MSS segments.
netperf_send:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, MESSAGES
.Lsend_message:
    mov esi, MSG_SIZE
.Lsend_segment:
    mov eax, esi
    cmp eax, MSS
    jbe .Lsend_size
    mov eax, MSS
.Lsend_size:
    sub esi, eax
    add eax, HEADERS
    push eax
    call tcp_transmit_skb
    add esp, 4
    test esi, esi
    jnz .Lsend_segment
    dec ebx
    jnz .Lsend_message
    call sk_stream_wait_close
    pop esi
    pop ebx
    pop ebp
    ret

# sk_stream_wait_close(): netperf closes the connection only when the peer has the data: wait until
# every segment is acknowledged but for the one a delayed ACK may still hold back (the peer acks every
# ACK_EVERY segments; its ACK timer is not modeled).
sk_stream_wait_close:
    push ebp
    mov ebp, esp
.Lwait_close:
    call xennet_do_work
    mov eax, [tx_data_frames]
    sub eax, [acked_frames]
    cmp eax, ACK_EVERY
    jb .Lwait_close_done
    xor eax, eax
    push eax
    call xennet_idle
    add esp, 4
    jmp .Lwait_close
.Lwait_close_done:
    pop ebp
    ret

# tcp_transmit_skb(len): wait for room in the window (and a tx id), then send the segment.
tcp_transmit_skb:
    push ebp
    mov ebp, esp
.Ltransmit_wait:
    call xennet_do_work
    mov eax, [tx_data_frames]
    sub eax, [acked_frames]
    cmp eax, WINDOW_FRAMES
    jae .Ltransmit_idle
    push dword ptr [ebp + 8]
    call xennet_start_xmit
    add esp, 4
    test eax, eax
    jnz .Ltransmit_idle
    inc dword ptr [tx_data_frames]
    mov eax, [ebp + 8]
    sub eax, HEADERS
    add dword ptr [tx_payload], eax
    pop ebp
    ret
.Ltransmit_idle:
    xor eax, eax
    push eax
    call xennet_idle
    add esp, 4
    jmp .Ltransmit_wait
.endif

# netperf_report(): one line: the bytes moved, the frames each way, the callbacks taken.
netperf_report:
    push ebp
    mov ebp, esp
    push edi
    mov edi, report_line
    mov eax, msg_payload
    push eax
    push edi
    call strcpy_end
    add esp, 8
.if RECEIVE
    push dword ptr [rx_payload]
.else
    push dword ptr [tx_payload]
.endif
    push eax
    call sprint_decimal
    add esp, 8
    push dword ptr [rx_frames]
    mov ecx, msg_rx_frames
    push ecx
    push eax
    call report_field
    add esp, 12
    push dword ptr [tx_frames]
    mov ecx, msg_tx_frames
    push ecx
    push eax
    call report_field
    add esp, 12
    push dword ptr [upcalls]
    mov ecx, msg_upcalls
    push ecx
    push eax
    call report_field
    add esp, 12
    mov byte ptr [eax], 0x0a
    mov byte ptr [eax + 1], 0
    mov eax, report_line
    push eax
    call xen_raw_console_write
    add esp, 4
    pop edi
    pop ebp
    ret

# report_field(end, label, value) -> the new end of the line: label, then value in decimal.
report_field:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 12]
    push dword ptr [ebp + 8]
    call strcpy_end
    add esp, 8
    push dword ptr [ebp + 16]
    push eax
    call sprint_decimal
    add esp, 8
    pop ebp
    ret

# strcpy_end(dst, src) -> the address after the copied characters (no NUL).
strcpy_end:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov edi, [ebp + 8]
    mov esi, [ebp + 12]
.Lstrcpy_next:
    mov al, byte ptr [esi]
    test al, al
    jz .Lstrcpy_done
    mov byte ptr [edi], al
    inc esi
    inc edi
    jmp .Lstrcpy_next
.Lstrcpy_done:
    mov eax, edi
    pop edi
    pop esi
    pop ebp
    ret

.if DBNET
.include "dbnetfront.S"
.endif

.if RECEIVE
msg_payload:
    .asciz "netfront: received "
.else
msg_payload:
    .asciz "netfront: sent "
.endif
msg_rx_frames:
    .asciz " bytes, rx frames "
msg_tx_frames:
    .asciz ", tx frames "
msg_upcalls:
    .asciz ", upcalls "
peer_mac:                               # the TCP peer's address (devices/netpeer.py)
    .byte 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef
.align 4
xen_start_info:
    .long 0
backend_id:
    .long 0
evtchn:
    .long 0
tx_ring:                                # struct netfront_info's rings: {req_prod_pvt, rsp_cons, sring}
tx_ring_prod_pvt:
    .long 0
tx_ring_cons:
    .long 0, 0
rx_ring:
rx_ring_prod_pvt:
    .long 0
rx_ring_cons:
    .long 0, 0
napi_scheduled:
    .long 0
tx_gc_due:
    .long 0
rx_frames:
    .long 0
rx_data_frames:
    .long 0
rx_payload:
    .long 0
rx_errors:
    .long 0
rx_other_host:
    .long 0
acks_due:
    .long 0
acked_frames:
    .long 0
tx_frames:
    .long 0
tx_data_frames:
    .long 0
tx_payload:
    .long 0
tx_grant_busy:
    .long 0
tx_grant:                               # per tx id: the ref granted for its frame, 0 if none
    .fill NET_TX_IDS * 4, 1, 0
report_line:
    .fill 128, 1, 0
