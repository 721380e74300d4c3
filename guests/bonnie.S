# bonnie.S -- sequential block write then read through a libata-like bus-master DMA path, the disk
# half of the KVM paper's Table 3 (bonnie++). Linux 2.6.27, drivers/ata/libata-sff.c and friends.
# At boot, acpi_pm_init() runs verify_pmtmr_rate(), which reads the ACPI PM timer through
# acpi_pm_read() PMTMR_LOOPS times (Table 3's first row); ata_pci_init() finds the PIIX3 IDE
# function through PCI configuration space, reads BAR4 (the bus-master registers) and enables bus
# mastering, so the same file works under QEMU, whose firmware places BAR4 itself; then ata_eh_reset()
# probes the port as libata's error handler does (ata_devchk on both devices, SRST, classification by
# signature, post-reset).
# Each request is what ata_sff_qc_issue() does for ATA_PROT_DMA: ata_dev_select() (status waits around
# ata_sff_dev_select()'s iowrite8 to the device register), ata_sff_tf_load() (the LBA48 taskfile: 5 HOB
# bytes, 5 bytes, the device register, one call each), ata_bmdma_setup() (iowrite32 of the PRD table
# address, ioread8/iowrite8 of the DMA command register, then the ATA command), ata_bmdma_start(),
# polling ata_bmdma_status() (ioread8 of the BMDMA status) until the interrupt bit, ata_bmdma_stop(),
# ata_bmdma_irq_clear() and ata_sff_check_status().
# The accessors are functions, as lib/iomap.c's ioread8/iowrite8/iowrite32 (port I/O here), so every
# exit is named by the accessor and its caller.
#
# -D PMTMR_VERIFY=0 drops verify_pmtmr_rate (the paper's redundant-function removal); -D ELEVATOR=0
# queues requests FIFO instead of sorting them by sector (its I/O-scheduler removal).
# -D COALESCE=1: the paper's static I/O coalescing applied to ata_sff_tf_load(): its 11 taskfile
# writes fill io_out[] (struct io_insn) and go to the hypervisor in one XKVM_IO_COALESCE vmcall.
#
# Exits by construction (tests/test_guests.py): 29 port exits per request (17 iowrite8, 11 ioread8,
# 1 iowrite32) plus the status polls, SECTORS / SECTORS_PER_REQ requests each way; 61 at the probe
# (27 iowrite8, 34 ioread8) with no slave, whose registers read back as on QEMU (devices/ide.py);
# PMTMR_LOOPS acpi_pm_read exits; 7 in ata_pci_init.
.include "lib/boot.S"

.ifndef SECTORS
.set SECTORS, 64
.endif
.ifndef SECTORS_PER_REQ
.set SECTORS_PER_REQ, 8
.endif
.ifndef PMTMR_LOOPS
.set PMTMR_LOOPS, 64
.endif
.ifndef COALESCE
.set COALESCE, 0
.endif
.ifndef PMTMR_VERIFY
.set PMTMR_VERIFY, 1                    # 0: no verify_pmtmr_rate at boot (the paper, section 3.2.1)
.endif
.ifndef ELEVATOR
.set ELEVATOR, 1                        # 0: FIFO request queue, no sorting (section 3.2.2)
.endif
.if COALESCE                            # the paper's static I/O coalescing: tf_load's 11 writes
.set tf_write8, xkvm_io_out             # go into one XKVM_IO_COALESCE hypercall
.else
.set tf_write8, iowrite8
.endif
.set XKVM_IO_COALESCE, 0x100            # vmexit's number for the paper's hypercall
.set IO_OUTB, 0x01                      # io_insn.type: an 8-bit out
.set IO_INSN_SIZE, 12
.set IO_OUT_MAX, 16

.set REQUESTS, SECTORS / SECTORS_PER_REQ
.set REQ_BYTES, SECTORS_PER_REQ * 512
.set PATTERN_DWORDS, REQ_BYTES / 4
.set ATA_DATA, 0x1f0
.set ATA_FEATURE, 0x1f1
.set ATA_NSECT, 0x1f2
.set ATA_LBAL, 0x1f3
.set ATA_LBAM, 0x1f4
.set ATA_LBAH, 0x1f5
.set ATA_DEVICE, 0x1f6
.set ATA_STATUS, 0x1f7
.set ATA_COMMAND, 0x1f7
.set ATA_ERROR, 0x1f1
.set ATA_ALTSTATUS, 0x3f6
.set ATA_CTL, 0x3f6
.set ATA_DEVICE_OBS, 0xa0
.set ATA_DEV1, 0x10
.set ATA_DEVICE_LBA, 0xe0
.set ATA_DEVCTL_OBS, 0x08
.set ATA_SRST, 0x04
.set ATA_BUSY, 0x80
.set ATA_DRQ, 0x08
.set ATA_DEV_ATA, 1                     # device classes, libata's ATA_DEV_* values
.set ATA_DEV_ATAPI, 3
.set ATA_DEV_NONE, 5
.set ENODEV, 19
.set TF_COMMAND, 0                      # ata_tf offsets
.set TF_FEATURE, 4
.set TF_NSECT, 8
.set TF_LBAL, 12
.set TF_LBAM, 16
.set TF_LBAH, 20
.set TF_DEVICE, 24
.set TF_SIZE, 28
# one symbol per memory operand (see asm.py): the fields' addresses
.set ATA_TF_COMMAND, ata_tf + TF_COMMAND
.set ATA_TF_FEATURE, ata_tf + TF_FEATURE
.set ATA_TF_NSECT, ata_tf + TF_NSECT
.set ATA_TF_LBAL, ata_tf + TF_LBAL
.set ATA_TF_LBAM, ata_tf + TF_LBAM
.set ATA_TF_LBAH, ata_tf + TF_LBAH
.set ATA_TF_DEVICE, ata_tf + TF_DEVICE
.set ATA_CMD_READ_DMA_EXT, 0x25
.set ATA_CMD_WRITE_DMA_EXT, 0x35
.set ATA_DMA_START, 0x01
.set ATA_DMA_WR, 0x08                   # bus master writes to memory: a disk read
.set ATA_DMA_INTR, 0x04
.set ATA_DMA_ERR, 0x02
.set ATA_DMA_CMD, 0
.set ATA_DMA_STATUS, 2
.set ATA_DMA_TABLE_OFS, 4
.set PMTMR_PORT, 0x608
.set PCI_CONFIG_ADDRESS, 0xcf8
.set PCI_CONFIG_DATA, 0xcfc
.set PIIX_IDE, 0x80000000 + 0x100 * (1 * 8 + 1)   # bus 0, device 1, function 1
.set PIIX_IDE_ID, 0x70108086
.set PIIX_IDE_COMMAND, PIIX_IDE + 0x04
.set PIIX_IDE_BAR4, PIIX_IDE + 0x20
.set PCI_COMMAND_IO_MASTER, 0x05
.set PRD_EOT, 0x80000000

# start_kernel(): calibrate the PM timer, find the controller, write then read back SECTORS.
start_kernel:
    push ebp
    mov ebp, esp
    push ebx
    call early_serial_init
    mov eax, msg_start
    push eax
    call early_printk
    add esp, 4
    call acpi_pm_init
    call ata_pci_init
    test eax, eax
    jnz .Lstart_no_controller
    call ata_eh_reset
    test eax, eax
    jnz .Lstart_no_controller
    call submit_requests                # writeback queues every request of the file,
.Lstart_write:                          # then the driver takes them from the elevator
    call elv_next_request
    cmp eax, -1
    je .Lstart_read
    mov ebx, eax
    push ebx                            # one buffer here: the page is filled when dispatched
    call fill_pattern
    add esp, 4
    mov eax, 1                          # the drive interrupts (IRQ14, masked at the PIC): the
    push eax                            # BMDMA status shows it, and we poll that
    push ebx
    call ata_do_request
    add esp, 8
    jmp .Lstart_write
.Lstart_read:
    call submit_requests
.Lstart_read_next:
    call elv_next_request
    cmp eax, -1
    je .Lstart_done
    mov ebx, eax
    xor eax, eax
    push eax
    push ebx
    call ata_do_request
    add esp, 8
    push ebx
    call check_pattern
    add esp, 4
    add dword ptr [mismatches], eax
    jmp .Lstart_read_next
.Lstart_done:
    mov eax, msg_ok
    cmp dword ptr [mismatches], 0
    je .Lstart_print
    mov eax, msg_bad
.Lstart_print:
    push eax
    call early_printk
    add esp, 4
    xor eax, eax
    cmp dword ptr [mismatches], 0
    setne al
    pop ebx
    pop ebp
    ret
.Lstart_no_controller:
    mov eax, msg_nodisk
    push eax
    call early_printk
    add esp, 4
    mov eax, 2
    pop ebx
    pop ebp
    ret

# --- block/elevator.c: the request queue ---
# submit_requests(): queue requests 0 .. REQUESTS-1 of a pass, in the order the file is written.
submit_requests:
    push ebp
    mov ebp, esp
    push ebx
    xor ebx, ebx
    mov dword ptr [q_head], 0
    mov dword ptr [q_len], 0
.Lsubmit_next:
    cmp ebx, REQUESTS
    jae .Lsubmit_done
    push ebx
    call elv_add_request
    add esp, 4
    inc ebx
    jmp .Lsubmit_next
.Lsubmit_done:
    pop ebx
    pop ebp
    ret

# elv_add_request(n): with an elevator, elv_dispatch_sort(): walk back from the tail past every
# request with a higher sector and insert there, so the queue is in sector order; FIFO: append.
elv_add_request:
    push ebp
    mov ebp, esp
    push esi
    mov eax, [ebp + 8]
    mov ecx, [q_len]
.if ELEVATOR
    imul edx, eax, SECTORS_PER_REQ      # the request's first sector
    mov esi, ecx
.Ladd_request_walk:
    cmp esi, [q_head]
    jbe .Ladd_request_insert
    push eax
    mov eax, [request_queue + esi * 4 - 4]
    imul eax, eax, SECTORS_PER_REQ
    cmp eax, edx
    pop eax
    jbe .Ladd_request_insert
    mov ecx, [request_queue + esi * 4 - 4]
    mov dword ptr [request_queue + esi * 4], ecx
    dec esi
    jmp .Ladd_request_walk
.Ladd_request_insert:
    mov dword ptr [request_queue + esi * 4], eax
.else
    mov dword ptr [request_queue + ecx * 4], eax
.endif
    inc dword ptr [q_len]
    pop esi
    pop ebp
    ret

# elv_next_request(): the request at the head of the queue, or -1 when it is empty.
elv_next_request:
    push ebp
    mov ebp, esp
    mov ecx, [q_head]
    mov eax, -1
    cmp ecx, [q_len]
    jae .Lnext_request_done
    mov eax, [request_queue + ecx * 4]
    inc dword ptr [q_head]
.Lnext_request_done:
    pop ebp
    ret

# --- drivers/clocksource/acpi_pm.c ---
# acpi_pm_read(): the 24-bit PM timer.
acpi_pm_read:
    push ebp
    mov ebp, esp
    mov dx, PMTMR_PORT
    in eax, dx
    and eax, 0xffffff
    pop ebp
    ret

# verify_pmtmr_rate(): read the PM timer PMTMR_LOOPS times; returns how often it went backwards.
verify_pmtmr_rate:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    push edi
    xor edi, edi
    call acpi_pm_read
    mov esi, eax
    mov ebx, PMTMR_LOOPS - 1
.Lverify_next:
    call acpi_pm_read
    cmp eax, esi
    jae .Lverify_forward
    inc edi
.Lverify_forward:
    mov esi, eax
    dec ebx
    jnz .Lverify_next
    mov eax, edi
    pop edi
    pop esi
    pop ebx
    pop ebp
    ret

acpi_pm_init:
    push ebp
    mov ebp, esp
.if PMTMR_VERIFY
    call verify_pmtmr_rate
.endif
    pop ebp
    ret

# --- PCI: find the PIIX3 IDE function, its BAR4, and enable I/O + bus mastering ---
# ata_pci_init(): returns 0, or 1 when the controller is not there.
ata_pci_init:
    push ebp
    mov ebp, esp
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, PIIX_IDE
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    cmp eax, PIIX_IDE_ID
    jne .Lpci_absent
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, PIIX_IDE_BAR4
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    and eax, 0xfffc
    mov dword ptr [bmdma_base], eax
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, PIIX_IDE_COMMAND
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in ax, dx
    or ax, PCI_COMMAND_IO_MASTER
    out dx, ax
    xor eax, eax
    pop ebp
    ret
.Lpci_absent:
    mov eax, 1
    pop ebp
    ret

# --- drivers/ata/libata-sff.c (2.6.27) ---
# The probe first: libata's error handler resets every new port (ata_eh_reset -> ata_sff_softreset ->
# ata_sff_postreset) before it issues a command, and that path selects a device eleven times with one
# master and no slave (whose registers read back what was written, so ata_devchk finds it and
# classification keeps it) -- which is why, per call site, ata_sff_dev_select's iowrite8 is the busiest
# one (Table 3): every other iowrite8 call site runs once per command, it runs once per command and
# eleven times more. The kernel's sleeps on this path (msleep(150) after SRST, udelay(20) around it) are
# omitted: they idle, and idling does not exit.

# ata_eh_reset(): soft reset, classify, post-reset. Returns 0 when device 0 is an ATA disk.
ata_eh_reset:
    push ebp
    mov ebp, esp
    mov eax, ata_classes
    push eax
    call ata_sff_softreset
    add esp, 4
    test eax, eax
    jnz .Leh_reset_done
    mov eax, ata_classes
    push eax
    call ata_sff_postreset
    add esp, 4
    xor eax, eax
    cmp dword ptr [ata_classes], ATA_DEV_ATA
    setne al
.Leh_reset_done:
    pop ebp
    ret

# ata_sff_softreset(classes): find the devices (ata_devchk on both, the PIIX port may have a slave),
# pulse SRST, then classify each device by its signature.
ata_sff_softreset:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    xor ebx, ebx                        # devmask
    xor eax, eax
    push eax
    call ata_devchk
    add esp, 4
    or ebx, eax
    mov eax, 1
    push eax
    call ata_devchk
    add esp, 4
    shl eax, 1
    or ebx, eax
    xor eax, eax                        # select device 0 again
    push eax
    call ata_sff_dev_select
    add esp, 4
    push ebx
    call ata_bus_softreset
    add esp, 4
    cmp eax, -ENODEV                    # -ENODEV: no device answered, classify anyway
    je .Lsoftreset_classify
    test eax, eax
    jnz .Lsoftreset_done
.Lsoftreset_classify:
    mov esi, [ebp + 8]
    mov eax, ebx
    and eax, 1
    push eax
    xor eax, eax
    push eax
    call ata_sff_dev_classify
    add esp, 8
    mov dword ptr [esi], eax
    mov dword ptr [esi + 4], ATA_DEV_NONE
    cmp dword ptr [ata_diag_err], 0x81  # 81h: device 0 passed, device 1 failed or absent
    je .Lsoftreset_ok
    mov eax, ebx
    shr eax, 1
    push eax
    mov eax, 1
    push eax
    call ata_sff_dev_classify
    add esp, 8
    mov dword ptr [esi + 4], eax
.Lsoftreset_ok:
    xor eax, eax
.Lsoftreset_done:
    pop esi
    pop ebx
    pop ebp
    ret

# ata_devchk(device): returns 1 when the device's nsect/lbal registers hold what was written.
ata_devchk:
    push ebp
    mov ebp, esp
    push ebx
    push dword ptr [ebp + 8]
    call ata_sff_dev_select
    add esp, 4
    mov ebx, ATA_NSECT
    push ebx
    mov ecx, 0x55
    push ecx
    call iowrite8
    add esp, 8
    mov eax, ATA_LBAL
    push eax
    mov ecx, 0xaa
    push ecx
    call iowrite8
    add esp, 8
    push ebx
    mov ecx, 0xaa
    push ecx
    call iowrite8
    add esp, 8
    mov eax, ATA_LBAL
    push eax
    mov ecx, 0x55
    push ecx
    call iowrite8
    add esp, 8
    push ebx
    mov ecx, 0x55
    push ecx
    call iowrite8
    add esp, 8
    mov eax, ATA_LBAL
    push eax
    mov ecx, 0xaa
    push ecx
    call iowrite8
    add esp, 8
    push ebx
    call ioread8
    add esp, 4
    mov ebx, eax
    mov eax, ATA_LBAL
    push eax
    call ioread8
    add esp, 4
    cmp ebx, 0x55
    jne .Ldevchk_none
    cmp eax, 0xaa
    jne .Ldevchk_none
    mov eax, 1
    pop ebx
    pop ebp
    ret
.Ldevchk_none:
    xor eax, eax
    pop ebx
    pop ebp
    ret

# ata_bus_softreset(devmask): SRST through the device control register, then wait for the port.
ata_bus_softreset:
    push ebp
    mov ebp, esp
    mov eax, ATA_CTL
    push eax
    push dword ptr [ata_port_ctl]
    call iowrite8
    add esp, 8
    mov eax, ATA_CTL
    push eax
    mov eax, [ata_port_ctl]
    or eax, ATA_SRST
    push eax
    call iowrite8
    add esp, 8
    mov eax, ATA_CTL
    push eax
    push dword ptr [ata_port_ctl]
    call iowrite8
    add esp, 8
    push dword ptr [ebp + 8]
    call ata_sff_wait_after_reset
    add esp, 4
    pop ebp
    ret

# ata_sff_wait_after_reset(devmask): wait for the master; for a slave, wait for its registers; then
# the double select that the kernel itself asks about ("is all this really necessary?").
ata_sff_wait_after_reset:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    call ata_sff_wait_ready
    test eax, eax
    jnz .Lafter_reset_done
    test ebx, 2
    jz .Lafter_reset_select
    mov eax, 1
    push eax
    call ata_sff_dev_select
    add esp, 4
    mov eax, ATA_NSECT                  # one look at nsect/lbal, then wait for !BSY
    push eax
    call ioread8
    add esp, 4
    mov eax, ATA_LBAL
    push eax
    call ioread8
    add esp, 4
    call ata_sff_wait_ready
.Lafter_reset_select:
    xor eax, eax
    push eax
    call ata_sff_dev_select
    add esp, 4
    test ebx, 2
    jz .Lafter_reset_dev0
    mov eax, 1
    push eax
    call ata_sff_dev_select
    add esp, 4
.Lafter_reset_dev0:
    test ebx, 1
    jz .Lafter_reset_ok
    xor eax, eax
    push eax
    call ata_sff_dev_select
    add esp, 4
.Lafter_reset_ok:
    xor eax, eax
.Lafter_reset_done:
    pop ebx
    pop ebp
    ret

# ata_sff_wait_ready(): poll the status until BSY clears; -ENODEV when it reads FFh (no device).
ata_sff_wait_ready:
    push ebp
    mov ebp, esp
.Lwait_ready_poll:
    call ata_sff_check_status
    cmp eax, 0xff
    je .Lwait_ready_nodev
    test eax, ATA_BUSY
    jnz .Lwait_ready_poll
    xor eax, eax
    pop ebp
    ret
.Lwait_ready_nodev:
    mov eax, -ENODEV
    pop ebp
    ret

# ata_sff_dev_classify(device, present): select, read the taskfile, and tell an ATA disk by its
# signature (LBA mid/high 00h/00h or 3Ch/C3h) from the rest; the diagnostic code is left in
# ata_diag_err for ata_sff_softreset.
ata_sff_dev_classify:
    push ebp
    mov ebp, esp
    push ebx
    push dword ptr [ebp + 8]
    call ata_sff_dev_select
    add esp, 4
    call ata_sff_tf_read
    mov eax, dword ptr [ATA_TF_FEATURE]
    mov dword ptr [ata_diag_err], eax
    xor ebx, ebx                        # horkage: diagnostic failed
    test eax, eax
    jnz .Lclassify_err1
    inc ebx
    jmp .Lclassify_signature
.Lclassify_err1:
    cmp eax, 1
    je .Lclassify_signature
    cmp eax, 0x81
    jne .Lclassify_none
    cmp dword ptr [ebp + 8], 0
    jne .Lclassify_none
.Lclassify_signature:                   # ata_dev_classify()
    mov eax, dword ptr [ATA_TF_LBAM]
    mov ecx, dword ptr [ATA_TF_LBAH]
    shl ecx, 8
    or eax, ecx
    cmp eax, 0x0000
    je .Lclassify_ata
    cmp eax, 0xc33c
    je .Lclassify_ata
    cmp eax, 0xeb14
    je .Lclassify_atapi
    test ebx, ebx                       # unknown signature: an ATA disk only if present and
    jz .Lclassify_none                  # it failed its diagnostic
    cmp dword ptr [ebp + 12], 0
    je .Lclassify_none
    jmp .Lclassify_ata_found
.Lclassify_atapi:
    mov eax, ATA_DEV_ATAPI
    jmp .Lclassify_done
.Lclassify_ata:
    call ata_sff_check_status           # an ATA signature with status 00h is nobody
    test eax, eax
    jz .Lclassify_none
.Lclassify_ata_found:
    mov eax, ATA_DEV_ATA
    jmp .Lclassify_done
.Lclassify_none:
    mov eax, ATA_DEV_NONE
.Lclassify_done:
    pop ebx
    pop ebp
    ret

# ata_sff_tf_read(): status, error, nsect, lbal, lbam, lbah, device into ata_tf.
ata_sff_tf_read:
    push ebp
    mov ebp, esp
    call ata_sff_check_status
    mov dword ptr [ATA_TF_COMMAND], eax
    mov eax, ATA_ERROR
    push eax
    call ioread8
    add esp, 4
    mov dword ptr [ATA_TF_FEATURE], eax
    mov eax, ATA_NSECT
    push eax
    call ioread8
    add esp, 4
    mov dword ptr [ATA_TF_NSECT], eax
    mov eax, ATA_LBAL
    push eax
    call ioread8
    add esp, 4
    mov dword ptr [ATA_TF_LBAL], eax
    mov eax, ATA_LBAM
    push eax
    call ioread8
    add esp, 4
    mov dword ptr [ATA_TF_LBAM], eax
    mov eax, ATA_LBAH
    push eax
    call ioread8
    add esp, 4
    mov dword ptr [ATA_TF_LBAH], eax
    mov eax, ATA_DEVICE
    push eax
    call ioread8
    add esp, 4
    mov dword ptr [ATA_TF_DEVICE], eax
    pop ebp
    ret

# ata_sff_postreset(classes): the kernel's double select (device 1 if device 0 is there, device 0
# if device 1 is), then the device control register, remembered in last_ctl.
ata_sff_postreset:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]
    cmp dword ptr [ebx], ATA_DEV_NONE
    je .Lpostreset_dev1
    mov eax, 1
    push eax
    call ata_sff_dev_select
    add esp, 4
.Lpostreset_dev1:
    cmp dword ptr [ebx + 4], ATA_DEV_NONE
    je .Lpostreset_none
    xor eax, eax
    push eax
    call ata_sff_dev_select
    add esp, 4
.Lpostreset_none:
    cmp dword ptr [ebx], ATA_DEV_NONE
    jne .Lpostreset_ctl
    cmp dword ptr [ebx + 4], ATA_DEV_NONE
    je .Lpostreset_done
.Lpostreset_ctl:
    mov eax, ATA_CTL
    push eax
    push dword ptr [ata_port_ctl]
    call iowrite8
    add esp, 8
    mov eax, [ata_port_ctl]
    mov dword ptr [ata_last_ctl], eax
.Lpostreset_done:
    pop ebx
    pop ebp
    ret

# ata_do_request(n, write): one DMA request of SECTORS_PER_REQ sectors at LBA n * SECTORS_PER_REQ,
# issued as ata_sff_qc_issue() does for ATA_PROT_DMA (select, tf_load, bmdma_setup, bmdma_start);
# completion is polled through ata_bmdma_status() (the IRQ14 line is masked at the PIC), then
# ata_bmdma_stop(), ata_bmdma_irq_clear() and the final status read, as the interrupt path does.
ata_do_request:
    push ebp
    mov ebp, esp
    mov eax, 1                          # ata_dev_select(ap, 0, wait=1, can_sleep=0)
    push eax
    xor eax, eax
    push eax
    call ata_dev_select
    add esp, 8
    mov eax, [ebp + 8]
    imul eax, eax, SECTORS_PER_REQ
    push eax
    call ata_sff_tf_load
    add esp, 4
    push dword ptr [ebp + 12]
    call ata_bmdma_setup
    add esp, 4
    call ata_bmdma_start
.Ldo_request_wait:
    call ata_bmdma_status
    test eax, ATA_DMA_INTR
    jz .Ldo_request_wait
    call ata_bmdma_stop
    call ata_bmdma_irq_clear
    call ata_sff_check_status
    pop ebp
    ret

# ata_dev_select(device, wait): with wait, ata_wait_idle() before and after the select (an inline
# of libata.h: ata_sff_busy_wait() polling the status while BSY or DRQ is set).
ata_dev_select:
    push ebp
    mov ebp, esp
    cmp dword ptr [ebp + 12], 0
    je .Ldev_select_now
.Ldev_select_idle_before:
    call ata_sff_check_status
    cmp eax, 0xff
    je .Ldev_select_now
    test eax, ATA_BUSY | ATA_DRQ
    jnz .Ldev_select_idle_before
.Ldev_select_now:
    push dword ptr [ebp + 8]
    call ata_sff_dev_select
    add esp, 4
    cmp dword ptr [ebp + 12], 0
    je .Ldev_select_done
.Ldev_select_idle_after:
    call ata_sff_check_status
    cmp eax, 0xff
    je .Ldev_select_done
    test eax, ATA_BUSY | ATA_DRQ
    jnz .Ldev_select_idle_after
.Ldev_select_done:
    pop ebp
    ret

# ata_sff_dev_select(device): write the device register (obsolete bits, DEV bit for device 1),
# then ata_sff_pause(): one altstatus read (and an ndelay(400) that idles).
ata_sff_dev_select:
    push ebp
    mov ebp, esp
    mov eax, ATA_DEVICE
    push eax
    mov eax, ATA_DEVICE_OBS
    cmp dword ptr [ebp + 8], 0
    je .Ldev_select_write
    or eax, ATA_DEV1
.Ldev_select_write:
    push eax
    call iowrite8
    add esp, 8
    call ata_sff_altstatus
    pop ebp
    ret

# ata_sff_altstatus(): the alternate status register (reading it does not clear an interrupt).
ata_sff_altstatus:
    push ebp
    mov ebp, esp
    mov eax, ATA_ALTSTATUS
    push eax
    call ioread8
    add esp, 4
    pop ebp
    ret

# ata_sff_tf_load(lba): device control if it changed, the LBA48 taskfile -- HOB bytes first, then the
# low bytes, one iowrite8 call per register as in the C source -- the device register, ata_wait_idle().
ata_sff_tf_load:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    mov ebx, [ebp + 8]
    mov eax, [ata_port_ctl]
    cmp eax, [ata_last_ctl]
    je .Ltf_load_hob
    mov ecx, ATA_CTL
    push ecx
    push eax
    call iowrite8
    add esp, 8
    mov eax, [ata_port_ctl]
    mov dword ptr [ata_last_ctl], eax
.Ltf_load_ctl_idle:
    call ata_sff_check_status
    cmp eax, 0xff
    je .Ltf_load_hob
    test eax, ATA_BUSY | ATA_DRQ
    jnz .Ltf_load_ctl_idle
.Ltf_load_hob:
    mov esi, ATA_FEATURE                # hob_feature
    push esi
    xor eax, eax
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_NSECT                  # hob_nsect
    push esi
    xor eax, eax
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_LBAL                   # hob_lbal: LBA bits 24-31
    push esi
    mov eax, ebx
    shr eax, 24
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_LBAM                   # hob_lbam, hob_lbah: bits 32-47 (0 on a 32-bit LBA)
    push esi
    xor eax, eax
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_LBAH
    push esi
    xor eax, eax
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_FEATURE                # feature
    push esi
    xor eax, eax
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_NSECT                  # nsect
    push esi
    mov eax, SECTORS_PER_REQ
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_LBAL                   # lbal
    push esi
    mov eax, ebx
    and eax, 0xff
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_LBAM                   # lbam
    push esi
    mov eax, ebx
    shr eax, 8
    and eax, 0xff
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_LBAH                   # lbah
    push esi
    mov eax, ebx
    shr eax, 16
    and eax, 0xff
    push eax
    call tf_write8
    add esp, 8
    mov esi, ATA_DEVICE                 # device: LBA addressing, device 0
    push esi
    mov eax, ATA_DEVICE_LBA
    push eax
    call tf_write8
    add esp, 8
.if COALESCE
    call xkvm_io_flush
.endif
.Ltf_load_idle:                         # ata_wait_idle()
    call ata_sff_check_status
    cmp eax, 0xff
    je .Ltf_load_done
    test eax, ATA_BUSY | ATA_DRQ
    jnz .Ltf_load_idle
.Ltf_load_done:
    pop esi
    pop ebx
    pop ebp
    ret

.if COALESCE
# xkvm_io_out(value, port): IO_OUT(x, OUTB, value, port) into io_out[io_out_len++] (seeds/003, code
# segment 2), with iowrite8's arguments so that tf_load's call sites stay as they were.
xkvm_io_out:
    push ebp
    mov ebp, esp
    mov ecx, [io_out_len]
    imul edx, ecx, IO_INSN_SIZE
    mov dword ptr [io_out + edx], IO_OUTB
    mov eax, [ebp + 12]
    mov dword ptr [io_out + edx + 4], eax
    mov eax, [ebp + 8]
    and eax, 0xff
    mov dword ptr [io_out + edx + 8], eax
    inc ecx
    mov dword ptr [io_out_len], ecx
    pop ebp
    ret

# xkvm_io_flush(): vmcall(XKVM_IO_COALESCE, virt_to_phys(io_out), io_out_len, 0); returns its EAX.
xkvm_io_flush:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, XKVM_IO_COALESCE
    mov ebx, io_out                     # identity-mapped: the physical address is the virtual one
    mov ecx, [io_out_len]
    xor edx, edx
    vmcall
    mov dword ptr [io_out_len], 0
    pop ebx
    pop ebp
    ret
.endif

# ata_bmdma_setup(write): PRD table address, direction, then the command.
ata_bmdma_setup:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, dword ptr [bmdma_base]
    mov eax, write_buf                  # the PRD entry points at the buffer of this direction
    cmp dword ptr [ebp + 8], 0
    jne .Lsetup_prd
    mov eax, read_buf
.Lsetup_prd:
    mov dword ptr [prd_table], eax
    lea eax, [ebx + ATA_DMA_TABLE_OFS]
    push eax
    mov eax, prd_table
    push eax
    call iowrite32
    add esp, 8
    push ebx
    call ioread8
    add esp, 4
    and eax, 0xf6                       # ~(ATA_DMA_WR | ATA_DMA_START)
    cmp dword ptr [ebp + 8], 0
    jne .Lsetup_dir
    or eax, ATA_DMA_WR
.Lsetup_dir:
    push ebx
    push eax
    call iowrite8
    add esp, 8
    mov eax, ATA_CMD_READ_DMA_EXT
    cmp dword ptr [ebp + 8], 0
    je .Lsetup_cmd
    mov eax, ATA_CMD_WRITE_DMA_EXT
.Lsetup_cmd:
    push eax
    call ata_sff_exec_command
    add esp, 4
    pop ebx
    pop ebp
    ret

# ata_sff_exec_command(cmd): the command register, then ata_sff_pause().
ata_sff_exec_command:
    push ebp
    mov ebp, esp
    mov eax, ATA_COMMAND
    push eax
    push dword ptr [ebp + 8]
    call iowrite8
    add esp, 8
    call ata_sff_altstatus
    pop ebp
    ret

# ata_bmdma_start(): set the start bit.
ata_bmdma_start:
    push ebp
    mov ebp, esp
    push dword ptr [bmdma_base]
    call ioread8
    add esp, 4
    or eax, ATA_DMA_START
    push dword ptr [bmdma_base]
    push eax
    call iowrite8
    add esp, 8
    pop ebp
    ret

# ata_bmdma_status(): the BMDMA status register.
ata_bmdma_status:
    push ebp
    mov ebp, esp
    mov eax, dword ptr [bmdma_base]
    add eax, ATA_DMA_STATUS
    push eax
    call ioread8
    add esp, 4
    pop ebp
    ret

# ata_bmdma_stop(): clear the start bit, then the one-PIO-cycle wait (a dummy altstatus read).
ata_bmdma_stop:
    push ebp
    mov ebp, esp
    push dword ptr [bmdma_base]
    call ioread8
    add esp, 4
    and eax, 0xfe
    push dword ptr [bmdma_base]
    push eax
    call iowrite8
    add esp, 8
    call ata_sff_altstatus
    pop ebp
    ret

# ata_bmdma_irq_clear(): write the status back (interrupt and error bits are write-1-to-clear).
ata_bmdma_irq_clear:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, dword ptr [bmdma_base]
    add ebx, ATA_DMA_STATUS
    push ebx
    call ioread8
    add esp, 4
    push ebx
    push eax
    call iowrite8
    add esp, 8
    pop ebx
    pop ebp
    ret

# ata_sff_check_status(): the ATA status register.
ata_sff_check_status:
    push ebp
    mov ebp, esp
    mov eax, ATA_STATUS
    push eax
    call ioread8
    add esp, 4
    pop ebp
    ret

msg_start:
    .asciz "bonnie: start\n"
msg_ok:
    .asciz "bonnie: ok\n"
msg_bad:
    .asciz "bonnie: MISMATCH\n"
msg_nodisk:
    .asciz "bonnie: no IDE controller or disk\n"
.align 4
mismatches:
    .long 0
bmdma_base:
    .long 0
q_head:
    .long 0
q_len:
    .long 0
request_queue:
    .fill REQUESTS * 4, 1, 0
ata_port_ctl:                           # ap->ctl: obsolete bit set, interrupts enabled
    .long ATA_DEVCTL_OBS
ata_last_ctl:
    .long 0
ata_diag_err:
    .long 0
ata_classes:
    .long ATA_DEV_NONE, ATA_DEV_NONE
ata_tf:                                 # struct ata_taskfile, one dword per register
    .fill TF_SIZE, 1, 0
.if COALESCE
io_out_len:
    .long 0
io_out:                                 # struct io_insn io_out[IO_OUT_MAX]
    .fill IO_OUT_MAX * IO_INSN_SIZE, 1, 0
.endif
.align 8
prd_table:
    .long 0, PRD_EOT + REQ_BYTES
.align 16
write_buf:
    .fill REQ_BYTES, 1, 0
read_buf:
    .fill REQ_BYTES, 1, 0

.include "lib/iomap.S"
.include "lib/pattern.S"
