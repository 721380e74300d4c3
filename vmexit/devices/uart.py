"""16550A UART at 0x3f8-0x3ff (COM1), IRQ4.

Transmit: bytes written to THR go to the run's console log; LSR always reads THR-empty and
transmitter-empty: transmission is instantaneous in virtual time.
Receive: the run's input (`--input`, `--input-file`) arrives as if typed on a line with flow control:
one byte every character time (10 bits at 115,200 / divisor baud) after the previous one was read, so
none is ever lost and the timing is the virtual clock's. A byte in RBR sets LSR.DR; with IER.ERBFI the
UART interrupts (IRQ4, level while data is ready; IIR 0x04, else 0x01 for none). When the input is
used up DR stays clear. With IER.ETBEI, THR empty interrupts (IIR 0x02, below received data) when
ETBEI is enabled and after every byte written; reading IIR or writing THR clears it. LSR never reads 0xff, so drivers that probe for a UART find one.
Divisor latch, FCR (accepted) and scratch registers hold what is written.
Register map: National Semiconductor PC16550D datasheet.
"""
from __future__ import annotations

from typing import Callable

BASE = 0x3F8
PORTS = tuple(range(BASE, BASE + 8))


UART_CLOCK_HZ = 115200          # the divisor latch divides this (1.8432 MHz / 16)
BITS_PER_CHAR = 10              # start, 8 data, stop
IRQ = 4


class UART16550:
    name = "uart"
    ports = PORTS
    irq = IRQ

    def __init__(self, echo: Callable[[bytes], None] | None = None, now: Callable[[], int] | None = None,
                 freq_hz: int = 1, raise_irq: Callable[[], None] | None = None, input_data: bytes = b"",
                 on_output: Callable[[bytearray], None] | None = None):
        self.output = bytearray()
        self._echo = echo
        self._now = now
        self._freq = freq_hz
        self._raise = raise_irq
        self._on_output = on_output
        self.input = bytes(input_data)
        self.consumed = 0               # input bytes the guest has read
        self.rbr: int | None = None     # the byte waiting in the receive buffer
        self._next: int | None = 0 if self.input else None   # cycle the next byte arrives (scheduled)
        self._armed = False             # the first byte waits until the guest sets the line up
        self.thre_pending = False       # a THR-empty interrupt waits (IER.ETBEI)
        self.regs = {"ier": 0, "lcr": 0x03, "mcr": 0, "scr": 0, "dll": 0x01, "dlm": 0}

    # receive: a timed device -------------------------------------------------------------------
    def _char_cycles(self) -> int:
        divisor = (self.regs["dlm"] << 8 | self.regs["dll"]) or 1
        return BITS_PER_CHAR * divisor * self._freq // UART_CLOCK_HZ

    def next_event(self) -> int | None:
        if self._armed and self.rbr is None and self.consumed < len(self.input):
            return self._next
        return None

    def advance(self, now: int) -> int:
        due = self.next_event()
        if due is None or due > now:
            return 0
        self.rbr = self.input[self.consumed]
        self._interrupt()
        return 1 if self.regs["ier"] & 1 else 0

    def _interrupt(self) -> None:
        if self._raise is not None and self.rbr is not None and self.regs["ier"] & 1:
            self._raise()

    def _transmitted(self) -> None:
        """THR is empty again (at once: transmission takes no virtual time): with IER.ETBEI the UART
        interrupts with IIR 0x02 until IIR is read or THR written (an interrupt-driven driver sends
        its next byte from that interrupt)."""
        if self.regs["ier"] & 2:
            self.thre_pending = True
            if self._raise is not None:
                self._raise()

    def _arm(self) -> None:
        if not self._armed and self.input and self._now is not None:
            self._armed = True
            self._next = self._now() + self._char_cycles()

    def read(self, port: int, size: int) -> int:
        off = port - BASE
        dlab = self.regs["lcr"] & 0x80
        if off == 0:
            if dlab:
                return self.regs["dll"]
            self._arm()
            if self.rbr is None:
                return 0
            value, self.rbr = self.rbr, None
            self.consumed += 1
            if self._now is not None:
                self._next = self._now() + self._char_cycles()
            return value
        if off == 1:
            return self.regs["dlm"] if dlab else self.regs["ier"]
        if off == 2:
            if self.rbr is not None and self.regs["ier"] & 1:
                return 0x04
            if self.thre_pending:
                self.thre_pending = False  # reading IIR with THRE the source clears it (PC16550D, table 4)
                return 0x02
            return 0x01
        if off == 3:
            return self.regs["lcr"]
        if off == 4:
            return self.regs["mcr"]
        if off == 5:
            self._arm()
            return 0x60 | (1 if self.rbr is not None else 0)  # THRE | TEMT | DR
        if off == 6:
            return 0xB0  # CTS, DSR, DCD asserted
        return self.regs["scr"]

    def emit(self, data: bytes) -> None:
        """Console output that did not come through the transmit register (a Xen console_io)."""
        self.output += data
        if self._echo is not None:
            self._echo(bytes(data))
        if self._on_output is not None:
            self._on_output(self.output)

    def write(self, port: int, size: int, value: int) -> None:
        off = port - BASE
        value &= 0xFF
        dlab = self.regs["lcr"] & 0x80
        if off == 0:
            if dlab:
                self.regs["dll"] = value
            else:
                self._transmitted()
                self.output.append(value)
                if self._echo is not None:
                    self._echo(bytes((value,)))
                if self._on_output is not None:
                    self._on_output(self.output)
        elif off == 1:
            if dlab:
                self.regs["dlm"] = value
            else:
                was = self.regs["ier"]
                self.regs["ier"] = value & 0x0F
                if value & 1:
                    self._arm()
                    self._interrupt()
                if value & 2 and not was & 2:
                    self._transmitted()  # enabling ETBEI with THR empty interrupts at once
                elif not value & 2:
                    self.thre_pending = False
        elif off == 3:
            self.regs["lcr"] = value
        elif off == 4:
            self.regs["mcr"] = value
        elif off == 7:
            self.regs["scr"] = value
