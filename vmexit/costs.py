"""Cost profiles: cycles per exit kind and handling place, the CPU frequency, and a source per number.

A profile is a JSON file (vmexit/profiles/*.json, or any path). Cost keys go from most to least
specific, like QEMU's howvec classification table: `REASON/place/direction`, `REASON/place`, `REASON`.
Every reason must resolve to a number; every number must carry its source. Pricing a whole trace is one
vectorized lookup, so a saved trace can be re-priced under another profile without re-running.

A port access the hypervisor emulates inside another exit (I/O coalescing) costs the I/O exit of its
kind minus the exit round trip, and the round trip is priced as the profile's VMCALL exit, an exit that
does nothing but leave the guest and return. That is derived, not measured: it assumes the handling
(the trip to the device model, user space included) is all that remains once the switch is saved,
which is the KVM paper's own reading of its coalescing result (Zhang et al., "Modifying Guest OS to
Optimize I/O Virtualization in KVM", Chinese Journal of Computers, 2010, section 3.1.1).

A multiplexed hypercall's sub-operation may have its own key, `VMCALL/<name>:<subop>` (for example
`VMCALL/grant_table_op:copy`, with its own per_item), looked up by name before VMCALL (call_price).
Costs that are no exit -- the host's domain switch, entering a domain's event callback -- are in the
optional `host` section (`domain_switch`, `event_upcall`: cycles and source each), 0 when absent. A
profile `vmexit calibrate` measured (calibrate.py) also has there the kernel part of each exit a
`--hypervisor kvm-hw` run sees in user space (`kvm_hw_kernel/REASON[/in|out]`, hwvcpu.py).

Profiles are found by name among the bundled ones, then among the user's (user_profile_dir(), where
`vmexit calibrate` writes `calibrated.json`), else taken as a path; `calibrated`, kvm-hw's default,
stands for the paper's host until it exists (FALLBACKS).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VmexitError
from .exits import Direction, ExitReason, Place
from .hypervisors.hypercalls import SIZE_IN_BYTES

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

#: Bundled profiles, by name. The first is the default.
PROFILES: dict[str, str] = {
    "kvm76-q9550": "kvm76-q9550.json",
    "kvm-skylake": "kvm-skylake.json",
    "xen-pv-q9550": "xen-pv-q9550.json",
}
DEFAULT_PROFILE = "kvm76-q9550"
#: The profile `vmexit calibrate` writes by default (into user_profile_dir()).
CALIBRATED = "calibrated"
#: A name that stands for another while no file of that name exists: `calibrated`, kvm-hw's default,
#: is the paper's host until this host has been calibrated (a trace names the profile it used).
FALLBACKS: dict[str, str] = {CALIBRATED: DEFAULT_PROFILE}
PROFILE_DIR_ENV = "VMEXIT_PROFILE_DIR"

_PLACE_NAMES = {Place.KERNEL: "kernel", Place.USER: "user"}
_ALL_PLACE_NAMES = {**_PLACE_NAMES, Place.GUEST: "guest"}  # "guest" keys are optional: else as kernel
_DIRECTION_NAMES = {Direction.IN: "in", Direction.OUT: "out"}


class ProfileError(VmexitError):
    """A cost profile that cannot be used (missing, malformed, missing or negative number)."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    freq_hz: int
    cpi: tuple[int, int]
    cpuid_signature: int
    trapped_exceptions: frozenset[int]
    costs: dict[str, int]
    sources: dict[str, str] = field(repr=False)
    raw: str = field(repr=False, default="")
    per_items: dict[str, int] = field(default_factory=dict)
    host_costs: dict[str, int] = field(default_factory=dict)   # the `host` section: name -> cycles

    def host_cost(self, name: str) -> int:
        """A host-level cost that is no exit (domain_switch, event_upcall); 0 when the profile has none."""
        return self.host_costs.get(name, 0)

    def call_price(self, call: str) -> tuple[int, int] | None:
        """(cycles, cycles per item) of a hypercall sub-operation named `name:subop`, if the profile
        prices it apart from VMCALL; one whose size counts bytes (hypercalls.SIZE_IN_BYTES) without a
        key of its own costs the VMCALL round trip alone."""
        key = f"VMCALL/{call}"
        if key in self.costs:
            return self.costs[key], self.per_items.get(key, 0)
        if call in SIZE_IN_BYTES:
            return self.cost(ExitReason.VMCALL), 0
        return None

    def cost(self, reason: int, place: int = Place.KERNEL, direction: int = Direction.NONE) -> int:
        return self.costs[self._key(reason, place, direction)]

    def per_item(self, reason: int, place: int = Place.KERNEL, direction: int = Direction.NONE) -> int:
        """Cycles per item an exit's `size` counts: a hypercall's requests, a fault's pages filled."""
        return self.per_items.get(self._key(reason, place, direction), 0)

    def _key(self, reason: int, place: int, direction: int) -> str:
        name = ExitReason(reason).name if reason in ExitReason._value2member_map_ else "UNKNOWN"
        d = _DIRECTION_NAMES.get(direction)
        places = [_ALL_PLACE_NAMES.get(place, "kernel")] + (["kernel"] if place == Place.GUEST else [])
        for p in places:
            for key in ((f"{name}/{p}/{d}" if d else None), f"{name}/{p}"):
                if key is not None and key in self.costs:
                    return key
        return name if name in self.costs else "UNKNOWN"

    def emulation_cost(self, place: int, direction: int) -> int:
        """A port access emulated inside another exit (see the module docstring)."""
        io = self.cost(ExitReason.IO_INSTRUCTION, place, direction)
        return max(io - self.cost(ExitReason.VMCALL), 0)

    def price_emulated(self, records: np.ndarray) -> np.ndarray:
        """Cost in cycles of every EMULATED_DTYPE record under this profile (uint64 array)."""
        table = np.zeros((len(Place), len(Direction)), dtype=np.uint64)
        for p in Place:
            for d in Direction:
                table[p, d] = self.emulation_cost(p, d)
        if len(records) == 0:
            return np.zeros(0, dtype=np.uint64)
        return table[records["place"].astype(np.intp), records["direction"].astype(np.intp)]

    def price(self, records: np.ndarray, call_name=None) -> np.ndarray:
        """Cost in cycles of every exit record under this profile (uint64 array). call_name(nr, subop),
        if given, names a hypercall `name:subop` so that sub-operations get their own prices."""
        if len(records) == 0:
            return np.zeros(0, dtype=np.uint64)
        out = self._price_by_kind(records)
        if call_name is not None and "subop" in (records.dtype.names or ()):
            vmcall = records["reason"] == ExitReason.VMCALL
            for nr, subop in set(zip(records["qualifier"][vmcall].tolist(), records["subop"][vmcall].tolist())):
                price = self.call_price(call_name(nr, subop))
                if price is not None:
                    rows = vmcall & (records["qualifier"] == nr) & (records["subop"] == subop)
                    out[rows] = price[0] + price[1] * records["size"][rows].astype(np.uint64)
        return out

    def _price_by_kind(self, records: np.ndarray) -> np.ndarray:
        key = (records["reason"].astype(np.uint32) << 8) | (records["place"].astype(np.uint32) << 4) \
            | records["direction"].astype(np.uint32)
        uniq, inverse = np.unique(key, return_inverse=True)
        table = np.array([self.cost(int(k) >> 8, (int(k) >> 4) & 0xF, int(k) & 0xF) for k in uniq],
                         dtype=np.uint64)
        per = np.array([self.per_item(int(k) >> 8, (int(k) >> 4) & 0xF, int(k) & 0xF) for k in uniq],
                       dtype=np.uint64)
        return table[inverse] + per[inverse] * records["size"].astype(np.uint64)


def _fail(where: str, msg: str) -> ProfileError:
    return ProfileError(f"cost profile {where}: {msg}")


def parse_profile(text: str, where: str) -> Profile:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(where, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict):
        raise _fail(where, "not a JSON object")
    try:
        cpu = doc["cpu"]
        freq = cpu["freq_hz"]
        cpi = cpu["cpi"]
        costs_doc = doc["costs"]
        trapped = doc["trapped_exceptions"]["vectors"]
    except (KeyError, TypeError) as e:
        raise _fail(where, f"missing field {e}") from None
    if not (isinstance(freq, int) and freq > 0):
        raise _fail(where, "cpu.freq_hz must be a positive integer")
    if not (isinstance(cpi, list) and len(cpi) == 2 and all(isinstance(x, int) and x > 0 for x in cpi)):
        raise _fail(where, "cpu.cpi must be [numerator, denominator] of positive integers")
    if not cpu.get("source"):
        raise _fail(where, "cpu has no source")
    costs: dict[str, int] = {}
    sources: dict[str, str] = {}
    per_items: dict[str, int] = {}
    for key, entry in costs_doc.items():
        reason = key.split("/")[0]
        if reason not in ExitReason.__members__:
            raise _fail(where, f"unknown exit reason {reason!r} in key {key!r}")
        if not isinstance(entry, dict) or "cycles" not in entry:
            raise _fail(where, f"{key}: missing number of cycles")
        cycles = entry["cycles"]
        if not isinstance(cycles, int) or isinstance(cycles, bool) or cycles < 0:
            raise _fail(where, f"{key}: cycles must be a non-negative integer, got {cycles!r}")
        if not entry.get("source"):
            raise _fail(where, f"{key}: no source given for {cycles} cycles")
        costs[key] = cycles
        sources[key] = entry["source"]
        if "per_item" in entry:
            if reason not in ("VMCALL", "EXCEPTION_NMI"):
                raise _fail(where, f"{key}: per_item is for VMCALL (requests) and EXCEPTION_NMI (pages) only")
            item = entry["per_item"]
            if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                raise _fail(where, f"{key}: per_item must be a non-negative integer, got {item!r}")
            per_items[key] = item
    host_costs = _host_section(doc.get("host", {}), where)
    for reason in ExitReason.__members__:
        if not any(k == reason or k.startswith(reason + "/") for k in costs):
            raise _fail(where, f"no cost for exit reason {reason}")
    # Each reason needs a fallback for any place: either a bare key or both places.
    for reason in ExitReason.__members__:
        if reason not in costs:
            for p in _PLACE_NAMES.values():
                if f"{reason}/{p}" not in costs and not all(
                        f"{reason}/{p}/{d}" in costs for d in _DIRECTION_NAMES.values()):
                    raise _fail(where, f"no cost for {reason} handled in {p}")
    return Profile(
        name=str(doc.get("name", where)), description=str(doc.get("description", "")),
        freq_hz=freq, cpi=(cpi[0], cpi[1]), cpuid_signature=int(cpu.get("cpuid_signature", 0x1067A)),
        trapped_exceptions=frozenset(int(v) for v in trapped), costs=costs, sources=sources, raw=text,
        per_items=per_items, host_costs=host_costs)


def _host_section(section, where: str) -> dict[str, int]:
    """The `host` section: name -> {cycles, source}, each number with its source."""
    if not isinstance(section, dict):
        raise _fail(where, "host must be an object of named costs")
    out = {}
    for key, entry in section.items():
        if not isinstance(entry, dict) or "cycles" not in entry:
            raise _fail(where, f"host.{key}: missing number of cycles")
        cycles = entry["cycles"]
        if not isinstance(cycles, int) or isinstance(cycles, bool) or cycles < 0:
            raise _fail(where, f"host.{key}: cycles must be a non-negative integer, got {cycles!r}")
        if not entry.get("source"):
            raise _fail(where, f"host.{key}: no source given for {cycles} cycles")
        out[key] = cycles
    return out


def user_profile_dir() -> Path:
    """Where the user's own profiles live (`vmexit calibrate` writes there): $VMEXIT_PROFILE_DIR, else
    $XDG_CONFIG_HOME/vmexit/profiles, else ~/.config/vmexit/profiles."""
    if os.environ.get(PROFILE_DIR_ENV):
        return Path(os.environ[PROFILE_DIR_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "vmexit" / "profiles"


def user_profiles() -> dict[str, Path]:
    """The user's profiles by name (the file's name without .json), bundled names excepted."""
    folder = user_profile_dir()
    try:
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    except OSError:
        return {}
    return {p.stem: p for p in files if p.stem not in PROFILES}


def load_profile(name_or_path: str | None) -> Profile:
    """A bundled profile by name, a user's profile by name (user_profile_dir), or a profile file by path."""
    name_or_path = name_or_path or DEFAULT_PROFILE
    users = user_profiles() if name_or_path not in PROFILES else {}
    if name_or_path in PROFILES:
        path = PROFILE_DIR / PROFILES[name_or_path]
    elif name_or_path in users:
        path = users[name_or_path]
    elif name_or_path in FALLBACKS:
        return load_profile(FALLBACKS[name_or_path])
    else:
        path = Path(name_or_path)
        if not path.exists():
            known = ", ".join(list(PROFILES) + list(users))
            raise ProfileError(f"unknown cost profile {name_or_path!r} (known: {known})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"cannot read cost profile {path}: {e}") from None
    return parse_profile(text, str(path))
