"""Exact instruction counting a block at a time: the compiled helper (_blockcount.c), built on first use.

Unicorn's count mode calls a hook before every guest instruction (about half of bare Unicorn's speed
on store-heavy code). With the helper, Unicorn runs without a count: every block starts with a C block
hook, and code is translated in one of two ways.
- Counted one by one (every block when first translated): a C code hook before each instruction adds
  one and stops the run past the limit, exactly what count mode does.
- Block-counted: a block that ran hot_threshold times, holds no instruction the engine traps (port
  I/O, CPUID, ... -- where a trap reads the count or stops the run mid-block) and is not user code
  under paging (another process may map other code at its address) is translated again with
  the code hook switched off for that one translation (its range in Unicorn's hook record set empty,
  then back: the only translations made while it is off are ours). Its block hook adds its whole
  count, or, when that would cross the limit, stops the run before it; the rest of the slice then runs
  that block counted one by one again.
The same C block hook is the engine's only one: before counting it shows the code watch a block start
it has not shown (or not with this size), and after counting it calls the block's own callbacks
(engine.trap_block) from a table, each gated on a flag and EFLAGS bits where asked -- one look-up in
C per block, where libunicorn would walk a list of every bounded block hook at each block start.
Where the guest may still be stopped inside a block-counted block, the count is settled from EIP and
the block's instruction addresses: an exception or a fault (the faulting instruction counts, as in
count mode), and an MMIO access, which is taken back (Unicorn restarts the instruction when a run is
stopped during a memory access) and made again with that block counted one by one.

The helper is our own C, compiled with the system `cc` into $XDG_CACHE_HOME/vmexit (by a hash of its
source and the Python build); binaries are never shipped. Without a compiler, with VMEXIT_PURE=1, or
if anything here fails, the engine uses count mode: the same counts, so the same traces.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import weakref
from pathlib import Path

SOURCE = Path(__file__).with_name("_blockcount.c")
STOP_NONE, STOP_CROSS, STOP_HOT, STOP_MMIO = 0, 1, 2, 3
NEW, COUNTED, NEVER = 0, 1, 2
HOT_MAX = 64
#: executions counted one by one before a block is made block-counted (few: a retranslation costs
#: about as much as a few hundred counted instructions)
HOT_THRESHOLD = 16


class Entry(ctypes.Structure):
    _fields_ = [("pc", ctypes.c_uint64), ("size", ctypes.c_uint32), ("n", ctypes.c_uint32),
                ("hits", ctypes.c_uint32), ("state", ctypes.c_uint32), ("shown", ctypes.c_uint32),
                ("trap", ctypes.c_uint32)]


class State(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("limit", ctypes.c_uint64), ("block_n", ctypes.c_uint64),
                ("block_pc", ctypes.c_uint64), ("reason", ctypes.c_uint32), ("hot_threshold", ctypes.c_uint32),
                ("stop_pc", ctypes.c_uint64), ("emu_stop", ctypes.c_void_p), ("table", ctypes.c_void_p),
                ("mask", ctypes.c_uint64), ("used", ctypes.c_uint64), ("nhot", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("hot", ctypes.c_uint64 * HOT_MAX), ("watch", ctypes.c_void_p),
                ("traps", ctypes.c_void_p), ("ntraps", ctypes.c_uint32), ("cap", ctypes.c_uint32),
                ("shown0", ctypes.c_uint32), ("pad2", ctypes.c_uint32)]


class Mmio(ctypes.Structure):
    _fields_ = [("s", ctypes.c_void_p), ("read", ctypes.c_void_p), ("write", ctypes.c_void_p)]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vmexit"


def _key(source: bytes) -> str:
    """The build's identity: the source and what the binary must match (Python build, platform)."""
    ident = [source, sys.version.encode(), platform.machine().encode(), sys.platform.encode(),
             str(sysconfig.get_config_var("SOABI")).encode()]
    return hashlib.sha256(b"\0".join(ident)).hexdigest()[:20]


def _compile(source: Path, target: Path) -> None:
    """cc into a temporary file beside the target, then an atomic rename (concurrent runs are safe)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", "-o", tmp, str(source)],
                       check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=1)
def helper() -> ctypes.CDLL | None:
    """The compiled helper, or None (VMEXIT_PURE=1, no compiler, or any failure): count mode then."""
    if os.environ.get("VMEXIT_PURE", "") not in ("", "0"):
        return None
    try:
        source = SOURCE.read_bytes()
        target = cache_dir() / f"blockcount-{_key(source)}.so"
        if not target.exists():
            _compile(SOURCE, target)
        lib = ctypes.CDLL(str(target))
        lib.bc_entry.restype = ctypes.POINTER(Entry)
        lib.bc_entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32]
        lib.bc_init.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        lib.bc_free.argtypes = [ctypes.c_void_p]
        lib.bc_trap_add.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.c_uint32]
        return lib
    except Exception:  # any failure means count mode, which gives the same results
        return None


def enabled() -> bool:
    return helper() is not None


#: Instructions that keep their block counted one by one: the engine traps them (a trap reads the
#: exact count and may end the slice right after them). Blocks with a trap_block callback (the code
#: scanner's: sti, iret, rdtsc, ...) stay counted one by one too (BlockCounting.pin).
TRAPPED = frozenset({
    "in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd", "cpuid", "hlt",
    "vmcall", "vmmcall", "ud0", "ud1", "ud2", "int", "int1", "int3", "into",
    "syscall", "sysenter", "sysexit", "sysret"})


class BlockCounter:
    """The engine's `counter` (see engine/__init__.py) over the helper's state."""

    __slots__ = ("state", "current", "_index", "__weakref__")

    def __init__(self, lib: ctypes.CDLL):
        self.state = State()
        if lib.bc_init(ctypes.byref(self.state), 1 << 14):
            raise MemoryError("block counter table")
        weakref.finalize(self, lib.bc_free, ctypes.byref(self.state))  # the table is malloc'd in C
        self.state.hot_threshold = HOT_THRESHOLD
        #: the count itself (the first field): what a trap reads as `current.value`
        self.current = ctypes.c_uint64.from_buffer(self.state)
        self._index: dict[int, dict[int, int]] = {}  # block-counted block -> {instruction address: index}

    def begin(self, limit: int) -> None:
        s = self.state
        s.count, s.limit, s.block_n, s.reason, s.nhot = 0, limit, 0, STOP_NONE, 0

    def executed(self) -> int:
        s = self.state
        return min(s.count, s.limit)

    def raw(self) -> int:
        return self.state.count

    def limit(self) -> int:
        return self.state.limit

    def stop_after_current(self) -> None:
        self.state.limit = self.state.count

    def set_limit(self, n: int) -> None:
        s = self.state
        s.limit = max(n, s.count)

    def settle(self, eip: int, done: bool) -> None:
        """Stopped at EIP inside a block-counted block (an exception, a fault, a taken-back access):
        count only its instructions before EIP, and the one at EIP if it counts (`done`)."""
        s = self.state
        n = s.block_n
        if not n:
            return
        s.block_n = 0
        k = self._index.get(s.block_pc, {}).get(eip)
        if k is not None:
            s.count = s.count - n + k + (1 if done else 0)


@functools.lru_cache(maxsize=1)
def hook_range_offset() -> int | None:
    """Offset of `begin` (followed by `end`, both uint64) in libunicorn's hook record, found on a
    throwaway engine: a handle from uc_hook_add is the record's address. None if not found."""
    from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_MODE_32, Uc
    begin, end = 0x5EB0A11F00C0DE01, 0x5EB0A11F00C0DE7F
    try:
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        handle = uc.hook_add(UC_HOOK_CODE, lambda *_: None, None, begin, end)
        raw = ctypes.string_at(handle, 64)
    except Exception:  # not what vmexit knows: count mode
        return None
    for off in range(0, 56, 8):
        if raw[off:off + 16] == begin.to_bytes(8, "little") + end.to_bytes(8, "little"):
            if int.from_bytes(raw[:4], "little") == UC_HOOK_CODE:
                return off
    return None


class HookRange:
    """The address range of one hook, rewritten in place. Unicorn decides at translation whether a
    block gets calls to a code hook (any hook whose range covers the instruction) and checks the range
    again at each call; a range of one address no 32-bit guest reaches switches the hook off for the
    translations made meanwhile, and the full range (begin > end) back on."""

    OFF, ON = (2**64 - 1, 2**64 - 1), (1, 0)

    def __init__(self, handle: int, offset: int):
        self._begin = ctypes.c_uint64.from_address(handle + offset)
        self._end = ctypes.c_uint64.from_address(handle + offset + 8)

    def set(self, bounds: tuple[int, int]) -> None:
        self._begin.value, self._end.value = bounds


class BlockCounting:
    """The helper's hooks on one Uc, and what Python does when the helper stops a run."""

    def __init__(self, uc, lib: ctypes.CDLL, read_code):
        self.uc = uc
        self.lib = lib
        self.counter = BlockCounter(lib)
        self.read_code = read_code          # (address, size) -> bytes | None, linear addresses
        self._gate: HookRange | None = None         # the code hook's range
        self._block_gate: HookRange | None = None   # the block hook's
        self._pinned: set[int] = set()      # block starts with a callback of their own: never block-counted
        self._watching = False              # the block hook shows every block start to the code watch
        #: () -> bool: whether the code at EIP runs in user mode under paging, where another address
        #: space may map other code at the same address (see _count_blocks_of)
        self.user_paged = lambda: False
        self._gates: list = []

    def install(self) -> None:
        """The block and code hooks, before anything is translated (translations made before would
        carry neither: they are dropped)."""
        from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, UcError
        from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib
        s = self.counter.state
        s.emu_stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        handles = []
        for htype, fn in ((UC_HOOK_BLOCK, self.lib.bc_block), (UC_HOOK_CODE, self.lib.bc_code)):
            handle = uc_hook_h()
            status = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), htype, ctypes.cast(fn, ctypes.c_void_p),
                                       ctypes.cast(ctypes.byref(s), ctypes.c_void_p), ctypes.c_uint64(1),
                                       ctypes.c_uint64(0))
            if status:
                raise UcError(status)
            handles.append(handle.value)
        self._block_gate = HookRange(handles[0], hook_range_offset())
        self._gate = HookRange(handles[1], hook_range_offset())
        # Without exits, each emu_start no longer ends by dropping the translation at its `until`
        # address: that look-up of the code page faults under paging (setting CR2 and the pending
        # exception), so stopping and resuming inside a slice would change the guest; the engine does
        # it once per slice instead, as count mode does (UnicornEngine._run_blocks).
        self.uc.ctl_exits_enabled(True)
        self.uc.ctl_flush_tb()

    def add_trap(self, address: int, fn_ptr, flag: ctypes.c_int32 | None = None, eflags_at: int | None = None,
                 bits: int = 0) -> None:
        """fn_ptr(address, size) at the start of the block at `address` (after its callbacks added
        before), from the helper's block hook; with `flag`, only while it is set and the EFLAGS at
        `eflags_at` has `bits`. The block stays counted one by one (pin)."""
        self.pin(address)
        self._gates.append((fn_ptr, flag))  # the helper holds pointers to both
        status = self.lib.bc_trap_add(ctypes.byref(self.counter.state), address,
                                      ctypes.cast(fn_ptr, ctypes.c_void_p),
                                      None if flag is None else ctypes.addressof(flag), eflags_at, bits)
        if status:
            raise MemoryError("block callback table")

    def watch(self, fn_ptr) -> None:
        """fn_ptr(address, size) from the helper's block hook for each block start it has not shown,
        or not with this size (the guest rewrote the code there), before the block's counting."""
        self._gates.append(fn_ptr)
        self.counter.state.watch = ctypes.cast(fn_ptr, ctypes.c_void_p).value
        self._watching = True

    def map_mmio(self, base: int, size: int, read_ptr, write_ptr) -> None:
        """uc_mmio_map with the helper's callbacks in front of read_ptr and write_ptr (bc_mmio_read,
        bc_mmio_write: they take back an access from a block-counted block, see take_back)."""
        from unicorn import UcError
        from unicorn.unicorn_py3.unicorn import uclib
        mmio = Mmio(ctypes.addressof(self.counter.state), ctypes.cast(read_ptr, ctypes.c_void_p).value,
                    ctypes.cast(write_ptr, ctypes.c_void_p).value)
        self._gates.append(mmio)  # libunicorn holds a pointer to it
        user = ctypes.cast(ctypes.byref(mmio), ctypes.c_void_p)
        status = uclib.uc_mmio_map(self.uc._uch, base, size, ctypes.cast(self.lib.bc_mmio_read, ctypes.c_void_p),
                                   user, ctypes.cast(self.lib.bc_mmio_write, ctypes.c_void_p), user)
        if status:
            raise UcError(status)

    def entry(self, pc: int) -> Entry:
        return self.lib.bc_entry(ctypes.byref(self.counter.state), pc, 0).contents

    def pin(self, pc: int) -> None:
        """A callback at the block at `pc`: it stays counted one by one (its callback may stop the run
        inside it)."""
        self._pinned.add(pc)
        e = self.entry(pc)
        # every caller of trap_block has the block translated again before it runs (a second removal
        # here could look up an unmapped page twice: a double fault in Unicorn's CPU state)
        e.state, e.n = NEVER, 0

    def forget(self, pc: int, state: int = NEW) -> None:
        """The block at `pc` is translated anew (counted one by one) before it next runs."""
        e = self.entry(pc)
        e.state = NEVER if pc in self._pinned else state
        e.n = e.hits = 0
        self.uc.ctl_remove_cache(pc, pc + 1)

    def stopped(self, eip: int) -> int:
        """The helper (or a taken-back MMIO access) stopped the run at `eip`: do what it stopped for.
        Returns the reason (STOP_NONE: the run ended for another reason)."""
        s = self.counter.state
        reason = s.reason
        if reason == STOP_NONE:
            return reason
        s.reason = STOP_NONE
        if reason == STOP_HOT:
            hot = list(s.hot[:s.nhot])
            s.nhot = 0
            for pc in hot:
                # only the block at EIP is surely mapped now (a look-up of an unmapped page would
                # fault inside Unicorn); any other becomes hot again when it next runs
                if pc == eip:
                    self._count_blocks_of(pc)
                else:
                    self.entry(pc).hits = 0
        elif reason == STOP_CROSS:
            self.forget(s.stop_pc)
        return reason

    def take_back(self, eip: int) -> None:
        """An MMIO access inside a block-counted block was taken back (the run stopped during it, so
        Unicorn restarts its instruction at EIP): count up to EIP; the block is counted one by one from
        now on, where the access is made again."""
        pc = self.counter.state.block_pc
        self.counter.settle(eip, done=False)
        self.forget(pc, NEVER)

    def _count_blocks_of(self, pc: int) -> None:
        """Make the hot block at `pc` block-counted, if nothing in it is trapped; else translate it
        without the block hook (counted one by one, as in count mode, and at count mode's cost)."""
        e = self.entry(pc)
        e.hits = 0
        # Entries are by linear address, and a block-counted translation is checked by nothing when
        # it runs: user code under paging stays counted one by one, since two processes can map
        # different code at one address, each with its translation cached (kernel code is the same
        # in every address space; code rewritten in place is translated anew and caught by bc_code).
        countable = e.state == NEW and pc not in self._pinned and not self.user_paged()
        index = self._decode(pc, e.size) if countable else None
        if index is None:
            e.state = NEVER
            # a block with callbacks keeps the block hook that calls them, and every block does while
            # the hook shows blocks to the code watch (the same address may hold other code later)
            if pc not in self._pinned and not self._watching:
                self._translate(pc, self._block_gate)
            return
        icount, size = self._translate(pc, self._gate)
        if (icount, size) != (len(index), e.size):
            self.uc.ctl_remove_cache(pc, pc + 1)  # not the block decoded: never run it uncounted
            e.state = NEVER
            return
        self.counter._index[pc] = index
        e.n, e.state = icount, COUNTED

    def _translate(self, pc: int, without: HookRange) -> tuple[int, int]:
        """Translate the block at `pc` again with one of the helper's hooks off: (instructions, size).
        Only this translation is made while it is off."""
        self.uc.ctl_remove_cache(pc, pc + 1)
        without.set(HookRange.OFF)
        try:
            _, icount, size = self.uc.ctl_request_cache(pc)
        finally:
            without.set(HookRange.ON)
        return icount, size

    def _decode(self, pc: int, size: int) -> dict[int, int] | None:
        """{address: index} of the block's instructions, or None if it holds a trapped instruction or
        does not decode to exactly `size` bytes."""
        code = self.read_code(pc, size)
        if not code or len(code) != size:
            return None
        index, end = {}, pc
        for i, (address, length, mnemonic, _) in enumerate(_disasm().disasm_lite(code, pc)):
            if mnemonic.split()[-1] in TRAPPED:
                return None
            index[address] = i
            end = address + length
        return index if end == pc + size else None


@functools.lru_cache(maxsize=1)
def _disasm():
    from capstone import CS_ARCH_X86, CS_MODE_32, Cs
    return Cs(CS_ARCH_X86, CS_MODE_32)
