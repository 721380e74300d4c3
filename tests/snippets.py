"""Assembly fragments the inline-guest tests share: an IDT whose every gate points at `handler`, the PIC
and PIT programmed for a 1000 Hz tick on vector 0x20, an EOI-ing tick handler, and the exit port."""
from __future__ import annotations

EXIT = "    out 0xf4, al\n"  # isa-debug-exit: ends the run
# An IDT at 0x10000 whose every gate points at `handler` (set up by the guest itself).
IDT_SETUP = """
    mov edi, 0x10000
    xor ecx, ecx
.Lidt_fill:
    mov eax, handler
    mov word ptr [edi + ecx * 8], ax
    mov word ptr [edi + ecx * 8 + 2], 0x08
    mov word ptr [edi + ecx * 8 + 4], 0x8e00
    shr eax, 16
    mov word ptr [edi + ecx * 8 + 6], ax
    inc ecx
    cmp ecx, 256
    jb .Lidt_fill
    .byte 0x0f, 0x01, 0x1d
    .long idt_descr
"""
IDT_DATA = """
.align 8
idt_descr:
    .word 2047
    .long 0x10000
"""
PIT_1000HZ = """
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov al, 0xa9
    out 0x40, al
    mov al, 0x04
    out 0x40, al
"""
EOI_HANDLER = """
handler:
    push eax
    inc dword ptr [ticks]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd
.align 4
ticks:
    .long 0
"""


def wait_for_ticks(n: int) -> str:
    """A whole guest: the 1000 Hz PIT tick on, interrupts on, spin until n ticks were handled, exit."""
    return IDT_SETUP + PIT_1000HZ + f"""
    sti
.Lwait:
    cmp dword ptr [ticks], {n}
    jb .Lwait
""" + EXIT + EOI_HANDLER + IDT_DATA
