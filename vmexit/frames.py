"""Exits where the guest's frame is not set up: the return address found from ESP, proven twice.

The frame-pointer walk (stacks.py) takes [EBP + 4] as the caller. That holds only once the function has
run `push ebp; mov ebp, esp` and until `leave` / `pop ebp`. gcc shrink-wraps small functions: Linux
6.1's `ioread16` does `cmp; jbe; mov edx, eax; in ax, dx; movzx; ret` and builds a frame only on its
slow path, `native_apic_mem_write` never builds one. At an exit there EBP is still the caller's frame:
[EBP + 4] is the caller's caller, and the stack misses a level (`__handle_irq_event_percpu` named as
`ioread16`'s caller instead of `rtl8139_interrupt`).

Given the guest's function starts (its symbols' addresses; a guest without symbols keeps the plain
walk), an exit's return address is found in two steps, each cached so that the exit path pays a set
lookup for every exit and a little more only at such exits:

1. Static, once per distinct exit address (`FrameAnalysis.slot`): the code of the function holding
   the address (from the last start at or below it to the next start) is walked from its start along
   its control flow (capstone; jumps inside the function, both ways of a conditional, a call returns
   to the next instruction, ret / an indirect or outward jump ends a path), tracking how many bytes it
   pushed below its entry ESP (push/pop, sub/add esp, lea esp, leave, enter, ...) and what EBP holds:
   still the caller's, the function's own standard frame (`mov ebp, esp` right after `push ebp`, at
   depth 4), or anything else. Where paths meet with different facts, the facts become unknown. When
   at the exit address EBP is provably still the caller's and the depth k is known, the return address
   is at [ESP + k]; where the frame is set up or the facts are unknown the plain walk is used, exactly
   as without symbols. An address the walk does not reach (code past a `ret` with no symbol of its
   own: the stubs of Xen's hypercall page after the first) is tried with k = 0 when [ESP] follows a
   direct `call T` and the walk from T reaches the address with nothing pushed and EBP untouched.
2. Dynamic, at the exit: the dword R = [ESP + k] is accepted only if R is the instruction after a call
   in its own function, whose analysis has the standard frame set up there at a known depth d, and
   EBP == ESP + k + d (the caller's frame pointer sits exactly where that call site's frame puts it).
   This rejects a "function start" that is not entered by a call (an entry point, an interrupt stub,
   an assembly label inside a function, a frameless caller): its [ESP + k] would have to be a call
   site whose frame matches EBP to the byte. When rejected, the plain walk is used.

When accepted, the exit's caller is R and its stack is R followed by the chain walked from EBP as
always (the caller's frame). Deterministic: the analysis reads the guest's code at the first exit at
an address (the same run reads the same bytes), and is kept for the run. Code patched later (Linux's
static keys) keeps the first analysis; step 2 still checks every exit.

Code below every function start (a Linux guest's user space: the symbols are the kernel's) gets no
caller and an empty stack: its EBP is whatever that code keeps there (busybox has no frame pointers),
and a walk from it named kernel functions as the callers of user code.

Not covered (the plain walk stays): a frameless function called from another frameless one (its caller
has no frame to check against), an exit after `and esp, -16` or an alloca before the frame exists
(depth unknown), code reached only through a jump table. Cost, measured with a guest of 200,000 port
exits (CPU time, Unicorn with the block-counting helper): an exit where the frame is set up 2.7 ->
2.9 us (the set lookup), one at a frameless leaf 2.6 -> 4.1 us (the ESP read through the engine, the
dword, two dict lookups, the chain). Linux's net workload: 15,695 of its 37,163 exits are of this kind.
"""
from __future__ import annotations

import bisect
import functools
import struct
from typing import Callable

MAX_FUNCTION = 1 << 16   # bytes from a start analysed at most (a start with no next one is bounded so)
PAGE = 0x1000
CACHE_LIMIT = 1 << 16    # return addresses remembered (then the caches start afresh)
UNREACHED = -1           # slot(): the exit address is not reached from its symbol
_JUMP = 1                # capstone's CS_GRP_JUMP

# what EBP holds
ENTRY = 0    # the caller's EBP (the function has not changed it, or restored it)
FRAMED = 1   # the function's own standard frame: EBP = entry ESP - 4, [EBP] = caller's EBP
OTHER = 2    # anything else (unknown)

#: a state: (depth below the entry ESP in bytes or None, EBP's kind, depth at which the caller's EBP
#: was pushed or -1)
State = tuple


def _merge(a: State, b: State) -> State:
    return (a[0] if a[0] == b[0] else None, a[1] if a[1] == b[1] else OTHER, a[2] if a[2] == b[2] else -1)


@functools.lru_cache(maxsize=1)
def _capstone():
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    md = Cs(CS_ARCH_X86, CS_MODE_32)
    md.detail = True
    return md


@functools.lru_cache(maxsize=1)
def _regs():
    from capstone import x86
    esp = frozenset({x86.X86_REG_ESP, x86.X86_REG_SP, x86.X86_REG_SPL})
    ebp = frozenset({x86.X86_REG_EBP, x86.X86_REG_BP, x86.X86_REG_BPL})
    return esp, ebp, x86.X86_OP_REG, x86.X86_OP_IMM, x86.X86_OP_MEM, x86.X86_REG_EBP, x86.X86_REG_ESP


@functools.lru_cache(maxsize=1)
def _cs_error():
    from capstone import CsError
    return CsError


#: pushes of no operand and their size (capstone's names in 32-bit mode: pushf is the 16-bit one)
_PUSHES = {"pushal": 32, "pushad": 32, "pushfd": 4, "pushf": 2}
_STOPS = frozenset({"ret", "retf", "ljmp", "lcall", "iret", "iretd", "ud2", "int3",
                    "sysenter", "sysexit", "syscall", "sysret"})


class Function:
    """One function's analysis: the state before every instruction reached from its start, and the
    addresses right after its calls (return sites)."""

    def __init__(self, start: int, code: bytes):
        self.start, self.end, self._code = start, start + len(code), code
        self.states: dict[int, State] = {}
        self.returns: set[int] = set()
        self._insns: dict[int, object] = {}
        self._walk()
        self._insns.clear()
        self._code = b""

    def _insn(self, address: int):
        insn = self._insns.get(address)
        if insn is None and self.start <= address < self.end:
            offset = address - self.start
            for insn_ in _capstone().disasm(self._code[offset:offset + PAGE], address):
                if insn_.address in self._insns:
                    break
                self._insns[insn_.address] = insn_
            insn = self._insns.get(address)
        return insn

    def _walk(self) -> None:
        states, work = self.states, [self.start]
        states[self.start] = (0, ENTRY, -1)
        while work:
            address = work.pop()
            insn = self._insn(address)
            if insn is None:
                continue
            for target, state in self._step(insn, states[address]):
                if not self.start <= target < self.end:
                    continue
                old = states.get(target)
                new = state if old is None else _merge(old, state)
                if new != old:
                    states[target] = new
                    work.append(target)

    def _step(self, insn, state: State) -> list[tuple[int, State]]:
        """The successors of one instruction and the state each gets."""
        m, nxt = insn.mnemonic, insn.address + insn.size
        if m in _STOPS:
            return []
        ops = insn.operands
        if m == "jmp":
            return [(ops[0].imm, state)] if ops and ops[0].type == _regs()[3] else []
        if m == "call":
            target = ops[0].imm if ops and ops[0].type == _regs()[3] else None
            if target == nxt:   # `call 1f; 1: pop reg`: a push of the address
                return [(nxt, _push(state, 4))]
            self.returns.add(nxt)
            return [(nxt, state)]
        if insn.group(_JUMP):   # jcc, loop, jecxz (an indirect or far one ends the path)
            return [(ops[0].imm, state), (nxt, state)] if ops and ops[0].type == _regs()[3] else []
        return [(nxt, _effect(insn, state))]


def _push(state: State, size: int) -> State:
    depth, kind, saved = state
    return (None if depth is None else depth + size, kind, saved)


def _effect(insn, state: State) -> State:
    """The state after a straight-line instruction."""
    esp_regs, ebp_regs, REG, IMM, MEM, EBP, ESP = _regs()
    m, ops = insn.mnemonic, insn.operands
    depth, kind, saved = state
    if m == "push":
        size = ops[0].size if ops and ops[0].size in (2, 4) else 4
        if ops and ops[0].type == REG and ops[0].reg == EBP and kind == ENTRY and depth is not None:
            saved = depth + size
        return (None if depth is None else depth + size, kind, saved)
    if m == "pop":
        if ops and ops[0].type == REG and ops[0].reg in ebp_regs:
            if kind == FRAMED and depth == 4:
                return (0, ENTRY, -1)
            if kind != FRAMED and depth is not None and depth == saved:   # the caller's EBP, pushed here
                return (depth - 4, ENTRY, -1)
            return (None if depth is None else depth - 4, OTHER, -1)
        if ops and ops[0].type == REG and ops[0].reg in esp_regs:
            return (None, kind, -1)
        depth = None if depth is None else depth - (ops[0].size if ops and ops[0].size in (2, 4) else 4)
        return (depth, kind, saved if depth is not None and saved <= depth else -1)
    if m in _PUSHES:
        return _push(state, _PUSHES[m])
    if m in ("popal", "popad"):
        return (None if depth is None else depth - 32, OTHER, -1)
    if m in ("popfd", "popf"):
        depth = None if depth is None else depth - (4 if m == "popfd" else 2)
        return (depth, kind, saved if depth is not None and saved <= depth else -1)
    if m == "leave":
        return (0, ENTRY, -1) if kind == FRAMED else (None, OTHER, -1)
    if m == "enter":
        if kind == ENTRY and depth == 0 and ops[1].imm == 0:
            return (4 + ops[0].imm, FRAMED, -1)
        return (None, OTHER, -1)
    if m in ("int", "into", "hlt", "nop"):
        return state
    return _moves(insn, state)


def _moves(insn, state: State) -> State:
    """mov / lea / add / sub on ESP and EBP; any other write to them makes what it wrote unknown."""
    esp_regs, ebp_regs, REG, IMM, MEM, EBP, ESP = _regs()
    m, ops = insn.mnemonic, insn.operands
    depth, kind, saved = state
    try:
        written = set(insn.regs_access()[1])
    except _cs_error():   # capstone without access details for this instruction: assume the worst
        written = esp_regs | ebp_regs
    if not written & (esp_regs | ebp_regs):
        return state
    dst = ops[0] if ops and ops[0].type == REG else None
    src = ops[1] if len(ops) > 1 else None
    if dst is not None and dst.reg == EBP:
        if m == "mov" and src.type == REG and src.reg == ESP and kind == ENTRY and depth == 4 and saved == 4:
            return (4, FRAMED, -1)
        return (depth, OTHER, saved)   # the caller's EBP may still be saved: `pop ebp` there restores it
    if dst is not None and dst.reg == ESP and not written & ebp_regs:
        if m == "mov" and src.type == REG and src.reg == EBP:
            return (4 if kind == FRAMED else None, kind, -1)
        if m in ("add", "sub") and src.type == IMM and depth is not None:
            imm = (src.imm + (1 << 31)) % (1 << 32) - (1 << 31)   # a 32-bit immediate, signed
            depth = depth - imm if m == "add" else depth + imm
            return (depth, kind, saved if saved <= depth else -1)
        if m == "lea" and src.type == MEM and src.mem.index == 0 and src.mem.segment == 0:
            if src.mem.base == ESP and depth is not None:
                depth -= src.mem.disp
                return (depth, kind, saved if saved <= depth else -1)
            if src.mem.base == EBP and kind == FRAMED:
                return (4 - src.mem.disp, kind, -1)
        return (None, kind, -1)
    esp_written = bool(written & esp_regs)
    return (None if esp_written else depth, OTHER if written & ebp_regs else kind, -1 if esp_written else saved)


class FrameAnalysis:
    """Per exit address: where the return address is while the frame is not set up (see the module
    docstring, step 1), and per return address the depth of its caller's frame (step 2)."""

    def __init__(self, starts, read_code: Callable[[int, int], bytes | None]):
        self._starts = sorted({int(a) for a in starts})
        self._read = read_code
        self._functions: dict[int, Function | None] = {}
        self.depths: dict[int, int | None] = {}   # frame_depth's answers, by return address
        self._targets: dict[int, int | None] = {}   # return address -> the direct call's target

    def function(self, address: int, start: int | None = None) -> Function | None:
        """The analysis of the function holding address: from the last start at or below it, or from
        `start` (a call's target); either ends at the next start above it."""
        i = bisect.bisect_right(self._starts, address if start is None else start) - 1
        if start is None:
            if i < 0:
                return None
            start = self._starts[i]
        function = self._functions.get(start)
        if function is None:
            end = self._starts[i + 1] if i + 1 < len(self._starts) else start + MAX_FUNCTION
            function = self._functions[start] = Function(start, self._code(start, min(end, start + MAX_FUNCTION)))
        return function if start <= address < function.end else None

    def _code(self, start: int, end: int) -> bytes:
        """The bytes from start to end, or up to the first page that cannot be read."""
        out, at = bytearray(), start
        while at < end:
            chunk = min(end, (at & ~(PAGE - 1)) + PAGE) - at
            raw = self._read(at, chunk)
            if not raw:
                break
            out += raw
            if len(raw) < chunk:
                break
            at += chunk
        return bytes(out)

    def covers(self, rip: int) -> bool:
        """Whether rip lies at or above the first function start: code below every symbol (a Linux
        guest's user space under a kernel's System.map) has no frame convention we know."""
        return bool(self._starts) and rip >= self._starts[0]

    def slot(self, rip: int) -> int | None:
        """k when at rip the return address is at [ESP + k] (EBP still the caller's); UNREACHED when
        the analysis from rip's symbol does not reach it; else None (the plain walk)."""
        function = self.function(rip)
        if function is None:
            return None
        state = function.states.get(rip)
        if state is None:
            return UNREACHED
        if state[1] != ENTRY or state[0] is None or state[0] < 0:
            return None
        return state[0]

    def entered(self, rip: int, ret: int) -> bool:
        """For an unreached rip (code past a `ret` at no symbol of its own, as the stubs of Xen's
        hypercall page): whether `ret` follows a direct call to a start from which rip is reached with
        nothing pushed and EBP untouched (the return address is then at [ESP])."""
        target = self._targets.get(ret, UNREACHED)
        if target == UNREACHED:
            raw = self._read((ret - 5) & 0xFFFFFFFF, 5)
            target = (ret + struct.unpack_from("<i", raw, 1)[0]) & 0xFFFFFFFF \
                if raw and len(raw) == 5 and raw[0] == 0xE8 else None
            if len(self._targets) >= CACHE_LIMIT:
                self._targets.clear()
            self._targets[ret] = target
        if target is None or target > rip:
            return False
        function = self.function(rip, start=target)
        return function is not None and function.states.get(rip) == (0, ENTRY, -1)

    def frame_depth(self, ret: int) -> int | None:
        """d when ret follows a call in a function whose standard frame is set up there at depth d (its
        EBP is then the ESP after the return + d - 4), else None."""
        if ret in self.depths:
            return self.depths[ret]
        function = self.function(ret)
        d = None
        if function is not None and ret in function.returns:
            state = function.states.get(ret)
            if state is not None and state[1] == FRAMED and state[0] is not None:
                d = state[0]
        if len(self.depths) >= CACHE_LIMIT:
            self.depths.clear()
        self.depths[ret] = d
        return d


_DWORD = struct.Struct("<I").unpack_from


class FramelessExits:
    """The exit path's side of it: `framed` holds the addresses known to take the plain walk (a set
    lookup per exit in the vCPU); `walk(rip, ebp, paging)` gives (caller, stack id) for the others."""

    def __init__(self, analysis: FrameAnalysis, walker, esp: Callable[[], int], ram,
                 read_virtual: Callable[[int, int], bytes | None]):
        self.analysis = analysis
        self.framed: set[int] = set()
        self._outside: set[int] = set()   # exit addresses below every symbol: no caller, no stack
        self._slots: dict[int, int] = {}
        self._walker = walker
        self._esp = esp
        self._ram = ram
        self._read_virtual = read_virtual
        self._depths = analysis.depths   # read first on the exit path

    def walk(self, rip: int, ebp: int, paging: bool) -> tuple[int, int]:
        walker, analysis = self._walker, self.analysis
        k = self._slots.get(rip)
        if k is None:
            if rip in self._outside:
                return 0, 0
            if not analysis.covers(rip):   # EBP there is whatever that code keeps in it
                self._outside.add(rip)
                return 0, 0
            k = analysis.slot(rip)
            if k is None:
                self.framed.add(rip)
                return walker.walk_virtual(ebp) if paging else walker.walk(ebp)
            self._slots[rip] = k
        at = (self._esp() + (k if k > 0 else 0)) & 0xFFFFFFFF
        if paging:
            ret = self._dword(at)
        else:
            ram = self._ram
            ret = _DWORD(ram, at)[0] if at + 4 <= len(ram) else None
        if ret is not None and (k != UNREACHED or analysis.entered(rip, ret)):
            d = self._depths.get(ret, UNREACHED)
            if d == UNREACHED:
                d = analysis.frame_depth(ret)
            if d is not None and (at + d) & 0xFFFFFFFF == ebp:
                return walker.walk_under(ret, ebp, paging)
        return walker.walk_virtual(ebp) if paging else walker.walk(ebp)

    def _dword(self, address: int) -> int | None:
        """A dword at a linear address under the guest's paging."""
        raw = self._read_virtual(address, 4)
        return None if raw is None else _DWORD(raw)[0]
