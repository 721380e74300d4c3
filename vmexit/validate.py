"""`vmexit validate`: the guest's port and MMIO accesses counted by the model, by QEMU and by real KVM.

One guest runs under every backend of an explicit table (BACKENDS): vmexit's model (the trace's exits),
`qemu-system-i386` with TCG (QEMU's `memory_region_ops_read` / `_write` trace events) and real KVM
(`vmexit.run(hypervisor="kvm-hw")`, the same trace format). Each backend gives the guest's accesses in
the order they happened, or the reason it could not run the guest here; the counts per port and per MMIO
address are then put side by side, and a row whose counts differ is a mismatch.

What is counted: one access is one read or write of 1, 2 or 4 bytes at one address, as QEMU's memory
core dispatches it (one trace event each). A `rep insw` of 256 words is 256 accesses of 2 bytes, while
the model records it as one exit per 1,024 bytes (hypervisors/ports.py) whose `size` is the bytes it
moved: such an exit counts size / element accesses, the element size read from the string instruction at
the exit's address in the guest image. Every I/O exit counts, whoever handles it (kernel or user space:
the `place` column does not matter), and so does every access the model emulated inside another exit
(the trace's `emulated` rows). An MMIO access is an APIC_ACCESS or EPT_VIOLATION exit, its qualifier the
guest-physical address, as QEMU logs the absolute address of the region's access.

Only the guest's own accesses: QEMU boots a multiboot kernel through its firmware (SeaBIOS, a VGA BIOS,
the multiboot option ROM), which probes the PCI bus, the IDE drives, the serial ports, the RTC and more
before the guest runs. The option ROM fetches the kernel and its multiboot information through QEMU's
fw_cfg device (ports 0x510-0x51b, regions `fwcfg` and `fwcfg.dma`) and jumps to the kernel without
another port access, and no guest here uses fw_cfg: the guest's accesses are those after the last fw_cfg
access of the log (checked: the first ones are each guest's serial initialisation). Events QEMU logs
with `cpu -1` are not the vCPU's (devices, QEMU's own reset) and are left out. In QEMU's `pc` machine
nothing memory-mapped sits below 64 KiB (it is RAM), so an address below 0x10000 is an I/O port.

PCI I/O BARs: the model's BARs are fixed (devices/pci.py); SeaBIOS assigns its own (in QEMU 7.2 it
swaps the RTL8139's and the bus-master IDE's). The guest finds its registers by reading the BAR, so the
same register is a different port number: each backend's BARs are learnt from the guest's own
configuration reads (a 4-byte read of 0xcfc after a 4-byte write of 0xcf8 selecting a BAR register), and
a port inside a BAR is shown at the model's address for that BAR. The BAR sizes are the devices' own.

Timing: a guest whose accesses depend on how fast its timers tick against its instructions (a work
loop that a tick interrupts, a status poll that waits for a device, two timers racing) can count
differently under backends whose clocks differ: the model's virtual clock (instructions x CPI + modeled
exit costs), QEMU's (the host's clock under TCG) and KVM's. Such rows are mismatches too; README
("Validating the model against QEMU and KVM") lists what agrees. QEMU runs without -icount: with it,
QEMU's device timers and its interrupt controller's MSI writes run on the vCPU's thread and are logged
as the vCPU's accesses (`cpu 0`), and the vCPU races ahead of the disk's I/O thread (ide's DRQ polls
grow from 99 to thousands); without it, the ide, fork, exec and timer (small WORK) guests agree exactly.
A guest that exchanged frames with the model's TCP peer (devices/netpeer.py) is not run in QEMU, whose
network (user-mode, slirp) is another peer: its NIC registers and interrupts would differ by design.

QEMU's run is the only thing here that reads the host clock: a run longer than `timeout` seconds of
host time is stopped and reported as not finished (a guest that halts with interrupts off never ends
in QEMU).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .analysis import Column, Report
from .errors import VmexitError
from .exits import Direction, ExitReason

ACCESS_DTYPE = np.dtype([
    ("mmio", "?"),         # memory-mapped (else an I/O port)
    ("address", "<u8"),    # port number or guest-physical address
    ("direction", "u1"),   # exits.Direction
    ("size", "u1"),        # bytes per access
    ("value", "<u8"),      # the value read or written (the first element of a string exit)
    ("count", "<u4"),      # accesses this row stands for (a string exit: several)
])

_MMIO_REASONS = (int(ExitReason.APIC_ACCESS), int(ExitReason.EPT_VIOLATION))
PCI_ADDRESS, PCI_DATA = 0xCF8, 0xCFC
#: The I/O BARs whose ports are relocated, by (bus, device, function, BAR index): their size in ports.
BAR_SPANS = {
    (0, 1, 1, 4): 16,    # PIIX3 IDE BMIBA: 16 bytes of bus-master registers (Intel 82371SB datasheet, BMIBA)
    (0, 3, 0, 0): 256,   # RTL8139 IOAR: 256 bytes of operational registers (Realtek RTL8139 datasheet, 6.1)
}


class ValidateError(VmexitError):
    """A guest `vmexit validate` cannot compare (bad input: exit code 2)."""


@dataclass
class Subject:
    """What every backend runs: the guest as given, its constants, the image they build, a work directory."""
    guest: str
    constants: dict[str, int]
    image: object            # loader.Image
    workdir: Path
    timeout: float = 300.0   # host seconds a QEMU run may take
    model_meta: dict = field(default_factory=dict)   # the model's run facts (run_model sets them)


@dataclass
class Outcome:
    """One backend's result: its accesses in order, or why it did not run (state says which)."""
    backend: str
    state: str                         # ran | unavailable | cannot run | failed
    detail: str = ""                   # what ran, or why not
    accesses: np.ndarray | None = None
    bars: dict = field(default_factory=dict)
    counts: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Backend:
    name: str
    run: Callable[[Subject], Outcome]
    summary: str


# the model and KVM: a vmexit trace -------------------------------------------------------------------
def trace_accesses(trace, image) -> np.ndarray:
    """The port and MMIO accesses of a trace in the order they happened (numpy, no loop over exits)."""
    e = trace.exits
    io = e[e["reason"] == int(ExitReason.IO_INSTRUCTION)]
    mm = e[np.isin(e["reason"], _MMIO_REASONS)]
    unit = _element_sizes(io, image)
    parts = [_rows(io["seq"], False, io["qualifier"], io["direction"], unit, io["value"],
                   np.maximum(io["size"] // unit, 1), 0),
             _rows(mm["seq"], True, mm["qualifier"], mm["direction"], mm["size"], mm["value"], 1, 0)]
    em = trace.emulated
    if len(em):
        parts.append(_rows(em["exit"], False, em["port"], em["direction"], em["size"], em["value"], 1, 1))
    order_keys = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    return rows[np.lexsort((order_keys[:, 1], order_keys[:, 0]))]


def _rows(seq, mmio, address, direction, size, value, count, after) -> tuple[np.ndarray, np.ndarray]:
    """ACCESS_DTYPE rows with their order key (exit seq, 0 for the exit / 1 for what it emulated)."""
    out = np.zeros(len(seq), dtype=ACCESS_DTYPE)
    out["mmio"], out["address"], out["direction"] = mmio, address, direction
    out["size"], out["value"], out["count"] = size, value, count
    keys = np.stack([np.asarray(seq, dtype=np.int64), np.full(len(seq), after, dtype=np.int64)], axis=1)
    return keys, out


def _element_sizes(io: np.ndarray, image) -> np.ndarray:
    """Bytes per element of each I/O exit: its size, or for a string instruction (ins/outs) the element
    size its opcode and operand-size prefix give (decoded once per distinct exit address)."""
    sizes = io["size"].astype(np.int64)
    if not len(io):
        return sizes
    rips, inverse = np.unique(io["rip"], return_inverse=True)
    units = np.array([_string_unit(image, int(rip)) for rip in rips], dtype=np.int64)[inverse]
    return np.where(units > 0, units, sizes)


def _string_unit(image, rip: int) -> int:
    """The element size of the ins/outs at `rip` in the image (0: not one, or not in the image)."""
    for seg in getattr(image, "segments", ()):
        if seg.address <= rip < seg.address + len(seg.data):
            code = seg.data[rip - seg.address:rip - seg.address + 8]
            break
    else:
        return 0
    operand16 = False
    for b in code:
        if b == 0x66:
            operand16 = True
        elif b in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x67, 0xF2, 0xF3):
            continue
        elif b in (0x6C, 0x6E):
            return 1
        elif b in (0x6D, 0x6F):
            return 2 if operand16 else 4
        else:
            return 0
    return 0


def run_model(subject: Subject) -> Outcome:
    """vmexit's model of KVM on its PC, default options: the run `vmexit run GUEST -D ...` makes."""
    from .costs import load_profile
    from .hypervisors import HYPERVISORS
    from .session import RunOptions, run
    trace = run(subject.image, load_profile(HYPERVISORS["kvm"].profile), RunOptions())
    subject.model_meta = trace.meta
    return _from_trace("model", trace, subject.image, f"vmexit's model, {trace.meta['status']}")


def run_kvm_hw(subject: Subject) -> Outcome:
    """The guest on this host's /dev/kvm (vmexit.run(hypervisor="kvm-hw")): unavailable when there is no
    usable KVM; `cannot run` when this host's KVM cannot run one of its instructions (status unsupported)."""
    from .api import run
    try:
        trace = run(subject.guest, hypervisor="kvm-hw", constants=subject.constants)
    except VmexitError as e:
        return Outcome("kvm-hw", "unavailable", f"KVM unavailable: {e}")
    if trace.meta.get("status") == "unsupported":
        return Outcome("kvm-hw", "cannot run", f"cannot run this guest here: {trace.meta.get('detail', '')}")
    return _from_trace("kvm-hw", trace, subject.image, f"/dev/kvm, {trace.meta['status']}")


def _from_trace(name: str, trace, image, detail: str) -> Outcome:
    if trace.meta.get("status") not in ("exited", "halted"):
        return Outcome(name, "failed", f"the guest did not end itself: {trace.meta.get('status')}: "
                                       f"{trace.meta.get('detail', '')}")
    return Outcome(name, "ran", detail, trace_accesses(trace, image))


# QEMU ------------------------------------------------------------------------------------------------
QEMU = "qemu-system-i386"
#: The PC QEMU runs, as close to the model's as QEMU's `pc` machine gets (devices/pc.py): 64 MiB, the
#: i440FX/PIIX3 chipset with its IDE (a 16 MiB zeroed disk as primary master, as the model's default
#: disk), the RTL8139 at 00:03.0 like the model's, no VGA card and no default NIC, isa-debug-exit at
#: 0xf4. TCG without -icount (see the module docstring).
QEMU_MACHINE = ["-machine", "pc", "-accel", "tcg", "-m", "64",
                "-display", "none", "-vga", "none", "-monitor", "none", "-nic", "none",
                "-netdev", "user,id=n0", "-device", "rtl8139,netdev=n0,addr=03.0",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
_EVENT = re.compile(rb"memory_region_ops_(read|write) cpu (-?\d+) mr \S+ addr 0x([0-9a-f]+) "
                    rb"value 0x([0-9a-f]+) size (\d+) name '([^']*)'")
_FIRMWARE_MARK = (b"fwcfg", b"fwcfg.dma")   # QEMU's fw_cfg regions: firmware only


def run_qemu(subject: Subject) -> Outcome:
    """The guest's multiboot ELF booted by qemu-system-i386 (TCG), its accesses from the trace log."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        return Outcome("qemu", "unavailable", f"{QEMU} not installed (Debian: qemu-system-x86)")
    kernel = _kernel_file(subject)
    if kernel is None:
        return Outcome("qemu", "cannot run", "QEMU boots multiboot ELF kernels: not a flat binary")
    nic = subject.model_meta.get("nic") or {}
    frames = nic.get("tx_frames", 0) + nic.get("rx_frames", 0)
    if frames:
        return Outcome("qemu", "cannot run", f"the guest exchanged {frames} frames with vmexit's TCP peer "
                                             "(devices/netpeer.py); QEMU's user network is another peer")
    d = subject.workdir
    disk, log, serial = d / "qemu-disk.img", d / "qemu-trace.log", d / "qemu-serial.txt"
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    cmd = [qemu, "-kernel", str(kernel), *QEMU_MACHINE, "-serial", f"file:{serial}",
           "-drive", f"file={disk},format=raw,if=ide,index=0",
           "-trace", "memory_region_ops_read", "-trace", "memory_region_ops_write", "-D", str(log)]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=subject.timeout)
    except subprocess.TimeoutExpired:
        return Outcome("qemu", "failed", f"did not finish in {subject.timeout:g} s of host time")
    except OSError as e:
        return Outcome("qemu", "unavailable", f"{QEMU} does not start: {e.strerror or e}")
    text = log.read_bytes() if log.exists() else b""
    accesses = qemu_accesses(text)
    if accesses is None:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        return Outcome("qemu", "failed", f"exit code {r.returncode}: " + (err[0] if err else "no guest access logged"))
    if not (np.any(~accesses["mmio"] & (accesses["address"] == 0xF4)) and r.returncode & 1):
        return Outcome("qemu", "failed", f"the guest did not end through port 0xf4 (exit code {r.returncode})")
    return Outcome("qemu", "ran", f"{_qemu_version(qemu)}, TCG", accesses)


def _kernel_file(subject: Subject) -> Path | None:
    """The multiboot ELF QEMU boots: the one built from the source with its constants, or the file given."""
    elf = getattr(subject.image, "elf", None)
    if elf is not None:
        path = subject.workdir / "guest.elf"
        path.write_bytes(elf)
        return path
    path = Path(subject.guest)
    return path if getattr(subject.image, "kind", "") == "elf" and path.is_file() else None


def qemu_accesses(log: bytes) -> np.ndarray | None:
    """The vCPU's accesses after the firmware's last fw_cfg access, from a QEMU trace log; None when the
    log shows no firmware (the guest's start cannot be found)."""
    events = _EVENT.findall(log)
    names = np.array([e[5] for e in events], dtype=object)
    marks = np.flatnonzero(np.isin(names, _FIRMWARE_MARK)) if len(events) else np.zeros(0, dtype=np.int64)
    if not len(marks):
        return None
    events = events[marks[-1] + 1:]
    out = np.zeros(len(events), dtype=ACCESS_DTYPE)
    if not events:
        return out
    fields = np.array([(e[0] == b"write", int(e[1]), int(e[2], 16), int(e[3], 16), int(e[4])) for e in events],
                      dtype=[("write", "?"), ("cpu", "<i8"), ("addr", "<u8"), ("value", "<u8"), ("size", "u1")])
    out["mmio"] = fields["addr"] >= 0x10000
    out["address"], out["value"], out["size"], out["count"] = fields["addr"], fields["value"], fields["size"], 1
    out["direction"] = np.where(fields["write"], int(Direction.OUT), int(Direction.IN))
    return out[fields["cpu"] >= 0]


def _qemu_version(qemu: str) -> str:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, timeout=30).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return "QEMU"
    m = re.search(r"version (\S+)", out)
    return f"QEMU {m.group(1)}" if m else "QEMU"


#: In order: the model first (the reference for BARs, and QEMU looks at its run's network frames).
BACKENDS: dict[str, Backend] = {
    "model": Backend("model", run_model, "vmexit's model of KVM, the reference"),
    "qemu": Backend("qemu", run_qemu, "qemu-system-i386, TCG, memory_region_ops trace events"),
    "kvm-hw": Backend("kvm-hw", run_kvm_hw, "this host's /dev/kvm"),
}


# comparing ----------------------------------------------------------------------------------------------
def pci_bars(acc: np.ndarray) -> dict[tuple[int, int, int, int], int]:
    """{(bus, dev, fn, BAR index): I/O base} as the guest read them: each 4-byte read of 0xcfc paired
    with the last 4-byte write of 0xcf8 before it (np.searchsorted)."""
    port = ~acc["mmio"]
    sel = np.flatnonzero(port & (acc["address"] == PCI_ADDRESS) & (acc["direction"] == Direction.OUT)
                         & (acc["size"] == 4))
    data = np.flatnonzero(port & (acc["address"] == PCI_DATA) & (acc["direction"] == Direction.IN)
                          & (acc["size"] == 4))
    which = np.searchsorted(sel, data) - 1
    data, which = data[which >= 0], which[which >= 0]
    address, value = acc["value"][sel[which]], acc["value"][data]
    reg = address & 0xFC
    bar = ((address >> 31) & 1 == 1) & (reg >= 0x10) & (reg <= 0x24) & (value & 1 == 1) & (value != 0xFFFFFFFF)
    keys = zip((address[bar] >> 16) & 0xFF, (address[bar] >> 11) & 0x1F, (address[bar] >> 8) & 7,
               (reg[bar] - 0x10) // 4)
    return {tuple(int(k) for k in key): int(v) & 0xFFFC for key, v in zip(keys, value[bar])}


def relocate(acc: np.ndarray, bars: dict, reference: dict) -> np.ndarray:
    """The accesses with each port inside a known BAR moved to where the reference backend has that BAR."""
    out = acc.copy()
    port = ~acc["mmio"]
    for key, base in bars.items():
        ref, span = reference.get(key), BAR_SPANS.get(key)
        if ref is None or span is None or ref == base:
            continue
        inside = port & (acc["address"] >= base) & (acc["address"] < base + span)
        out["address"][inside] = acc["address"][inside] - base + ref
    return out


def counts(acc: np.ndarray) -> dict[tuple[str, int], int]:
    """{("port" | "mmio", address): accesses} (np.unique + np.bincount)."""
    keys = acc["address"].astype(np.uint64) | (acc["mmio"].astype(np.uint64) << np.uint64(48))
    uniq, inverse = np.unique(keys, return_inverse=True)
    totals = np.bincount(inverse, weights=acc["count"], minlength=len(uniq)).astype(np.int64)
    mask = (1 << 48) - 1
    return {("mmio" if int(k) >> 48 else "port", int(k) & mask): int(n) for k, n in zip(uniq, totals)}


@dataclass
class Validation:
    guest: str
    outcomes: list[Outcome]
    rows: list[dict]

    @property
    def ran(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "ran"]

    @property
    def mismatches(self) -> list[dict]:
        return [r for r in self.rows if not r["agree"]]

    @property
    def agree(self) -> bool:
        return not self.mismatches


def validate(guest: str, constants: dict[str, int] | None = None, backends: dict[str, Backend] | None = None,
             timeout: float = 300.0) -> Validation:
    """Run the guest under every backend (BACKENDS unless given; the first is the reference for BARs)
    and put their access counts side by side."""
    from .guests import resolve
    from .scenarios import SCENARIOS
    if guest in SCENARIOS:
        raise ValidateError(f"{guest} is a scenario of several domains: validate runs one guest on the PC")
    constants = dict(constants or {})
    image = resolve(guest, constants)
    backends = BACKENDS if backends is None else backends
    with tempfile.TemporaryDirectory(prefix="vmexit-validate-") as tmp:
        subject = Subject(guest, constants, image, Path(tmp), timeout)
        outcomes = []
        for name, backend in backends.items():   # in order: the model first, whose run facts QEMU's uses
            outcome = backend.run(subject)
            outcome.backend = name
            outcomes.append(outcome)
    ran = [o for o in outcomes if o.state == "ran"]
    for o in ran:
        o.bars = pci_bars(o.accesses)
    for o in ran:
        o.counts = counts(relocate(o.accesses, o.bars, ran[0].bars))
    return Validation(guest, outcomes, _table(outcomes))


def _table(outcomes: list[Outcome]) -> list[dict]:
    ran = [o for o in outcomes if o.state == "ran"]
    keys = sorted(set().union(*(o.counts for o in ran)), key=lambda k: (k[0] == "mmio", k[1])) if ran else []
    rows = []
    for space, address in keys:
        row = {"space": space, "address": address, "name": f"0x{address:x}"}
        values = [o.counts.get((space, address), 0) for o in ran]
        row.update({o.backend: v for o, v in zip(ran, values)})
        row["agree"] = len(set(values)) == 1
        row["flag"] = "" if row["agree"] else "MISMATCH"
        rows.append(row)
    return rows


def report(v: Validation) -> Report:
    """The side-by-side table as a Report, for the renderers (text, markdown, csv, json)."""
    ran = v.ran
    columns = [Column("space", "space", "str"), Column("name", "address", "str")]
    columns += [Column(o.backend, o.backend, "int") for o in ran] + [Column("flag", "", "str")]
    footer = "\n".join(f"{o.backend}: {o.state}: {o.detail}" if o.state != "ran" else f"{o.backend}: {o.detail}"
                       for o in v.outcomes)
    totals = {"summary": summary_line(v), "agree": v.agree, "mismatches": len(v.mismatches),
              "backends": {o.backend: {"state": o.state, "detail": o.detail} for o in v.outcomes}}
    return Report("validate", f"Port and MMIO accesses of {v.guest}, per backend", columns, v.rows, totals,
                  footer=footer)


def summary_line(v: Validation) -> str:
    ran = [o.backend for o in v.ran]
    rest = [f"{o.backend} {o.state}" for o in v.outcomes if o.state != "ran"]
    skipped = f" ({', '.join(rest)})" if rest else ""
    if len(ran) < 2:
        return f"Nothing compared: only {', '.join(ran) or 'no backend'} ran{skipped}"
    total = len(v.rows)
    if v.agree:
        return f"Agree: {' = '.join(ran)} on all {total} ports and MMIO addresses{skipped}"
    return f"MISMATCH: {len(v.mismatches)} of {total} ports and MMIO addresses differ between {', '.join(ran)}{skipped}"
