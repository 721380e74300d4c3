"""Assemble guest sources with keystone and wrap them in a multiboot ELF32 file.

Sources are Intel-syntax assembly. Comments start with `#` and are stripped before keystone sees the
text (keystone reads `;` as a statement separator). `-D NAME=VALUE` constants are prepended as `.set`
lines; sources give defaults with `.ifndef NAME` / `.set NAME, default` / `.endif`.

Keystone reports no symbols, so label addresses are recovered by assembling the source followed by a
table `.long label1, label2, ...` and reading the table back from the end of the output. Labels
starting with `.L` are local (loop targets) and are not exported, as with the GNU assembler.

The ELF has one PT_LOAD segment (RWX) at the source's load address, a .text section covering it and a
.symtab of STT_FUNC symbols, so that pyelftools, QEMU's multiboot loader and objdump all read it.
"""
from __future__ import annotations

import functools
import re
import struct
from typing import TYPE_CHECKING

from .errors import VmexitError

# keystone is imported where a source is assembled, so that this module (AsmError) loads without it
if TYPE_CHECKING:
    from keystone import Ks, KsError

LOAD_ADDRESS = 0x100000
_LABEL = re.compile(r"^\s*([A-Za-z_][\w$]*)\s*:")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


class AsmError(VmexitError):
    """A guest source that does not assemble."""


def strip_comments(line: str) -> str:
    out, quote = [], None
    for ch in line:
        if quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            out.append(ch)
        elif ch == "#":
            break
        else:
            out.append(ch)
    return "".join(out).rstrip()


_NUMBER_FIRST = re.compile(r"^\(?\s*(0x[0-9a-fA-F]+|\d+)\s*[-+*/|&]\s*\(?\s*[A-Za-z_]")


_MEMORY = re.compile(r"\[([^\]]*)\]")
_IDENT = re.compile(r"(?<![\w.])[A-Za-z_.][\w.]*")  # not the x of 0x40
_REGISTERS = frozenset("eax ebx ecx edx esi edi esp ebp ax bx cx dx si di sp bp al bl cl dl ah bh ch dh "
                       "cs ds es fs gs ss".split())


def _check_operands(line: str, number: int) -> None:
    """Refuse, with a clear message, what keystone silently misassembles: an operand `NUMBER + SYMBOL`
    (it becomes a memory operand) and a memory operand with two symbols (all but the last dropped)."""
    text = _LABEL.sub("", line).strip()
    if not text or text.startswith("."):
        return
    parts = text.split(None, 1)
    if parts and parts[0].lower() == "iret":
        raise AsmError(f"line {number}: `iret`: keystone assembles it as the 16-bit iret (66 cf); write iretd")
    if len(parts) < 2:
        return
    for operand in parts[1].split(","):
        if "[" not in operand and _NUMBER_FIRST.match(operand.strip()):
            raise AsmError(f"line {number}: `{text}`: keystone misassembles an operand that starts with a "
                           f"number followed by a symbol; write the symbol first or use a .set constant")
    for inner in _MEMORY.findall(parts[1]):
        names = [t for t in _IDENT.findall(inner) if t.lower() not in _REGISTERS]
        if len(names) > 1:
            raise AsmError(f"line {number}: `{text}`: keystone keeps only the last symbol of a memory operand "
                           f"(`[{inner}]` would address {names[-1]} alone); name the sum with .set first")


_CONDITIONAL = re.compile(r"\s*\.(if|ifdef|ifndef|else|endif)\b")


def _prepare(source: str, constants: dict[str, int]) -> tuple[str, list[tuple[str, tuple]]]:
    """The body to assemble, and each label with the conditional blocks it sits in
    (a tuple of (directive line, in its .else branch))."""
    lines = [strip_comments(line) for line in source.splitlines()]
    labels = []
    blocks: list[tuple[str, bool]] = []
    for number, line in enumerate(lines, 1):
        _check_operands(line, number)
        cond = _CONDITIONAL.match(line)
        if cond:
            kind = cond.group(1)
            if kind == "endif":
                if blocks:
                    blocks.pop()
            elif kind == "else":
                if blocks:
                    blocks[-1] = (blocks[-1][0], True)
            else:
                blocks.append((line.strip(), False))
            continue
        m = _LABEL.match(line)
        if m and not m.group(1).startswith(".L"):
            labels.append((m.group(1), tuple(blocks)))
    header = [f".set {k}, {int(v)}" for k, v in constants.items()]
    body = "\n".join(header + [ln for ln in lines if ln.strip()])
    return body, labels


def _table_entry(name: str, blocks: tuple) -> str:
    """`.long label` under the label's own conditions, `.long 0` where it is not assembled: every
    entry is one dword whichever way the conditions go, so the table can be read back by position."""
    if not blocks:
        return f".long {name}"
    (directive, in_else), rest = blocks[0], blocks[1:]
    inner = _table_entry(name, rest)
    if in_else:
        return f"{directive}\n.long 0\n.else\n{inner}\n.endif"
    return f"{directive}\n{inner}\n.else\n.long 0\n.endif"


@functools.lru_cache(maxsize=64)
def _assemble_cached(source: str, constants: tuple[tuple[str, int], ...], base: int) -> tuple[bytes, tuple]:
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks, KsError
    body, entries = _prepare(source, dict(constants))
    table = "\n".join(_table_entry(name, blocks) for name, blocks in entries)
    labels = [name for name, _ in entries]
    ks = Ks(KS_ARCH_X86, KS_MODE_32)
    try:
        encoding, _ = ks.asm(body + "\n" + table + "\n", base)
    except KsError as e:
        raise AsmError(_locate_error(ks, body, base, e)) from None
    if encoding is None:
        raise AsmError("keystone produced no code")
    code = bytes(encoding)
    n = 4 * len(labels)
    addresses = struct.unpack(f"<{len(labels)}I", code[len(code) - n:]) if labels else ()
    # 0: a label in a conditional block that was not assembled
    return code[: len(code) - n], tuple((n_, a) for n_, a in zip(labels, addresses) if a)


def _locate_error(ks: Ks, body: str, base: int, error: KsError) -> str:
    """Name the first statement keystone rejects (binary search over prefixes, on the error path only)."""
    from keystone import KsError
    lines = body.splitlines()

    def fails(n: int) -> bool:
        try:
            ks.asm("\n".join(lines[:n]) + "\n", base)
        except KsError as e:
            return "SYMBOL" not in str(e).upper() and "MISSING" not in str(e).upper()
        return False

    lo, hi = 1, len(lines)
    if not fails(hi):
        return f"keystone: {error}"
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return f"keystone: {error} in `{lines[lo - 1].strip()}`"


def assemble(source: str, constants: dict[str, int] | None = None, base: int = LOAD_ADDRESS) -> tuple[bytes, dict[str, int]]:
    """Machine code and {label: address} for a source assembled at `base`."""
    constants = constants or {}
    for k, v in constants.items():
        if not _NAME.match(k):
            raise AsmError(f"bad constant name {k!r}")
        if not -(1 << 31) <= v < 1 << 32:  # keystone would silently drop the bits above 32
            raise AsmError(f"-D {k}={v}: a 32-bit guest's constant: give {-(1 << 31)} to {(1 << 32) - 1}")
    code, symbols = _assemble_cached(source, tuple(sorted(constants.items())), base)
    return code, dict(symbols)


def _strtab(names: list[str]) -> tuple[bytes, dict[str, int]]:
    blob, index = bytearray(b"\0"), {}
    for n in names:
        index[n] = len(blob)
        blob += n.encode() + b"\0"
    return bytes(blob), index


def build_elf(code: bytes, symbols: dict[str, int], entry: int, base: int = LOAD_ADDRESS,
              bss: int = 0) -> bytes:
    """A minimal ELF32 i386 executable: one PT_LOAD (memsz = code + bss), .text, .symtab, .strtab."""
    text_off = 0x1000
    names = sorted(symbols, key=lambda n: (symbols[n], n))
    strtab, stridx = _strtab(names)
    shstrtab, shidx = _strtab([".text", ".symtab", ".strtab", ".shstrtab"])
    ends = sorted(set(symbols.values())) + [base + len(code)]
    syms = bytearray(16)  # the null symbol
    for n in names:
        addr = symbols[n]
        nxt = next((e for e in ends if e > addr), addr)
        # st_name, st_value, st_size, st_info (GLOBAL<<4 | FUNC), st_other, st_shndx (.text = 1)
        syms += struct.pack("<IIIBBH", stridx[n], addr, nxt - addr, (1 << 4) | 2, 0, 1)
    body = bytearray(code)
    symtab_off = text_off + len(body)
    symtab_off += -symtab_off % 4
    strtab_off = symtab_off + len(syms)
    shstr_off = strtab_off + len(strtab)
    sh_off = shstr_off + len(shstrtab)
    sh_off += -sh_off % 4
    out = bytearray()
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    out += ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, entry, 52, sh_off, 0, 52, 32, 1, 40, 5, 4)
    # PT_LOAD, offset, vaddr, paddr, filesz, memsz, flags RWX, align
    out += struct.pack("<IIIIIIII", 1, text_off, base, base, len(body), len(body) + bss, 7, 0x1000)
    out += bytes(text_off - len(out))
    out += body
    out += bytes(symtab_off - len(out))
    out += syms + strtab + shstrtab
    out += bytes(sh_off - len(out))
    out += bytes(40)  # null section
    out += struct.pack("<IIIIIIIIII", shidx[".text"], 1, 7, base, text_off, len(body), 0, 0, 16, 0)
    out += struct.pack("<IIIIIIIIII", shidx[".symtab"], 2, 0, 0, symtab_off, len(syms), 3, 1, 4, 16)
    out += struct.pack("<IIIIIIIIII", shidx[".strtab"], 3, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0)
    out += struct.pack("<IIIIIIIIII", shidx[".shstrtab"], 3, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0)
    return bytes(out)


def build_guest(source: str, constants: dict[str, int] | None = None, entry_label: str = "_start",
                bss: int = 0) -> bytes:
    """Assemble a guest source into a multiboot ELF32 file (bytes)."""
    code, symbols = assemble(source, constants)
    if entry_label not in symbols:
        raise AsmError(f"the source has no {entry_label!r} label (the entry point)")
    return build_elf(code, symbols, symbols[entry_label], bss=bss)
