"""Exit stacks: the guest's frame-pointer chain at every exit, interned into a table of unique stacks.

At an exit the chain is followed from EBP: [EBP] is the caller's EBP and [EBP+4] the return address
into the caller (cdecl with frame pointers: `push ebp; mov ebp, esp`). It ends, without an error, at
DEPTH return addresses, or at a frame that is zero, outside RAM (or unmapped under guest paging),
misaligned, repeats an earlier frame (a loop), or holds a zero return address. The exit's own EBP is
read as the one-deep caller always was (the exit record's `caller` is the chain's first address).

A stack is the tuple of return addresses, innermost first (the exit's own address is in the record).
Stacks are interned (StackTable: a dict from tuple to id), so memory grows with the distinct stacks,
never with the exits; id 0 is the empty stack. A trace stores the table as `Stacks`: every stack's
frames in one flat array and where each starts.

Under paging (the vCPU's flag, read from CR0 at every slice start) each frame is read through the
guest's page tables.

Speed (the exit path): while the guest does not page, a walk reads RAM straight from the mmap, and is
remembered per EBP as a struct layout that unpacks exactly the frames (EBP, return address pairs) it
read, with their values. The next exit with that EBP unpacks them in one call and reuses the stack when
they are unchanged: exact, since the walk depends on nothing else, and locals between the frames may
change freely. A few walks are kept per EBP (one EBP is reached through several call paths).

At an exit where the function has not set up its frame (frames.py), the stack is the return address
found there followed by the chain from EBP (`walk_under`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEPTH = 32            # return addresses kept per stack
CACHE_ENTRIES = 4096  # EBPs with remembered walks before the cache starts afresh
CACHE_WAYS = 4        # remembered walks per EBP
CACHE_SPAN = 1 << 16  # a walk whose frames span more bytes than this is not remembered
MAX_STACKS = 1 << 20  # distinct stacks a run keeps (see StackTable)

_PAIR = struct.Struct("<II").unpack_from


class StackTable:
    """Unique stacks (tuples of return addresses) and their ids, in first-seen order; 0 is ().

    At most `limit` stacks are kept (a guest whose frame pointers are garbage could make every exit's
    stack new): past it a new stack is recorded as its first frame alone if that one-frame stack is
    known, else as the empty stack, and counted in `truncated`."""

    def __init__(self, limit: int = MAX_STACKS) -> None:
        self._ids: dict[tuple, int] = {(): 0}
        self._stacks: list[tuple] = [()]
        self.limit = limit
        self.truncated = 0

    def __len__(self) -> int:
        return len(self._stacks)

    def intern(self, frames: tuple) -> int:
        sid = self._ids.get(frames)
        if sid is None:
            if len(self._stacks) >= self.limit:
                self.truncated += 1
                return self._ids.get(frames[:1], 0)
            sid = self._ids[frames] = len(self._stacks)
            self._stacks.append(frames)
        return sid

    def frames(self, sid: int) -> tuple:
        return self._stacks[sid]

    def table(self) -> "Stacks":
        return Stacks.of(self._stacks)


@dataclass(frozen=True)
class Stacks:
    """A trace's stack table: stack i is frames[starts[i]:starts[i + 1]] (return addresses, innermost
    first)."""
    frames: np.ndarray   # uint32
    starts: np.ndarray   # uint64, one more than the stacks

    @classmethod
    def of(cls, stacks: list[tuple]) -> "Stacks":
        lengths = np.array([len(s) for s in stacks], dtype=np.uint64)
        starts = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(lengths, dtype=np.uint64)])
        frames = np.fromiter((a for s in stacks for a in s), dtype=np.uint32, count=int(starts[-1]))
        return cls(frames, starts)

    @classmethod
    def empty(cls) -> "Stacks":
        return cls.of([()])

    def __len__(self) -> int:
        return max(len(self.starts) - 1, 0)

    def get(self, i: int) -> tuple[int, ...]:
        return tuple(int(a) for a in self.frames[int(self.starts[i]):int(self.starts[i + 1])])

    def depths(self) -> np.ndarray:
        return np.diff(self.starts.astype(np.int64))

    @staticmethod
    def concat(tables: list["Stacks"]) -> tuple["Stacks", list[int]]:
        """One table of several (each with its own empty stack 0): the merged table, whose 0 is the
        empty stack, and per table the offset to add to its ids above 0."""
        stacks, offsets = [()], []
        for t in tables:
            offsets.append(len(stacks) - 1)
            stacks += [t.get(i) for i in range(1, len(t))]
        return Stacks.of(stacks), offsets


class FrameWalker:
    """Walks the chain at an exit and interns it: `walk(ebp)` -> (caller, stack id) from RAM (no
    paging), `walk_virtual(ebp)` through the guest's page tables (translate: linear -> physical or
    None). See the module docstring for where a chain ends. The vCPU picks the walk by its paging
    flag, taken at every slice start as for the one-deep caller before; `paging()`, when given, is
    asked on every walk that is not remembered (a register read: the vCPU does not give it, for speed)."""

    def __init__(self, ram, table: StackTable, translate: Callable[[int], int | None], depth: int = DEPTH,
                 paging: Callable[[], bool] | None = None):
        self._ram = ram
        self._size = len(ram)
        self.table = table
        self._translate = translate
        self._paging = paging
        self.depth = depth
        self._cache: dict[int, list[tuple]] = {}
        self._layouts: dict[str, Callable] = {}
        self._under: dict[tuple[int, int], tuple[int, int]] = {}

    def walk(self, ebp: int) -> tuple[int, int]:
        entries = self._cache.get(ebp)
        if entries is not None:
            ram = self._ram
            for unpack, values, result in entries:
                if unpack(ram, ebp) == values:
                    return result
        if self._paging is not None and self._paging():
            self._cache.clear()  # remembered walks read physical memory
            return self.walk_virtual(ebp)
        if ebp + 8 > self._size:
            return 0, 0
        frames, read = self._chain(ebp)
        result = (frames[0] if frames else 0, self.table.intern(tuple(frames)))
        if read and read[-1] + 8 - ebp <= CACHE_SPAN:
            self._remember(ebp, read, result)
        return result

    def walk_under(self, ret: int, ebp: int, paging: bool) -> tuple[int, int]:
        """An exit whose function has no frame set up (frames.py): its return address `ret`, then the
        chain from EBP (the caller's frame), DEPTH addresses at most."""
        caller, sid = self.walk_virtual(ebp) if paging else self.walk(ebp)
        key = (ret, sid)
        found = self._under.get(key)
        if found is None:
            if len(self._under) >= CACHE_ENTRIES:
                self._under.clear()
            frames = ((ret,) + self.table.frames(sid))[:self.depth]
            found = self._under[key] = (ret, self.table.intern(frames))
        return found

    def _remember(self, ebp: int, read: list[int], result: tuple[int, int]) -> None:
        """Keep a walk as a struct layout that unpacks exactly the frames it read (and skips what lies
        between them: locals may change without changing the chain), their values, and its result; a
        few per EBP, the latest first (one EBP is reached from several call paths)."""
        layout, at = ["<"], ebp
        for frame in read:
            if frame > at:
                layout.append(f"{frame - at}x")
            layout.append("II")
            at = frame + 8
        key = "".join(layout)
        unpack = self._layouts.get(key)
        if unpack is None:
            if len(self._layouts) >= CACHE_ENTRIES:
                self._layouts.clear()
            unpack = self._layouts[key] = struct.Struct(key).unpack_from
        cache = self._cache
        if len(cache) >= CACHE_ENTRIES:
            cache.clear()
        entries = cache.setdefault(ebp, [])
        entries.insert(0, (unpack, unpack(self._ram, ebp), result))
        del entries[CACHE_WAYS:]

    def _chain(self, ebp: int) -> tuple[list[int], list[int]]:
        """(return addresses, the frames read, in climbing order; empty when the chain went down
        somewhere and was walked by _careful). The usual chain climbs the stack: its loop checks one
        bound per frame; a frame below the last one (another stack, or a loop) goes to _careful."""
        ram, size, depth = self._ram, self._size, self.depth
        frames: list[int] = []
        read: list[int] = []
        first = ebp
        while True:
            read.append(ebp)
            nxt, ret = _PAIR(ram, ebp)
            if not ret:
                return frames, read
            frames.append(ret)
            if nxt <= ebp or nxt & 3 or nxt + 8 > size or len(frames) >= depth:
                break
            ebp = nxt
        if not nxt or nxt > ebp or len(frames) >= depth:
            return frames, read
        return self._careful(first), []

    def _careful(self, ebp: int) -> list[int]:
        """The chain of a stack whose frames go down somewhere: every frame checked against all before."""
        ram, size = self._ram, self._size
        frames: list[int] = []
        seen = {ebp}
        while len(frames) < self.depth:
            nxt, ret = _PAIR(ram, ebp)
            if not ret:
                break
            frames.append(ret)
            if not nxt or nxt & 3 or nxt + 8 > size or nxt in seen:
                break
            seen.add(nxt)
            ebp = nxt
        return frames

    def walk_virtual(self, ebp: int) -> tuple[int, int]:
        """The chain under guest paging: each frame read through the page tables (a translation per
        distinct page of the walk)."""
        pages: dict[int, int | None] = {}
        frames: list[int] = []
        seen = set()
        while len(frames) < self.depth and ebp not in seen:
            seen.add(ebp)
            pair = self._read_pair(ebp, pages)
            if pair is None or not pair[1]:
                break
            nxt, ret = pair
            frames.append(ret)
            if not nxt or nxt & 3:
                break
            ebp = nxt
        return (frames[0] if frames else 0), self.table.intern(tuple(frames))

    def _read_pair(self, vaddr: int, pages: dict) -> tuple[int, int] | None:
        raw = b""
        for part in (vaddr, vaddr + 4):
            page = part & 0xFFFFF000
            if page not in pages:
                pages[page] = self._translate(page)
            base = pages[page]
            if base is None or base + (part & 0xFFF) + 4 > self._size:
                return None
            raw += self._ram[base + (part & 0xFFF):base + (part & 0xFFF) + 4]
        return struct.unpack("<II", raw)
