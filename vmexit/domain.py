"""A domain: one guest machine -- its image in its own RAM on its own CPU engine, the PC's devices built
from their table (devices/pc.py), interrupt routing, one vCPU, the hypervisor's exit model for it, the
optimizations attached at the model's hook points, and the recorder of its exits. Nothing in a domain
reaches another domain except through the host (host.py).
"""
from __future__ import annotations

from . import __version__
from .clock import Clock
from .codescan import CodeScanner
from .costs import Profile
from .devices import pc
from .devices.unassigned import unassigned_gaps
from .exits import ExitRecorder, Place
from .hypervisors import HYPERVISORS, Hypervisor
from .hypervisors.model import ModelContext
from .loader import Image
from .machine import X86Machine
from .optimizations import OPTIMIZATIONS, RunFacts
from .options import RunOptionError
from .trace import Trace
from .vcpu import VCPU, Ending, RunEnd, TimedDevice


class Domain:
    def __init__(self, image: Image, profile: Profile, options, domid: int = 0, xen_host=None):
        """options: session.RunOptions (hypervisor, optimizations, devices' settings); xen_host: what Xen
        shares between the domains of one host (hypervisors/xen_host.py), None for a domain alone."""
        unknown = set(options.optimizations) - set(OPTIMIZATIONS)
        if unknown:
            raise ValueError(f"unknown optimization(s): {', '.join(sorted(unknown))}")
        if options.hypervisor not in HYPERVISORS:
            raise ValueError(f"unknown hypervisor {options.hypervisor!r} (known: {', '.join(HYPERVISORS)})")
        if not 0 <= options.host_timer_hz <= profile.freq_hz:
            raise RunOptionError("host_timer_hz", "--host-timer-hz", str(options.host_timer_hz),
                                 f"give 0 (off) to the CPU clock, {profile.freq_hz} Hz")
        self.domid = domid
        self.xen_host = xen_host
        self.image, self.profile, self.options = image, profile, options
        self.hypervisor: Hypervisor = HYPERVISORS[options.hypervisor]
        self.clock = Clock(profile.freq_hz, *profile.cpi)
        # a large kernel (Linux) has every block start looked at (engine/unicorn.py: watch_every_block)
        self.machine = X86Machine(options.ram_size, watch_every_block=image.linux is not None)
        self.recorder = ExitRecorder(domain=domid)
        self.ending = Ending(self.machine.engine.counter)
        self.hooks = self._attach_optimizations()
        wiring = pc.Wiring(self.clock, self.machine, options, self.ending, self.hooks.get("timer_load"))
        self.devices = pc.build(wiring)
        self.machine.load(image)  # an image that does not fit is bad input (LoadError), not a guest crash
        self.machine.boot(image)
        self.scanner = CodeScanner(self.machine.engine, lambda address, size: self.vcpu.code(address, size))
        self.vcpu = self._vcpu()
        self.model = self.hypervisor.build(self._model_context())
        self.machine.engine.watch_code(self.scanner)
        self.machine.engine.read_code = lambda address, size: self.vcpu.code(address, size)

    def _attach_optimizations(self) -> dict:
        """The optimization at each hook point the model offers (others report themselves no-ops)."""
        hooks = {}
        for name, value in sorted(self.options.optimizations.items()):
            opt = OPTIMIZATIONS[name]
            if opt.hook in self.hypervisor.hook_points:
                hooks[opt.hook] = opt.build(value, self.machine)
        return hooks

    def _vcpu(self) -> VCPU:
        hv, devices = self.hypervisor, self.devices
        irqs = devices[pc.INTERRUPTS]
        timed = [TimedDevice(devices[name], _vector(pc.vector_of(name), devices[name], irqs),
                             host_timer=name in hv.host_timers) for name in pc.present(devices, pc.TIMED)]
        host_hz = self.options.host_timer_hz if hv.host_timers else 0
        return VCPU(self.machine, self.clock, self.profile, self.recorder, irqs, timed, self.ending, self.scanner,
                    records=hv.records, host_timer_hz=host_hz,
                    function_starts=[*self.image.symbols.values(), *self.image.starts])

    def _model_context(self) -> ModelContext:
        devices = self.devices
        mmio = [(devices[name], pc.moves_timers(name)) for name in pc.MMIO]
        mmio += [(gap, False) for gap in unassigned_gaps([dev for dev, _ in mmio])]
        return ModelContext(self.vcpu, self.machine, self.clock, self.profile, self.image,
                            ports=[(devices[name], pc.moves_timers(name)) for name in pc.present(devices, pc.PORTS)],
                            mmio=mmio,
                            scanner=self.scanner, hooks=self.hooks, console=devices["uart"].emit,
                            domid=self.domid, xen_host=self.xen_host)

    # running ---------------------------------------------------------------------------------------
    def run(self, max_instructions=None, max_cycles=None, progress=None, until=None) -> RunEnd | None:
        return self.vcpu.run(max_instructions, max_cycles, progress, until)

    def interrupted(self, detail: str | None = None) -> RunEnd:
        """Ctrl-C, or SIGTERM / SIGHUP (stopsignals.py, whose exception says which), ended the run."""
        self.ending.finish(RunEnd("interrupted", detail or "interrupted by the user (Ctrl-C)"))
        return self.ending.end

    def close(self) -> None:
        """The run is over: the disks keep what the guest wrote (to the user's images only if asked)."""
        for name in ("disk", "disk1"):
            if self.devices[name] is not None:
                self.devices[name].flush()

    # the record of the run ---------------------------------------------------------------------------
    def trace(self) -> Trace:
        end, clock, options = self.ending.end, self.clock, self.options
        cycles = clock.now()
        seconds = cycles / clock.freq_hz
        emulated = self.recorder.emulated()
        meta = {
            "vmexit_version": __version__, "guest": self.image.name, "guest_kind": self.image.kind,
            "guest_sha256": self.image.sha256, "constants": self.image.constants, "options": options.recorded(),
            "profile": self.profile.name, "hypervisor": options.hypervisor, "freq_hz": clock.freq_hz,
            "cpi": [clock.cpi_num, clock.cpi_den], "instructions": clock.icount, "cycles": cycles,
            "virtual_seconds": seconds, "idle_cycles": clock.idle,
            "status": end.status, "detail": end.detail, "guest_value": end.guest_value, "end_address": end.address,
            "domid": self.domid,
        }
        meta.update(pc.results(self.devices, seconds, options))
        if self.recorder.stacks.truncated:
            meta["stacks_truncated"] = self.recorder.stacks.truncated  # exits past the stack table's limit
        if self.hypervisor.stats is not None:
            meta[self.hypervisor.stats] = self.model.stats()
        facts = RunFacts(emulated, self.devices, seconds, self.hypervisor.hook_points, self.hypervisor.name)
        meta["optimizations"] = {name: OPTIMIZATIONS[name].outcome(self.hooks.get(OPTIMIZATIONS[name].hook),
                                                                   value, facts)
                                 for name, value in sorted(options.optimizations.items())}
        return Trace(exits=self.recorder.records(), meta=meta, symbols=dict(self.image.symbols), emulated=emulated,
                     stacks=self.recorder.stacks.table())


class HwDomain(Domain):
    """A domain on the host's real KVM (`--hypervisor kvm-hw`): the same image, RAM layout, multiboot
    state, devices and recorder as Domain, on the KVM engine, run by hwvcpu.HwVCPU instead of the
    emulated vCPU and an exit model (hwvcpu.py says what is measured and what is not deterministic).
    No instruction budget (KVM counts none: --max-seconds is real time there) and no optimization
    hook point; a run of several domains is not offered."""

    def __init__(self, image: Image, profile: Profile, options, domid: int = 0, xen_host=None):
        from .hwvcpu import RealClock
        if options.max_instructions is not None:
            raise RunOptionError("max_instructions", "--max-instructions", str(options.max_instructions),
                                 "kvm-hw counts no guest instructions: give a real-time budget (--max-seconds)")
        self.domid, self.xen_host = domid, xen_host
        self.image, self.profile, self.options = image, profile, options
        self.hypervisor = HYPERVISORS[options.hypervisor]
        self.clock = RealClock(profile.freq_hz, *profile.cpi)
        self.machine = X86Machine(options.ram_size, engine="kvm")
        try:
            self._build(image, profile, options, domid)
        except BaseException:
            self.machine.engine.close()   # the VM's descriptors, before the error reaches the user
            raise

    def _build(self, image: Image, profile: Profile, options, domid: int) -> None:
        from .hwvcpu import HwVCPU
        from .hypervisors.ports import PortBus
        self.recorder = ExitRecorder(domain=domid)
        self.ending = Ending(self.machine.engine.counter)
        self.hooks = {}
        self.devices = pc.build(pc.Wiring(self.clock, self.machine, options, self.ending))
        self.machine.load(image)
        self.machine.boot_multiboot(image.entry)
        devices, irqs = self.devices, self.devices[pc.INTERRUPTS]
        timed = [TimedDevice(devices[name], _vector(pc.vector_of(name), devices[name], irqs))
                 for name in pc.present(devices, pc.TIMED)]
        ports = [(devices[name], Place.USER, pc.moves_timers(name)) for name in pc.present(devices, pc.PORTS)]
        mmio = [(devices[name], pc.moves_timers(name)) for name in pc.MMIO]
        mmio += [(gap, False) for gap in unassigned_gaps([dev for dev, _ in mmio])]
        self.vcpu = HwVCPU(self.machine, self.clock, profile, self.recorder, irqs, timed, self.ending,
                           lambda vcpu: PortBus(vcpu, self.machine, profile, ports, records=False), mmio)
        self.model = self.vcpu   # its stats() are the run's meta under the hypervisor's key

    def run(self, max_instructions=None, max_cycles=None, progress=None, until=None) -> RunEnd | None:
        if until is not None:
            raise ValueError("a kvm-hw domain runs alone on its host")
        return self.vcpu.run(max_cycles)

    def close(self) -> None:
        super().close()
        self.machine.engine.close()


def _vector(vector, device, irqs):
    return lambda: vector(device, irqs)
