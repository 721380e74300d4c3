"""QEMU's isa-debug-exit device at port 0xf4 (hw/misc/debugexit.c).

A write of value v ends the run; QEMU exits with status (v << 1) | 1. We report both. Reads return
all ones like an empty port.
"""
from __future__ import annotations

from typing import Callable

PORT = 0xF4
PORTS = (0xF4, 0xF5, 0xF6, 0xF7)


class DebugExit:
    name = "debugexit"
    ports = PORTS

    def __init__(self, on_exit: Callable[[int], None]):
        self._on_exit = on_exit

    def read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, port: int, size: int, value: int) -> None:
        self._on_exit(value & ((1 << (8 * size)) - 1))
