# dbnet.S -- seed 002's DBNet ABI, shared by netback (dom0) and netfront (domU) with DBNET=1: the NIC
# driver's fast path runs in the hypervisor (vmexit/hypervisors/dbnet.py). One hypercall of ours,
# dbnet_op (49), EBX the command, ECX a pointer to its argument:
#   DBNETOP_attach  (dom0)  {u32 rx ring, u32 ring length, u32 tx buffers, u32 tx buffer size, u32 cur_rx}
#   DBNETOP_set_mac (dom0)  {u16 domid, u8 mac[6]}: the bridge's table
#   DBNETOP_connect (domU)  {u32 rx ring page, u32 port OUT}: netif rx ring, buffers by address
#   DBNETOP_xmit    (domU)  {u32 frame address, u32 length}
# Results: 0, or -errno (EPERM, EFAULT, EINVAL, EAGAIN, ENODEV, ENOTCONN, ...).
.ifndef GUESTS
.set GUESTS, 1                          # guests sharing the NIC (domids 1..GUESTS; DBNET=1 only)
.endif
.set __HYPERVISOR_dbnet_op, 49
.set HYPERCALL_dbnet_op, hypercall_page + __HYPERVISOR_dbnet_op * 32
.set DBNETOP_attach, 0
.set DBNETOP_set_mac, 1
.set DBNETOP_connect, 2
.set DBNETOP_xmit, 3

# HYPERVISOR_dbnet_op(cmd, arg)
HYPERVISOR_dbnet_op:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    mov ecx, [ebp + 12]
    call HYPERCALL_dbnet_op
    pop ebx
    pop ebp
    ret
