# bonnie.S -- sequential block write then read through a libata-like bus-master DMA path, the disk
# half of the KVM paper's Table 3 (bonnie++). Linux 2.6.27, drivers/ata/libata-sff.c and friends:
# each request is ata_sff_dev_select() (iowrite8 to the device register), ata_sff_tf_load() (the LBA48
# taskfile: 5 HOB bytes, 5 bytes, the device register), ata_bmdma_setup() (iowrite32 of the PRD table
# address, ioread8/iowrite8 of the DMA command register, then the ATA command), ata_bmdma_start(),
# polling ata_bmdma_status() (ioread8 of the BMDMA status) until the interrupt bit, ata_bmdma_stop()
# (with the altstatus read of ata_sff_dma_pause), ata_bmdma_irq_clear() and ata_sff_check_status().
# The accessors are functions, as lib/iomap.c's ioread8/iowrite8/iowrite32 (port I/O here), so every
# exit is named by the accessor and its caller.
# At boot, acpi_pm_init() runs verify_pmtmr_rate(), which reads the ACPI PM timer through
# acpi_pm_read() PMTMR_LOOPS times (Table 3's first row), and ata_pci_init() finds the PIIX3 IDE
# function through PCI configuration space, reads BAR4 (the bus-master registers) and enables bus
# mastering, so the same file works under QEMU, whose firmware places BAR4 itself.
#
# Exits by construction (tests/test_guests.py): 25 port exits per request (1 + 11 + 4 + 2 + 1 + 3 + 2 + 1),
# SECTORS / SECTORS_PER_REQ requests each way, PMTMR_LOOPS acpi_pm_read exits, 7 in ata_pci_init.
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
.set ATA_ALTSTATUS, 0x3f6
.set ATA_DEVICE_LBA, 0xe0
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
    xor ebx, ebx                        # the drive interrupts (IRQ14, masked at the PIC): the
.Lstart_write:                          # BMDMA status shows it, and we poll that
    cmp ebx, REQUESTS
    jae .Lstart_read
    push ebx
    call fill_pattern
    add esp, 4
    mov eax, 1
    push eax
    push ebx
    call ata_do_request
    add esp, 8
    inc ebx
    jmp .Lstart_write
.Lstart_read:
    xor ebx, ebx
.Lstart_read_next:
    cmp ebx, REQUESTS
    jae .Lstart_done
    xor eax, eax
    push eax
    push ebx
    call ata_do_request
    add esp, 8
    push ebx
    call check_pattern
    add esp, 4
    add dword ptr [mismatches], eax
    inc ebx
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
    call verify_pmtmr_rate
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

# --- drivers/ata/libata-sff.c ---
# ata_do_request(n, write): one polled DMA request of SECTORS_PER_REQ sectors at LBA n * SECTORS_PER_REQ.
ata_do_request:
    push ebp
    mov ebp, esp
    call ata_sff_dev_select
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

# ata_sff_dev_select(): select the master, LBA addressing.
ata_sff_dev_select:
    push ebp
    mov ebp, esp
    mov eax, ATA_DEVICE
    push eax
    mov eax, ATA_DEVICE_LBA
    push eax
    call iowrite8
    add esp, 8
    pop ebp
    ret

# ata_sff_tf_load(lba): LBA48 taskfile, HOB bytes first, then the device register.
ata_sff_tf_load:
    push ebp
    mov ebp, esp
    push ebx
    push esi
    xor esi, esi
.Ltf_load_hob:                          # hob_feature, hob_nsect, hob_lbal, hob_lbam, hob_lbah
    mov eax, [hob_values + esi * 4]
    cmp esi, 2
    jne .Ltf_load_hob_write
    mov eax, [ebp + 8]
    shr eax, 24
.Ltf_load_hob_write:
    push dword ptr [taskfile_ports + esi * 4]
    push eax
    call iowrite8
    add esp, 8
    inc esi
    cmp esi, 5
    jb .Ltf_load_hob
    mov ebx, [ebp + 8]
    mov dword ptr [low_values + 8], ebx                 # lbal
    shr ebx, 8
    mov dword ptr [low_values + 12], ebx                # lbam
    shr ebx, 8
    mov dword ptr [low_values + 16], ebx                # lbah
    xor esi, esi
.Ltf_load_low:                          # feature, nsect, lbal, lbam, lbah
    push dword ptr [taskfile_ports + esi * 4]
    mov eax, [low_values + esi * 4]
    and eax, 0xff
    push eax
    call iowrite8
    add esp, 8
    inc esi
    cmp esi, 5
    jb .Ltf_load_low
    mov eax, ATA_DEVICE
    push eax
    mov eax, ATA_DEVICE_LBA
    push eax
    call iowrite8
    add esp, 8
    pop esi
    pop ebx
    pop ebp
    ret

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

# ata_sff_exec_command(cmd)
ata_sff_exec_command:
    push ebp
    mov ebp, esp
    mov eax, ATA_COMMAND
    push eax
    push dword ptr [ebp + 8]
    call iowrite8
    add esp, 8
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

# ata_bmdma_stop(): clear the start bit, then ata_sff_dma_pause() (one altstatus read).
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
    mov eax, ATA_ALTSTATUS
    push eax
    call ioread8
    add esp, 4
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
    .asciz "bonnie: no IDE controller\n"
.align 4
mismatches:
    .long 0
bmdma_base:
    .long 0
taskfile_ports:
    .long ATA_FEATURE, ATA_NSECT, ATA_LBAL, ATA_LBAM, ATA_LBAH
hob_values:
    .long 0, 0, 0, 0, 0
low_values:
    .long 0, SECTORS_PER_REQ, 0, 0, 0
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
