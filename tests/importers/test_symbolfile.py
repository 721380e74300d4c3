"""--symbols: a System.map, a 64-bit ELF (a vmlinux we link here), a JSON map; addresses folded to 32 bits."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from vmexit import guests
from vmexit.importers import symbolfile
from vmexit.loader import load_elf

CC = shutil.which("cc")


def test_fold_keeps_32_bit_and_top_4_gib_addresses():
    folded, lost = symbolfile.fold(np.array([0x100A09, 0xFFFFFFFF81234510, 0xFFFFFFFFC0100000,
                                             0x00007F0012345678, 0xFFFF888000001000, 0], dtype=np.uint64))
    assert list(folded) == [0x100A09, 0x81234510, 0xC0100000, 0, 0, 0]
    assert lost == 2                      # user space and the direct map; 0 was unknown already


def test_our_guests_elf_names_what_the_loader_names():
    symbols, sha = symbolfile.load(guests.guests_dir() / "ide.elf")
    image = load_elf((guests.guests_dir() / "ide.elf").read_bytes(), "ide.elf")
    assert symbols["__ide_do_rw_disk"] == image.symbols["__ide_do_rw_disk"]
    assert set(symbols) <= set(image.symbols) and sha == image.sha256


def test_json_map(tmp_path):
    path = tmp_path / "map.json"
    path.write_text('{"putc": "0x100080", "_start": 1048576}')
    assert symbolfile.load(path)[0] == {"putc": 0x100080, "_start": 0x100000}


@pytest.mark.skipif(CC is None, reason="no C compiler (cc) to link a 64-bit kernel-like ELF")
def test_vmlinux_like_elf64(tmp_path):
    src = tmp_path / "k.c"
    src.write_text("void f(void) {}\nvoid g(void) { f(); }\nstatic void h(void) {}\nvoid *p = h;\n")
    out = tmp_path / "vmlinux"
    subprocess.run([CC, "-nostdlib", "-static", "-mcmodel=kernel", "-fno-pic", "-no-pie", "-O0",
                    "-Wl,-Ttext=0xffffffff81000000", "-Wl,-e,f", "-o", str(out), str(src)], check=True)
    symbols, _ = symbolfile.load(out)
    assert symbols["f"] == 0x81000000 and {"f", "g", "h"} <= set(symbols)
    assert "p" not in symbols and "_end" not in symbols and "_edata" not in symbols   # data, linker symbols
