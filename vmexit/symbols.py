"""Address -> function name, vectorized: np.searchsorted over the sorted symbol start addresses.

An address belongs to the last symbol at or below it, as in perf's and addr2line's view of a
stripped-to-symbols binary; addresses below the first symbol (or 0, "unknown") map to "[unknown]".

A run of several domains names its symbols `d<domid>:<name>` (trace.merge_domains): the same address
is different code in each domain. `SymbolTable.of_domains` places each domain's symbols at
`domid << 32 | address`, and an address so qualified (views.Context.where) belongs only to a symbol
of its own domain.
"""
from __future__ import annotations

import re

import numpy as np

UNKNOWN = "[unknown]"


_DOMAIN = re.compile(r"d(\d+):")
DOMAIN_SHIFT = 32


class SymbolTable:
    def __init__(self, symbols: dict[str, int]):
        """symbols: name -> start address (domain-qualified addresses: see of_domains)."""
        items = sorted(symbols.items(), key=lambda kv: (kv[1], kv[0]))
        self.starts = np.array([a for _, a in items], dtype=np.uint64)
        self.names = np.array([n for n, _ in items] + [UNKNOWN], dtype=object)

    def index(self, addresses: np.ndarray) -> np.ndarray:
        """Symbol index per address; len(symbols) (-> UNKNOWN) when none."""
        addresses = np.asarray(addresses, dtype=np.uint64)
        idx = np.searchsorted(self.starts, addresses, side="right").astype(np.int64) - 1
        unknown = (idx < 0) | ((addresses & 0xFFFFFFFF) == 0)
        if len(self.starts):
            found = self.starts[np.maximum(idx, 0)]
            unknown |= (found >> DOMAIN_SHIFT) != (addresses >> DOMAIN_SHIFT)  # a symbol of another domain
        idx[unknown] = len(self.starts)
        return idx

    @classmethod
    def of_domains(cls, symbols: dict[str, int]) -> "SymbolTable":
        """The table of a merged run: `d<domid>:<name>` at domid << 32 | address (names unprefixed: domain 0)."""
        placed = {}
        for name, address in symbols.items():
            m = _DOMAIN.match(name)
            placed[name] = (int(m.group(1)) << DOMAIN_SHIFT if m else 0) | int(address)
        return cls(placed)

    def names_of(self, addresses: np.ndarray) -> np.ndarray:
        return self.names[self.index(addresses)]

    def name(self, address: int) -> str:
        return str(self.names_of(np.array([address]))[0])
