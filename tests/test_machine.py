"""The machine (machine.py): interrupt and exception delivery through the guest's IDT and TSS, with
paging on; exercised through the KVM model on small inline guests."""
from __future__ import annotations

from vmexit.exits import ExitReason

from .conftest import count, run_inline
from .snippets import EOI_HANDLER, EXIT, IDT_DATA, IDT_SETUP, PIT_1000HZ


def test_four_kib_pages_for_idt_and_stack():
    # paging with a 4 KiB page table; the IDT is reached through it when IRQ0 is delivered
    t = run_inline(IDT_SETUP + """
    # page table at 0x31000 identity-maps the first 4 MiB with 4 KiB pages
    mov edi, 0x31000
    xor ecx, ecx
.Lpt:
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov dword ptr [edi + ecx * 4], eax
    inc ecx
    cmp ecx, 1024
    jb .Lpt
    mov dword ptr [0x30000], 0x31003
    mov eax, 0x30000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
""" + PIT_1000HZ + """
    sti
.Lwait:
    cmp dword ptr [ticks], 2
    jb .Lwait
""" + EXIT + EOI_HANDLER + IDT_DATA)
    assert t.meta["status"] == "exited"
    assert count(t, ExitReason.EXTERNAL_INTERRUPT) == 2


RING3 = """
    mov edi, 0x10000                    # IDT: every vector to handler (DPL 0), vector 0x40 DPL 3
    mov ecx, 256
.Lidt:
    mov eax, handler
    mov word ptr [edi], ax
    mov word ptr [edi + 2], 0x08
    mov word ptr [edi + 4], 0x8e00
    shr eax, 16
    mov word ptr [edi + 6], ax
    add edi, 8
    loop .Lidt
    mov word ptr [0x10000 + 0x40 * 8 + 4], 0xee00
    mov dword ptr [0x11000], 0x0000ffff  # GDT 0x10000+0x1000: null, kernel code/data, user code/data, TSS
    mov dword ptr [0x11004], 0
    mov dword ptr [0x11008], 0x0000ffff
    mov dword ptr [0x1100c], 0x00cf9a00
    mov dword ptr [0x11010], 0x0000ffff
    mov dword ptr [0x11014], 0x00cf9200
    mov dword ptr [0x11018], 0x0000ffff
    mov dword ptr [0x1101c], 0x00cffa00
    mov dword ptr [0x11020], 0x0000ffff
    mov dword ptr [0x11024], 0x00cff200
    mov dword ptr [0x11028], 0x20000067  # TSS at 0x12000, limit 0x67
    mov dword ptr [0x1102c], 0x00008901
    mov dword ptr [0x12004], 0x80000     # ESP0
    mov dword ptr [0x12008], 0x10        # SS0
    mov dword ptr [0x13000], 0x0000002f  # GDT descriptor: limit, base 0x11000
    mov dword ptr [0x13002], 0x00011000
    .byte 0x0f, 0x01, 0x15               # lgdt [0x13000]
    .long 0x13000
    mov dword ptr [0x13010], 0x000007ff  # IDT descriptor
    mov dword ptr [0x13012], 0x00010000
    .byte 0x0f, 0x01, 0x1d               # lidt [0x13010]
    .long 0x13010
    mov ax, 0x28
    ltr ax
    mov eax, 0x23
    push eax
    mov eax, 0x70000
    push eax
    mov eax, 0x202
    push eax
    mov eax, 0x1b
    push eax
    mov eax, user
    push eax
    iretd
user:
    int 0x40                            # DPL 3: allowed
    int 0x41                            # DPL 0: #GP(0x41 * 8 + 2)
    jmp user_end
user_end:
    jmp user_end
handler:
    mov eax, [esp]
    out 0x80, eax                       # what the frame starts with
    mov eax, ss
    out 0x81, eax
    mov eax, [esp + 16]
    out 0x82, eax
    cmp dword ptr [esp], 0x020a         # the #GP's error code (0x41 * 8 + 2): done
    jne .Lback
    out 0xf4, al
.Lback:
    iretd
"""


def test_ring3_interrupts_use_the_tss_stack_and_check_the_gate_dpl():
    t = run_inline(RING3)
    assert t.meta["status"] == "exited"
    e = t.exits[t.exits["reason"] == ExitReason.IO_INSTRUCTION]
    values = {q: e[e["qualifier"] == q]["value"].tolist() for q in (0x80, 0x81, 0x82)}
    user = t.symbols["user"]
    # int 0x40 (DPL 3): frame EIP past the int, and the user SS pushed (5 words: SS at [esp + 16]);
    # int 0x41 (DPL 0): #GP with error code 0x41 * 8 + 2 (IDT entry, bit 1), the user ESP at [esp + 16]
    assert values[0x81] == [0x10, 0x10]                # both handlers run on SS0
    assert values[0x82] == [0x23, 0x70000]
    assert values[0x80][1] == 0x41 * 8 + 2
    assert values[0x80][0] == user + 2
