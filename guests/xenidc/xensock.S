# xensock.S -- what both ends of the shared-memory channel share (XenSocket, Zhang et al., Middleware
# 2007, the design seed 004 builds on): the descriptor page's layout, the directory dom0 keeps (domain
# ids and MACs, as XenStore's /local/domain/<id>/device/vif/0/mac keys), the co-residency check, the
# shared ring's arithmetic, the event handler and the result line. Included after netif.S (the Xen ABI,
# hypercall wrappers, upcall, grant helpers; guests/xennet/netif.S) by receiver.S and sender.S.
#
# The channel is XenSocket's: the receiver (the "server", which binds) allocates and grants one
# descriptor page and 2^order data pages, allocates an unbound event channel for the sender and writes
# its port and the order into the descriptor; the sender (the "client", which connects) maps the
# descriptor, binds the port (EVTCHNOP_bind_interdomain), and maps the data pages one by one: page i's
# grant ref is in the first word of page i-1 until it is mapped (XenSocket chains them so that the
# descriptor needs only the first). A stream runs over the ring: the sender copies in and notifies
# once per send; when the ring is full it sets sender_is_blocking, notifies, and blocks; the receiver
# copies out and notifies after each chunk while the sender is blocking.
#
# The directory (start_info + 0xc00, filled by the host for every domU: what dom0's XenStore answers
# to a directory read of /local/domain): a count, then entries {u32 domid, 6-byte MAC, u16 pad,
# u32 descriptor grant ref the domain's channel publishes (XenSocket's CM_SET_GREF table)}.

# --- start_info: our domid and MAC (as xennet's wiring), and the directory ---
.set IDC_DOMID, SI_NET + 0x00
.set IDC_MAC, SI_NET + 0x1c
.set XS_DIR, START_INFO + 0xc00
.set XS_DIR_ENTRIES, XS_DIR + 4
.set XS_DIR_ENTRY, 16
.set XS_DIR_MAX, 64
.set XSE_DOMID, 0
.set XSE_MAC, 4
.set XSE_DESC_REF, 12

# --- XenSocket's struct descriptor_page (every field a u32) ---
.set DESC_SERVER_EVTCHN_PORT, 0
.set DESC_BUFFER_ORDER, 4               # the ring is 1 << order pages
.set DESC_BUFFER_FIRST_GREF, 8
.set DESC_SEND_OFFSET, 12               # where the sender writes next (mod the ring)
.set DESC_RECV_OFFSET, 16               # where the receiver reads next
.set DESC_TOTAL_SENT, 20
.set DESC_TOTAL_RECEIVED, 24
.set DESC_SENDER_IS_BLOCKING, 28
.set DESC_AVAIL_BYTES, 32               # free bytes in the ring (atomic: both ends change it)
.set DESC_SENDER_HAS_SHUTDOWN, 36
.set DESC_RECEIVER_IS_WAITING, 40       # ours, not XenSocket's: for NOTIFY_EVERY_SEND=0

# --- the ring: XenSocket's buffer_order 5 (32 pages, 128 KiB) unless -D RING_ORDER; at most 64 pages,
# the part of the sender's grant window set aside for it ---
.ifndef RING_ORDER
.set RING_ORDER, 5
.endif
.set MAX_RING_ORDER, 6
.set XS_DESC_REF, 8                     # the descriptor's grant ref (refs 0..7 are Xen's reserved ones)
.set XS_BUFFER_REF, 9                   # the data pages' refs: 9, 10, ...

# --- the stream: STREAM_BYTES in sends (and receives) of BUF bytes ---
.ifndef BUF
.set BUF, 16384
.endif
.ifndef STREAM_BYTES
.set STREAM_BYTES, 0x400000             # 4 MiB: 32 fills of the default ring
.endif
.ifndef NOTIFY_EVERY_SEND
.set NOTIFY_EVERY_SEND, 1               # 1: XenSocket, one notification per send; 0: only when the
.endif                                  # receiver said it may sleep (the idea of io/ring.h's req_event)
.set MAX_BUF, 0x20000                   # the application buffer: 128 KiB
.set EINVAL_NEG, -22
.set ENOENT_NEG, -2

# xs_directory_lookup(mac) -> the domid whose directory entry has this 6-byte MAC and is not ours, or
# -ENOENT: the co-residency check (XenLoop's discovery reads the same keys from XenStore).
xs_directory_lookup:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov esi, [ebp + 8]
    mov ecx, [XS_DIR]
    cmp ecx, XS_DIR_MAX
    jbe .Llookup_count
    mov ecx, XS_DIR_MAX                 # a directory longer than its page holds is cut, not trusted
.Llookup_count:
    mov ebx, XS_DIR_ENTRIES
.Llookup_next:
    test ecx, ecx
    jz .Llookup_none
    mov eax, [ebx + XSE_MAC]
    cmp eax, [esi]
    jne .Llookup_skip
    mov ax, word ptr [ebx + XSE_MAC + 4]
    cmp ax, word ptr [esi + 4]
    jne .Llookup_skip
    mov eax, [ebx + XSE_DOMID]
    cmp eax, [IDC_DOMID]
    jne .Llookup_done
.Llookup_skip:
    add ebx, XS_DIR_ENTRY
    dec ecx
    jmp .Llookup_next
.Llookup_none:
    mov eax, ENOENT_NEG
.Llookup_done:
    pop esi
    pop ebx
    pop ebp
    ret

# xs_directory_desc_ref(domid) -> the descriptor ref the directory lists for domid (0: none).
xs_directory_desc_ref:
    push ebp
    mov ebp, esp
    mov ecx, [XS_DIR]
    mov edx, XS_DIR_ENTRIES
    xor eax, eax
.Ldesc_ref_next:
    test ecx, ecx
    jz .Ldesc_ref_done
    mov eax, [edx + XSE_DOMID]
    cmp eax, [ebp + 8]
    je .Ldesc_ref_found
    add edx, XS_DIR_ENTRY
    dec ecx
    xor eax, eax
    jmp .Ldesc_ref_next
.Ldesc_ref_found:
    mov eax, [edx + XSE_DESC_REF]
.Ldesc_ref_done:
    pop ebp
    ret

# xs_interrupt(port): server_interrupt / client_interrupt: the other end wrote or freed ring space;
# whoever waits re-reads the descriptor (wake_up_interruptible). The wait loops below look at the ring
# itself, so the handler only counts.
xs_interrupt:
    push ebp
    mov ebp, esp
    inc dword ptr [xs_events]
    pop ebp
    ret

# xs_chunk(offset, bytes, ring bytes) -> how much of `bytes` fits before the ring's end from offset:
# XenSocket copies a wrapping span in two segments; we copy them as two chunks.
xs_chunk:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 16]
    sub eax, [ebp + 8]
    cmp eax, [ebp + 12]
    jbe .Lchunk_done
    mov eax, [ebp + 12]
.Lchunk_done:
    pop ebp
    ret

# xs_report(label, value): one console line, "label value\n".
xs_report:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov esi, [ebp + 8]
    mov edi, report_line
.Lreport_copy:
    mov al, byte ptr [esi]
    test al, al
    jz .Lreport_value
    mov byte ptr [edi], al
    inc esi
    inc edi
    jmp .Lreport_copy
.Lreport_value:
    push dword ptr [ebp + 12]
    push edi
    call sprint_decimal
    add esp, 8
    mov byte ptr [eax], 0x0a
    mov byte ptr [eax + 1], 0
    mov eax, report_line
    push eax
    call xen_raw_console_write
    add esp, 4
    pop edi
    pop esi
    pop ebp
    ret

# xs_refuse(label, value): say why the channel is not used, then power off (a clean refusal).
xs_refuse:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 12]
    push dword ptr [ebp + 8]
    call xs_report
    add esp, 8
    call xen_poweroff
.Lrefuse_stay:
    jmp .Lrefuse_stay                   # not reached: the domain is shut down

# xs_start_kernel(): hypercall page, shared info, our grant table frame, the event callback.
xs_start_kernel:
    push ebp
    mov ebp, esp
    call xen_init_hypercall_page
    call xen_setup_shared_info
    call gnttab_init
    call xen_register_callbacks
    pop ebp
    ret

# xs_wait_event(ready): wait until ready() (a function of no argument) is true: with events masked,
# ask ready() once more, then block; sched_op block unmasks and returns at once if an event came since,
# so a notification that raced the check is not lost (schedule_timeout after prepare_to_wait).
xs_wait_event:
    push ebp
    mov ebp, esp
    call xen_irq_disable
    call dword ptr [ebp + 8]
    test eax, eax
    jnz .Lwait_ready
    call xen_block
    jmp .Lwait_done
.Lwait_ready:
    call xen_irq_enable
.Lwait_done:
    pop ebp
    ret

.align 4
xs_events:                              # events our handler took
    .long 0
report_line:
    .fill 128, 1, 0
