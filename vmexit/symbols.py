"""Address -> function name, vectorized: np.searchsorted over the sorted symbol start addresses.

An address belongs to the last symbol at or below it, as in perf's and addr2line's view of a
stripped-to-symbols binary; addresses below the first symbol (or 0, "unknown") map to "[unknown]".
"""
from __future__ import annotations

import numpy as np

UNKNOWN = "[unknown]"


class SymbolTable:
    def __init__(self, symbols: dict[str, int]):
        items = sorted(symbols.items(), key=lambda kv: (kv[1], kv[0]))
        self.starts = np.array([a for _, a in items], dtype=np.uint64)
        self.names = np.array([n for n, _ in items] + [UNKNOWN], dtype=object)

    def index(self, addresses: np.ndarray) -> np.ndarray:
        """Symbol index per address; len(symbols) (-> UNKNOWN) when none."""
        addresses = np.asarray(addresses, dtype=np.uint64)
        idx = np.searchsorted(self.starts, addresses, side="right").astype(np.int64) - 1
        unknown = (idx < 0) | (addresses == 0)
        idx[unknown] = len(self.starts)
        return idx

    def names_of(self, addresses: np.ndarray) -> np.ndarray:
        return self.names[self.index(addresses)]

    def name(self, address: int) -> str:
        return str(self.names_of(np.array([address]))[0])
