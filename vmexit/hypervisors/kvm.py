"""KVM's exit model (the run loop it shares with the other models is vcpu.py; the parts are model.py).

Where each device is handled follows KVM-76 (the KVM paper's version): the PIT (arch/x86/kvm/i8254.c,
"KVM: In kernel PIT model", Jan 2008), the PIC (i8259.c), the local APIC and the I/O APIC are in the
kernel; the UART, the IDE disk, the ACPI PM timer, isa-debug-exit and the rest are QEMU devices in user
space. Ports nobody claims still exit and go to QEMU, which returns all ones.

CPUID: leaf 1 as the profile's CPU, leaf 0x15 the TSC and APIC clocks (tsc_leaf), KVM's signature at
0x40000000, an invariant TSC at 0x80000007; other leaves read zeros.

Exits modeled (VMX basic exit reasons, perf kvm stat names): IO_INSTRUCTION (ports.py), VMCALL with
KVM's hypercall ABI (Documentation/virt/kvm/x86/hypercalls.rst: nr in EAX, arguments in EBX, ECX, EDX,
ESI, result in EAX; an unknown nr returns -KVM_ENOSYS, -1000) and the KVM paper's XKVM_IO_COALESCE
(optimizations/coalesce_static.py), CPUID, HLT, MSR_READ/MSR_WRITE (msr.py), EXTERNAL_INTERRUPT and
INTERRUPT_WINDOW (vcpu.py), EXCEPTION_NMI for the profile's trapped exceptions, APIC_ACCESS /
EPT_VIOLATION for MMIO, TRIPLE_FAULT.
"""
from __future__ import annotations

import math
import struct

from ..devices.lapic import APIC_BUS_HZ
from ..exits import Place
from ..optimizations import coalesce_static
from . import hypercalls as names
from .calls import Handled, HypercallTable
from .model import ExitModel
from .ports import PortBus

#: Where KVM-76 handles each device, by the device's name (see the module docstring).
DEVICE_PLACES: dict[str, Place] = {
    "pit": Place.KERNEL,
    "pic": Place.KERNEL,
    "uart": Place.USER,
    "pmtimer": Place.USER,
    "ide": Place.USER,
    "bmdma": Place.USER,
    "pci": Place.USER,
    "rtl8139": Place.USER,
    "debugexit": Place.USER,
    "unassigned": Place.USER,
    "cmos": Place.USER,             # QEMU's mc146818rtc
    "cga": Place.USER,              # QEMU's VGA
    "kbd": Place.USER,              # QEMU's i8042
    "lapic": Place.KERNEL,
    "ioapic": Place.KERNEL,
}

KVM_ENOSYS = 1000
TSC_LEAF = 0x15  # the highest basic leaf: leaves 2-0x14 read as zeros
SIGNATURE = "KVMKVMKVM\0\0\0"


def place_of(device) -> Place:
    return DEVICE_PLACES.get(device.name, Place.USER)


def tsc_leaf(freq_hz: int) -> tuple[int, int, int, int]:
    """CPUID 0x15 (Intel SDM vol. 2A, CPUID, "Time Stamp Counter and Nominal Core Crystal Clock"):
    EAX/EBX the TSC's ratio to the crystal, ECX the crystal in Hz. The crystal here is the local
    APIC's 1 GHz bus clock (lapic.py), so a kernel knows both the TSC and the APIC timer rate without
    calibrating them against the PIT (Linux: native_calibrate_tsc sets lapic_timer_period from it and
    skips calibrate_APIC_clock's 100-tick wait, which spins on rdtsc)."""
    g = math.gcd(freq_hz, APIC_BUS_HZ)
    return APIC_BUS_HZ // g, freq_hz // g, APIC_BUS_HZ, 0


def cpuid(profile, signature: str, hypervisor_leaves: int):
    """CPUID as a KVM-76 guest sees it on the profile's CPU, with the hypervisor's signature."""
    def regs(text: str) -> tuple[int, ...]:
        return struct.unpack("<3I", text.encode())

    def answer(leaf: int, sub: int) -> tuple[int, int, int, int]:
        if leaf == 0:
            b, d, c = regs("GenuineIntel")
            return TSC_LEAF, b, c, d
        if leaf == 1:
            # edx 0x0781abfd: FPU DE PSE TSC MSR PAE MCE CX8 APIC SEP PGE CMOV PAT MMX FXSR SSE SSE2
            # (no MTRR, MCA, VME, ...); ecx bit 31: a hypervisor is present
            return profile.cpuid_signature, 0x00010800, 0x80000000, 0x0781ABFD
        if leaf == TSC_LEAF:
            return tsc_leaf(profile.freq_hz)
        if leaf == 0x40000000:
            b, c, d = regs(signature)
            return hypervisor_leaves, b, c, d
        if leaf == 0x80000000:
            return 0x80000007, 0, 0, 0
        if leaf == 0x80000007:
            return 0, 0, 0, 1 << 8  # invariant TSC: it counts the virtual clock's cycles, at one rate
        return 0, 0, 0, 0
    return answer


def port_bus(ctx, records: bool = True) -> PortBus:
    """The domain's ports with KVM-76's places; the io_exit hook point (dynamic coalescing)."""
    devices = [(dev, place_of(dev), moves) for dev, moves in ctx.ports]
    return PortBus(ctx.vcpu, ctx.machine, ctx.profile, devices, records, ctx.hooks.get("io_exit"))


def mmio(ctx) -> list[tuple[object, int, bool]]:
    return [(dev, place_of(dev), moves) for dev, moves in ctx.mmio]


def build(ctx) -> ExitModel:
    bus = port_bus(ctx)
    calls = HypercallTable(ctx.vcpu, ctx.machine.engine, handlers(ctx.machine, bus), -KVM_ENOSYS,
                           ("eax", "ebx", "ecx", "edx", "esi"))
    model = ExitModel("kvm", ctx, bus, cpuid(ctx.profile, SIGNATURE, 0x40000001), calls)
    model.install(mmio(ctx))
    return model


def handlers(machine, bus: PortBus) -> dict:
    """KVM's hypercalls (include/uapi/linux/kvm_para.h) and the paper's XKVM_IO_COALESCE."""
    table = {nr: (lambda args: Handled(0)) for nr in names.KVM if nr != names.XKVM_IO_COALESCE}
    table[names.XKVM_IO_COALESCE] = lambda args: io_coalesce(machine, bus, args[0], args[1])
    return table


def io_coalesce(machine, bus: PortBus, gpa: int, count: int) -> Handled:
    """XKVM_IO_COALESCE: one VMCALL exit, then each entry through the port bus, in order."""
    entries = coalesce_static.decode(machine.read_physical, gpa, count)
    if isinstance(entries, int):
        return Handled(entries)

    def write_back(index: int, value: int) -> None:
        machine.write_physical(coalesce_static.value_address(gpa, index), value.to_bytes(4, "little"))

    return Handled(0, then=lambda eip: bus.run_entries(eip, entries, write_back))
