# netperf.S -- a TCP_STREAM sender over an RTL8139 with an 8139too-like driver (Linux 2.6.27,
# drivers/net/8139too.c), the workload of the KVM paper's Table 2.
#
# rtl8139_init_one finds the card in PCI configuration space (10ec:8139: BAR0, interrupt line);
# rtl8139_hw_start resets it (CR.RST, polled), sets RBSTART, the four TSAD, RCR, TCR, enables RX/TX
# and the interrupt mask. netperf_main sends MESSAGES messages of MSG_SIZE bytes as MSS-sized frames
# through rtl8139_start_xmit (a TSD write), halting while all four TX descriptors are busy.
# rtl8139_interrupt reads ISR, acks the non-RX causes, and with NAPI=1 masks RX in IMR and schedules the
# poll (rtl8139_poll runs rtl8139_rx with interrupts on, then unmasks); with NAPI=0 it runs rtl8139_rx
# itself. rtl8139_rx loops while CR says the ring is not empty: read the header from the ring, hand
# the frame up, write CAPR = cur_rx - 16, rtl8139_isr_ack (read ISR, ack the RX bits).
# rtl8139_tx_interrupt reads TSD of each sent descriptor until one is still in flight.
# Register accessors are functions (ioread8/16/32, iowrite8/16/32) called with frame pointers.
#
# With RECEIVE=1 the roles turn: the peer streams (vmexit run --net-peer-sends), netif_receive_skb
# counts the payload and every second frame queues an ACK that netperf_recv sends.
#
# Exits by construction (tests/test_guests.py): per frame sent one iowrite32 (TSD) in
# rtl8139_start_xmit; per frame taken off the ring one CAPR write and one ISR read + write in
# rtl8139_rx.
.include "lib/boot.S"

.ifndef MESSAGES
.set MESSAGES, 64
.endif
.ifndef MSG_SIZE
.set MSG_SIZE, 4096
.endif
.ifndef NAPI
.set NAPI, 1
.endif
.ifndef RECEIVE
.set RECEIVE, 0                         # 1: the peer sends (run with --net-peer-sends), we ack
.endif
.set TARGET_BYTES, MESSAGES * MSG_SIZE
.set ACK_FRAME, 60

.set MSS, 1448
.set HEADERS, 54                        # Ethernet 14 + IP 20 + TCP 20
.set NUM_TX_DESC, 4
.set RX_BUF_LEN, 8192
.set IDR0, 0x00
.set TSD0, 0x10
.set TSAD0, 0x20
.set RBSTART, 0x30
.set CHIPCMD, 0x37
.set CAPR, 0x38
.set INTRMASK, 0x3c
.set INTRSTATUS, 0x3e
.set TXCONFIG, 0x40
.set RXCONFIG, 0x44
.set CMD_RESET, 0x10
.set CMD_RX_ENB, 0x08
.set CMD_TX_ENB, 0x04
.set RX_BUF_EMPTY, 0x01
.set RX_OK, 0x01
.set RX_ERR, 0x02
.set TX_OK, 0x04
.set TX_ERR, 0x08
.set RX_OVERFLOW, 0x10
.set RX_FIFO_OVER, 0x40
.set RX_ACK_BITS, RX_FIFO_OVER + RX_OVERFLOW + RX_OK
.set INTR_MASK, 0x7f                    # rtl8139_intr_mask: PCIErr..RxOK
.set NORX_INTR_MASK, INTR_MASK & ~RX_ACK_BITS & ~RX_ERR
.set TX_STAT_OK, 0x8000
.set TX_UNDERRUN, 0x4000
.set TX_ABORTED, 0x40000000
.set TX_DONE_BITS, TX_STAT_OK + TX_UNDERRUN + TX_ABORTED
.set RX_CONFIG, 0x0000000f              # accept broadcast, multicast, my MAC, all; 8 KiB ring
.set TX_CONFIG, 0x03000700              # IFG standard, max DMA burst 2048
.set PCI_CONFIG_ADDRESS, 0xcf8
.set PCI_CONFIG_DATA, 0xcfc
.set RTL_ID, 0x813910ec
.set IRQ_VECTOR_BASE, 0x20              # PIC: IRQ n at 0x20 + n

# start_kernel(): find and start the card, send, report.
start_kernel:
    push ebp
    mov ebp, esp
    call early_serial_init
    mov eax, msg_start
    push eax
    call early_printk
    add esp, 4
    call trap_init
    call rtl8139_init_one
    test eax, eax
    jnz .Lstart_no_card
    call init_pic
    call rtl8139_hw_start
    sti
.if RECEIVE
    call netperf_recv
.else
    call netperf_main
.endif
    cli
    mov eax, msg_done
    push eax
    call early_printk
    add esp, 4
    xor eax, eax
    pop ebp
    ret
.Lstart_no_card:
    mov eax, msg_nocard
    push eax
    call early_printk
    add esp, 4
    mov eax, 2
    pop ebp
    ret

# rtl_reg(offset) -> port of a card register (ioaddr + offset)
rtl_reg:
    push ebp
    mov ebp, esp
    mov eax, dword ptr [ioaddr]
    add eax, [ebp + 8]
    pop ebp
    ret

# --- PCI probe: scan bus 0 for the card; BAR0 and the interrupt line. Returns 0, or 1 if absent. ---
rtl8139_init_one:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx
.Linit_one_next:
    mov eax, ebx
    shl eax, 11
    or eax, 0x80000000
    mov dword ptr [pci_address], eax
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    cmp eax, RTL_ID
    je .Linit_one_found
    inc ebx
    cmp ebx, 32
    jb .Linit_one_next
    mov eax, 1
    pop ebx
    pop ebp
    ret
.Linit_one_found:
    mov eax, dword ptr [pci_address]
    or eax, 0x10                        # BAR0
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    and eax, 0xfffc
    mov dword ptr [ioaddr], eax
    mov eax, dword ptr [pci_address]
    or eax, 0x3c                        # interrupt line
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in al, dx
    movzx eax, al
    mov dword ptr [irq_line], eax
    mov eax, dword ptr [pci_address]
    or eax, 0x04                        # command: I/O + bus master
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in ax, dx
    or ax, 0x05
    out dx, ax
    xor eax, eax
    pop ebx
    pop ebp
    ret

# init_pic(): 8259A pair at 0x20/0x28, only the card's line (and the cascade) unmasked; its gate.
init_pic:
    push ebp
    mov ebp, esp
    mov eax, rtl8139_interrupt_entry
    push eax
    mov eax, dword ptr [irq_line]
    add eax, IRQ_VECTOR_BASE
    push eax
    call set_intr_gate
    add esp, 8
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov ecx, dword ptr [irq_line]       # unmask the line (on the slave: also the cascade)
    mov eax, 1
    shl eax, cl
    not eax
    mov edx, eax
    and edx, 0xfb                       # cascade IR2 open
    mov al, dl
    out 0x21, al
    mov eax, 1
    shl eax, cl
    shr eax, 8
    not eax
    out 0xa1, al
    pop ebp
    ret

# rtl8139_hw_start(): reset, ring and descriptors, receive/transmit config, enable, interrupt mask.
rtl8139_hw_start:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, CHIPCMD
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, CMD_RESET
    push eax
    call iowrite8
    add esp, 4
    call ioread8                        # reset completes at once here; the driver polls until clear
    add esp, 4
    mov eax, RBSTART
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, rx_ring
    push eax
    call iowrite32
    add esp, 8
    xor ebx, ebx
.Lhw_start_tsad:
    lea eax, [ebx * 4 + TSAD0]
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, ebx
    shl eax, 11
    add eax, tx_bufs
    push eax
    call iowrite32
    add esp, 8
    inc ebx
    cmp ebx, NUM_TX_DESC
    jb .Lhw_start_tsad
    mov eax, RXCONFIG
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, RX_CONFIG
    push eax
    call iowrite32
    add esp, 8
    mov eax, TXCONFIG
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, TX_CONFIG
    push eax
    call iowrite32
    add esp, 8
    mov eax, CHIPCMD
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, CMD_RX_ENB + CMD_TX_ENB
    push eax
    call iowrite8
    add esp, 8
    call rtl8139_enable_irqs
    pop ebx
    pop ebp
    ret

rtl8139_enable_irqs:
    push ebp
    mov ebp, esp
    mov eax, INTRMASK
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, INTR_MASK
    push eax
    call iowrite16
    add esp, 8
    pop ebp
    ret

# netperf_main(): MESSAGES messages of MSG_SIZE bytes, cut into MSS frames.
netperf_main:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, MESSAGES
.Lnetperf_message:
    mov esi, MSG_SIZE
.Lnetperf_frame:
    mov eax, esi
    cmp eax, MSS
    jbe .Lnetperf_size
    mov eax, MSS
.Lnetperf_size:
    sub esi, eax
    add eax, HEADERS
    push eax
    call rtl8139_start_xmit
    add esp, 4
    call net_rx_action
    test esi, esi
    jnz .Lnetperf_frame
    dec ebx
    jnz .Lnetperf_message
    pop esi
    pop ebx
    pop ebp
    ret

# netperf_recv(): TCP_STREAM receiver: ack every second frame, until TARGET_BYTES have arrived; idle
# in safe_halt() (sti; hlt) when there is nothing to do.
netperf_recv:
    push ebp
    mov ebp, esp
.Lrecv_loop:
    cmp dword ptr [rx_payload], TARGET_BYTES
    jae .Lrecv_done
    cmp dword ptr [acks_due], 0
    je .Lrecv_idle
    dec dword ptr [acks_due]
    mov eax, ACK_FRAME
    push eax
    call rtl8139_start_xmit
    add esp, 4
    jmp .Lrecv_loop
.Lrecv_idle:
    call net_rx_action
    cli
    cmp dword ptr [acks_due], 0
    jne .Lrecv_wake
    cmp dword ptr [napi_scheduled], 0
    jne .Lrecv_wake
    sti
    hlt
    jmp .Lrecv_loop
.Lrecv_wake:
    sti
    jmp .Lrecv_loop
.Lrecv_done:
    pop ebp
    ret

# net_rx_action(): run the NAPI poll if the interrupt handler scheduled it (interrupts on).
net_rx_action:
    push ebp
    mov ebp, esp
    cmp dword ptr [napi_scheduled], 0
    je .Lrx_action_done
    call rtl8139_poll
.Lrx_action_done:
    pop ebp
    ret

# rtl8139_start_xmit(len): wait for a free descriptor (halting), then write its TSD.
rtl8139_start_xmit:
    push ebp
    mov ebp, esp
.Lxmit_wait:
    cli
    mov eax, dword ptr [cur_tx]
    sub eax, dword ptr [dirty_tx]
    cmp eax, NUM_TX_DESC
    jb .Lxmit_free
    sti
    hlt                                 # the TX interrupt frees a descriptor
    call net_rx_action
    jmp .Lxmit_wait
.Lxmit_free:
    sti
    mov eax, dword ptr [cur_tx]
    and eax, NUM_TX_DESC - 1
    lea eax, [eax * 4 + TSD0]
    push eax
    call rtl_reg
    add esp, 4
    push eax
    push dword ptr [ebp + 8]
    call iowrite32
    add esp, 8
    inc dword ptr [cur_tx]
    pop ebp
    ret

# rtl8139_interrupt_entry: the interrupt stub; EOI to both PICs at the end.
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

# rtl8139_interrupt(): read ISR, ack all but the RX bits, then RX (NAPI or direct) and TX.
rtl8139_interrupt:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, INTRSTATUS
    push eax
    call rtl_reg
    add esp, 4
    push eax
    call ioread16
    add esp, 4
    mov ebx, eax
    test ebx, ebx
    jz .Linterrupt_done
    mov eax, INTRSTATUS
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, ebx
    and eax, ~RX_ACK_BITS & 0xffff
    push eax
    call iowrite16
    add esp, 8
    test ebx, RX_ACK_BITS
    jz .Linterrupt_tx
.if NAPI
    mov eax, INTRMASK                   # __napi_schedule after masking RX
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, NORX_INTR_MASK
    push eax
    call iowrite16
    add esp, 8
    mov dword ptr [napi_scheduled], 1
.else
    call rtl8139_rx
.endif
.Linterrupt_tx:
    test ebx, TX_OK + TX_ERR
    jz .Linterrupt_done
    call rtl8139_tx_interrupt
.Linterrupt_done:
    pop ebx
    pop ebp
    ret

# rtl8139_poll(): rtl8139_rx, then napi_complete and the full interrupt mask again.
rtl8139_poll:
    push ebp
    mov ebp, esp
    mov dword ptr [napi_scheduled], 0
    call rtl8139_rx
    cli
    call rtl8139_enable_irqs
    sti
    pop ebp
    ret

# rtl8139_rx(): while the ring is not empty: header, hand up, CAPR, ack.
rtl8139_rx:
    push ebp
    mov ebp, esp
    push ebx
.Lrx_next:
    mov eax, CHIPCMD
    push eax
    call rtl_reg
    add esp, 4
    push eax
    call ioread8
    add esp, 4
    test eax, RX_BUF_EMPTY
    jnz .Lrx_done
    mov ebx, dword ptr [cur_rx]
    mov eax, dword ptr [rx_ring + ebx + 0]   # {status, size}
    shr eax, 16
    inc dword ptr [rx_packets]
    add dword ptr [rx_bytes], eax
    call netif_receive_skb
    lea ebx, [ebx + eax + 4 + 3]
    and ebx, ~3
    and ebx, RX_BUF_LEN - 1
    mov dword ptr [cur_rx], ebx
    mov eax, CAPR
    push eax
    call rtl_reg
    add esp, 4
    push eax
    lea eax, [ebx - 16]
    and eax, 0xffff
    push eax
    call iowrite16
    add esp, 8
    call rtl8139_isr_ack
    jmp .Lrx_next
.Lrx_done:
    pop ebx
    pop ebp
    ret

# netif_receive_skb(size): hand the frame up: count its TCP payload and ack every second frame.
netif_receive_skb:
    push ebp
    mov ebp, esp
    push eax
    sub eax, HEADERS + 4                # minus headers and CRC
    jbe .Lreceive_skb_done
    add dword ptr [rx_payload], eax
    inc dword ptr [rx_data_frames]
    test dword ptr [rx_data_frames], 1
    jnz .Lreceive_skb_done
    inc dword ptr [acks_due]
.Lreceive_skb_done:
    pop eax
    pop ebp
    ret

# rtl8139_isr_ack(): read ISR; if RX bits are set, write them back (ack).
rtl8139_isr_ack:
    push ebp
    mov ebp, esp
    mov eax, INTRSTATUS
    push eax
    call rtl_reg
    add esp, 4
    push eax
    call ioread16
    add esp, 4
    and eax, RX_ACK_BITS
    jz .Lisr_ack_done
    mov eax, INTRSTATUS
    push eax
    call rtl_reg
    add esp, 4
    push eax
    mov eax, RX_ACK_BITS
    push eax
    call iowrite16
    add esp, 8
.Lisr_ack_done:
    pop ebp
    ret

# rtl8139_tx_interrupt(): reap finished descriptors by reading their TSD.
rtl8139_tx_interrupt:
    push ebp
    mov ebp, esp
.Ltx_next:
    mov eax, dword ptr [dirty_tx]
    cmp eax, dword ptr [cur_tx]
    je .Ltx_done
    and eax, NUM_TX_DESC - 1
    lea eax, [eax * 4 + TSD0]
    push eax
    call rtl_reg
    add esp, 4
    push eax
    call ioread32
    add esp, 4
    test eax, TX_DONE_BITS
    jz .Ltx_done
    inc dword ptr [dirty_tx]
    jmp .Ltx_next
.Ltx_done:
    pop ebp
    ret

msg_start:
    .asciz "netperf: start\n"
msg_done:
    .asciz "netperf: done\n"
msg_nocard:
    .asciz "netperf: no RTL8139\n"
.align 4
ioaddr:
    .long 0
irq_line:
    .long 0
pci_address:
    .long 0
cur_tx:
    .long 0
dirty_tx:
    .long 0
cur_rx:
    .long 0
napi_scheduled:
    .long 0
rx_packets:
    .long 0
rx_bytes:
    .long 0
rx_payload:
    .long 0
rx_data_frames:
    .long 0
acks_due:
    .long 0
.align 16
rx_ring:
    .fill RX_BUF_LEN + 16 + 1536, 1, 0
.align 16
tx_bufs:
    .fill NUM_TX_DESC * 2048, 1, 0

.include "lib/iomap.S"
