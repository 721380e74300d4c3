# ide.S -- a polled ATA disk driver whose request path follows Linux 2.6.27's drivers/ide:
# __ide_do_rw_disk() loads the LBA48 taskfile with 11 successive outb (ide_tf_load(): hob_feature,
# hob_nsect, hob_lbal, hob_lbam, hob_lbah, feature, nsect, lbal, lbam, lbah, then device/select -- the
# KVM paper's code segment 1), ide_execute_command() writes the command, ide_wait_stat() polls the
# status register for DRQ, ide_pio_sector() moves the 512 bytes with rep outsw / rep insw, and the
# completion is checked with one more status read (interrupts are off: nIEN is set at init).
#
# The guest writes SECTORS sectors with a pattern, one per request, reads them back, compares, prints
# "ide: ok" or "ide: MISMATCH", and exits with status 0 or 1 (2 when no drive answers).
# Exits by construction (tests/test_guests.py): 15 per request -- 11 taskfile outb, 1 command outb,
# 1 DRQ status read, 1 string I/O exit (512 bytes fit one 1,024-byte KVM string-PIO exit), 1
# completion status read -- and 2 x SECTORS requests.
#
# -D COALESCE=1 is the paper's static I/O coalescing (its code segment 2): __ide_do_rw_disk fills
# io_out[11] (struct io_insn {type, port, val}) with the same 11 writes and issues one
# vmcall(XKVM_IO_COALESCE, io_gpa, 11, 0): 5 exits per request instead of 15.
.include "lib/boot.S"

.ifndef SECTORS
.set SECTORS, 16
.endif
.ifndef LBA_BASE
.set LBA_BASE, 0
.endif
.ifndef COALESCE
.set COALESCE, 0
.endif
.set XKVM_IO_COALESCE, 0x100            # vmexit's number for the paper's hypercall
.set IO_OUTB, 0x01                      # io_insn.type: an 8-bit out
.set IO_INSN_SIZE, 12

.set IDE_DATA, 0x1f0
.set IDE_FEATURE, 0x1f1
.set IDE_NSECT, 0x1f2
.set IDE_LBAL, 0x1f3
.set IDE_LBAM, 0x1f4
.set IDE_LBAH, 0x1f5
.set IDE_SELECT, 0x1f6
.set IDE_STATUS, 0x1f7
.set IDE_COMMAND, 0x1f7
.set IDE_CONTROL, 0x3f6
.set ATA_NIEN, 0x02
.set SELECT_LBA_MASTER, 0xe0            # drive->select.all: obsolete bits, LBA, master
.set SELECT_MASTER, 0xa0
.set ATA_CMD_ID_ATA, 0xec
.set ATA_CMD_READ_EXT, 0x24
.set ATA_CMD_WRITE_EXT, 0x34
.set ATA_DRQ, 0x08
.set ATA_ERR, 0x01
.set ATA_BUSY, 0x80
.set SECTOR_WORDS, 256
.set PATTERN_DWORDS, 128

# start_kernel(): identify the disk, write and read back SECTORS sectors; returns 0 when all match.
start_kernel:
    push ebp
    mov ebp, esp
    push ebx
    call early_serial_init
    mov eax, msg_start
    push eax
    call early_printk
    add esp, 4
    call ide_init
    test eax, eax
    jz .Lstart_have_disk
    mov eax, msg_nodisk
    push eax
    call early_printk
    add esp, 4
    mov eax, 2
    pop ebx
    pop ebp
    ret
.Lstart_have_disk:
    xor ebx, ebx
.Lstart_write:
    cmp ebx, SECTORS
    jae .Lstart_read
    push ebx
    call fill_pattern
    add esp, 4
    mov eax, 1
    push eax                            # write
    mov eax, write_buf
    push eax
    lea eax, [ebx + LBA_BASE]
    push eax
    call ide_do_request
    add esp, 12
    inc ebx
    jmp .Lstart_write
.Lstart_read:
    xor ebx, ebx
.Lstart_read_next:
    cmp ebx, SECTORS
    jae .Lstart_done
    xor eax, eax
    push eax                            # read
    mov eax, read_buf
    push eax
    lea eax, [ebx + LBA_BASE]
    push eax
    call ide_do_request
    add esp, 12
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

# ide_init(): interrupts off at the drive (nIEN), select the master, check that a drive answers
# (an absent drive reads 0x00 or 0xff, as ide_probe's status check sees it), then IDENTIFY DEVICE
# into read_buf. Returns 0, or 1 when there is no drive.
ide_init:
    push ebp
    mov ebp, esp
    push edi
    mov dx, IDE_CONTROL
    mov al, ATA_NIEN
    out dx, al
    mov dx, IDE_SELECT
    mov al, SELECT_MASTER
    out dx, al
    mov dx, IDE_STATUS
    in al, dx
    cmp al, 0xff
    je .Lide_init_absent
    test al, al
    jz .Lide_init_absent
    mov eax, ATA_CMD_ID_ATA
    push eax
    call ide_execute_command
    add esp, 4
    call ide_wait_stat
    mov edi, read_buf
    mov ecx, SECTOR_WORDS
    mov dx, IDE_DATA
    rep insw
    xor eax, eax
    pop edi
    pop ebp
    ret
.Lide_init_absent:
    mov eax, 1
    pop edi
    pop ebp
    ret

# ide_do_request(lba, buf, write): one single-sector request, as the block layer hands it over.
ide_do_request:
    push ebp
    mov ebp, esp
    push dword ptr [ebp + 16]
    push dword ptr [ebp + 8]
    call __ide_do_rw_disk
    add esp, 8
    call ide_wait_stat
    push dword ptr [ebp + 16]
    push dword ptr [ebp + 12]
    call ide_pio_sector
    add esp, 8
    call ide_wait_not_busy
    pop ebp
    ret

# __ide_do_rw_disk(lba, write): the LBA48 taskfile in 11 outb (ide_tf_load order), then the command.
__ide_do_rw_disk:
    push ebp
    mov ebp, esp
    push ebx
    mov ebx, [ebp + 8]                  # lba
.if COALESCE
    push esi
    push edi
    mov edi, io_out                     # IO_OUT(x, OUTB, val, port) for x = 0..10
    xor esi, esi
.Lrw_disk_hob:                          # hob_feature, hob_nsect, hob_lbal, hob_lbam, hob_lbah
    mov eax, [taskfile_ports + esi * 4]
    mov dword ptr [edi + 4], eax
    xor eax, eax
    cmp esi, 2
    jne .Lrw_disk_hob_val
    mov eax, ebx
    shr eax, 24
.Lrw_disk_hob_val:
    mov dword ptr [edi + 8], eax
    mov dword ptr [edi], IO_OUTB
    add edi, IO_INSN_SIZE
    inc esi
    cmp esi, 5
    jb .Lrw_disk_hob
    mov dword ptr [low_values + 8], ebx # feature 0, nsect 1, then lbal, lbam, lbah
    mov eax, ebx
    shr eax, 8
    mov dword ptr [low_values + 12], eax
    shr eax, 8
    mov dword ptr [low_values + 16], eax
    xor esi, esi
.Lrw_disk_low:
    mov eax, [taskfile_ports + esi * 4]
    mov dword ptr [edi + 4], eax
    mov eax, [low_values + esi * 4]
    and eax, 0xff
    mov dword ptr [edi + 8], eax
    mov dword ptr [edi], IO_OUTB
    add edi, IO_INSN_SIZE
    inc esi
    cmp esi, 5
    jb .Lrw_disk_low
    mov dword ptr [edi], IO_OUTB        # device: LBA, master
    mov dword ptr [edi + 4], IDE_SELECT
    mov dword ptr [edi + 8], SELECT_LBA_MASTER
    push ebx
    mov eax, XKVM_IO_COALESCE
    mov ebx, io_out                     # io_gpa = virt_to_phys(io_out): identity-mapped here
    mov ecx, 11
    xor edx, edx
    vmcall
    pop ebx
    pop edi
    pop esi
.else
    mov dx, IDE_FEATURE
    xor al, al
    out dx, al                          # hob_feature
    mov dx, IDE_NSECT
    out dx, al                          # hob_nsect
    mov dx, IDE_LBAL
    mov eax, ebx
    shr eax, 24
    out dx, al                          # hob_lbal = lba >> 24
    mov dx, IDE_LBAM
    xor al, al
    out dx, al                          # hob_lbam = lba >> 32
    mov dx, IDE_LBAH
    out dx, al                          # hob_lbah = lba >> 40
    mov dx, IDE_FEATURE
    out dx, al                          # feature
    mov dx, IDE_NSECT
    mov al, 1
    out dx, al                          # nsect = 1
    mov dx, IDE_LBAL
    mov eax, ebx
    out dx, al                          # lbal
    mov dx, IDE_LBAM
    shr eax, 8
    out dx, al                          # lbam
    mov dx, IDE_LBAH
    shr eax, 8
    out dx, al                          # lbah
    mov dx, IDE_SELECT
    mov al, SELECT_LBA_MASTER
    out dx, al                          # device: LBA, master
.endif
    mov eax, ATA_CMD_READ_EXT
    cmp dword ptr [ebp + 12], 0
    je .Lrw_disk_cmd
    mov eax, ATA_CMD_WRITE_EXT
.Lrw_disk_cmd:
    push eax
    call ide_execute_command
    add esp, 4
    pop ebx
    pop ebp
    ret

# ide_execute_command(cmd): write the command register.
ide_execute_command:
    push ebp
    mov ebp, esp
    mov dx, IDE_COMMAND
    mov eax, [ebp + 8]
    out dx, al
    pop ebp
    ret

# ide_wait_stat(): poll the status register until DRQ (or ERR).
ide_wait_stat:
    push ebp
    mov ebp, esp
    mov dx, IDE_STATUS
.Lwait_stat_poll:
    in al, dx
    test al, ATA_ERR
    jnz .Lwait_stat_done
    test al, ATA_DRQ
    jz .Lwait_stat_poll
.Lwait_stat_done:
    pop ebp
    ret

# ide_wait_not_busy(): one status read after the transfer: BSY clear and no error ends the request.
ide_wait_not_busy:
    push ebp
    mov ebp, esp
    mov dx, IDE_STATUS
.Lwait_not_busy_poll:
    in al, dx
    test al, ATA_BUSY
    jnz .Lwait_not_busy_poll
    pop ebp
    ret

# ide_pio_sector(buf, write): 256 words through the data port.
ide_pio_sector:
    push ebp
    mov ebp, esp
    push esi
    push edi
    mov ecx, SECTOR_WORDS
    mov dx, IDE_DATA
    cmp dword ptr [ebp + 12], 0
    je .Lpio_sector_in
    mov esi, [ebp + 8]
    rep outsw
    jmp .Lpio_sector_done
.Lpio_sector_in:
    mov edi, [ebp + 8]
    rep insw
.Lpio_sector_done:
    pop edi
    pop esi
    pop ebp
    ret

msg_start:
    .asciz "ide: start\n"
msg_ok:
    .asciz "ide: ok\n"
msg_bad:
    .asciz "ide: MISMATCH\n"
msg_nodisk:
    .asciz "ide: no disk\n"
.align 4
mismatches:
    .long 0
.if COALESCE
taskfile_ports:
    .long IDE_FEATURE, IDE_NSECT, IDE_LBAL, IDE_LBAM, IDE_LBAH
low_values:
    .long 0, 1, 0, 0, 0
io_out:                                 # struct io_insn io_out[11]
    .fill 11 * IO_INSN_SIZE, 1, 0
.endif
.align 16
write_buf:
    .fill 512, 1, 0
read_buf:
    .fill 512, 1, 0

.include "lib/pattern.S"
