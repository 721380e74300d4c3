"""Assembling guest sources: labels, constants, keystone's pitfalls, the ELF we write."""
from __future__ import annotations

import io

import pytest
from elftools.elf.elffile import ELFFile

from vmexit.asm import LOAD_ADDRESS, AsmError, assemble, build_elf, build_guest, strip_comments
from vmexit.loader import find_multiboot_header, load_elf


def test_labels_and_local_labels():
    code, syms = assemble("start:\n  nop\n.Lloop:\n  jmp .Lloop\nafter: ret\n")
    assert syms == {"start": LOAD_ADDRESS, "after": LOAD_ADDRESS + 3}
    assert code == bytes.fromhex("90ebfec3")


def test_constants_override_defaults():
    src = ".ifndef N\n.set N, 5\n.endif\nmov eax, N\n"
    assert assemble(src)[0] == bytes.fromhex("b805000000")
    assert assemble(src, {"N": 0x1234})[0] == bytes.fromhex("b834120000")


def test_comments_are_stripped_but_not_inside_strings():
    assert strip_comments('  .asciz "a#b"  # comment') == '  .asciz "a#b"'
    code, _ = assemble('s: .asciz "a#b" # x\n')
    assert code == b"a#b\0"


def test_number_first_operand_is_refused():
    with pytest.raises(AsmError, match="symbol first"):
        assemble(".set T, 1\nmov al, 0x60 + T\n")
    assert assemble(".set T, 1\nmov al, T + 0x60\n")[0] == bytes.fromhex("b061")


def test_error_names_the_statement():
    with pytest.raises(AsmError, match="frobnicate"):
        assemble("nop\nfrobnicate eax\nnop\n")


def test_elf_is_readable_and_bootable_layout():
    elf = build_guest("h: .long 0x1BADB002, 0, -0x1BADB002\n_start: nop\nf: ret\n")
    parsed = ELFFile(io.BytesIO(elf))
    assert parsed["e_machine"] == "EM_386" and parsed["e_entry"] == LOAD_ADDRESS + 12
    seg = next(parsed.iter_segments())
    assert seg["p_type"] == "PT_LOAD" and seg["p_paddr"] == LOAD_ADDRESS and seg["p_offset"] == 0x1000
    syms = {s.name: (s["st_value"], s["st_size"]) for s in parsed.get_section_by_name(".symtab").iter_symbols() if s.name}
    assert syms == {"h": (LOAD_ADDRESS, 12), "_start": (LOAD_ADDRESS + 12, 1), "f": (LOAD_ADDRESS + 13, 1)}
    assert find_multiboot_header(elf)[0] == 0x1000
    image = load_elf(elf, "t")
    assert image.symbols["f"] == LOAD_ADDRESS + 13


def test_missing_entry_label():
    with pytest.raises(AsmError, match="_start"):
        build_guest("nop\n")


def test_build_is_deterministic():
    src = "_start: nop\n"
    assert build_elf(*assemble(src), LOAD_ADDRESS) == build_elf(*assemble(src), LOAD_ADDRESS)


def test_labels_in_conditional_blocks_exist_only_when_assembled():
    src = """
_start:
    nop
.ifndef FEATURE
.set FEATURE, 0
.endif
.if FEATURE
with_feature:
    nop
.else
without_feature:
    nop
.if FEATURE + 1
nested:
    nop
.endif
.endif
after:
    ret
"""
    _, on = assemble(src, {"FEATURE": 1})
    _, off = assemble(src, {})
    assert "with_feature" in on and "without_feature" not in on and "nested" not in on
    assert "without_feature" in off and "nested" in off and "with_feature" not in off
    assert (on["after"] - on["_start"], off["after"] - off["_start"]) == (2, 3)


def test_memory_operand_with_two_symbols_is_refused():
    with pytest.raises(AsmError, match="only the last symbol"):
        assemble(".set A, 0x200000\n.set B, 1024\n_start:\n    mov dword ptr [A + B], eax\n", {})
    code, _ = assemble(".set A, 0x200000\n.set B, 1024\n.set AB, A + B\n_start:\n    mov dword ptr [AB], eax\n"
                       "    mov dword ptr [ecx + B], eax\n", {})
    assert code[:5] == bytes.fromhex("a300042000")


def test_iret_is_refused_for_iretd():
    with pytest.raises(AsmError, match="write iretd"):
        assemble("_start:\n    iret\n", {})
