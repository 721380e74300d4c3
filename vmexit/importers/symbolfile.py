"""Function names for an imported trace: a kernel's System.map, its ELF image (vmlinux, or one of our
multiboot guests), or a JSON map {name: address} (as `vmexit run --symbols` takes).

System.map is `nm -n vmlinux` output, one `ADDRESS TYPE NAME` a line (scripts/mksysmap in the kernel
tree); only text symbols (types T, t, W, w: code) are kept, since only code holds an exit's RIP, and the
data symbols of a System.map include per-CPU offsets near 0 that would claim low addresses. From an
ELF (any class, via pyelftools) the FUNC and NOTYPE symbols of its executable sections are kept (the
labels of our assembled guests, a vmlinux's functions; not the linker's _edata or _end).

Addresses are folded to 32 bits as the trace stores them (fold): see the importers' docstring.
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from ..errors import VmexitError
from ..loader import parse_symbol_map

#: Upper 32 bits of an address a trace can keep as its lower 32: a 32-bit address, or the top 4 GiB of an
#: x86-64 address space, where the kernel's text and modules live (Documentation/arch/x86/x86_64/mm.rst:
#: kernel text from 0xffffffff80000000, modules from 0xffffffffa0000000 or above).
KEPT_HIGH = (0, 0xFFFFFFFF)
_TEXT_TYPES = frozenset("TtWw")
_SYSTEM_MAP = re.compile(r"^([0-9a-fA-F]{8,16}) ([A-Za-z?]) (\S+)")


class SymbolFileError(VmexitError):
    """A --symbols file that cannot be read as a System.map, an ELF or a JSON symbol map."""


def fold(addresses: np.ndarray) -> tuple[np.ndarray, int]:
    """64-bit addresses as the trace's 32-bit field holds them: those whose upper half is in KEPT_HIGH
    keep their lower half; any other (a 64-bit user-space RIP) becomes 0, the unknown address, so that
    it can never be named after a kernel function. Returns the folded addresses and how many became 0."""
    addresses = np.asarray(addresses, dtype=np.uint64)
    high = addresses >> np.uint64(32)
    kept = np.zeros(len(addresses), dtype=bool)
    for h in KEPT_HIGH:
        kept |= high == np.uint64(h)
    out = np.where(kept, addresses & np.uint64(0xFFFFFFFF), np.uint64(0)).astype(np.uint32)
    return out, int((~kept & (addresses != 0)).sum())


def load(path: str | Path) -> tuple[dict[str, int], str]:
    """(symbols folded to 32 bits, sha256 of the file) of a System.map, ELF or JSON symbol map."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SymbolFileError(f"--symbols {path}: no such file") from None
    except OSError as e:
        raise SymbolFileError(f"--symbols {path}: cannot read ({e.strerror or e})") from None
    if data[:4] == b"\x7fELF":
        symbols = _elf(data, path)
    elif data.lstrip()[:1] == b"{":
        try:
            symbols = parse_symbol_map(data.decode("utf-8"), str(path))
        except UnicodeDecodeError:
            raise SymbolFileError(f"--symbols {path}: not UTF-8 text") from None
    else:
        symbols = _system_map(data, path)
    if not symbols:
        raise SymbolFileError(f"--symbols {path}: no code symbols in it")
    names = list(symbols)
    folded, _ = fold(np.array([symbols[n] for n in names], dtype=np.uint64))
    kept = {n: int(a) for n, a in zip(names, folded) if a}
    return kept, hashlib.sha256(data).hexdigest()


def _system_map(data: bytes, path: Path) -> dict[str, int]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SymbolFileError(f"--symbols {path}: neither ELF, JSON nor a System.map (not text)") from None
    symbols: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SYSTEM_MAP.match(line)
        if m is None:
            raise SymbolFileError(f"{path}:{number}: not a System.map line (ADDRESS TYPE NAME): {line[:60]!r}")
        if m.group(2) in _TEXT_TYPES:
            symbols.setdefault(m.group(3), int(m.group(1), 16))  # a name listed twice: its first address
    return symbols


def _elf(data: bytes, path: Path) -> dict[str, int]:
    """FUNC and NOTYPE symbols defined in executable sections (not the linker's _edata, _end ...)."""
    try:
        elf = ELFFile(io.BytesIO(data))
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise SymbolFileError(f"--symbols {path}: the ELF has no symbol table (stripped)")
        code = {i for i, sec in enumerate(elf.iter_sections()) if sec["sh_flags"] & SH_FLAGS.SHF_EXECINSTR}
        return {s.name: int(s["st_value"]) for s in symtab.iter_symbols()
                if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE") and s["st_shndx"] in code}
    except (ELFError, ValueError, KeyError, IndexError) as e:
        raise SymbolFileError(f"--symbols {path}: malformed ELF ({e})") from None
