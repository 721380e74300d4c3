# iomap.S -- lib/iomap.c's accessors over port I/O, as functions with frame pointers (cdecl:
# ioread8(port), iowrite8(value, port), ...), so that every exit is named by its accessor and caller.
# Shared by the netperf and bonnie guests.

ioread8:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    in al, dx
    movzx eax, al
    pop ebp
    ret

ioread16:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    in ax, dx
    movzx eax, ax
    pop ebp
    ret

ioread32:
    push ebp
    mov ebp, esp
    mov edx, [ebp + 8]
    in eax, dx
    pop ebp
    ret

iowrite8:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov edx, [ebp + 12]
    out dx, al
    pop ebp
    ret

iowrite16:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov edx, [ebp + 12]
    out dx, ax
    pop ebp
    ret

iowrite32:
    push ebp
    mov ebp, esp
    mov eax, [ebp + 8]
    mov edx, [ebp + 12]
    out dx, eax
    pop ebp
    ret

