"""The bundled guests (explicit table) and how a guest argument becomes an Image.

A guest argument is a bundled name, a path to an assembly source (.S/.s/.asm, assembled here with the
`-D` constants), a multiboot ELF32 file, a Linux bzImage (bzimage.py), or a flat binary with its JSON
symbol map.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import bzimage
from .asm import AsmError, build_guest
from .loader import Image, LoadError, load_elf, load_file

#: name -> (source file in guests/, one-line description)
GUESTS: dict[str, tuple[str, str]] = {
    "timer": ("timer.S", "Linux-like HZ=1000 tick: PIT + PIC, timer_interrupt, do_timer, __do_softirq, idle HLT"),
    "ide": ("ide.S", "IDE PIO driver: __ide_do_rw_disk's 11 outb per request, rep insw/outsw, write then read back"),
    "netperf": ("netperf.S", "TCP_STREAM sender over an RTL8139 with an 8139too-like driver (Table 2's accessors), NAPI or not"),
    "bonnie": ("bonnie.S", "libata-like bus-master DMA write/read (Table 3's callers), verify_pmtmr_rate at boot"),
    "specjbb": ("specjbb.S", "compute-bound, Table 1's timer path: LAPIC timer + PIT via I/O APIC, EOIs, timer_ack, __do_softirq"),
    "fork": ("fork.S", "lmbench-like fork: copy_page_range, COW faults, exit_mmap; native or Xen PV paths (BATCH)"),
    "exec": ("exec.S", "lmbench-like exec: a fresh address space, demand-zero faults, exit_mmap; native or Xen PV"),
}
SOURCE_SUFFIXES = (".S", ".s", ".asm")


def guests_dir() -> Path:
    """guests/ of a checkout, or the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_guests", here.parent / "guests"):
        if (candidate / GUESTS["timer"][0]).is_file():
            return candidate
    raise FileNotFoundError("bundled guest sources not found (broken installation?)")


_INCLUDE = re.compile(r'^\s*\.include\s+"([^"]+)"\s*(#.*)?$')


def read_source(path: Path, depth: int = 0) -> str:
    """The source text with `.include "file"` lines replaced by the file (relative to the includer)."""
    if depth > 8:
        raise LoadError(f"{path}: .include nested too deeply")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoadError(f"{path}: no such guest source") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LoadError(f"{path}: cannot read ({e})") from None
    out = []
    for line in text.splitlines():
        m = _INCLUDE.match(line)
        out.append(read_source(path.parent / m.group(1), depth + 1) if m else line)
    return "\n".join(out) + "\n"


_DEFAULT = re.compile(r"^\s*\.ifndef\s+(\w+)\s*\n\s*\.set\s+(\w+)\s*,\s*(-?(?:0x[0-9a-fA-F]+|\d+))\b",
                      re.MULTILINE)


def source_defaults(text: str) -> dict[str, int]:
    """The constants a source defaults with `.ifndef NAME` / `.set NAME, number`."""
    return {m.group(1): int(m.group(3), 0) for m in _DEFAULT.finditer(text) if m.group(1) == m.group(2)}


def build_source(path: Path, constants: dict[str, int]) -> Image:
    text = read_source(path)
    try:
        elf = build_guest(text, constants)
    except AsmError as e:
        raise LoadError(f"{path.name}: does not assemble: {e}") from None
    image = load_elf(elf, path.stem)
    image.kind = "source"
    image.constants = dict(constants)
    image.defaults = source_defaults(text)
    image.elf = elf
    return image


def resolve(arg: str, constants: dict[str, int] | None = None, symbols: str | None = None,
            load_address: int = 0x100000, entry: int | None = None, cmdline: str | None = None,
            initrd: str | None = None) -> Image:
    """The Image of a guest argument; a Linux bzImage ("HdrS" in its setup header) takes the kernel
    command line, an initrd and its symbols (System.map or vmlinux) as well."""
    constants = constants or {}
    linux = _bzimage(arg, constants, symbols, cmdline, initrd)
    if linux is not None:
        return linux
    if cmdline is not None or initrd is not None:
        raise LoadError(f"{arg}: --cmdline and --initrd apply only to a Linux bzImage")
    if arg in GUESTS:
        image = build_source(guests_dir() / GUESTS[arg][0], constants)
        image.name = arg
        return image
    path = Path(arg)
    if path.suffix in SOURCE_SUFFIXES:
        return build_source(path, constants)
    if constants:
        raise LoadError(f"{arg}: -D constants apply only to assembly sources")
    if not path.exists() and "/" not in arg and not path.suffix:
        raise LoadError(f"unknown guest {arg!r} (bundled: {', '.join(GUESTS)}; or give a path)")
    return load_file(path, symbols, load_address, entry)



def _bzimage(arg: str, constants: dict[str, int], symbols: str | None, cmdline: str | None,
             initrd: str | None) -> Image | None:
    """A Linux bzImage's Image, or None when the argument is not one."""
    path = Path(arg)
    if arg in GUESTS or not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            head = f.read(0x206)
    except OSError:
        return None
    if not bzimage.is_bzimage(head):
        return None
    if constants:
        raise LoadError(f"{arg}: -D constants apply only to assembly sources")
    return bzimage.load_file(path, cmdline or "", initrd, symbols)
