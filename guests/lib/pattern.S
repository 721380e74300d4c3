# pattern.S -- the data a disk guest writes and checks: block n holds the dwords n * 0x01000193 + i.
# The including guest defines PATTERN_DWORDS (dwords per block) and the buffers write_buf / read_buf.
# Shared by the ide and bonnie guests.

# fill_pattern(n): write_buf[i] = n * 0x01000193 + i, for the PATTERN_DWORDS dwords of a block.
fill_pattern:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    imul eax, eax, 0x01000193
    xor ecx, ecx
.Lfill_next:
    mov dword ptr [write_buf + ecx * 4], eax
    inc eax
    inc ecx
    cmp ecx, PATTERN_DWORDS
    jb .Lfill_next
    pop ebp
    ret

# check_pattern(n): the number of dwords of read_buf that differ from sector n's pattern.
check_pattern:
    push ebp
    mov ebp, esp
    push ebx
    mov eax, [ebp + 8]
    imul eax, eax, 0x01000193
    xor ecx, ecx
    xor edx, edx
.Lcheck_next:
    mov ebx, dword ptr [read_buf + ecx * 4]
    cmp ebx, eax
    je .Lcheck_same
    inc edx
.Lcheck_same:
    inc eax
    inc ecx
    cmp ecx, PATTERN_DWORDS
    jb .Lcheck_next
    mov eax, edx
    pop ebx
    pop ebp
    ret

