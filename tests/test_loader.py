"""Loading guest files, and refusing bad ones with a one-line reason."""
from __future__ import annotations

import struct

import pytest

from vmexit.asm import build_guest
from vmexit.loader import LoadError, load_elf, load_file, parse_symbol_map

GOOD = build_guest("h: .long 0x1BADB002, 0, -0x1BADB002\n_start: nop\n")


def test_good_elf():
    image = load_elf(GOOD, "g")
    assert image.entry == 0x10000C and image.segments[0].address == 0x100000
    assert len(image.sha256) == 64


@pytest.mark.parametrize("data,message", [
    (b"", "not an ELF"),
    (b"MZ\x90\x00" * 20, "not an ELF"),
    (GOOD[:40], "truncated"),
    (GOOD[:4] + b"\x02" + GOOD[5:], "ELF64"),
    (GOOD[:0x1000], "no multiboot header"),
    (GOOD[:18] + struct.pack("<H", 62) + GOOD[20:], "EM_X86_64"),
])
def test_bad_elf(data, message):
    with pytest.raises(LoadError, match=message):
        load_elf(data, "bad")


def test_bad_multiboot_checksum():
    bad = bytearray(GOOD)
    struct.pack_into("<I", bad, 0x1008, 1)
    with pytest.raises(LoadError, match="no multiboot header"):
        load_elf(bytes(bad), "bad")


def test_truncated_at_every_header_boundary():
    for cut in (0, 4, 16, 52, 84, 0x1000, 0x1000 + 8):
        with pytest.raises(LoadError):
            load_elf(GOOD[:cut], "cut")


def test_entry_outside_segments():
    bad = bytearray(GOOD)
    struct.pack_into("<I", bad, 24, 0x500000)
    with pytest.raises(LoadError, match="entry point"):
        load_elf(bytes(bad), "bad")


def test_flat_binary_needs_symbols(tmp_path):
    flat = tmp_path / "g.bin"
    flat.write_bytes(b"\x90\xf4")
    with pytest.raises(LoadError, match="--symbols"):
        load_file(flat)
    syms = tmp_path / "g.json"
    syms.write_text('{"_start": "0x100000", "halt": 1048577}')
    image = load_file(flat, syms)
    assert image.symbols == {"_start": 0x100000, "halt": 0x100001} and image.entry == 0x100000
    syms.write_text("not json")
    with pytest.raises(LoadError, match="not JSON"):
        load_file(flat, syms)


def test_symbol_map_values():
    with pytest.raises(LoadError, match="not a number"):
        parse_symbol_map('{"a": "zz"}', "m")
    with pytest.raises(LoadError, match="JSON object"):
        parse_symbol_map("[1]", "m")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(LoadError, match="no such"):
        load_file(tmp_path / "nope.elf")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(LoadError, match="empty"):
        load_file(tmp_path / "empty")
