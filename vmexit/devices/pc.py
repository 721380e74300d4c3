"""The PC a domain is: its devices as one declarative table, and what each contributes to the run's
results. Every domain has the same devices at the same ports.

Each entry builds its device from the domain's Wiring (clock, memory, interrupt lines, run options,
the optimization at the `timer_load` hook point, the run's end); the bus orders say which devices
answer ports (a later device wins a shared port), which have events in virtual time (in the order their
events are fired), and which are memory-mapped. A device whose write can move a device event (a timed
one, or the NIC, which schedules the peer's next frame) makes the vCPU recompute the next event after
an exit that wrote to it. ISA IRQ n reaches 8259A input n and I/O APIC pin n (irq.py).

A PC may be built without a NIC (options.nic false: a Xen domU, whose network is its netfront): then
the NIC and the peer are None, and the buses leave them out (present()).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .bmdma import BusMasterIDE
from .cmos import CMOS
from .debugexit import DebugExit
from .ide import Disk, IDEDisk
from .ioapic import IOAPIC
from .irq import InterruptRouter
from .lapic import LocalAPIC
from .legacy import CGA, KeyboardController
from .netpeer import TcpStreamPeer
from .pci import NIC_BASE, NIC_IRQ, PCIConfig
from .pic import PIC8259
from .pit import PIT8254
from .pmtimer import PMTimer
from .rtl8139 import MAC, RTL8139
from .tcppeer import TcpPeer
from .uart import UART16550


@dataclass
class Wiring:
    """What the device builders get from their domain."""
    clock: object
    machine: object
    options: object                  # session.RunOptions
    ending: object                   # vcpu.Ending: the debug-exit port and --until-console end the run
    timer_load: object = None        # the optimization at hook point timer_load (tickrate.TickRate)
    devices: dict = field(default_factory=dict)   # built so far, by name

    def irq(self, line: int) -> Callable[[], None]:
        return lambda: self.devices["irqs"].raise_isa_irq(line)

    def reload_hook(self):
        return self.timer_load.reload if self.timer_load is not None else None


@dataclass(frozen=True)
class Device:
    name: str
    build: Callable[[Wiring], object]
    feeds_timers: bool = False       # a write can schedule another device's event
    vector: Callable[[object, object], int] = lambda dev, irqs: irqs.vector_of(dev.irq)


def _uart(w: Wiring) -> UART16550:
    o, clock = w.options, w.clock
    text = o.until_console

    def console_output(output: bytearray) -> None:
        if text.encode("latin-1") in output[-(len(text) + 1):]:
            w.ending.console_matched(text)

    return UART16550(o.echo, clock.now, clock.freq_hz, w.irq(4), o.input, console_output if text else None)


def _nic(w: Wiring) -> RTL8139:
    m = w.machine
    return RTL8139(NIC_BASE, m.read_physical, m.write_physical, w.irq(NIC_IRQ),
                   on_transmit=lambda frame: w.devices["peer"].on_transmit(frame))


def _peer(w: Wiring) -> TcpStreamPeer | TcpPeer:
    o, clock = w.options, w.clock
    rate = {} if o.net_rate_bps is None else {"rate_bps": o.net_rate_bps}  # None: the peer's own default
    if o.net_peer == "tcp":   # a host at 10.0.2.2 for a guest with a TCP/IP stack (tcppeer.py)
        return TcpPeer(clock.now, clock.freq_hz, w.devices["nic"].receive, NIC_IRQ, o.net_ack_delay_us * 1e-6,
                       ack_every=o.net_ack_every, **rate)
    dest = bytes.fromhex(o.net_dest_mac) if o.net_dest_mac else MAC  # a bridged guest behind the NIC, or the NIC
    return TcpStreamPeer(clock.now, clock.freq_hz, w.devices["nic"].receive, NIC_IRQ, dest, o.net_ack_every,
                         o.net_ack_delay_us * 1e-6, o.net_peer_sends, o.net_frame_size, window=o.net_window,
                         wait_for_guest=o.net_peer_waits, **rate)


def _disk(path: str | None, w: Wiring) -> Disk | None:
    o = w.options
    return Disk(path, o.disk_size, o.disk_writable)


#: Every device of the PC, in build order (a builder may use the devices above it).
DEVICES: tuple[Device, ...] = (
    Device("disk", lambda w: _disk(w.options.disk, w)),
    Device("disk1", lambda w: _disk(w.options.disk1, w) if w.options.disk1 else None),
    Device("pic", lambda w: PIC8259()),
    Device("lapic", lambda w: LocalAPIC(w.clock.now, w.clock.freq_hz, on_eoi=lambda v: w.devices["ioapic"].eoi(v),
                                        reload_hook=w.reload_hook()),
           vector=lambda dev, irqs: dev.timer_vector()),
    Device("ioapic", lambda w: IOAPIC(deliver=w.devices["lapic"].accept)),
    Device("irqs", lambda w: InterruptRouter(w.devices["pic"], w.devices["lapic"], w.devices["ioapic"])),
    Device("pit", lambda w: PIT8254(w.clock.now, w.clock.freq_hz, w.irq(0), reload_hook=w.reload_hook())),
    Device("uart", _uart),
    Device("ide", lambda w: IDEDisk(w.devices["disk"], w.irq(14), w.devices["disk1"])),
    Device("bmdma", lambda w: BusMasterIDE(w.devices["ide"], w.machine.read_physical, w.machine.write_physical,
                                           w.clock.now, w.clock.freq_hz)),
    Device("nic", lambda w: _nic(w) if w.options.nic else None, feeds_timers=True),
    Device("peer", lambda w: _peer(w) if w.options.nic else None),
    Device("pmtimer", lambda w: PMTimer(w.clock.now, w.clock.freq_hz)),
    Device("pci", lambda w: PCIConfig()),
    Device("cmos", lambda w: CMOS(w.clock.now, w.clock.freq_hz, w.options.ram_size)),
    Device("cga", lambda w: CGA()),
    Device("kbd", lambda w: KeyboardController()),
    Device("debugexit", lambda w: DebugExit(w.ending.guest_exit)),
)

#: Which devices sit on which bus, in bus order.
PORTS = ("pit", "pic", "uart", "pmtimer", "ide", "bmdma", "pci", "nic", "cmos", "cga", "kbd", "debugexit")
TIMED = ("pit", "lapic", "peer", "bmdma", "uart")
MMIO = ("ioapic", "lapic")
#: The interrupt controller the vCPU asks for pending interrupts.
INTERRUPTS = "irqs"


def build(wiring: Wiring) -> dict[str, object]:
    for entry in DEVICES:
        wiring.devices[entry.name] = entry.build(wiring)
    return wiring.devices


def present(devices: dict, names: tuple[str, ...]) -> list[str]:
    """The names of a bus whose devices this PC has (a PC without a NIC leaves it out)."""
    return [name for name in names if devices[name] is not None]


def moves_timers(name: str) -> bool:
    return name in TIMED or any(d.name == name and d.feeds_timers for d in DEVICES)


def vector_of(name: str) -> Callable[[object, object], int]:
    return next(d.vector for d in DEVICES if d.name == name)


def results(devices: dict, seconds: float, options) -> dict:
    """What the devices contribute to the run's meta."""
    ide, bmdma, pit, lapic, nic = (devices[n] for n in ("ide", "bmdma", "pit", "lapic", "nic"))
    return {
        "console": devices["uart"].output.decode("latin-1"),
        "input_consumed": devices["uart"].consumed,
        "ide": {"commands": ide.commands, "sectors_read": ide.sectors_read,
                "sectors_written": ide.sectors_written, "dma_transfers": bmdma.transfers},
        "pit": {"interrupts": pit.interrupts, "count": pit.channels[0].guest_reload,
                "count_run": pit.channels[0].reload},
        "lapic": {"timer_interrupts": lapic.fired_total, "eois": lapic.eois},
        "nic": _nic_results(nic, seconds, options),
        **_peer_results(devices["peer"]),
    }


def _peer_results(peer) -> dict:
    """The TCP peer's counters (the stream peer's frames are the NIC's)."""
    return {"net_peer": peer.results()} if isinstance(peer, TcpPeer) else {}


def _nic_results(nic, seconds: float, options) -> dict | None:
    if nic is None:
        return None
    moved = nic.rx_bytes if options.net_peer_sends else nic.tx_bytes
    return {"rx_frames": nic.rx_frames, "rx_bytes": nic.rx_bytes, "tx_frames": nic.tx_frames,
            "tx_bytes": nic.tx_bytes, "rx_dropped": nic.rx_dropped,
            "throughput_mbit_s": moved * 8 / seconds / 1e6 if seconds else 0.0}
