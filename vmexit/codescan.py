"""Traps in the code the guest runs, without a callback per executed block.

The engine shows every block of code before it first runs (engine.watch_code: Unicorn's edge hook,
and the blocks entered without an edge), and again after the guest rewrote it. The scanner decodes
each such block once (capstone) and, when it holds an instruction one of its traps wants -- an
instruction that can open an interrupt window (sti, popf, iret), one that reads the time stamp
counter (rdtsc, rdtscp), an MSR access (rdmsr, wrmsr) -- sets a callback at the start of that block
only (engine.trap_block). That callback ends the slice right before the instruction when its trap
wants it now (an interrupt window only while an interrupt waits with IF=0; the others always); the
vCPU then handles the instruction between slices. A popf, which ends its block and falls through
(QEMU ends a translation block after popf, which may change IF or TF; the window tests at popf check
it), is looked at afterwards instead: a callback at the start of the block after it sees whether it set IF,
so the many popf that restore IF=0 in nested critical sections cost no stop; the engine calls it only
while an interrupt waits and IF is set (Trap.after_only_if: a flag and EFLAGS bits the engine checks,
without a call into Python where its compiled helper is there). Every other block runs with no
callback at all.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Trap:
    name: str
    mnemonics: frozenset[str]
    wanted: Callable[[], bool] | None = None   # None: always stop before it
    handle: Callable[[int], None] | None = None  # emulate it at this address (None: the vCPU steps it)
    #: instead of stopping before the instruction, call after(address) at the start of the block that
    #: follows it (an instruction that ends its block and falls through: popf); it decides itself
    after: Callable[[int], None] | None = None
    #: call `after` only while this engine flag is set and EFLAGS has all of `after_eflags` (checked
    #: by the engine: where it can, without a call into Python)
    after_only_if: object | None = None
    after_eflags: int = 0


class CodeScanner:
    def __init__(self, engine, read_code: Callable[[int, int], bytes | None]):
        self._engine = engine
        self._counter = engine.counter
        self._read = read_code
        self._traps: dict[str, Trap] = {}
        self._seen: dict[int, bytes] = {}                       # block start -> its bytes when decoded
        self._plans: dict[int, tuple[tuple[int, int, Trap], ...]] = {}  # block start -> (index, address, trap)
        self._hooked: set[int] = set()                          # block starts with a trap_block callback
        self._followers: dict[int, tuple[int, Trap]] = {}       # block start -> (address, trap) just before
        self.at: dict[int, Trap] = {}                           # address of a trapped instruction -> trap
        self.stopped: tuple[int, Trap] | None = None            # (address, trap) the slice was ended before
        self.paused = False                                     # stepping one instruction: no stops
        self.skip: int | None = None                            # run this address once without a stop

    def add(self, trap: Trap) -> None:
        for mnemonic in trap.mnemonics:
            self._traps[mnemonic] = trap

    def __call__(self, pc: int, size: int) -> bool:
        """A block of code before it runs: True when it needs a callback it did not have."""
        code = self._read(pc, size)
        if code is None or self._seen.get(pc) == code:
            return False
        self._seen[pc] = code
        found = [(i, address, size, self._traps[mnemonic])
                 for i, (address, size, mnemonic, _) in enumerate(_disasm().disasm_lite(code, pc))
                 if mnemonic in self._traps]
        plan = tuple((i, address, trap) for i, address, _, trap in found if trap.after is None)
        self._plans[pc] = plan
        for _, address, _, trap in found:
            self.at[address] = trap
        for _, address, size, trap in found:
            if trap.after is not None:
                self._follow(address + size, address, trap)
        if plan and pc not in self._hooked:
            self._hooked.add(pc)
            self._engine.trap_block(pc, self._on_block)
            return True
        return False

    def _follow(self, successor: int, address: int, trap: Trap) -> None:
        """A callback at the block after `address` (that block, if translated already, is forgotten so
        that it is translated again with the callback before it next runs)."""
        known = self._followers.get(successor)
        self._followers[successor] = (address, trap)
        if known is None:
            self._engine.trap_block(successor, self._on_follower, trap.after_only_if, trap.after_eflags)
            self._engine.forget_code(successor)

    def _on_follower(self, pc: int, _size: int) -> None:
        if self.paused:
            return
        address, trap = self._followers[pc]
        trap.after(address)

    def _on_block(self, pc: int, _size: int) -> None:
        if self.paused:
            return
        for index, address, trap in self._plans.get(pc, ()):
            if address == self.skip:
                self.skip = None
                continue
            if trap.wanted is None or trap.wanted():
                self.stopped = (address, trap)
                counter = self._counter
                counter.set_limit(min(counter.executed() + index, counter.limit()))
                return

    def take(self, eip: int) -> Trap | None:
        """The trap the last slice was ended for, if it ended right before that instruction."""
        stopped, self.stopped = self.stopped, None
        if stopped is not None and stopped[0] == eip:
            return stopped[1]
        return None


@functools.lru_cache(maxsize=1)
def _disasm():
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    return Cs(CS_ARCH_X86, CS_MODE_32)
