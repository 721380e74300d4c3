# netback.S -- dom0 (domid 0): the driver domain. It owns the RTL8139 (its own driver below, in the
# manner of drivers/net/8139too.c), bridges by MAC (net/bridge's br_handle_frame), and serves domU's
# netfront as netback (the 2.6.18 drivers/xen/netback/netback.c with page flipping; today's
# drivers/net/xen-netback/).
#
# Boot: hypercall page, shared info, set_callbacks; the NIC probed and started (the host's link is up
# from the start: frames for domU that come before it connects wait in the rx queue); our end of
# domU's event channel bound (EVTCHNOP_bind_interdomain to the port start_info names). Then one loop:
# the first event from domU is "connected": both ring pages are mapped (one map_grant_ref call of two
# ops; SHARED_BUFFERS=1: seed 000's shared pages in one more call, mapped for good).
#
# The paths, per frame:
# - peer -> domU: rtl8139_interrupt masks RX and schedules rtl8139_poll; rtl8139_rx copies each frame
#   out of the NIC ring into an skb page (netdev_alloc_skb + copy); br_handle_frame sends frames for
#   domU's MAC to netif_be_start_xmit, which queues them; net_rx_action takes one rx request per
#   frame. Native: one GNTTABOP_transfer of the skb page per frame (one hypercall each) and the
#   response pushed at once (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY). Enhanced (SHARED_BUFFERS=1): the
#   frame copied into the MTU buffer the request names (mapped at connect): no hypercall; the batch's
#   responses pushed together, one notification at most.
# - domU -> peer: net_tx_action takes each tx request while the NIC has a free descriptor. Native:
#   map_grant_ref the frame's page, copy it into the NIC's tx buffer, unmap_grant_ref (two hypercalls
#   per frame). Enhanced: the headers from the request's slot of the mapped header array; a payload
#   beyond them by map + copy + unmap; a header-only frame (an ACK) needs no grant operation. Then
#   rtl8139_start_xmit and the tx response.
# Notifications follow io/ring.h: a push notifies (EVTCHNOP_send) only if it passes the other end's
# event index; before sleeping we re-arm req_event (RING_FINAL_CHECK_FOR_REQUESTS).
# Idle: sched_op block with events masked and IF clear; a NIC interrupt raised meanwhile stays
# pending and wakes the domain, and is taken at the sti after the block.
.include "../lib/boot.S"

.ifndef SHARED_BUFFERS
.set SHARED_BUFFERS, 0
.endif
.ifndef DBNET
.set DBNET, 0                           # 1: seed 002: the NIC's data path is the hypervisor's (dbnet.S)
.endif
.ifndef VIFS
.set VIFS, 1                            # frontends served (2-4: netback_vifs.S, start_info's vif table)
.endif

# guest-physical layout (no paging; the image is at 1 MiB, the stack below 0x90000)
.set SHARED_INFO, 0x10000
.set GNTTAB, 0x11000                    # dom0 grants nothing; the helpers want the name
.set NIC_RX_RING, 0x200000              # RX_BUF_TOT_LEN: 32 KiB + 16 + a frame past the end
.set NIC_TX_BUFS, 0x210000              # NUM_TX_DESC buffers of TX_BUF_SIZE
.set SKB_PAGES, 0x300000                # one page per queued frame: what Native flips to domU

.include "netif.S"
.include "dbnet.S"

# where granted pages appear (the grant window)
.set GW_TX_RING, GRANT_WINDOW
.set GW_RX_RING, GRANT_WINDOW + 0x1000
.set GW_SHARED, GRANT_WINDOW + 0x10000  # seed 000's pages, in domU's order
.set GW_TX_MAP, GRANT_WINDOW + 0x100000 # one tx frame's page while it is copied
# seed 000's shared pages as netfront grants them, start_info's count of them from bufs_ref on: pages
# of two MTU buffers, then (the last) one page of TX_HDR_SLOT-byte header slots
.set MAX_SHARED_PAGES, 129               # 128 pages of rx buffers (the ring's 256) + the header page

# the netif's rx queue (frames for domU waiting for rx requests)
.set RXQ_MAX, 64
.set RXQ_MASK, RXQ_MAX - 1
.set SKB_PAGE_FIRST_PFN, SKB_PAGES >> 12

# RTL8139 (devices/rtl8139.py; 8139too.c's names)
.set RTL_VENDOR_DEVICE, 0x813910ec
.set PCI_CONFIG_ADDRESS, 0xcf8
.set PCI_CONFIG_DATA, 0xcfc
.set PCI_BAR0, 0x10
.set PCI_COMMAND, 0x04
.set PCI_INTERRUPT_LINE, 0x3c
.set PCI_COMMAND_IO_MASTER, 0x05
.set MAC0, 0x00
.set TxStatus0, 0x10
.set TxAddr0, 0x20
.set RxBuf, 0x30
.set ChipCmd, 0x37
.set RxBufPtr, 0x38
.set IntrMask, 0x3c
.set IntrStatus, 0x3e
.set TxConfig, 0x40
.set RxConfig, 0x44
.set CmdReset, 0x10
.set CmdRxEnb, 0x08
.set CmdTxEnb, 0x04
.set RxBufEmpty, 0x01
.set RxOK, 0x01
.set RxErr, 0x02
.set TxOK, 0x04
.set TxErr, 0x08
.set RxOverflow, 0x10
.set RxFIFOOver, 0x40
.set RxAckBits, RxFIFOOver | RxOverflow | RxOK
.set RxAckClear, 0xffff & ~RxAckBits     # every cause but RX's
.set rtl8139_intr_mask, 0x7f
.set rtl8139_norx_intr_mask, rtl8139_intr_mask & ~RxAckBits & ~RxErr
.set TxStatOK, 0x8000
.set TxUnderrun, 0x4000
.set TxAborted, 0x40000000
.set TxDoneBits, TxStatOK | TxUnderrun | TxAborted
.set RxStatusOK, 0x0001
.set RX_BUF_IDX, 2                      # 32 KiB ring, as 8139too's default
.set RX_BUF_LEN, 8192 << RX_BUF_IDX
.set RX_BUF_WRAP_MASK, RX_BUF_LEN - 1
.set RxNoWrap, 0x80                     # frames run past the ring's end: one linear copy each
.set RX_CONFIG, (RX_BUF_IDX << 11) | RxNoWrap | 0x0f   # + accept all, multicast, my MAC, broadcast
.set TX_CONFIG, 0x03000700              # standard IFG, max DMA burst 2048
.set NUM_TX_DESC, 4
.set TX_BUF_SIZE, 2048
.set ETH_FCS_LEN, 4
.set PIC_VECTOR_BASE, 0x20              # 8259A: IRQ n at 0x20 + n

# start_kernel(): Xen's PV entry leaves start_info's address in ESI.
start_kernel:
    push ebp
    mov ebp, esp
    mov dword ptr [xen_start_info], esi
    call xen_start_kernel
    call rtl8139_init_one
    test eax, eax
    jnz .Lstart_no_nic
    call rtl8139_open
.if DBNET
    call dbnet_control                  # hands the data path to the hypervisor; idles for good
.endif
.if VIFS > 1
    call netback_init_vifs
.else
    call netback_init
.endif
    call netback_main                   # serves domU until the host ends the run
    xor eax, eax
    pop ebp
    ret
.Lstart_no_nic:
    mov eax, msg_no_nic
    push eax
    call xen_raw_console_write
    add esp, 4
    call xen_poweroff
    mov eax, 2
    pop ebp
    ret

# xen_start_kernel(): hypercall page, shared info, the event callback, the IDT for the NIC, and the
# I/O privilege level that lets dom0's driver reach the NIC's ports without Xen.
xen_start_kernel:
    push ebp
    mov ebp, esp
    call xen_init_hypercall_page
    call xen_setup_shared_info
    call xen_register_callbacks
    call trap_init
    call xen_set_iopl
    pop ebp
    ret

# xen_set_iopl(): the initial domain drives its devices itself: with I/O privilege level 1 its port
# accesses no longer fault into Xen (Linux's xen_start_kernel does this for dom0).
xen_set_iopl:
    push ebp
    mov ebp, esp
    mov eax, set_iopl_arg
    push eax
    mov eax, PHYSDEVOP_set_iopl
    push eax
    call HYPERVISOR_physdev_op
    add esp, 8
    pop ebp
    ret

# ==== the RTL8139 (8139too.c's structure, our code) ====

# RTL_R8/16/32(reg), RTL_W8/16/32(reg, value): one port access to the card's register.
RTL_R8:
    push ebp
    mov ebp, esp
    mov edx, [rtl_ioaddr]
    add edx, [ebp + 8]
    in al, dx
    movzx eax, al
    pop ebp
    ret

RTL_R16:
    push ebp
    mov ebp, esp
    mov edx, [rtl_ioaddr]
    add edx, [ebp + 8]
    in ax, dx
    movzx eax, ax
    pop ebp
    ret

RTL_R32:
    push ebp
    mov ebp, esp
    mov edx, [rtl_ioaddr]
    add edx, [ebp + 8]
    in eax, dx
    pop ebp
    ret

RTL_W8:
    push ebp
    mov ebp, esp
    mov edx, [rtl_ioaddr]
    add edx, [ebp + 8]
    mov eax, [ebp + 12]
    out dx, al
    pop ebp
    ret

RTL_W16:
    push ebp
    mov ebp, esp
    mov edx, [rtl_ioaddr]
    add edx, [ebp + 8]
    mov eax, [ebp + 12]
    out dx, ax
    pop ebp
    ret

RTL_W32:
    push ebp
    mov ebp, esp
    mov edx, [rtl_ioaddr]
    add edx, [ebp + 8]
    mov eax, [ebp + 12]
    out dx, eax
    pop ebp
    ret

# pci_read_config_dword(devfn address | offset) -> the dword (configuration mechanism #1).
pci_read_config_dword:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    pop ebp
    ret

# rtl8139_init_one() -> 0, or 1 without a card: find 10ec:8139 on bus 0, take its I/O base and
# interrupt line, turn on I/O decoding and bus mastering.
rtl8139_init_one:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, 0x80000000                 # bus 0, device 0, function 0
.Linit_one_probe:
    push ebx
    call pci_read_config_dword
    add esp, 4
    cmp eax, RTL_VENDOR_DEVICE
    je .Linit_one_found
    add ebx, 0x800                      # next device
    cmp ebx, 0x80010000
    jb .Linit_one_probe
    mov eax, 1
    pop ebx
    pop ebp
    ret
.Linit_one_found:
    push ebx
    call rtl8139_pci_setup
    add esp, 4
    xor eax, eax
    pop ebx
    pop ebp
    ret

# rtl8139_pci_setup(config address): BAR0's port base, the interrupt line, command I/O + master.
rtl8139_pci_setup:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    lea eax, [ebx + PCI_BAR0]
    push eax
    call pci_read_config_dword
    add esp, 4
    and eax, 0xfffc
    mov dword ptr [rtl_ioaddr], eax
    lea eax, [ebx + PCI_INTERRUPT_LINE]
    push eax
    call pci_read_config_dword
    add esp, 4
    movzx eax, al
    mov dword ptr [rtl_irq], eax
    lea eax, [ebx + PCI_COMMAND]
    push eax
    call pci_read_config_dword
    add esp, 4
    or eax, PCI_COMMAND_IO_MASTER
    and eax, 0xffff                     # the status half is write-1-to-clear: leave it alone
    mov dx, PCI_CONFIG_DATA
    out dx, eax
    pop ebx
    pop ebp
    ret

# rtl8139_open(): the interrupt handler in, then the chip started.
rtl8139_open:
    push ebp
    mov ebp, esp
    call request_irq
    call rtl8139_hw_start
    sti
    pop ebp
    ret

# request_irq(): the NIC's line to rtl8139_interrupt_entry through the IDT and the 8259A pair.
request_irq:
    push ebp
    mov ebp, esp
    mov eax, rtl8139_interrupt_entry
    push eax
    mov eax, [rtl_irq]
    add eax, PIC_VECTOR_BASE
    push eax
    call set_intr_gate
    add esp, 8
    call init_8259A
    pop ebp
    ret

# init_8259A(): ICW1-4 to both controllers (vectors 0x20 and 0x28, cascade on IR2), then every line
# masked except the cascade and the NIC's.
init_8259A:
    push ebp
    mov ebp, esp
    mov al, 0x11                        # ICW1: edge, cascade, ICW4 follows
    out 0x20, al
    out 0xa0, al
    mov al, PIC_VECTOR_BASE             # ICW2: vector bases
    out 0x21, al
    mov al, PIC_VECTOR_BASE + 8
    out 0xa1, al
    mov al, 0x04                        # ICW3: slave on IR2 / slave id 2
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01                        # ICW4: 8086 mode
    out 0x21, al
    out 0xa1, al
    mov ecx, [rtl_irq]
    mov eax, 1
    shl eax, cl
    or eax, 0x04                        # the cascade
    not eax
    out 0x21, al                        # OCW1: masters's mask
    mov al, ah
    out 0xa1, al                        # slave's mask
    pop ebp
    ret

# rtl8139_hw_start(): reset (polled until the chip clears it), the rx ring, the four tx buffers,
# receive and transmit configuration, receiver and transmitter on, the interrupt mask.
rtl8139_hw_start:
    push ebp
    mov ebp, esp
    push ebx
    call rtl8139_chip_reset
    mov eax, NIC_RX_RING
    push eax
    mov eax, RxBuf
    push eax
    call RTL_W32
    add esp, 8
    xor ebx, ebx
.Lhw_start_txaddr:
    mov eax, ebx
    shl eax, 11                         # * TX_BUF_SIZE
    add eax, NIC_TX_BUFS
    push eax
    lea eax, [ebx * 4 + TxAddr0]
    push eax
    call RTL_W32
    add esp, 8
    inc ebx
    cmp ebx, NUM_TX_DESC
    jb .Lhw_start_txaddr
    mov eax, RX_CONFIG
    push eax
    mov eax, RxConfig
    push eax
    call RTL_W32
    add esp, 8
    mov eax, TX_CONFIG
    push eax
    mov eax, TxConfig
    push eax
    call RTL_W32
    add esp, 8
    mov eax, CmdRxEnb | CmdTxEnb
    push eax
    mov eax, ChipCmd
    push eax
    call RTL_W8
    add esp, 8
    call rtl8139_irq_enable
    pop ebx
    pop ebp
    ret

# rtl8139_chip_reset(): CmdReset, then poll ChipCmd until the bit is clear again.
rtl8139_chip_reset:
    push ebp
    mov ebp, esp
    mov eax, CmdReset
    push eax
    mov eax, ChipCmd
    push eax
    call RTL_W8
    add esp, 8
.Lchip_reset_poll:
    mov eax, ChipCmd
    push eax
    call RTL_R8
    add esp, 4
    test eax, CmdReset
    jnz .Lchip_reset_poll
    pop ebp
    ret

# rtl8139_irq_enable(): every cause the driver handles.
rtl8139_irq_enable:
    push ebp
    mov ebp, esp
    mov eax, rtl8139_intr_mask
    push eax
    mov eax, IntrMask
    push eax
    call RTL_W16
    add esp, 8
    pop ebp
    ret

# rtl8139_tx_free() -> whether a tx descriptor is free (cur_tx - dirty_tx < NUM_TX_DESC).
rtl8139_tx_free:
    push ebp
    mov ebp, esp
    mov eax, [rtl_cur_tx]
    sub eax, [rtl_dirty_tx]
    cmp eax, NUM_TX_DESC
    setb al
    movzx eax, al
    pop ebp
    ret

# rtl8139_tx_buffer() -> the buffer of the next descriptor (the frame is built there, then sent).
rtl8139_tx_buffer:
    push ebp
    mov ebp, esp
    mov eax, [rtl_cur_tx]
    and eax, NUM_TX_DESC - 1
    shl eax, 11
    add eax, NIC_TX_BUFS
    pop ebp
    ret

# rtl8139_start_xmit(len): the frame is in the next descriptor's buffer: its TxStatus write sends it.
rtl8139_start_xmit:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 8]
    mov eax, [rtl_cur_tx]
    and eax, NUM_TX_DESC - 1
    lea eax, [eax * 4 + TxStatus0]
    push eax
    call RTL_W32
    add esp, 8
    inc dword ptr [rtl_cur_tx]
    inc dword ptr [nic_tx_frames]
    pop ebp
    ret

# rtl8139_interrupt_entry: the IDT gate of the NIC's line; EOI to both 8259As (line 11 is on the
# slave) after the handler.
rtl8139_interrupt_entry:
    pushad
    push ebp
    mov ebp, esp
    call rtl8139_interrupt
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop ebp
    popad
    iretd

# rtl8139_interrupt(): read the causes; ack any but RX's (the poll acks those); RX: mask RX and
# schedule the poll (NAPI); TX: reap finished descriptors.
rtl8139_interrupt:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, IntrStatus
    push eax
    call RTL_R16
    add esp, 4
    mov ebx, eax
    test ebx, ebx
    jz .Linterrupt_done
    mov eax, ebx
    and eax, RxAckClear
    jz .Linterrupt_rx                   # only RX causes: nothing to ack here (8139too's ackstat)
    push eax
    mov eax, IntrStatus
    push eax
    call RTL_W16
    add esp, 8
.Linterrupt_rx:
    test ebx, RxAckBits
    jz .Linterrupt_tx
    call napi_schedule
.Linterrupt_tx:
    test ebx, TxOK | TxErr
    jz .Linterrupt_done
    call rtl8139_tx_interrupt
.Linterrupt_done:
    pop ebx
    pop ebp
    ret

# napi_schedule(): RX masked at the chip until the poll has emptied the ring.
napi_schedule:
    push ebp
    mov ebp, esp
    mov eax, rtl8139_norx_intr_mask
    push eax
    mov eax, IntrMask
    push eax
    call RTL_W16
    add esp, 8
    mov dword ptr [napi_scheduled], 1
    pop ebp
    ret

# rtl8139_tx_interrupt(): each sent descriptor's TxStatus read until one still in flight; a freed
# descriptor lets a stalled net_tx_action go on.
rtl8139_tx_interrupt:
    push ebp
    mov ebp, esp
.Ltx_interrupt_next:
    mov eax, [rtl_dirty_tx]
    cmp eax, [rtl_cur_tx]
    je .Ltx_interrupt_done
    and eax, NUM_TX_DESC - 1
    lea eax, [eax * 4 + TxStatus0]
    push eax
    call RTL_R32
    add esp, 4
    test eax, TxDoneBits
    jz .Ltx_interrupt_done
    inc dword ptr [rtl_dirty_tx]
    mov dword ptr [netif_tx_wake], 1
    jmp .Ltx_interrupt_next
.Ltx_interrupt_done:
    pop ebp
    ret

# rtl8139_poll(): the ring emptied with interrupts on, then RX unmasked (napi_complete).
rtl8139_poll:
    push ebp
    mov ebp, esp
    mov dword ptr [napi_scheduled], 0
    call rtl8139_rx
    cli
    call rtl8139_irq_enable
    sti
    pop ebp
    ret

# rtl8139_rx(): while ChipCmd says the ring holds frames: the one at cur_rx up the stack, CAPR moved
# past it (16 bytes behind, the chip's convention), the RX causes acked.
rtl8139_rx:
    push ebp
    mov ebp, esp
.Lrx_next:
    mov eax, ChipCmd
    push eax
    call RTL_R8
    add esp, 4
    test eax, RxBufEmpty
    jnz .Lrx_done
    call rtl8139_rx_frame
    mov eax, [rtl_cur_rx]
    sub eax, 16
    and eax, 0xffff
    push eax
    mov eax, RxBufPtr
    push eax
    call RTL_W16
    add esp, 8
    call rtl8139_isr_ack
    jmp .Lrx_next
.Lrx_done:
    pop ebp
    ret

# rtl8139_rx_frame(): the frame at cur_rx: {status, length with FCS} then the bytes; a good one is
# copied into an skb and handed up; cur_rx advances to the next dword after it.
rtl8139_rx_frame:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [rtl_cur_rx]
    mov eax, [NIC_RX_RING + ebx]
    movzx ecx, ax                       # status
    shr eax, 16                         # length, FCS included
    lea edx, [ebx + eax + 4 + 3]
    and edx, 0xfffffffc
    and edx, RX_BUF_WRAP_MASK
    mov dword ptr [rtl_cur_rx], edx
    test ecx, RxStatusOK
    jz .Lrx_frame_bad
    sub eax, ETH_FCS_LEN
    jbe .Lrx_frame_bad
    push eax
    lea eax, [ebx + 4]
    add eax, NIC_RX_RING
    push eax
    call netif_rx
    add esp, 8
    pop ebx
    pop ebp
    ret
.Lrx_frame_bad:
    inc dword ptr [nic_rx_errors]
    pop ebx
    pop ebp
    ret

# rtl8139_isr_ack(): read IntrStatus; write back the RX causes that are set.
rtl8139_isr_ack:
    push ebp
    mov ebp, esp
    mov eax, IntrStatus
    push eax
    call RTL_R16
    add esp, 4
    and eax, RxAckBits
    jz .Lisr_ack_done
    push eax
    mov eax, IntrStatus
    push eax
    call RTL_W16
    add esp, 8
.Lisr_ack_done:
    pop ebp
    ret

.if DBNET
# dbnet_control(): seed 002's split: dom0 keeps the control operations. The NIC is up (our driver
# reset and configured it above); its receive ring and transmit buffers become the hypervisor
# driver's (DBNETOP_attach), domU's MAC goes into the bridge's table (DBNETOP_set_mac); then dom0
# has nothing to do on the data path and sleeps.
dbnet_control:
    push ebp
    mov ebp, esp
    mov dword ptr [dbnet_ctl_arg], NIC_RX_RING
    mov dword ptr [dbnet_ctl_arg + 4], RX_BUF_LEN
    mov dword ptr [dbnet_ctl_arg + 8], NIC_TX_BUFS
    mov dword ptr [dbnet_ctl_arg + 12], TX_BUF_SIZE
    mov eax, [rtl_cur_rx]
    mov dword ptr [dbnet_ctl_arg + 16], eax
    mov eax, dbnet_ctl_arg
    push eax
    mov eax, DBNETOP_attach
    push eax
    call HYPERVISOR_dbnet_op
    add esp, 8
    push ebx
    mov ebx, 1                          # each guest's MAC: 00:16:3e:00:00:<domid> (the toolstack's)
.Ldbnet_control_mac:
    mov word ptr [dbnet_ctl_arg], bx
    mov dword ptr [dbnet_ctl_arg + 2], 0x003e1600
    mov byte ptr [dbnet_ctl_arg + 6], 0
    mov byte ptr [dbnet_ctl_arg + 7], bl
    mov eax, dbnet_ctl_arg
    push eax
    mov eax, DBNETOP_set_mac
    push eax
    call HYPERVISOR_dbnet_op
    add esp, 8
    inc ebx
    cmp ebx, GUESTS
    jbe .Ldbnet_control_mac
    pop ebx
.Ldbnet_control_idle:
    call xen_block
    jmp .Ldbnet_control_idle

.align 4
dbnet_ctl_arg:
    .long 0, 0, 0, 0, 0
.endif

# ==== dom0's stack: the skb, the bridge ====

# netif_rx(data, len): a frame from the wire into a fresh skb (the next free page of the netif's
# queue: every frame gets its own page, so Native can flip it), then the bridge. No skb: dropped.
netif_rx:
.if VIFS > 1
    jmp netif_rx_vifs
.endif
    push ebp
    mov ebp, esp
    push ebx
    inc dword ptr [nic_rx_frames]
    mov ebx, [rxq_tail]
    mov eax, ebx
    sub eax, [rxq_head]
    cmp eax, RXQ_MAX
    jae .Lnetif_rx_drop
    and ebx, RXQ_MASK
    mov eax, [ebp + 12]
    mov dword ptr [rxq_len + ebx * 4], eax
    push eax
    push dword ptr [ebp + 8]
    shl ebx, 12
    add ebx, SKB_PAGES
    push ebx
    call memcpy
    add esp, 12
    push dword ptr [ebp + 12]
    push ebx
    call br_handle_frame
    add esp, 8
    pop ebx
    pop ebp
    ret
.Lnetif_rx_drop:
    inc dword ptr [rx_dropped]
    pop ebx
    pop ebp
    ret

# br_handle_frame(skb, len): the bridge's forwarding decision by destination MAC: domU's goes to its
# vif (netif_be_start_xmit); anything else is dom0's own traffic, consumed here.
br_handle_frame:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov esi, [ebp + 8]
    mov edi, NET_MAC
    mov ecx, 6
    repe cmpsb byte ptr [esi], byte ptr es:[edi]
    jne .Lbr_local
    call netif_be_start_xmit
    jmp .Lbr_done
.Lbr_local:
    inc dword ptr [dom0_rx_frames]
.Lbr_done:
    pop edi
    pop esi
    pop ebp
    ret

# netif_be_start_xmit(): the skb just filled (at rxq_tail) joins the netif's rx queue; net_rx_action
# will find it (the tasklet is scheduled by the main loop's next pass).
netif_be_start_xmit:
    push ebp
    mov ebp, esp
    inc dword ptr [rxq_tail]
    pop ebp
    ret

# ==== netback ====

# netback_init(): bind our end of domU's event channel; its events go to netif_be_int.
netback_init:
    push ebp
    mov ebp, esp
    mov eax, [NET_PEER_DOMID]
    mov dword ptr [netif_domid], eax
    mov word ptr [evtchn_op_arg], ax            # remote_dom
    mov eax, [NET_PORT]
    mov dword ptr [evtchn_op_arg + 4], eax      # remote_port
    mov dword ptr [evtchn_op_arg + 8], 0
    mov eax, evtchn_op_arg
    push eax
    mov eax, EVTCHNOP_bind_interdomain
    push eax
    call HYPERVISOR_event_channel_op
    add esp, 8
    test eax, eax
    jnz .Lnetback_init_failed
    mov eax, [evtchn_op_arg + 8]                # local_port
    mov dword ptr [netif_evtchn], eax
    mov ecx, netif_be_int
    push ecx
    push eax
    call bind_evtchn_to_irqhandler
    add esp, 8
    pop ebp
    ret
.Lnetback_init_failed:
    mov eax, msg_bind_failed
    push eax
    call xen_raw_console_write
    add esp, 4
    pop ebp
    ret

# (bind_interdomain also sets our new port pending -- Xen's guard against a notification lost while
# the remote end was unbound. Its upcall comes as the call returns, before netif_be_int is bound, and
# finds no handler: domU cannot have connected yet, dom0 boots first.)

# netif_be_int(port): domU pushed requests (or, first of all, connected): note it; the work runs
# in the main loop.
netif_be_int:
    push ebp
    mov ebp, esp
    mov dword ptr [netif_event], 1
    pop ebp
    ret

# netback_main(): the backend's loop: do what the interrupts and events asked for, else sleep.
# Both kinds of wake-up are masked while we decide (events: upcall_mask; the NIC: IF), so neither
# can slip in between the check and the block.
netback_main:
    push ebp
    mov ebp, esp
.Lmain_loop:
    cli
    call xen_irq_disable
    mov eax, [napi_scheduled]
    or eax, [netif_event]
    or eax, [netif_tx_wake]
.if VIFS > 1
    or eax, [vifs_pending]
.endif
    jnz .Lmain_work
    call xen_block
    sti
    jmp .Lmain_loop
.Lmain_work:
    sti
    call xen_irq_enable
    call netback_do_work
    jmp .Lmain_loop

# netback_do_work(): the NIC's poll, the connection, then both directions of the netif.
netback_do_work:
.if VIFS > 1
    jmp netback_do_work_vifs
.endif
    push ebp
    mov ebp, esp
    cmp dword ptr [napi_scheduled], 0
    je .Ldo_work_netif
    call rtl8139_poll
.Ldo_work_netif:
    mov dword ptr [netif_tx_wake], 0
    xor eax, eax
    xchg eax, [netif_event]
    cmp dword ptr [netif_connected], 0
    jne .Ldo_work_rings
    test eax, eax
    jz .Ldo_work_done
    call netif_map
.Ldo_work_rings:
    call net_tx_action
    call net_rx_action
.Ldo_work_done:
    pop ebp
    ret

# netif_map(): domU is connected: map its two ring pages (one map_grant_ref call of two ops) and,
# with SHARED_BUFFERS=1, its shared pages for good (one more call); then the rings are ours.
netif_map:
    push ebp
    mov ebp, esp
    push dword ptr [NET_TX_RING_REF]
    mov eax, GW_TX_RING
    push eax
    mov eax, map_ops
    push eax
    call netif_set_map_op
    add esp, 12
    push dword ptr [NET_RX_RING_REF]
    mov eax, GW_RX_RING
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
    jnz .Lnetif_map_failed
.if SHARED_BUFFERS
    call netif_map_shared_buffers
    test eax, eax
    jnz .Lnetif_map_failed
.endif
    call netif_rings_init
    mov dword ptr [netif_connected], 1
    mov eax, msg_connected
    jmp .Lnetif_map_say
.Lnetif_map_failed:
    mov eax, msg_map_failed
.Lnetif_map_say:
    push eax
    call xen_raw_console_write
    add esp, 4
    pop ebp
    ret

# netif_rings_init(): BACK_RING_INIT on both mapped pages.
netif_rings_init:
    push ebp
    mov ebp, esp
    mov eax, GW_TX_RING
    push eax
    mov eax, tx_back_ring
    push eax
    call ring_init
    add esp, 8
    mov eax, GW_RX_RING
    push eax
    mov eax, rx_back_ring
    push eax
    call ring_init
    add esp, 8
    pop ebp
    ret

.if SHARED_BUFFERS
# netif_map_shared_buffers() -> 0 if all mapped: seed 000's pages, bufs_ref.. at GW_SHARED.. in order
# (start_info's count, at most MAX_SHARED_PAGES).
netif_map_shared_buffers:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, [NET_BUFS_COUNT]
    cmp eax, MAX_SHARED_PAGES
    jbe .Lmap_shared_count
    mov eax, MAX_SHARED_PAGES
.Lmap_shared_count:
    mov dword ptr [shared_pages], eax
    dec eax
    shl eax, 12
    add eax, GW_SHARED
    mov dword ptr [tx_headers], eax
    xor ebx, ebx
.Lmap_shared_op:
    mov eax, [NET_BUFS_REF]
    add eax, ebx
    push eax
    mov eax, ebx
    shl eax, 12
    add eax, GW_SHARED
    push eax
    mov eax, ebx
    shl eax, 5                          # * MAP_SIZE
    add eax, map_ops
    push eax
    call netif_set_map_op
    add esp, 12
    inc ebx
    cmp ebx, [shared_pages]
    jb .Lmap_shared_op
    push dword ptr [shared_pages]
    call netif_map_ops
    add esp, 4
    pop ebx
    pop ebp
    ret
.endif

# netif_set_map_op(op, host_addr, ref): gnttab_set_map_op for a read-write map of domU's ref.
netif_set_map_op:
    push ebp
    mov ebp, esp
    mov eax, GNTMAP_host_map
    push eax
    push dword ptr [ebp + 16]
    push dword ptr [ebp + 12]
    push dword ptr [ebp + 8]
    call gnttab_set_map_op
    add esp, 16
    pop ebp
    ret

# gnttab_set_map_op(op, host_addr, ref, flags): one struct gnttab_map_grant_ref for domU.
gnttab_set_map_op:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    mov eax, [ebp + 12]
    mov dword ptr [ecx + MAP_HOST_ADDR], eax
    mov dword ptr [ecx + MAP_HOST_ADDR + 4], 0
    mov eax, [ebp + 20]
    mov dword ptr [ecx + MAP_FLAGS], eax
    mov eax, [ebp + 16]
    mov dword ptr [ecx + MAP_REF], eax
    mov eax, [netif_domid]
    mov word ptr [ecx + MAP_DOM], ax
    mov word ptr [ecx + MAP_STATUS], 0
    pop ebp
    ret

# netif_map_ops(count) -> 0 if every op of map_ops[0..count) succeeded: one grant_table_op call.
netif_map_ops:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 8]
    mov eax, map_ops
    push eax
    mov eax, GNTTABOP_map_grant_ref
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    test eax, eax
    jnz .Lmap_ops_done
    mov ecx, [ebp + 8]
    mov edx, map_ops
.Lmap_ops_status:
    movsx eax, word ptr [edx + MAP_STATUS]
    test eax, eax
    jnz .Lmap_ops_done
    add edx, MAP_SIZE
    loop .Lmap_ops_status
.Lmap_ops_done:
    pop ebp
    ret

# ---- domU's transmit: net_tx_action ----

# net_tx_action(): each tx request while the NIC has a free descriptor: the frame into the NIC's
# buffer, sent, answered. With none left, re-arm req_event and look once more.
net_tx_action:
    push ebp
    mov ebp, esp
.Ltx_action_next:
    call rtl8139_tx_free
    test eax, eax
    jz .Ltx_action_done                 # the tx interrupt wakes us (netif_tx_wake)
    mov eax, tx_back_ring
    push eax
    call ring_has_unconsumed_requests
    test eax, eax
    jnz .Ltx_action_one
    call ring_final_check_for_requests
    test eax, eax
    jz .Ltx_action_popped
.Ltx_action_one:
    add esp, 4
    call netbk_tx_one
    jmp .Ltx_action_next
.Ltx_action_popped:
    add esp, 4
.Ltx_action_done:
    pop ebp
    ret

# netbk_tx_one(): the request at req_cons: build, send, respond.
netbk_tx_one:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov eax, NETIF_TX_SLOT
    push eax
    push dword ptr [tx_back_ring_cons]
    mov eax, tx_back_ring
    push eax
    call ring_slot
    add esp, 12
    mov esi, eax
    inc dword ptr [tx_back_ring_cons]
    movzx ebx, word ptr [esi + TXREQ_ID]        # the slot is reused by the response: keep the id
    push esi
    call netbk_build_tx_frame
    add esp, 4
    test eax, eax
    jz .Ltx_one_error
    push eax
.if VIFS > 1
    call br_forward_tx                  # the bridge: another vif, or the wire
.else
    call rtl8139_start_xmit
.endif
    add esp, 4
    mov eax, NETIF_RSP_OKAY
    jmp .Ltx_one_respond
.Ltx_one_error:
    inc dword ptr [netif_tx_errors]
    mov eax, NETIF_RSP_ERROR
.Ltx_one_respond:
    push eax
    push ebx
    call make_tx_response
    add esp, 8
    pop esi
    pop ebx
    pop ebp
    ret

.if SHARED_BUFFERS
# netbk_build_tx_frame(req) -> length, 0 on error: seed 000: the headers from the id's slot of the
# shared header array; a payload beyond them by grant (map, copy, unmap).
netbk_build_tx_frame:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
    movzx eax, word ptr [esi + TXREQ_FLAGS]
    test eax, XEN_NETTXF_shared_header
    jz .Lbuild_tx_plain
    movzx ebx, word ptr [esi + TXREQ_SIZE]
    mov ecx, ebx
    cmp ecx, TX_HDR_SLOT
    jbe .Lbuild_tx_header
    mov ecx, HEADERS
.Lbuild_tx_header:
    push ecx
    movzx eax, word ptr [esi + TXREQ_ID]
    and eax, TX_HDR_SLOTS - 1
    shl eax, 6                          # * TX_HDR_SLOT
    add eax, [tx_headers]
    push eax
    call rtl8139_tx_buffer
    push eax
    call memcpy
    add esp, 12
    cmp ebx, TX_HDR_SLOT
    jbe .Lbuild_tx_length
    mov eax, HEADERS
    push eax
    mov eax, ebx
    sub eax, HEADERS
    push eax
    push esi
    call netbk_copy_granted
    add esp, 12
    test eax, eax
    jnz .Lbuild_tx_length
    xor ebx, ebx
.Lbuild_tx_length:
    mov eax, ebx
    pop esi
    pop ebx
    pop ebp
    ret
.Lbuild_tx_plain:
    xor eax, eax
    push eax
    movzx eax, word ptr [esi + TXREQ_SIZE]
    push eax
    push esi
    call netbk_copy_granted
    add esp, 12
    pop esi
    pop ebx
    pop ebp
    ret
.else
# netbk_build_tx_frame(req) -> length, 0 on error: the whole frame by grant (map, copy, unmap).
netbk_build_tx_frame:
    push ebp
    mov ebp, esp
    mov ecx, [ebp + 8]
    xor eax, eax
    push eax
    movzx eax, word ptr [ecx + TXREQ_SIZE]
    push eax
    push ecx
    call netbk_copy_granted
    add esp, 12
    pop ebp
    ret
.endif

# netbk_copy_granted(req, len, at) -> len, 0 on error: map the request's granted page read-only,
# copy len bytes from its offset to the NIC buffer + at, unmap (which flushes the TLB).
netbk_copy_granted:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
    movzx eax, word ptr [esi + TXREQ_OFFSET]
    add eax, [ebp + 12]
    cmp eax, PAGE_SIZE
    ja .Lcopy_granted_error             # the frame would run off the granted page
    push dword ptr [esi + TXREQ_GREF]
    call netbk_map_tx_page
    add esp, 4
    test eax, eax
    jnz .Lcopy_granted_error
    push dword ptr [ebp + 12]
    movzx eax, word ptr [esi + TXREQ_OFFSET]
    add eax, GW_TX_MAP
    push eax
    call rtl8139_tx_buffer
    add eax, [ebp + 16]
    push eax
    call memcpy
    add esp, 12
    call netbk_unmap_tx_page
    mov eax, [ebp + 12]
    pop esi
    pop ebx
    pop ebp
    ret
.Lcopy_granted_error:
    xor eax, eax
    pop esi
    pop ebx
    pop ebp
    ret

# netbk_map_tx_page(ref) -> the op's status (GNTST_okay 0): one map_grant_ref, read-only, at GW_TX_MAP.
netbk_map_tx_page:
    push ebp
    mov ebp, esp
    mov eax, GNTMAP_host_map | GNTMAP_readonly
    push eax
    push dword ptr [ebp + 8]
    mov eax, GW_TX_MAP
    push eax
    mov eax, tx_map_op
    push eax
    call gnttab_set_map_op
    add esp, 16
    mov eax, 1
    push eax
    mov eax, tx_map_op
    push eax
    mov eax, GNTTABOP_map_grant_ref
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    mov ecx, tx_map_op
    movsx eax, word ptr [ecx + MAP_STATUS]
    pop ebp
    ret

# netbk_unmap_tx_page(): one unmap_grant_ref of what netbk_map_tx_page mapped (by its handle).
netbk_unmap_tx_page:
    push ebp
    mov ebp, esp
    mov ecx, tx_unmap_op
    mov dword ptr [ecx + UNMAP_HOST_ADDR], GW_TX_MAP
    mov dword ptr [ecx + UNMAP_HOST_ADDR + 4], 0
    mov edx, tx_map_op
    mov eax, [edx + MAP_HANDLE]
    mov dword ptr [ecx + UNMAP_HANDLE], eax
    mov eax, 1
    push eax
    push ecx
    mov eax, GNTTABOP_unmap_grant_ref
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    pop ebp
    ret

# make_tx_response(id, status): the response in the next slot, pushed; notify if domU asked.
make_tx_response:
    push ebp
    mov ebp, esp
    mov eax, NETIF_TX_SLOT
    push eax
    push dword ptr [tx_back_ring_pvt]
    mov eax, tx_back_ring
    push eax
    call ring_slot
    add esp, 12
    mov ecx, [ebp + 8]
    mov word ptr [eax + TXRSP_ID], cx
    mov ecx, [ebp + 12]
    mov word ptr [eax + TXRSP_STATUS], cx
    inc dword ptr [tx_back_ring_pvt]
    mov eax, tx_back_ring
    push eax
    call netif_push_responses
    add esp, 4
    pop ebp
    ret

# netif_push_responses(ring): RING_PUSH_RESPONSES_AND_CHECK_NOTIFY, and the event if it says so.
netif_push_responses:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 8]
    call ring_push_responses_and_check_notify
    add esp, 4
    test eax, eax
    jz .Lpush_responses_done
    push dword ptr [netif_evtchn]
    call notify_remote_via_evtchn
    add esp, 4
.Lpush_responses_done:
    pop ebp
    ret

# ---- domU's receive: net_rx_action ----

# net_rx_action(): each queued frame into the rx request it takes. Out of requests: re-arm req_event
# (domU's next push notifies us) and look once more; the frames wait. Enhanced: one push at the end.
net_rx_action:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx                        # responses made, not yet pushed
.Lrx_action_next:
    mov eax, [rxq_head]
    cmp eax, [rxq_tail]
    je .Lrx_action_push
    mov eax, rx_back_ring
    push eax
    call ring_has_unconsumed_requests
    test eax, eax
    jnz .Lrx_action_one
    call ring_final_check_for_requests
    test eax, eax
    jz .Lrx_action_popped
.Lrx_action_one:
    add esp, 4
    call netbk_rx_one
    inc ebx
    jmp .Lrx_action_next
.Lrx_action_popped:
    add esp, 4
.Lrx_action_push:
.if SHARED_BUFFERS
    test ebx, ebx
    jz .Lrx_action_done
    mov eax, rx_back_ring
    push eax
    call netif_push_responses
    add esp, 4
.Lrx_action_done:
.endif
    pop ebx
    pop ebp
    ret

# netbk_rx_one(): the frame at rxq_head into the request at req_cons; its response written (pushed at
# once in Native, by net_rx_action for the batch in Enhanced).
netbk_rx_one:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov eax, NETIF_RX_SLOT
    push eax
    push dword ptr [rx_back_ring_cons]
    mov eax, rx_back_ring
    push eax
    call ring_slot
    add esp, 12
    mov esi, eax
    inc dword ptr [rx_back_ring_cons]
    movzx ebx, word ptr [esi + RXREQ_ID]
    mov eax, [rxq_head]
    and eax, RXQ_MASK
    push eax
    push esi
    call netbk_deliver_rx
    add esp, 8
    inc dword ptr [rxq_head]
    push eax
    push ebx
    call make_rx_response
    add esp, 8
    pop esi
    pop ebx
    pop ebp
    ret

.if SHARED_BUFFERS
# netbk_deliver_rx(req, skb index) -> the response status (length, or NETIF_RSP_ERROR): seed 000:
# copy the frame into the MTU buffer the request names (page gref - bufs_ref, half id & 1).
netbk_deliver_rx:
    push ebp
    mov ebp, esp
    push esi
    mov esi, [ebp + 8]
    mov eax, [esi + RXREQ_GREF]
    sub eax, [NET_BUFS_REF]
    mov ecx, [shared_pages]
    dec ecx                             # the last page holds the tx headers
    cmp eax, ecx
    jae .Ldeliver_rx_error
    shl eax, 12
    movzx ecx, word ptr [esi + RXREQ_ID]
    and ecx, 1
    shl ecx, 11                         # * MTU_BUFFER
    add eax, ecx
    add eax, GW_SHARED
    mov ecx, [ebp + 12]
    push dword ptr [rxq_len + ecx * 4]
    shl ecx, 12
    add ecx, SKB_PAGES
    push ecx
    push eax
    call memcpy
    add esp, 12
    mov ecx, [ebp + 12]
    mov eax, [rxq_len + ecx * 4]
    pop esi
    pop ebp
    ret
.Ldeliver_rx_error:
    mov eax, NETIF_RSP_ERROR
    pop esi
    pop ebp
    ret

# netbk_rx_offset(req) -> where in the buffer's page the frame starts (the buffer's half).
netbk_rx_offset:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    movzx eax, word ptr [eax + RXREQ_ID]
    and eax, 1
    shl eax, 11
    pop ebp
    ret
.else
# netbk_deliver_rx(req, skb index) -> the response status (length, or NETIF_RSP_ERROR): page
# flipping: one GNTTABOP_transfer of the skb's page to the frame domU offered under the request's ref.
netbk_deliver_rx:
    push ebp
    mov ebp, esp
    mov ecx, xfer_op
    mov eax, [ebp + 12]
.if VIFS > 1
    add eax, [netif_skb_pfn]            # the loaded vif's skb pages
.else
    add eax, SKB_PAGE_FIRST_PFN
.endif
    mov dword ptr [ecx + XFER_MFN], eax
    mov eax, [netif_domid]
    mov word ptr [ecx + XFER_DOMID], ax
    mov eax, [ebp + 8]
    mov eax, [eax + RXREQ_GREF]
    mov dword ptr [ecx + XFER_REF], eax
    mov word ptr [ecx + XFER_STATUS], 0
    mov eax, 1
    push eax
    push ecx
    mov eax, GNTTABOP_transfer
    push eax
    call HYPERVISOR_grant_table_op
    add esp, 12
    mov ecx, xfer_op
    cmp word ptr [ecx + XFER_STATUS], GNTST_okay
    jne .Ldeliver_rx_error
    mov ecx, [ebp + 12]
    mov eax, [rxq_len + ecx * 4]
    pop ebp
    ret
.Ldeliver_rx_error:
    inc dword ptr [netif_rx_errors]
    mov eax, NETIF_RSP_ERROR
    pop ebp
    ret

# netbk_rx_offset(req) -> 0: a flipped page holds the frame from its start.
netbk_rx_offset:
    push ebp
    mov ebp, esp
    xor eax, eax
    pop ebp
    ret
.endif

# make_rx_response(id, status): the response in the next slot; Native pushes it at once.
make_rx_response:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, NETIF_RX_SLOT
    push eax
    push dword ptr [rx_back_ring_pvt]
    mov eax, rx_back_ring
    push eax
    call ring_slot
    add esp, 12
    mov ebx, eax
    mov ecx, [ebp + 8]
    mov word ptr [ebx + RXRSP_ID], cx
    mov ecx, [ebp + 12]
    mov word ptr [ebx + RXRSP_STATUS], cx
    mov word ptr [ebx + RXRSP_FLAGS], 0
    push ebx                            # (the request's id is in the response slot now: same slot)
    call netbk_rx_offset
    add esp, 4
    mov word ptr [ebx + RXRSP_OFFSET], ax
    inc dword ptr [rx_back_ring_pvt]
.if SHARED_BUFFERS == 0
    mov eax, rx_back_ring
    push eax
    call netif_push_responses
    add esp, 4
.endif
    pop ebx
    pop ebp
    ret

.if VIFS > 1
.include "netback_vifs.S"
.endif

msg_no_nic:
    .asciz "netback: no RTL8139\n"
msg_bind_failed:
    .asciz "netback: bind_interdomain failed\n"
msg_map_failed:
    .asciz "netback: mapping vif1.0's pages failed\n"
msg_connected:
    .asciz "netback: vif1.0 connected\n"
.align 4
set_iopl_arg:                           # struct physdev_set_iopl
    .long 1
xen_start_info:
    .long 0
rtl_ioaddr:
    .long 0
rtl_irq:
    .long 0
rtl_cur_tx:
    .long 0
rtl_dirty_tx:
    .long 0
rtl_cur_rx:
    .long 0
napi_scheduled:
    .long 0
netif_domid:
    .long 0
netif_evtchn:
    .long 0
netif_event:
    .long 0
netif_connected:
    .long 0
netif_tx_wake:
    .long 0
tx_back_ring:                           # {rsp_prod_pvt, req_cons, sring}
tx_back_ring_pvt:
    .long 0
tx_back_ring_cons:
    .long 0, 0
rx_back_ring:
rx_back_ring_pvt:
    .long 0
rx_back_ring_cons:
    .long 0, 0
rxq_head:
    .long 0
rxq_tail:
    .long 0
rxq_len:
    .fill RXQ_MAX * 4, 1, 0
nic_rx_frames:
    .long 0
nic_rx_errors:
    .long 0
nic_tx_frames:
    .long 0
rx_dropped:
    .long 0
dom0_rx_frames:
    .long 0
netif_tx_errors:
    .long 0
netif_rx_errors:
    .long 0
tx_map_op:                              # one gnttab_map_grant_ref
    .fill MAP_SIZE, 1, 0
tx_unmap_op:                            # one gnttab_unmap_grant_ref
    .fill UNMAP_SIZE, 1, 0
xfer_op:                                # one gnttab_transfer
    .fill XFER_SIZE, 1, 0
shared_pages:                           # seed 000's pages mapped at connect
    .long 0
tx_headers:                             # where their header array is
    .long 0
map_ops:                                # the connect-time maps (rings, shared pages)
    .fill MAX_SHARED_PAGES * MAP_SIZE, 1, 0
