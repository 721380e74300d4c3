"""`vmexit calibrate`: measure this host's KVM exit round trips and write them as a cost profile.

Each kind of exit is measured by a micro-guest (guests/calibrate/KIND.S, one `probe` instruction in
the shared loop of measure.S) run on the host's KVM: the guest reads the TSC before and after each
probe, so a sample is the whole round trip as the guest sees it -- the VM exit, KVM, for exits that
reach user space the return from KVM_RUN, vmexit's loop and the next KVM_RUN, and the VM entry. The
empty probe (none.S) measures the loop itself, and its median is subtracted from every kind's median.
rdtsc is not intercepted by KVM, so the guest reads the host's TSC (offset), at the rate KVM_GET_TSC_KHZ
gives; the profile's cycles are TSC ticks and its frequency the TSC rate. The micro-guests use no
interrupts, no iret and no int n, so they run on hosts whose KVM cannot emulate those (nested ones).

Kinds that reach user space (KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_HLT) are run with no in-kernel
irqchip, and vmexit's loop re-enters at once without touching a device, so their cost is the KVM round
trip with the least user-space work Python allows; the loop also times its own part per exit
(KVM_RUN's return to the next KVM_RUN), and the difference is the kernel part, which a kvm-hw run adds
to the user-space time it measures per exit (the profile's host costs `kvm_hw_kernel/...`). Exits
handled inside the kernel (CPUID, RDMSR, VMCALL/VMMCALL, and with KVM's in-kernel irqchip the 8259A's
ports, the local APIC and the I/O APIC) are timed the same way from inside the guest.

A kind this host's KVM cannot run (an emulation failure, or a refused in-kernel irqchip) is reported and
its cost derived from a measured one, the profile's source saying so; the statistic is the median of
`samples` round trips (p5 and p95 are kept beside it in the profile's `calibration` section). Every
number's source names what was measured, the CPU (/proc/cpuinfo), the kernel, the samples and the
statistic. Nothing here is deterministic: two calibrations differ by the host's noise.
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .costs import CALIBRATED, parse_profile, user_profile_dir
from .errors import KvmUnavailable, VmexitError

RAM_SIZE = 4 << 20
RESULTS = 0x200000             # measure.S's RESULTS
DEBUG_EXIT = 0xf4
DEFAULT_SAMPLES = 1000
KIND_TIMEOUT_S = 2.0           # real time a micro-guest may take, plus 1 ms per sample
MAX_SAMPLES = (RAM_SIZE - RESULTS) // 4


@dataclass(frozen=True)
class Kind:
    name: str
    what: str
    irqchip: bool = False       # run with KVM's in-kernel PIC, I/O APIC and local APIC
    vendor: str | None = None   # only on this CPU vendor (VMCALL is Intel's, VMMCALL AMD's)
    source: str | None = None   # the micro-guest, when not <name>.S

    @property
    def baseline(self) -> str:
        """The empty probe run the same way (with or without the in-kernel irqchip)."""
        return "none_irqchip" if self.irqchip else "none"


#: Every micro-guest, explicitly (guests/calibrate/<name>.S).
KINDS: tuple[Kind, ...] = (
    Kind("none", "the empty probe (the loop's own cost)"),
    Kind("port_out", "an OUT to an unclaimed port, a KVM_EXIT_IO round trip to user space"),
    Kind("port_in", "an IN from an unclaimed port, a KVM_EXIT_IO round trip to user space"),
    Kind("mmio_read", "a 32-bit read of unbacked guest-physical memory, a KVM_EXIT_MMIO round trip to user space"),
    Kind("mmio_write", "a 32-bit write of unbacked guest-physical memory, a KVM_EXIT_MMIO round trip to user space"),
    Kind("hlt", "HLT with interrupts off and no in-kernel irqchip, a KVM_EXIT_HLT round trip to user space"),
    Kind("cpuid", "CPUID leaf 0, handled inside KVM"),
    Kind("rdmsr", "RDMSR of IA32_APIC_BASE, handled inside KVM"),
    Kind("vmcall", "VMCALL with an unknown hypercall number, handled inside KVM", vendor="GenuineIntel"),
    Kind("vmmcall", "VMMCALL with an unknown hypercall number, handled inside KVM", vendor="AuthenticAMD"),
    Kind("none_irqchip", "the empty probe with the in-kernel irqchip", irqchip=True, source="none"),
    Kind("pic_out", "an OUT to the 8259A mask port, handled by KVM's in-kernel PIC", irqchip=True),
    Kind("pic_in", "an IN from the 8259A mask port, handled by KVM's in-kernel PIC", irqchip=True),
    Kind("lapic_read", "a read of the local APIC version register, handled by KVM's in-kernel LAPIC", irqchip=True),
    Kind("ioapic_read", "a read of the I/O APIC register select, handled by KVM's in-kernel I/O APIC", irqchip=True),
)
#: Kinds without which there is no profile (the user-space round trips and the baseline).
ESSENTIAL = ("none", "none_irqchip", "port_out", "port_in", "mmio_read", "mmio_write", "hlt", "cpuid")


@dataclass
class Measurement:
    kind: Kind
    ticks: np.ndarray | None = None     # TSC ticks per round trip, as the guest measured them
    user_ns: np.ndarray | None = None   # vmexit's part per exit that reached user space
    failure: str | None = None          # why the kind could not be measured here

    def median(self) -> int:
        return int(np.median(self.ticks))

    def net(self, measured: dict) -> int:
        """The median round trip minus its baseline's median (the loop itself), in TSC ticks."""
        return max(self.median() - measured[self.kind.baseline].median(), 0)


def guest_path(kind: Kind) -> Path:
    from .guests import guests_dir
    return guests_dir() / "calibrate" / f"{kind.source or kind.name}.S"


def measure(kind: Kind, samples: int) -> Measurement:
    """Run the kind's micro-guest on the host's KVM and collect its samples."""
    from .guests import build_source
    from .machine import X86Machine
    image = build_source(guest_path(kind), {"SAMPLES": samples})
    try:
        machine = X86Machine(RAM_SIZE, engine="kvm-irqchip" if kind.irqchip else "kvm")
    except KvmUnavailable as e:
        if kind.irqchip:
            return Measurement(kind, failure=str(e))
        raise
    engine = machine.engine
    try:
        machine.load(image)
        machine.boot_multiboot(image.entry)
        user, failure = _loop(engine, KIND_TIMEOUT_S + samples * 0.001)
        if failure is not None:
            return Measurement(kind, failure=failure)
        ticks = np.frombuffer(machine.ram, np.uint32, samples, RESULTS).astype(np.int64)
        return Measurement(kind, ticks, np.frombuffer(user, np.int64).copy() if len(user) else None)
    finally:
        engine.close()


def _loop(engine, limit_s: float) -> tuple[array, str | None]:
    """Enter the guest until it writes the debug-exit port, re-entering at once after every exit;
    returns vmexit's time per exit (KVM_RUN's return to the next KVM_RUN, ns) or why it stopped. A
    guest that has not finished after limit_s seconds of real time is given up (a probe that never
    completes on this host: measured, VMMCALL on a nested AMD host spins inside KVM)."""
    from .hwvcpu import Kicker
    with Kicker() as kicker:
        kicker.arm(int(limit_s * 1000), 0, 1000)   # a kick at limit_s (deadline and now in ms)
        return _enter_until_exit(engine, time.monotonic() + limit_s, limit_s)


def _enter_until_exit(engine, deadline: float, limit_s: float) -> tuple[array, str | None]:
    vm, run = engine.vm, engine.vm.run
    user = array("q")
    back = None
    while True:
        entering = time.perf_counter_ns()
        if back is not None:
            user.append(entering - back)
        err = vm.enter()
        back = time.perf_counter_ns()
        if err == -errno.EINTR:
            if time.monotonic() >= deadline:
                return user, f"the guest did not finish in {limit_s:g} s (the probe never completes on this host)"
            back = None
            continue
        if err < 0:
            return user, f"KVM_RUN failed: {os.strerror(-err)}"
        reason = run.exit_reason
        if reason == 2 and run.exit.io.port == DEBUG_EXIT:
            return user, None
        if reason in (2, 5, 6):   # IO, HLT, MMIO: nothing to do but enter again
            continue
        rip = engine.eip_ebp()[0]
        if reason == 17:
            return user, f"this host's KVM cannot run the instruction at 0x{rip:x} (KVM emulation failure)"
        return user, f"unexpected KVM exit {reason} at 0x{rip:x}"


# the host ----------------------------------------------------------------------------------------------
def host_facts() -> dict:
    """What the profile says it was measured on: CPU model and vendor, kernel, TSC rate."""
    cpu, vendor = "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu == "unknown CPU":
                cpu = value.strip()
            elif key.strip() == "vendor_id" and not vendor:
                vendor = value.strip()
    except OSError:
        pass
    from .engine.kvm import KvmEngine
    engine = KvmEngine(RAM_SIZE)
    try:
        khz = engine.vm.tsc_khz()
        signature = next((e.eax for e in engine.system.supported_cpuid().entries if e.function == 1), 0x1067A)
    finally:
        engine.close()
    if not khz:
        raise KvmUnavailable("this host's KVM does not give its TSC rate (KVM_GET_TSC_KHZ)")
    return {"cpu": cpu, "vendor": vendor, "kernel": os.uname().release, "tsc_khz": khz,
            "cpuid_signature": int(signature), "date": datetime.date.today().isoformat()}


def calibrate(samples: int = DEFAULT_SAMPLES, name: str = CALIBRATED) -> tuple[dict, dict[str, Measurement]]:
    """Measure every kind this host's CPU has and build the profile (a JSON document)."""
    if not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise VmexitError(f"samples={samples}: give 1 to {MAX_SAMPLES} round trips per kind")
    host = host_facts()
    measured = {k.name: measure(k, samples) for k in KINDS if k.vendor in (None, host["vendor"])}
    for essential in ESSENTIAL:
        if measured[essential].failure is not None:
            raise KvmUnavailable(f"this host's KVM cannot run the calibration guest {essential}: "
                                 f"{measured[essential].failure}")
    doc = build_profile(name, host, samples, measured)
    parse_profile(json.dumps(doc), name)   # what is written must load
    return doc, measured


def default_output() -> Path:
    return user_profile_dir() / f"{CALIBRATED}.json"


# the profile -------------------------------------------------------------------------------------------
#: Profile key -> the kinds that measure it, first one this CPU has (VMCALL: Intel's or AMD's).
MEASURED: dict[str, tuple[str, ...]] = {
    "IO_INSTRUCTION/user/in": ("port_in",), "IO_INSTRUCTION/user/out": ("port_out",),
    "IO_INSTRUCTION/kernel/in": ("pic_in",), "IO_INSTRUCTION/kernel/out": ("pic_out",),
    "EPT_VIOLATION/user/in": ("mmio_read",), "EPT_VIOLATION/user/out": ("mmio_write",),
    "EPT_VIOLATION/kernel": ("ioapic_read",), "APIC_ACCESS": ("lapic_read",),
    "HLT": ("hlt",), "CPUID": ("cpuid",), "MSR_READ": ("rdmsr",), "VMCALL": ("vmcall", "vmmcall"),
}
#: Profile key -> (the key it is derived from, why): what no micro-guest measures, or what this host
#: could not run (then the measured key's fallback).
DERIVED: dict[str, tuple[str, str]] = {
    "MSR_WRITE": ("MSR_READ", "an MSR access handled inside KVM, as the measured RDMSR (no MSR write is "
                              "harmless to repeat in a guest)"),
    "INTERRUPT_WINDOW": ("CPUID", "a trivial exit handled inside KVM, as the measured CPUID"),
    "EXTERNAL_INTERRUPT": ("CPUID", "the exit of a host interrupt, handled inside KVM, as the measured CPUID "
                                    "(the micro-guests take no interrupts)"),
    "EXCEPTION_NMI": ("CPUID", "an intercepted exception reflected by KVM, as the measured CPUID"),
    "UNKNOWN": ("IO_INSTRUCTION/user/in", "charged as a round trip to user space (the measured port read)"),
    "IO_INSTRUCTION/kernel/in": ("CPUID", "an exit handled inside KVM, as the measured CPUID"),
    "IO_INSTRUCTION/kernel/out": ("CPUID", "an exit handled inside KVM, as the measured CPUID"),
    "EPT_VIOLATION/kernel": ("CPUID", "an exit handled inside KVM, as the measured CPUID"),
    "APIC_ACCESS": ("EPT_VIOLATION/user/in", "an MMIO exit, as the measured MMIO read to user space"),
    "VMCALL": ("CPUID", "an exit handled inside KVM, as the measured CPUID"),
}
#: The kernel part of each exit a kvm-hw run sees in user space (hwvcpu.py): host key -> the kind that
#: measures it, and why when that kind stands in for another exit (derived).
KERNEL_PARTS: dict[str, tuple[str, str]] = {
    "kvm_hw_kernel/IO_INSTRUCTION/in": ("port_in", ""), "kvm_hw_kernel/IO_INSTRUCTION/out": ("port_out", ""),
    "kvm_hw_kernel/EPT_VIOLATION/in": ("mmio_read", ""), "kvm_hw_kernel/EPT_VIOLATION/out": ("mmio_write", ""),
    "kvm_hw_kernel/APIC_ACCESS/in": ("mmio_read", "the local APIC page is plain MMIO under kvm-hw"),
    "kvm_hw_kernel/APIC_ACCESS/out": ("mmio_write", "the local APIC page is plain MMIO under kvm-hw"),
    "kvm_hw_kernel/HLT": ("hlt", ""),
    "kvm_hw_kernel/INTERRUPT_WINDOW": ("hlt", "an exit to user space that carries no data, as HLT"),
    "kvm_hw_kernel/EXTERNAL_INTERRUPT": ("hlt", "a kick out of KVM_RUN to user space, as HLT's round trip"),
}


def _stat(m: Measurement) -> dict:
    out = {"what": m.kind.what, "irqchip": m.kind.irqchip}
    if m.failure is not None:
        return {**out, "failure": m.failure}
    p5, p50, p95 = (int(v) for v in np.percentile(m.ticks, [5, 50, 95]))
    out.update(samples=int(len(m.ticks)), p5_ticks=p5, median_ticks=p50, p95_ticks=p95)
    if m.user_ns is not None:
        out["user_exits"] = int(len(m.user_ns))
        out["user_median_ns"] = int(np.median(m.user_ns))
    return out


def build_profile(name: str, host: dict, samples: int, measured: dict[str, Measurement]) -> dict:
    """The profile document: every exit reason priced, each number with its source."""
    base = measured["none"].median()
    khz = host["tsc_khz"]
    where = (f"{host['cpu']}, Linux {host['kernel']}, {host['date']}; median of {samples} samples, TSC at "
             f"{khz} kHz")

    costs: dict[str, dict] = {}
    for key, kinds in MEASURED.items():
        m = next((measured[k] for k in kinds if k in measured and measured[k].failure is None), None)
        if m is not None:
            empty = measured[m.kind.baseline].median()
            costs[key] = {"cycles": m.net(measured), "source": f"measured by vmexit calibrate ({m.kind.name}.S): "
                          f"{m.kind.what}; rdtsc around the instruction inside the guest, minus the empty "
                          f"probe's {empty} ticks; {where}"}
    failures = {k: m.failure for k, m in measured.items() if m.failure is not None}
    for key, (origin, why) in DERIVED.items():
        if key not in costs:
            note = f" ({key} could not be measured here: {'; '.join(failures.values())})" \
                if key in MEASURED and failures else ""
            costs[key] = {"cycles": costs[origin]["cycles"], "source": f"derived: {why}{note}"}
    costs["TRIPLE_FAULT"] = {"cycles": 0, "source": "the guest is dead; nothing to charge"}
    return {
        "name": name,
        "description": f"this host, as vmexit calibrate measured it: {host['cpu']}, KVM on Linux {host['kernel']}",
        "cpu": {"model": host["cpu"], "freq_hz": khz * 1000, "cpi": [1, 1],
                "cpuid_signature": host["cpuid_signature"],
                "source": f"the TSC rate KVM gives its guests (KVM_GET_TSC_KHZ), the clock the samples were "
                          f"taken with; CPI 1 derived (calibration times exits, not instructions); {where}"},
        "trapped_exceptions": {"vectors": [6, 18], "source": "KVM always intercepts #UD and #MC (svm.c, vmx.c); "
                               "#PF not with two-dimensional paging"},
        "costs": costs,
        "host": _kernel_parts(measured, base, khz, where),
        "calibration": {"samples": samples, "statistic": "median", "baseline_ticks": base, **host,
                        "kinds": {k: _stat(m) for k, m in measured.items()}},
    }


def _kernel_parts(measured: dict[str, Measurement], base: int, khz: int, where: str) -> dict:
    """Each user-space exit's round trip minus vmexit's measured part of it: what a kvm-hw run adds."""
    out = {}
    for key, (kind, derived) in KERNEL_PARTS.items():
        m = measured[kind]
        user = int(np.median(m.user_ns)) * khz // 1_000_000 if m.user_ns is not None else 0
        source = (f"measured by vmexit calibrate ({kind}.S): the round trip seen from the guest minus vmexit's "
                  f"own part (KVM_RUN's return to the next KVM_RUN, median {user * 1_000_000 // khz} ns); {where}")
        out[key] = {"cycles": max(m.median() - base - user, 0),
                    "source": f"derived: {derived}; {source}" if derived else source}
    return out


def summary(doc: dict) -> str:
    """The measured round trips as a table: per kind the median in TSC ticks, net of the empty probe, in
    microseconds, and vmexit's user-space part of it where the exit reached user space."""
    cal = doc["calibration"]
    khz = cal["tsc_khz"]
    lines = [f"{cal['cpu']}, Linux {cal['kernel']}, TSC {khz / 1e6:.3f} GHz; median of {cal['samples']} "
             "round trips per kind, timed inside the guest", "",
             f"{'kind':14s} {'median ticks':>12s} {'net ticks':>10s} {'net us':>8s} {'user-space us':>14s}  what"]
    kinds = cal["kinds"]
    for name, k in kinds.items():
        if "failure" in k:
            lines.append(f"{name:14s} {'-':>12s} {'-':>10s} {'-':>8s} {'-':>14s}  not measured: {k['failure']}")
            continue
        base = kinds["none_irqchip" if k["irqchip"] else "none"]["median_ticks"]
        net = max(k["median_ticks"] - base, 0) if not name.startswith("none") else k["median_ticks"]
        user = f"{k['user_median_ns'] / 1000:.2f}" if "user_median_ns" in k else "-"
        lines.append(f"{name:14s} {k['median_ticks']:>12,} {net:>10,} {net / khz * 1000:>8.2f} {user:>14s}  {k['what']}")
    return "\n".join(lines)


def write_profile(doc: dict, path: Path) -> None:
    from .trace import write_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
