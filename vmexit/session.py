"""One run: a guest as one domain on a host, run to its end (or budget), returned as a Trace.

RunOptions is everything a run can be asked for, checked when made (options.py: the valid ranges, one
check for the CLI and the Python API alike); the domain (domain.py) builds the machine, the devices,
the vCPU and the exit model from them, and the host (host.py) runs it. A hypervisor that is the host's
real KVM (`hardware` in its registry entry: kvm-hw) gets a HwDomain, run by hwvcpu.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from .costs import Profile
from .domain import Domain, HwDomain
from .host import Host
from .hypervisors import HYPERVISORS
from .loader import Image
from .machine import X86Machine
from .options import validate
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
    net_peer_waits: bool = False    # ... from the guest's first frame on (its connect), not from boot
    net_frame_size: int = 1514
    net_window: int = 16
    net_rate_bps: int | None = None  # the peer's link rate when it streams (None: its default, 100 Mb/s)
    nic: bool = True                # whether the PC has the NIC and its peer (a Xen domU has none)
    net_dest_mac: str | None = None  # hex MAC the peer's frames go to (None: the NIC's own; xennet: domU's)
    net_peer: str = "stream"        # the NIC's peer: "stream" (netpeer.py, frames as segments) or "tcp" (tcppeer.py)
    wake_preempts: bool = False     # several domains: an event waking a blocked domain ends the sender's slice
    optimizations: dict[str, int] = field(default_factory=dict)  # --opt NAME=VALUE (optimizations/)
    hypervisor: str = "kvm"         # a key of hypervisors.HYPERVISORS
    host_timer_hz: int = 0          # guest timers fire on a host tick of this rate (0: when due)
    input: bytes = b""              # typed into the UART (--input, --input-file)
    until_console: str | None = None  # end the run when the console has printed this
    echo: Callable[[bytes], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every option within its range (options.py, the one check for the CLI and the API alike):
        options.RunOptionError, a VmexitError, names the option and its valid range."""
        validate(self)

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
    hardware = HYPERVISORS[options.hypervisor].hardware   # the host's real KVM (domain.HwDomain)
    domain = (HwDomain if hardware else Domain)(image, profile, options)
    max_cycles = None if options.max_seconds is None else int(options.max_seconds * domain.clock.freq_hz)
    Host([domain]).run(options.max_instructions, max_cycles, progress)
    domain.close()
    if on_end is not None:
        on_end(domain.machine, domain.devices)
    return domain.trace()
