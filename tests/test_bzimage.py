"""Linux bzImages: the 32-bit boot protocol on a synthetic bzImage built here from the documented header
layout (Documentation/arch/x86/boot.rst), System.map symbols, bad input; and, when the kernel of
tools/linux/build.sh is there, Linux booted to its shell prompt, twice with the same trace."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from vmexit import bzimage, session
from vmexit.asm import assemble
from vmexit.bios import EBDA
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason
from vmexit.guests import resolve
from vmexit.loader import LoadError

# The protected-mode "kernel": checks what the 32-bit boot protocol promises (CS 0x10, DS/SS 0x18, ESI
# = boot_params, EBX/EBP/EDI = 0), prints the command line (cmd_line_ptr) and the initrd (ramdisk_image,
# ramdisk_size) to COM1, then ends with e820_entries at port 0xf4. Any broken promise ends it with 0xee.
KERNEL = """
_start:
    mov ax, cs
    cmp ax, 0x10
    jne bad
    mov ax, ds
    cmp ax, 0x18
    jne bad
    mov ax, ss
    cmp ax, 0x18
    jne bad
    mov eax, ebx
    or eax, ebp
    or eax, edi
    jnz bad
    mov esp, 0x90000
    cmp byte ptr [esi + 0x210], 0xff
    jne bad
    mov ebx, dword ptr [esi + 0x228]
cmdline:
    mov al, byte ptr [ebx]
    test al, al
    jz initrd
    mov dx, 0x3f8
    out dx, al
    inc ebx
    jmp cmdline
initrd:
    mov ebx, dword ptr [esi + 0x218]
    mov ecx, dword ptr [esi + 0x21c]
.Lbyte:
    mov al, byte ptr [ebx]
    mov dx, 0x3f8
    out dx, al
    inc ebx
    dec ecx
    jnz .Lbyte
    mov al, byte ptr [esi + 0x1e8]
    out 0xf4, al
bad:
    mov al, 0xee
    out 0xf4, al
"""


def make_bzimage(kernel: bytes, setup_sects: int = 4, version: int = 0x020F, loadflags: int = 1,
                 cmdline_size: int = 2047, init_size: int = 0x100000, pref_address: int = 0x100000) -> bytes:
    """A bzImage laid out as boot.rst says: setup sectors with the header at 0x1f1, then the kernel."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<I", setup, 0x1F4, (len(kernel) + 15) // 16)                 # syssize
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)                                    # boot_flag
    setup[0x200:0x202] = bytes((0xEB, 0x6A))                                          # jmp to 0x26c
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)                                   # code32_start
    struct.pack_into("<I", setup, 0x22C, 0x37FFFFFF)                                 # initrd_addr_max
    struct.pack_into("<I", setup, 0x238, cmdline_size)
    struct.pack_into("<Q", setup, 0x258, pref_address)
    struct.pack_into("<I", setup, 0x260, init_size)
    return bytes(setup) + kernel + bytes(-len(kernel) % 16)


@pytest.fixture(scope="module")
def kernel_bytes() -> bytes:
    return assemble(KERNEL, base=0x100000)[0]


def run(image, **options):
    return session.run(image, load_profile(None), session.RunOptions(**options))


def test_boot_protocol_entry_state_command_line_and_initrd(kernel_bytes):
    initrd = b"INITRD-BYTES"
    image = bzimage.load(make_bzimage(kernel_bytes), "synthetic", "console=ttyS0 quiet", initrd)
    t = run(image)
    # the kernel printed the command line and the initrd, then the number of e820 entries (3)
    assert t.meta["status"] == "exited" and t.meta["guest_value"] == 3
    assert t.meta["console"] == "console=ttyS0 quiet" + "INITRD-BYTES"
    out = t.exits[(t.exits["reason"] == ExitReason.IO_INSTRUCTION) & (t.exits["direction"] == Direction.OUT)]
    assert np.count_nonzero(out["qualifier"] == 0x3F8) == len("console=ttyS0 quiet") + len(initrd)
    assert t.meta["guest_kind"] == "bzimage"


def test_the_python_api_boots_a_bzimage_with_its_command_line_and_initrd(kernel_bytes, tmp_path):
    import vmexit
    (tmp_path / "bzImage").write_bytes(make_bzimage(kernel_bytes))
    (tmp_path / "initrd").write_bytes(b"RD")
    t = vmexit.run(tmp_path / "bzImage", cmdline="console=ttyS0", initrd=tmp_path / "initrd")
    assert t.status == "exited" and t.console == "console=ttyS0RD" and t.count(port=0x3F8) == len("console=ttyS0RD")


def test_zero_page_e820_header_and_initrd_placement(kernel_bytes):
    data = make_bzimage(kernel_bytes)
    boot, kernel = bzimage.parse(data, "k", "root=/dev/sda", b"x" * 5000)
    assert kernel[:len(kernel_bytes)] == kernel_bytes
    ram = 64 << 20
    page = bzimage.zero_page(boot, [(0, EBDA, 1), (EBDA, 0x100000 - EBDA, 2), (0x100000, ram - 0x100000, 1)], ram)
    assert page[0x1E8] == 3
    assert struct.unpack_from("<QQI", page, 0x2D0 + 40) == (0x100000, ram - 0x100000, 1)
    assert page[0x1F1:0x26C] != bytes(0x7B) and page[0x202:0x206] == b"HdrS"
    assert page[0x210] == 0xFF and page[0x211] == 0x81                              # LOADED_HIGH | CAN_USE_HEAP
    assert struct.unpack_from("<I", page, 0x228)[0] == bzimage.CMDLINE
    # the initrd sits page-aligned at the top of RAM: 5000 bytes -> two pages below 64 MiB
    assert struct.unpack_from("<II", page, 0x218) == (ram - 0x2000, 5000)
    assert struct.unpack_from("<I", page, 0x1E0)[0] == (ram >> 10) - 1024          # alt_mem_k


def test_initrd_that_does_not_fit_above_the_kernel_names_the_memory_it_needs(kernel_bytes):
    data = make_bzimage(kernel_bytes, init_size=0x1000000, pref_address=0x1000000)
    image = bzimage.load(data, "big", "", b"y" * (40 << 20))
    with pytest.raises(LoadError, match="--memory 72M or more"):
        run(image)


@pytest.mark.parametrize("change, message", [
    (lambda d: d[:0x202] + b"Hdr!" + d[0x206:], "no Linux setup header"),
    (lambda d: d[:0x206] + struct.pack("<H", 0x0204) + d[0x208:], "boot protocol 2.04"),
    (lambda d: d[:0x211] + b"\0" + d[0x212:], "a zImage"),
    (lambda d: d[:0xA04], "truncated"),
])
def test_bad_bzimages_are_one_line_errors(kernel_bytes, change, message):
    with pytest.raises(LoadError, match=message):
        bzimage.load(change(make_bzimage(kernel_bytes)), "bad", "")


def test_command_line_longer_than_cmdline_size(kernel_bytes):
    with pytest.raises(LoadError, match="at most 8"):
        bzimage.load(make_bzimage(kernel_bytes, cmdline_size=8), "k", "console=ttyS0")


def test_resolve_recognizes_a_bzimage_and_reads_system_map(kernel_bytes, tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(make_bzimage(kernel_bytes))
    smap = tmp_path / "System.map"
    smap.write_text("c1000000 T _text\nc1000000 T startup_32\nc1234560 t do_one_initcall\n"
                    "c1800000 D some_data\nc1900000 W weak_fn\n")
    (tmp_path / "initrd").write_bytes(b"abc")
    image = resolve(str(path), symbols=str(smap), cmdline="x", initrd=str(tmp_path / "initrd"))
    assert image.kind == "bzimage" and image.linux.initrd == b"abc" and image.linux.cmdline == b"x"
    assert image.symbols == {"_text": 0xC1000000, "startup_32": 0xC1000000, "do_one_initcall": 0xC1234560,
                             "weak_fn": 0xC1900000}
    with pytest.raises(LoadError, match="only to a Linux bzImage"):
        resolve("timer", cmdline="x")
    smap.write_text("c1000000 T _text\nnot a map\n")
    with pytest.raises(LoadError, match="System.map:2"):
        resolve(str(path), symbols=str(smap))


def test_static_functions_sharing_a_name_are_all_kept():
    # two files' static io_serial_in: an exit in the second one must not be charged to the first
    text = ("c1021ea3 t io_serial_in\nc1021eb0 t mem32_serial_out\nc112fdc5 t io_serial_in\n"
            "c112fdd2 t io_serial_out\nc112fdc5 t io_serial_in\n")
    assert bzimage.parse_system_map(text, "System.map") == {
        "io_serial_in": 0xC1021EA3, "mem32_serial_out": 0xC1021EB0, "io_serial_in@c112fdc5": 0xC112FDC5,
        "io_serial_out": 0xC112FDD2}


# Linux itself ------------------------------------------------------------------------------------------
def linux_dir() -> Path:
    return Path(os.environ.get("VMEXIT_LINUX_DIR") or Path.home() / ".cache/vmexit/linux")


@pytest.fixture(scope="module")
def linux():
    d = linux_dir()
    if not (d / "READY").exists() or not (d / "bzImage").exists():
        pytest.skip("Linux kernel not built: run tools/linux/build.sh")
    return d


LINUX_CMDLINE = "console=ttyS0 acpi=off vmexit.workload=shell"


def boot_linux(d: Path):
    image = bzimage.load_file(d / "bzImage", LINUX_CMDLINE, d / "initramfs.cpio", d / "System.map")
    return run(image, until_console="/ # ")


@pytest.fixture(scope="module")
def first_boot(linux):
    return boot_linux(linux)


def test_linux_boots_to_its_shell_prompt(first_boot):
    t = first_boot
    assert t.meta["status"] == "console", t.meta["detail"] + t.meta["console"][-400:]
    assert t.meta["console"].endswith("/ # ") and "Run /init as init process" in t.meta["console"]
    # every exit is named by the kernel's System.map or lies in user space (busybox, below 0xc0000000)
    kernel = t.exits["rip"] >= 0xC0000000
    assert kernel.any() and int(t.exits["rip"][kernel].min()) >= min(v for v in t.symbols.values() if v >= 0xC0000000)


def test_linux_boots_twice_with_the_same_trace(linux, first_boot):
    # every rdtsc of the boot reads the virtual clock: the code scanner sees each block with the paging
    # state it runs under, and (watch_every_block) the blocks Unicorn's edge hook never reports
    second = boot_linux(linux)
    assert first_boot.meta["instructions"] == second.meta["instructions"]
    assert first_boot.exits.tobytes() == second.exits.tobytes()
    assert first_boot.meta["console"] == second.meta["console"]
