"""Guest images: multiboot v1 ELF32 kernels (pyelftools) and flat binaries with a JSON symbol map.

An Image is what the machine needs: segments to copy into guest RAM, the entry point, and the symbols
(name -> address) that reports use to name functions. Multiboot header layout and magic values follow
the Multiboot Specification 0.6.96, section 3.1.
"""
from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .errors import VmexitError

MULTIBOOT_MAGIC = 0x1BADB002          # in the kernel's header
MULTIBOOT_BOOTLOADER_MAGIC = 0x2BADB002  # in EAX at entry
MULTIBOOT_SEARCH = 8192               # the header must sit in the first 8 KiB, 4-byte aligned
MULTIBOOT_AOUT_KLUDGE = 1 << 16


class LoadError(VmexitError):
    """A guest file that cannot be loaded."""


@dataclass
class Segment:
    address: int
    data: bytes
    memsize: int
    executable: bool = True


@dataclass
class Image:
    name: str
    sha256: str
    entry: int
    segments: list[Segment]
    symbols: dict[str, int] = field(default_factory=dict)
    kind: str = "elf"
    constants: dict[str, int] = field(default_factory=dict)   # -D values it was assembled with
    defaults: dict[str, int] = field(default_factory=dict)    # the constants its source sets by default
    elf: bytes | None = None                                   # the ELF assembled from a source
    linux: object = None      # bzimage.LinuxBoot: a Linux kernel entered by the 32-bit boot protocol
    starts: list[int] = field(default_factory=list)   # code symbols' addresses, a shared static name's too


def find_multiboot_header(data: bytes) -> tuple[int, tuple[int, ...]] | None:
    """(offset, header words) of a valid multiboot header, or None."""
    limit = min(len(data), MULTIBOOT_SEARCH) - 12
    off = data.find(struct.pack("<I", MULTIBOOT_MAGIC), 0, max(limit + 4, 0))
    while 0 <= off <= limit:
        if off % 4 == 0:
            magic, flags, checksum = struct.unpack_from("<III", data, off)
            if (magic + flags + checksum) & 0xFFFFFFFF == 0:
                words = struct.unpack_from("<8I", data, off) if off + 32 <= len(data) else (magic, flags, checksum)
                return off, words
        off = data.find(struct.pack("<I", MULTIBOOT_MAGIC), off + 1, limit + 4)
    return None


def load_elf(data: bytes, name: str) -> Image:
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise LoadError(f"{name}: not an ELF file")
    if len(data) < 52:
        raise LoadError(f"{name}: truncated ELF header")
    if data[4] != 1:
        raise LoadError(f"{name}: ELF64 kernel; vmexit runs 32-bit (ELF32) multiboot kernels")
    if find_multiboot_header(data) is None:
        raise LoadError(f"{name}: no multiboot header (magic 0x1badb002 with a valid checksum) in the first 8 KiB")
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] != "EM_386":
            raise LoadError(f"{name}: ELF for {elf['e_machine']}, not i386")
        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            body = seg.data()
            if len(body) != seg["p_filesz"]:
                raise LoadError(f"{name}: segment at 0x{seg['p_paddr']:x} is truncated")
            segments.append(Segment(seg["p_paddr"], body, seg["p_memsz"], bool(seg["p_flags"] & 1)))
        symbols = {}
        symtab = elf.get_section_by_name(".symtab")
        if symtab is not None:
            for sym in symtab.iter_symbols():
                if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT") \
                        and sym["st_shndx"] != "SHN_UNDEF" and sym["st_info"]["type"] != "STT_FILE":
                    symbols[sym.name] = sym["st_value"]
        entry = elf["e_entry"]
    except LoadError:
        raise
    except (ELFError, struct.error, ValueError, KeyError, IndexError) as e:
        raise LoadError(f"{name}: malformed ELF ({e})") from None
    if not segments:
        raise LoadError(f"{name}: no loadable segment")
    if not any(s.address <= entry < s.address + s.memsize for s in segments):
        raise LoadError(f"{name}: entry point 0x{entry:x} is outside every loadable segment")
    return Image(name=name, sha256=hashlib.sha256(data).hexdigest(), entry=entry, segments=segments,
                 symbols=symbols, kind="elf")


def parse_symbol_map(text: str, where: str) -> dict[str, int]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise LoadError(f"{where}: symbol map is not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict):
        raise LoadError(f"{where}: symbol map must be a JSON object {{name: address}}")
    out = {}
    for k, v in doc.items():
        try:
            out[str(k)] = int(v, 0) if isinstance(v, str) else int(v)
        except (TypeError, ValueError):
            raise LoadError(f"{where}: symbol {k!r} has address {v!r}, not a number") from None
    return out


def load_flat(data: bytes, name: str, symbols: dict[str, int], load_address: int, entry: int | None) -> Image:
    if not data:
        raise LoadError(f"{name}: empty file")
    entry = load_address if entry is None else entry
    if not load_address <= entry < load_address + len(data):
        raise LoadError(f"{name}: entry point 0x{entry:x} is outside the binary loaded at 0x{load_address:x}")
    return Image(name=name, sha256=hashlib.sha256(data).hexdigest(), entry=entry,
                 segments=[Segment(load_address, data, len(data))], symbols=symbols, kind="flat")


def load_file(path: str | Path, symbol_map: str | Path | None = None, load_address: int = 0x100000,
              entry: int | None = None) -> Image:
    """Load an ELF32 multiboot kernel, or a flat binary (which needs its symbol map)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LoadError(f"{path}: no such guest file") from None
    except OSError as e:
        raise LoadError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise LoadError(f"{path}: empty file")
    if b"\x7fELF".startswith(data[:4]):  # ELF, or a file cut inside the magic
        return load_elf(data, path.name)
    if symbol_map is None:
        raise LoadError(f"{path}: not an ELF file; a flat binary needs --symbols MAP.json")
    try:
        text = Path(symbol_map).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LoadError(f"{symbol_map}: cannot read symbol map ({e})") from None
    return load_flat(data, path.name, parse_symbol_map(text, str(symbol_map)), load_address, entry)
