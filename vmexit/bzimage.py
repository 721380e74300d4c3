"""Linux bzImage kernels, booted through the 32-bit boot protocol (no real-mode setup code runs).

Layout and fields: the kernel's Documentation/arch/x86/boot.rst ("The Linux/x86 Boot Protocol") and
arch/x86/include/uapi/asm/bootparam.h (struct setup_header, struct boot_params):
- the real-mode part is (setup_sects + 1) sectors of 512 bytes (setup_sects 0 means 4); the
  protected-mode kernel follows it in the file and is loaded at 0x100000 (code32_start);
- the setup header starts at 0x1f1; "HdrS" at 0x202; the header runs to 0x202 + the byte at 0x201
  (the jump's offset) and is copied into the zero page (boot_params) at the same offset;
- protocol 2.06 or later (cmdline_size, initrd_addr_max, ...) is required; LOADED_HIGH in loadflags
  (a bzImage); type_of_loader 0xff (undefined boot loader);
- the 32-bit entry: boot_params in ESI, EBP/EDI/EBX zero, interrupts off, a GDT with flat 4 GiB code
  at __BOOT_CS (0x10) and data at __BOOT_DS (0x18) loaded in CS and DS/ES/SS (machine.boot_linux);
- zero-page fields filled here: alt_mem_k (0x1e0), e820_entries (0x1e8), the header (0x1f1), the e820
  table (0x2d0, 20-byte {u64 addr, u64 size, u32 type} entries); in the header: type_of_loader,
  cmd_line_ptr, ramdisk_image/size, heap_end_ptr with CAN_USE_HEAP.

The initrd goes at the highest page-aligned address below the end of RAM and initrd_addr_max, above
the decompressed kernel (pref_address + init_size: where the decompressor works); the command line
and the zero page sit in low memory below the EBDA, away from the kernel.

Symbols come from a System.map (`nm` lines: address, type, name; text symbols T/t/W/w kept) or the
vmlinux ELF's symbol table, so exits are named by the kernel's functions.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from .loader import Image, LoadError, Segment

SETUP_HEADER = 0x1F1
HDRS_MAGIC = b"HdrS"
MIN_VERSION = 0x0206
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
KERNEL_ADDRESS = 0x100000           # where the protected-mode kernel of a bzImage is loaded
ZERO_PAGE = 0x10000                 # boot_params (4 KiB)
CMDLINE = 0x20000                   # the command line (up to cmdline_size + 1 bytes)
HEAP_END = 0xFE00                   # heap_end_ptr: the setup heap's end, as boot.rst's example
E820_MAX_ENTRIES = 128              # boot_params.e820_table's size
TEXT_TYPES = frozenset("TtWw")      # System.map types of code symbols

# offsets in the zero page (bootparam.h)
BP_ALT_MEM_K, BP_E820_ENTRIES, BP_E820_TABLE = 0x1E0, 0x1E8, 0x2D0
# offsets of setup-header fields in the file and in the zero page alike
HDR_SETUP_SECTS, HDR_SYSSIZE, HDR_JUMP, HDR_VERSION = 0x1F1, 0x1F4, 0x200, 0x206
HDR_TYPE_OF_LOADER, HDR_LOADFLAGS, HDR_CODE32_START = 0x210, 0x211, 0x214
HDR_RAMDISK_IMAGE, HDR_RAMDISK_SIZE, HDR_HEAP_END_PTR, HDR_CMD_LINE_PTR = 0x218, 0x21C, 0x224, 0x228
HDR_INITRD_ADDR_MAX, HDR_CMDLINE_SIZE, HDR_PREF_ADDRESS, HDR_INIT_SIZE = 0x22C, 0x238, 0x258, 0x260


@dataclass
class LinuxBoot:
    """What the machine needs to enter a bzImage: its setup header (to copy into the zero page), the
    command line and the initrd, and where the decompressed kernel will lie."""
    header: bytes           # the file's bytes 0x1f1 .. header end
    cmdline: bytes
    initrd: bytes
    kernel_end: int         # physical end of the decompressor's working area
    initrd_addr_max: int


def is_bzimage(data: bytes) -> bool:
    return len(data) >= 0x206 and data[0x202:0x206] == HDRS_MAGIC


def _u(data: bytes, fmt: str, offset: int) -> int:
    return struct.unpack_from(fmt, data, offset)[0]


def parse(data: bytes, name: str, cmdline: str = "", initrd: bytes = b"") -> tuple[LinuxBoot, bytes]:
    """(the boot description, the protected-mode kernel) of a bzImage; LoadError says what is wrong."""
    if not is_bzimage(data):
        raise LoadError(f"{name}: no Linux setup header (\"HdrS\" at 0x202)")
    version = _u(data, "<H", HDR_VERSION)
    if version < MIN_VERSION:
        raise LoadError(f"{name}: boot protocol {version >> 8}.{version & 0xff:02d}; vmexit needs 2.06 or later")
    if len(data) < HDR_INIT_SIZE + 4:
        raise LoadError(f"{name}: truncated setup header")
    if not data[HDR_LOADFLAGS] & LOADED_HIGH:
        raise LoadError(f"{name}: a zImage (loaded at 0x10000); vmexit boots bzImages (LOADED_HIGH)")
    setup_sects = data[HDR_SETUP_SECTS] or 4
    kernel_offset = (setup_sects + 1) * 512
    syssize = _u(data, "<I", HDR_SYSSIZE) * 16
    kernel = data[kernel_offset:kernel_offset + syssize] if syssize else data[kernel_offset:]
    if not kernel or (syssize and len(kernel) < syssize):
        raise LoadError(f"{name}: the protected-mode kernel is truncated ({len(kernel)} of {syssize} bytes "
                        f"after {setup_sects} setup sectors)")
    header_end = 0x202 + data[HDR_JUMP + 1]
    limit = _u(data, "<I", HDR_CMDLINE_SIZE)
    raw_cmdline = cmdline.encode("latin-1", "replace")
    if len(raw_cmdline) > limit:
        raise LoadError(f"{name}: the command line is {len(raw_cmdline)} bytes; this kernel takes at most {limit}")
    start = max(_u(data, "<Q", HDR_PREF_ADDRESS), KERNEL_ADDRESS)
    boot = LinuxBoot(header=data[SETUP_HEADER:header_end], cmdline=raw_cmdline, initrd=bytes(initrd),
                     kernel_end=start + _u(data, "<I", HDR_INIT_SIZE),
                     initrd_addr_max=_u(data, "<I", HDR_INITRD_ADDR_MAX))
    return boot, kernel


def initrd_address(boot: LinuxBoot, ram_size: int) -> int:
    """Where the initrd goes (0 when there is none); LoadError when it does not fit above the kernel."""
    if not boot.initrd:
        return 0
    top = min(ram_size, boot.initrd_addr_max + 1)
    address = (top - len(boot.initrd)) & ~0xFFF
    if address < boot.kernel_end:
        need = (boot.kernel_end + len(boot.initrd) + 0xFFFFF) >> 20
        raise LoadError(f"the initrd ({len(boot.initrd)} bytes) does not fit above the kernel "
                        f"(which uses memory up to 0x{boot.kernel_end:x}): give --memory {need}M or more")
    return address


def zero_page(boot: LinuxBoot, e820: list[tuple[int, int, int]], ram_size: int) -> bytes:
    """boot_params for the 32-bit entry: the header with the loader's fields, the e820 map."""
    page = bytearray(4096)
    page[SETUP_HEADER:SETUP_HEADER + len(boot.header)] = boot.header
    page[HDR_TYPE_OF_LOADER] = 0xFF
    page[HDR_LOADFLAGS] |= CAN_USE_HEAP
    struct.pack_into("<H", page, HDR_HEAP_END_PTR, HEAP_END)
    struct.pack_into("<I", page, HDR_CMD_LINE_PTR, CMDLINE)
    initrd = initrd_address(boot, ram_size)
    struct.pack_into("<II", page, HDR_RAMDISK_IMAGE, initrd, len(boot.initrd))
    struct.pack_into("<I", page, BP_ALT_MEM_K, (ram_size >> 10) - 1024)
    if len(e820) > E820_MAX_ENTRIES:
        raise ValueError("too many e820 entries")
    page[BP_E820_ENTRIES] = len(e820)
    for i, (base, length, kind) in enumerate(e820):
        struct.pack_into("<QQI", page, BP_E820_TABLE + 20 * i, base, length, kind)
    return bytes(page)


def parse_system_map(text: str, where: str, starts: list[int] | None = None) -> dict[str, int]:
    """Text symbols of a System.map (`nm -n` output: hex address, type letter, name); `starts`, when
    given, gets every text symbol's address, also those of a static name several functions share (frames.py
    needs every function's start)."""
    symbols = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or len(parts[1]) != 1:
            raise LoadError(f"{where}:{lineno}: not a System.map line (address type name): {line[:60]!r}")
        try:
            address = int(parts[0], 16)
        except ValueError:
            raise LoadError(f"{where}:{lineno}: {parts[0]!r} is not a hex address") from None
        if parts[1] in TEXT_TYPES:
            symbols.append((parts[2], address))
            if starts is not None:
                starts.append(address)
    return unique_names(symbols)


def unique_names(pairs: list[tuple[str, int]]) -> dict[str, int]:
    """name -> address with every function kept: a kernel has hundreds of static functions that share a
    name with another file's (6.1 here: 269 names for 968 functions, `io_serial_in` of 8250_port.c and early_printk.c among
    them). The lowest address keeps the plain name; each other copy is `name@address` (hex, as in
    System.map), so an exit in it is not charged to its namesake."""
    symbols: dict[str, int] = {}
    for name, address in sorted(set(pairs), key=lambda p: (p[1], p[0])):
        if name in symbols:
            if symbols[name] != address:
                symbols[f"{name}@{address:08x}"] = address
        else:
            symbols[name] = address
    return symbols


def elf_symbols(data: bytes, where: str, starts: list[int] | None = None) -> dict[str, int]:
    """Function symbols of a vmlinux ELF (`starts`: as for parse_system_map)."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        symtab = ELFFile(io.BytesIO(data)).get_section_by_name(".symtab")
        if symtab is None:
            raise LoadError(f"{where}: the ELF has no symbol table (stripped)")
        functions = [(sym.name, sym["st_value"]) for sym in symtab.iter_symbols()
                     if sym.name and sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] != "SHN_UNDEF"]
        if starts is not None:
            starts.extend(address for _, address in functions)
        return unique_names(functions)
    except (ELFError, struct.error, ValueError, KeyError) as e:
        raise LoadError(f"{where}: malformed ELF ({e})") from None


def read_symbols(path: str | Path, starts: list[int] | None = None) -> dict[str, int]:
    """A System.map or a vmlinux ELF, by content (`starts`: as for parse_system_map)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise LoadError(f"{path}: cannot read symbols ({e.strerror})") from None
    if data[:4] == b"\x7fELF":
        return elf_symbols(data, str(path), starts)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise LoadError(f"{path}: neither a System.map nor an ELF file") from None
    return parse_system_map(text, str(path), starts)


def load(data: bytes, name: str, cmdline: str = "", initrd: bytes = b"",
         symbols: dict[str, int] | None = None, starts: list[int] | None = None) -> Image:
    """An Image of a bzImage: the protected-mode kernel at 0x100000, entered at code32_start."""
    boot, kernel = parse(data, name, cmdline, initrd)
    return Image(name=name, sha256=hashlib.sha256(data).hexdigest(), entry=KERNEL_ADDRESS,
                 segments=[Segment(KERNEL_ADDRESS, kernel, len(kernel))], symbols=dict(symbols or {}),
                 kind="bzimage", linux=boot, starts=list(starts or []))


def load_file(path: str | Path, cmdline: str = "", initrd: str | Path | None = None,
              symbols: str | Path | None = None) -> Image:
    path = Path(path)
    try:
        data = path.read_bytes()
        ramdisk = Path(initrd).read_bytes() if initrd is not None else b""
    except FileNotFoundError as e:
        raise LoadError(f"{e.filename}: no such file") from None
    except OSError as e:
        raise LoadError(f"{e.filename}: cannot read ({e.strerror})") from None
    starts: list[int] = []
    table = read_symbols(symbols, starts) if symbols is not None else {}
    return load(data, path.name, cmdline, ramdisk, table, starts)
