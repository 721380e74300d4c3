# dom0.S -- dom0 of the xenidc scenario: the domain that keeps the directory of domain ids and MACs
# (XenStore's /local/domain/<id>/device/vif/0/mac keys). On a real host xenstored answers the guests'
# reads over its ring; here the host hands every domU a copy of the directory in its start_info page
# before boot (scenarios/xenidc.py), so dom0 takes no part in the shared-memory data path: it boots
# and sleeps. Its start_info holds the same directory; the boot line says how many domains it lists.
.include "../lib/boot.S"

.set SHARED_INFO, 0x10000
.set GNTTAB, 0x11000                    # dom0 grants nothing; the helpers want the name

.include "../xennet/netif.S"
.include "xensock.S"

# start_kernel(): boot, say what the directory holds, then sleep: nothing here wakes us.
start_kernel:
    push ebp
    mov ebp, esp
    mov dword ptr [xen_start_info], esi
    call xs_start_kernel
    push dword ptr [XS_DIR]
    mov eax, msg_directory
    push eax
    call xs_report
    add esp, 8
.Ldom0_idle:
    call xen_irq_disable
    call xen_block
    jmp .Ldom0_idle

msg_directory:
    .asciz "dom0: xenstore directory, domains "
.align 4
xen_start_info:
    .long 0
