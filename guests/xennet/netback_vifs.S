# netback_vifs.S -- netback serving VIFS (2-4) frontends, included by netback.S when VIFS > 1 (VIFS=1
# assembles none of this: every single-vif run is the code it was).
#
# struct xen_netif, flattened: netback.S's code works on one netif through its globals (netif_domid ..
# netif_connected, tx_back_ring .. rxq_len); here each vif keeps those two blocks in vif_state and
# netif_load / netif_save swap a vif's blocks in and out around its work (a `netif` pointer in
# Linux; a block copy here -- rep movsd of 76 dwords, each way, once per vif per pass of the loop).
# Per vif, from start_info's table at +0x900 (the XenStore vif keys of each frontend): {u32 domid, u32
# its event port, 6-byte MAC, u16 pad}; its two ring pages mapped at GW_TX_RING + vif * 0x2000 (the
# refs are start_info's tx/rx ring refs: each frontend grants them from its own table); its rx queue
# in its own RXQ_MAX skb pages (SKB_PAGES + vif * RXQ_MAX pages), so a flipped page never holds
# another vif's frame; its event port's upcall marks vif_event[vif].
# The bridge (br_handle_frame / br_forward): a frame is delivered by destination MAC to the vif that
# has it (its rx queue: net_rx_action flips it to that frontend), else to the wire (rtl8139_start_xmit)
# when it came from a vif, or to dom0's own stack when it came from the wire. A frame from a vif is
# built in the NIC's next tx buffer (map, copy, unmap: netbk_copy_granted) before the bridge looks at
# it; one bound for another vif is then copied into that vif's skb page: one frame copy more than
# Linux (whose netback builds the skb the bridge forwards), charged as the guest instructions it is.
# SHARED_BUFFERS (seed 000's Enhanced mode) is one vif's: not with VIFS > 1.
.if SHARED_BUFFERS
.error "VIFS > 1 runs Native page flipping only (SHARED_BUFFERS=0)"
.endif
.if VIFS > 4
.error "VIFS is 1 to 4"
.endif

.set NET_VIFS, SI_NET + 0x100          # start_info's vif table: VIF_ENTRY bytes per vif
.set VIF_ENTRY, 16
.set VIF_MAC, 8
.set NETIF_BLOCK1, 16                   # netif_domid .. netif_connected
.set NETIF_BLOCK2, 288                  # tx_back_ring .. rxq_len
.set VIF_STATE, NETIF_BLOCK1 + NETIF_BLOCK2
.set NET_VIFS_MAC, NET_VIFS + VIF_MAC
.set B2_RXQ_HEAD, 24                    # offsets in block 2
.set B2_RXQ_TAIL, 28
.set B2_RXQ_LEN, 32

# netback_init_vifs(): per vif: bind our end of its event channel (bind_interdomain to the port its
# table entry names), its events to netif_be_int_vifs; its state saved.
netback_init_vifs:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx
.Linit_vifs_next:
    mov ecx, ebx
    shl ecx, 4                          # * VIF_ENTRY
    mov eax, [NET_VIFS + ecx]
    mov dword ptr [netif_domid], eax
    mov word ptr [evtchn_op_arg], ax
    mov eax, [NET_VIFS + ecx + 4]
    mov dword ptr [evtchn_op_arg + 4], eax
    mov dword ptr [evtchn_op_arg + 8], 0
    mov dword ptr [netif_connected], 0
    mov dword ptr [netif_evtchn], 0
    mov eax, evtchn_op_arg
    push eax
    mov eax, EVTCHNOP_bind_interdomain
    push eax
    call HYPERVISOR_event_channel_op
    add esp, 8
    test eax, eax
    jnz .Linit_vifs_failed
    mov eax, [evtchn_op_arg + 8]
    mov dword ptr [netif_evtchn], eax
    mov ecx, netif_be_int_vifs
    push ecx
    push eax
    call bind_evtchn_to_irqhandler
    add esp, 8
    jmp .Linit_vifs_save
.Linit_vifs_failed:
    mov eax, msg_bind_failed
    push eax
    call xen_raw_console_write
    add esp, 4
.Linit_vifs_save:
    push ebx
    call netif_save
    add esp, 4
    inc ebx
    cmp ebx, VIFS
    jb .Linit_vifs_next
    pop ebx
    pop ebp
    ret

# netif_be_int_vifs(port): the vif whose port it is has work (or, first, has connected).
netif_be_int_vifs:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    xor ecx, ecx
.Lbe_int_vifs_next:
    mov eax, ecx
    imul eax, eax, VIF_STATE
    cmp edx, [vif_state + eax + 4]      # its netif_evtchn (fixed since init)
    jne .Lbe_int_vifs_skip
    mov dword ptr [vif_event + ecx * 4], 1
    mov dword ptr [vifs_pending], 1
.Lbe_int_vifs_skip:
    inc ecx
    cmp ecx, VIFS
    jb .Lbe_int_vifs_next
    pop ebp
    ret

# netif_load(vif) / netif_save(vif): the vif's two blocks into / out of netback's globals.
netif_load:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov eax, [ebp + 8]
    mov dword ptr [cur_vif], eax
    mov ecx, eax
    imul ecx, ecx, RXQ_MAX
    add ecx, SKB_PAGE_FIRST_PFN
    mov dword ptr [netif_skb_pfn], ecx
    imul eax, eax, VIF_STATE
    lea esi, [vif_state + eax]
    mov edi, netif_domid
    mov ecx, NETIF_BLOCK1 / 4
    rep movsd dword ptr es:[edi], dword ptr [esi]
    mov edi, tx_back_ring
    mov ecx, NETIF_BLOCK2 / 4
    rep movsd dword ptr es:[edi], dword ptr [esi]
    pop edi
    pop esi
    pop ebp
    ret

netif_save:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov eax, [ebp + 8]
    imul eax, eax, VIF_STATE
    lea edi, [vif_state + eax]
    mov esi, netif_domid
    mov ecx, NETIF_BLOCK1 / 4
    rep movsd dword ptr es:[edi], dword ptr [esi]
    mov esi, tx_back_ring
    mov ecx, NETIF_BLOCK2 / 4
    rep movsd dword ptr es:[edi], dword ptr [esi]
    mov dword ptr [cur_vif], -1
    pop edi
    pop esi
    pop ebp
    ret

# netback_do_work_vifs(): the NIC's poll, then each vif in turn: its connection, both directions.
netback_do_work_vifs:
    push ebp
    mov ebp, esp
    push ebx
    cmp dword ptr [napi_scheduled], 0
    je .Ldo_work_vifs_netifs
    call rtl8139_poll
.Ldo_work_vifs_netifs:
    mov dword ptr [netif_tx_wake], 0
    mov dword ptr [vifs_pending], 0
    xor ebx, ebx
.Ldo_work_vifs_next:
    push ebx
    call netif_load
    add esp, 4
    xor eax, eax
    xchg eax, [vif_event + ebx * 4]
    cmp dword ptr [netif_connected], 0
    jne .Ldo_work_vifs_rings
    test eax, eax
    jz .Ldo_work_vifs_save
    push ebx
    call netif_map_vif
    add esp, 4
    cmp dword ptr [netif_connected], 0
    je .Ldo_work_vifs_save
.Ldo_work_vifs_rings:
    call net_tx_action
    call net_rx_action
.Ldo_work_vifs_save:
    push ebx
    call netif_save
    add esp, 4
    inc ebx
    cmp ebx, VIFS
    jb .Ldo_work_vifs_next
    pop ebx
    pop ebp
    ret

# netif_map_vif(vif): the loaded vif has connected: its two ring pages mapped (one map_grant_ref call
# of two ops) at its place in the grant window, BACK_RING_INIT on both.
netif_map_vif:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    shl ebx, 13                         # * 0x2000
    push dword ptr [NET_TX_RING_REF]
    lea eax, [ebx + GW_TX_RING]
    push eax
    mov eax, map_ops
    push eax
    call netif_set_map_op
    add esp, 12
    push dword ptr [NET_RX_RING_REF]
    lea eax, [ebx + GW_RX_RING]
    push eax
    mov eax, map_ops + MAP_SIZE
    push eax
    call netif_set_map_op
    add esp, 12
    mov eax, 2
    push eax
    call netif_map_ops
    add esp, 4
    test eax, eax
    jnz .Lmap_vif_failed
    lea eax, [ebx + GW_TX_RING]
    push eax
    mov eax, tx_back_ring
    push eax
    call ring_init
    add esp, 8
    lea eax, [ebx + GW_RX_RING]
    push eax
    mov eax, rx_back_ring
    push eax
    call ring_init
    add esp, 8
    mov dword ptr [netif_connected], 1
    mov eax, msg_vif_connected
    jmp .Lmap_vif_say
.Lmap_vif_failed:
    mov eax, msg_map_failed
.Lmap_vif_say:
    push eax
    call xen_raw_console_write
    add esp, 4
    pop ebx
    pop ebp
    ret

# br_find_vif(frame) -> the vif whose MAC is the frame's destination, or -1.
br_find_vif:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    push edi
    xor ebx, ebx
.Lfind_vif_next:
    mov esi, [ebp + 8]
    mov edi, ebx
    shl edi, 4
    add edi, NET_VIFS_MAC
    mov ecx, 6
    repe cmpsb byte ptr [esi], byte ptr es:[edi]
    je .Lfind_vif_found
    inc ebx
    cmp ebx, VIFS
    jb .Lfind_vif_next
    mov ebx, -1
.Lfind_vif_found:
    mov eax, ebx
    pop edi
    pop esi
    pop ebx
    pop ebp
    ret

# netif_be_start_xmit_vif(vif, data, len): the frame copied into the vif's next skb page and queued
# on its rx queue (the loaded globals if it is the loaded vif, else its saved block); net_rx_action
# takes it on the vif's next pass. A full queue drops it.
netif_be_start_xmit_vif:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov eax, [ebp + 8]
    mov esi, tx_back_ring
    cmp eax, [cur_vif]
    je .Lstart_xmit_vif_block
    imul eax, eax, VIF_STATE
    lea esi, [vif_state_block2 + eax]
.Lstart_xmit_vif_block:
    mov ebx, [esi + B2_RXQ_TAIL]
    mov eax, ebx
    sub eax, [esi + B2_RXQ_HEAD]
    cmp eax, RXQ_MAX
    jae .Lstart_xmit_vif_drop
    and ebx, RXQ_MASK
    mov eax, [ebp + 16]
    mov dword ptr [esi + B2_RXQ_LEN + ebx * 4], eax
    push eax
    push dword ptr [ebp + 12]
    mov eax, [ebp + 8]
    imul eax, eax, RXQ_MAX
    add eax, ebx
    shl eax, 12
    add eax, SKB_PAGES
    push eax
    call memcpy
    add esp, 12
    inc dword ptr [esi + B2_RXQ_TAIL]
    mov dword ptr [vifs_pending], 1
    jmp .Lstart_xmit_vif_done
.Lstart_xmit_vif_drop:
    inc dword ptr [rx_dropped]
.Lstart_xmit_vif_done:
    pop esi
    pop ebx
    pop ebp
    ret

# netif_rx_vifs(data, len): a frame from the wire: the bridge sends it to the vif with its
# destination MAC, else it is dom0's own.
netif_rx_vifs:
    push ebp
    mov ebp, esp
    inc dword ptr [nic_rx_frames]
    push dword ptr [ebp + 8]
    call br_find_vif
    add esp, 4
    test eax, eax
    js .Lrx_vifs_local
    push dword ptr [ebp + 12]
    push dword ptr [ebp + 8]
    push eax
    call netif_be_start_xmit_vif
    add esp, 12
    pop ebp
    ret
.Lrx_vifs_local:
    inc dword ptr [dom0_rx_frames]
    pop ebp
    ret

# br_forward_tx(len): a vif's frame, built in the NIC's next tx buffer: to the vif with its
# destination MAC (bridged_frames), else onto the wire.
br_forward_tx:
    push ebp
    mov ebp, esp
    push ebx
    call rtl8139_tx_buffer
    mov ebx, eax
    push ebx
    call br_find_vif
    add esp, 4
    test eax, eax
    js .Lforward_tx_wire
    push dword ptr [ebp + 8]
    push ebx
    push eax
    call netif_be_start_xmit_vif
    add esp, 12
    inc dword ptr [bridged_frames]
    pop ebx
    pop ebp
    ret
.Lforward_tx_wire:
    push dword ptr [ebp + 8]
    call rtl8139_start_xmit
    add esp, 4
    pop ebx
    pop ebp
    ret

msg_vif_connected:
    .asciz "netback: a vif connected\n"
.align 4
cur_vif:
    .long -1
netif_skb_pfn:
    .long SKB_PAGE_FIRST_PFN
vifs_pending:
    .long 0
bridged_frames:
    .long 0
vif_event:
    .fill VIFS * 4, 1, 0
vif_state:
    .fill NETIF_BLOCK1, 1, 0
vif_state_block2:
    .fill VIFS * VIF_STATE - NETIF_BLOCK1, 1, 0
