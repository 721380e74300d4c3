"""16550A UART at 0x3f8-0x3ff (COM1), transmit side.

Bytes written to THR go to the run's console log. LSR always reads THR-empty and transmitter-empty
(0x60): transmission is instantaneous in virtual time. No receive data (RBR reads 0, LSR.DR = 0), no
interrupts (IIR reads 0x01). Divisor latch and scratch registers hold what is written.
Register map: National Semiconductor PC16550D datasheet.
"""
from __future__ import annotations

from typing import Callable

BASE = 0x3F8
PORTS = tuple(range(BASE, BASE + 8))


class UART16550:
    name = "uart"
    ports = PORTS

    def __init__(self, echo: Callable[[bytes], None] | None = None):
        self.output = bytearray()
        self._echo = echo
        self.regs = {"ier": 0, "lcr": 0x03, "mcr": 0, "scr": 0, "dll": 0x01, "dlm": 0}

    def read(self, port: int, size: int) -> int:
        off = port - BASE
        dlab = self.regs["lcr"] & 0x80
        if off == 0:
            return self.regs["dll"] if dlab else 0
        if off == 1:
            return self.regs["dlm"] if dlab else self.regs["ier"]
        if off == 2:
            return 0x01  # no interrupt pending
        if off == 3:
            return self.regs["lcr"]
        if off == 4:
            return self.regs["mcr"]
        if off == 5:
            return 0x60  # THRE | TEMT
        if off == 6:
            return 0xB0  # CTS, DSR, DCD asserted
        return self.regs["scr"]

    def emit(self, data: bytes) -> None:
        """Console output that did not come through the transmit register (a Xen console_io)."""
        self.output += data
        if self._echo is not None:
            self._echo(bytes(data))

    def write(self, port: int, size: int, value: int) -> None:
        off = port - BASE
        value &= 0xFF
        dlab = self.regs["lcr"] & 0x80
        if off == 0:
            if dlab:
                self.regs["dll"] = value
            else:
                self.output.append(value)
                if self._echo is not None:
                    self._echo(bytes((value,)))
        elif off == 1:
            self.regs["dlm" if dlab else "ier"] = value
        elif off == 3:
            self.regs["lcr"] = value
        elif off == 4:
            self.regs["mcr"] = value
        elif off == 7:
            self.regs["scr"] = value
