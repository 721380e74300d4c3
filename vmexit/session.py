"""One run: wire an Image, the machine, the devices, the KVM model and the recorder; return a Trace.

The device table is here, explicit: every run has the same devices at the same ports.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Callable

import numpy as np

from . import __version__
from .clock import Clock
from .costs import Profile
from .devices.bmdma import BusMasterIDE
from .devices.cmos import CMOS
from .devices.debugexit import DebugExit
from .devices.legacy import CGA, KeyboardController
from .devices.ide import Disk, IDEDisk
from .devices.ioapic import IOAPIC
from .devices.irq import InterruptRouter
from .devices.lapic import LocalAPIC
from .devices.pci import NIC_BASE, NIC_IRQ, PCIConfig
from .devices.netpeer import TcpStreamPeer
from .devices.rtl8139 import MAC, RTL8139
from .devices.pic import PIC8259
from .devices.pit import PIT8254
from .devices.pmtimer import PMTimer
from .devices.uart import UART16550
from .devices.unassigned import unassigned_gaps
from .exits import ExitRecorder
from .hypervisors import HYPERVISORS
from .vcpu import RunEnd
from .loader import Image
from .machine import X86Machine
from .optimizations import OPTIMIZATIONS
from .optimizations.coalesce_dynamic import LookAhead
from .optimizations.pf_offload import FaultOffload
from .optimizations.tickrate import TickRate
from .devices.pit import PIT_HZ
from .devices.lapic import APIC_BUS_HZ
from .trace import Trace


@dataclass
class RunOptions:
    ram_size: int = 64 << 20
    max_instructions: int | None = None
    max_seconds: float | None = None
    disk: str | None = None
    disk_writable: bool = False
    disk1: str | None = None        # the slave drive's image
    disk_size: int = 16 << 20
    net_ack_every: int = 2          # the TCP_STREAM peer acks every N frames
    net_ack_delay_us: float = 20.0  # ... this long after the frame left the guest
    net_peer_sends: bool = False    # the peer streams to the guest instead (the guest acks)
    net_frame_size: int = 1514
    net_window: int = 16
    optimizations: dict[str, int] = field(default_factory=dict)  # --opt NAME=VALUE (optimizations/)
    hypervisor: str = "kvm"         # a key of hypervisors.HYPERVISORS
    host_timer_hz: int = 0          # guest timers fire on a host tick of this rate (0: when due)
    input: bytes = b""              # typed into the UART (--input, --input-file)
    until_console: str | None = None  # end the run when the console has printed this
    echo: Callable[[bytes], None] | None = field(default=None, repr=False, compare=False)

    def recorded(self) -> dict:
        d = asdict(self)
        d.pop("echo")
        d["input"] = self.input.decode("latin-1")
        return d


def run(image: Image, profile: Profile, options: RunOptions,
        progress: Callable[[int, int], None] | None = None,
        on_end: Callable[[X86Machine, dict], None] | None = None) -> Trace:
    """Run the guest to its end (or budget) and return the trace; Ctrl-C ends it as 'interrupted'.
    on_end, if given, sees the machine and the devices by name when the run is over (tests use it)."""
    opts = options.optimizations
    unknown = set(opts) - set(OPTIMIZATIONS)
    if unknown:
        raise ValueError(f"unknown optimization(s): {', '.join(sorted(unknown))}")
    tick = TickRate(opts["tick-hz"]) if "tick-hz" in opts else None
    reload_hook = tick.reload if tick is not None else None
    clock = Clock(profile.freq_hz, *profile.cpi)
    machine = X86Machine(options.ram_size)
    recorder = ExitRecorder()
    disk = Disk(options.disk, options.disk_size, options.disk_writable)
    disk1 = Disk(options.disk1, options.disk_size, options.disk_writable) if options.disk1 else None
    pic = PIC8259()
    vm = None
    if options.hypervisor not in HYPERVISORS:
        raise ValueError(f"unknown hypervisor {options.hypervisor!r} (known: {', '.join(HYPERVISORS)})")
    model = HYPERVISORS[options.hypervisor].model()
    if not 0 <= options.host_timer_hz <= profile.freq_hz:
        raise ValueError(f"host timer rate {options.host_timer_hz} Hz: give 0 (off) to {profile.freq_hz} Hz")

    def guest_exit(value: int) -> None:  # the debug-exit device is built before the VM it ends
        vm.guest_exit(value)

    lapic = LocalAPIC(clock.now, clock.freq_hz, on_eoi=lambda vector: ioapic.eoi(vector), reload_hook=reload_hook)
    ioapic = IOAPIC(deliver=lapic.accept)
    irqs = InterruptRouter(pic, lapic, ioapic)
    pit = PIT8254(clock.now, clock.freq_hz, lambda: irqs.raise_isa_irq(0), reload_hook=reload_hook)
    def console_output(output: bytearray) -> None:
        text = options.until_console
        if text and vm is not None and text.encode("latin-1") in output[-(len(text) + 1):]:
            vm.console_matched(text)

    uart = UART16550(options.echo, clock.now, clock.freq_hz, lambda: irqs.raise_isa_irq(4), options.input,
                     console_output if options.until_console else None)
    ide = IDEDisk(disk, lambda: irqs.raise_isa_irq(14), disk1)
    bmdma = BusMasterIDE(ide, machine.read_physical, machine.write_physical, clock.now, clock.freq_hz)
    nic = RTL8139(NIC_BASE, machine.read_physical, machine.write_physical, lambda: irqs.raise_isa_irq(NIC_IRQ))
    peer = TcpStreamPeer(clock.now, clock.freq_hz, nic.receive, NIC_IRQ, MAC, options.net_ack_every,
                         options.net_ack_delay_us * 1e-6, options.net_peer_sends, options.net_frame_size,
                         window=options.net_window)
    nic.on_transmit = peer.on_transmit
    port_devices = [pit, pic, uart, PMTimer(clock.now, clock.freq_hz), ide, bmdma, PCIConfig(), nic,
                    CMOS(clock.now, clock.freq_hz, options.ram_size), CGA(), KeyboardController(),
                    DebugExit(guest_exit)]
    mmio_devices = [ioapic, lapic]
    mmio_devices += unassigned_gaps(mmio_devices)
    machine.load(image)  # an image that does not fit is bad input (LoadError), not a guest crash
    machine.boot_multiboot(image.entry)
    lookahead = (LookAhead(machine.read_virtual, opts["coalesce"]) if "coalesce" in opts else None)
    extra = {}
    offload = None
    if options.hypervisor == "xen-pv":
        if opts.get("xen-pf-offload"):
            offload = FaultOffload(machine.read_virtual, machine.write_virtual, machine.read_physical,
                                   machine.write_physical)
        extra = {"console": uart.emit, "offload": offload}
    vm = model(machine, image, clock, profile, recorder, port_devices, [pit, lapic, peer, bmdma, uart], irqs,
               mmio_devices, lookahead=lookahead, host_timer_hz=options.host_timer_hz, **extra)
    max_cycles = None if options.max_seconds is None else int(options.max_seconds * clock.freq_hz)
    try:
        end = vm.run(options.max_instructions, max_cycles, progress)
    except KeyboardInterrupt:
        end = RunEnd("interrupted", "interrupted by the user (Ctrl-C)")
    disk.flush()
    if disk1 is not None:
        disk1.flush()
    if on_end is not None:
        on_end(machine, {"pit": pit, "pic": pic, "uart": uart, "ide": ide, "bmdma": bmdma, "nic": nic,
                         "lapic": lapic, "ioapic": ioapic, "disk": disk})
    cycles = clock.now()
    emulated = recorder.emulated()
    meta = {
        "vmexit_version": __version__,
        "guest": image.name,
        "guest_kind": image.kind,
        "guest_sha256": image.sha256,
        "constants": image.constants,
        "options": options.recorded(),
        "profile": profile.name,
        "hypervisor": options.hypervisor,
        "freq_hz": clock.freq_hz,
        "cpi": [clock.cpi_num, clock.cpi_den],
        "instructions": clock.icount,
        "cycles": cycles,
        "virtual_seconds": cycles / clock.freq_hz,
        "idle_cycles": clock.idle,
        "status": end.status,
        "detail": end.detail,
        "guest_value": end.guest_value,
        "end_address": end.address,
        "console": uart.output.decode("latin-1"),
        "input_consumed": uart.consumed,
        "ide": {"commands": ide.commands, "sectors_read": ide.sectors_read,
                "sectors_written": ide.sectors_written, "dma_transfers": bmdma.transfers},
        "pit": {"interrupts": pit.interrupts, "count": pit.channels[0].guest_reload,
                "count_run": pit.channels[0].reload},
        "lapic": {"timer_interrupts": lapic.fired_total, "eois": lapic.eois},
        "nic": {"rx_frames": nic.rx_frames, "rx_bytes": nic.rx_bytes, "tx_frames": nic.tx_frames,
                "tx_bytes": nic.tx_bytes, "rx_dropped": nic.rx_dropped,
                "throughput_mbit_s": ((nic.rx_bytes if options.net_peer_sends else nic.tx_bytes) * 8
                                      / (cycles / clock.freq_hz) / 1e6) if cycles else 0.0},
        "xen": dict(vm.stats) if hasattr(vm, "stats") else None,
        "optimizations": _optimization_report(opts, tick, emulated, pit, lapic, cycles / clock.freq_hz,
                                              offload, options.hypervisor),
    }
    return Trace(exits=recorder.records(), meta=meta, symbols=dict(image.symbols), emulated=emulated)


def _optimization_report(opts: dict[str, int], tick: TickRate | None, emulated, pit, lapic,
                         seconds: float, offload: FaultOffload | None = None, hypervisor: str = "kvm") -> dict:
    """What each optimization did in this run (a note when it had nothing to do)."""
    out: dict = {}
    for name, value in sorted(opts.items()):
        entry: dict = {"value": value, "hook": OPTIMIZATIONS[name].hook}
        if name == "coalesce":
            merged = int(len(emulated))
            exits = int(len(np.unique(emulated["exit"])))
            entry.update(accesses_merged=merged, merging_exits=exits)
            if not merged:
                entry["note"] = "no-op: no run of port I/O followed an I/O exit within the window"
        elif name == "xen-pf-offload":
            if hypervisor != "xen-pv":
                entry["note"] = "no-op: page-fault offload is a Xen PV feature (--hypervisor xen-pv)"
            elif not value:
                entry["note"] = "off"
            elif offload.region is None:
                entry["note"] = "no-op: the guest registered no range for Xen to handle"
            else:
                entry.update(zero_faults=offload.resolved["zero"], cow_faults=offload.resolved["cow"])
        elif name == "tick-hz":
            entry.update(tick.report({"pit": (pit.interrupts, PIT_HZ),
                                      "lapic": (lapic.fired_total, Fraction(APIC_BUS_HZ, lapic.divisor()))},
                                     seconds))
        out[name] = entry
    return out
