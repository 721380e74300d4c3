"""The port bus of a domain: which device answers each I/O port, where the hypervisor handles it, and
which port accesses are exits.

- Every in/out exits (IO_INSTRUCTION), handled in the kernel or in user space by the device's place
  (the model's table, e.g. kvm.DEVICE_PLACES); ports nobody claims exit too and read all ones (an
  empty ISA bus floats high).
- A rep ins/outs exits once per 1,024 bytes moved, the size of KVM's string-PIO buffer
  (arch/x86/kvm/emulate.c, struct read_cache data[1024]); the further elements grow that exit's size.
- Hook point `io_exit` (optimizations/coalesce_dynamic.py): after an exit, the run of port I/O the
  look-ahead planned is handled inside it (recorded as emulated accesses, costed without a round trip).
- `run_entries` runs a list of accesses inside one exit (the static XKVM_IO_COALESCE hypercall).
A model whose exits are not recorded (native) still drives the devices through the same bus.
"""
from __future__ import annotations

from ..exits import Direction, ExitReason, Place

STRING_PIO_CHUNK = 1024
_UNSEEN = object()
# plain ints for the exit path (an IntEnum hashes and compares through Python code)
_IO, _IN, _OUT = int(ExitReason.IO_INSTRUCTION), int(Direction.IN), int(Direction.OUT)

#: String I/O opcodes: ins (6c/6d) and outs (6e/6f).
_STRING_IO = {0x6C: Direction.IN, 0x6D: Direction.IN, 0x6E: Direction.OUT, 0x6F: Direction.OUT}
_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF2, 0xF3})


class PortBus:
    def __init__(self, vcpu, machine, profile, devices: list[tuple[object, int, bool]], records: bool = True,
                 lookahead=None):
        """devices: (device, Place, whether a write to it can move a device event)."""
        self.vcpu = vcpu
        self._m = machine
        self._records = records
        self._ports: list = [None] * 0x10000
        self._places = bytearray([Place.USER]) * 0x10000
        self._timer_ports = [False] * 0x10000
        for dev, place, moves_timers in devices:
            for p in dev.ports:
                self._ports[p] = dev
                self._places[p] = place
                self._timer_ports[p] = moves_timers
        self._string_io: dict[int, tuple[Direction, bool] | None] = {}
        self._str_state = (-1, -1, 0)  # (eip, next icount, bytes in the current exit)
        self._emulation_costs = [[profile.emulation_cost(p, d) for d in Direction] for p in Place]
        # hook point io_exit: the look-ahead, and the run it planned at the last exit (exit count,
        # that exit's icount, {address: instructions after})
        self._lookahead = lookahead
        self._merge: tuple[int, int, dict[int, int]] | None = None

    def direct(self) -> None:
        """From now on the domain's port accesses reach the devices without exits (a Xen driver domain
        given an I/O privilege level: xen_physdev.py); they still drive the devices and the clock."""
        self._records = False

    # traps -------------------------------------------------------------------------------------------
    def on_in(self, port: int, size: int) -> int:
        vcpu = self.vcpu
        icount = vcpu.icount_in_trap()  # the device reads the clock
        dev = self._ports[port]
        value = dev.read(port, size) if dev is not None else (1 << (8 * size)) - 1
        if self._exit(icount, port, size, value, _IN):
            vcpu.reschedule(timers_changed=self._timer_ports[port])  # a read may schedule (UART RBR)
        return value

    def on_out(self, port: int, size: int, value: int) -> None:
        vcpu = self.vcpu
        icount = vcpu.icount_in_trap()
        value &= (1 << (8 * size)) - 1
        recorded = self._exit(icount, port, size, value, _OUT)
        dev = self._ports[port]
        if dev is not None:
            dev.write(port, size, value)
        if recorded or vcpu.ending.end is not None or vcpu.irqs.pending():
            vcpu.reschedule(timers_changed=self._timer_ports[port])

    # the exit path (the hottest of all: everything is read once, into locals) ----------------------
    def _exit(self, icount: int, port: int, size: int, value: int, direction: int) -> bool:
        """Record an I/O exit unless this is a further element of a rep string exit or an access the
        look-ahead planned to handle inside the last exit; True unless it was a further element."""
        if not self._records:
            return True
        vcpu = self.vcpu
        eip, ebp = vcpu.eip_ebp()
        kind = self._string_io.get(eip, _UNSEEN)
        if kind is _UNSEEN:
            kind = self._string_kind(eip)
        if kind is not None and kind[1]:
            last_eip, next_icount, used = self._str_state
            if eip == last_eip and icount == next_icount and used + size <= STRING_PIO_CHUNK:
                self._str_state = (eip, icount + 1, used + size)
                vcpu.rec.add_size(size)
                return False
            self._str_state = (eip, icount + 1, size)
        place = self._places[port]
        merge = self._merge
        if merge is not None:
            if merge[0] == vcpu.rec.count and merge[2].get(eip, -1) == icount - merge[1] \
                    and not vcpu.irqs.pending():
                vcpu.emulated(eip, place, direction, port, size, value, self._emulation_costs[place][direction])
                return True
            self._merge = None
        vcpu.exit(_IO, place, direction, eip, port, size, value, ebp, icount)
        if self._lookahead is not None:
            plan = self._lookahead.plan(eip)
            if plan:
                self._merge = (vcpu.rec.count, icount, plan)
        return True

    def _string_kind(self, eip: int) -> tuple[Direction, bool] | None:
        raw = self._m.read_virtual(eip, 8) or b""
        kind, rep = None, False
        for b in raw:
            if b in (0xF2, 0xF3):
                rep = True
            if b not in _PREFIXES:
                if b in _STRING_IO:
                    kind = (_STRING_IO[b], rep)
                break
        self._string_io[eip] = kind
        return kind

    # accesses inside another exit ----------------------------------------------------------------------
    def run_entries(self, eip: int, entries, write_back) -> bool:
        """Each (direction, port, size, value) through the bus, in order, inside the current exit; IN
        results go to write_back(index, value). Returns whether a write may have moved a device event."""
        timers_changed = False
        for index, (direction, port, size, value) in enumerate(entries):
            dev = self._ports[port]
            if direction == Direction.IN:
                value = dev.read(port, size) if dev is not None else (1 << (8 * size)) - 1
                write_back(index, value)
            elif dev is not None:
                dev.write(port, size, value)
                timers_changed = timers_changed or self._timer_ports[port]
            place = self._places[port]
            self.vcpu.emulated(eip, place, direction, port, size, value, self._emulation_costs[place][direction])
        return timers_changed
