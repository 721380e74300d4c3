"""The rest of a PC's legacy ports a kernel touches at boot, as plain register files:
- CGA/VGA CRT controller at 0x3d4 (index) / 0x3d5 (data): the 0x12 registers (cursor position, start
  address, ...) hold what is written; the text buffer at 0xb8000 is ordinary RAM. IBM CGA technical
  reference (6845 CRTC).
- i8042 keyboard controller: status at 0x64 reads 0x14 (system flag set by POST, keyboard not
  inhibited, output buffer empty: no key pressed), data at 0x60 reads 0; commands and data written are
  accepted and dropped. IBM PC/AT technical reference.
"""
from __future__ import annotations


class CGA:
    name = "cga"
    ports = (0x3D4, 0x3D5)

    def __init__(self) -> None:
        self.index = 0
        self.regs = bytearray(0x12)

    def read(self, port: int, size: int) -> int:
        if port == 0x3D4:
            return self.index
        return self.regs[self.index] if self.index < len(self.regs) else 0xFF

    def write(self, port: int, size: int, value: int) -> None:
        if port == 0x3D4:
            self.index = value & 0xFF
        elif self.index < len(self.regs):
            self.regs[self.index] = value & 0xFF


class KeyboardController:
    name = "kbd"
    ports = (0x60, 0x64)
    STATUS = 0x14

    def read(self, port: int, size: int) -> int:
        return self.STATUS if port == 0x64 else 0x00

    def write(self, port: int, size: int, value: int) -> None:
        pass
