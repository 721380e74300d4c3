"""The CPU engine: what executes guest instructions, behind the small interface the vCPU, the machine
and the exit models use. Nothing above this package imports an emulator.

An engine gives:
- guest RAM from physical address 0 (`ram`, a buffer the exit path reads directly; writes go through
  `write` so that translated code stays coherent), MMIO ranges with read/write callbacks (`map_mmio`),
  and `flush_tlb` after the host edits a guest page table; `map_foreign(paddr, source, source_paddr,
  size=4096, readonly=False)` maps pages of another domain's RAM (its engine's `ram` buffer) at a
  guest-physical address of this one -- shared memory, both see the same bytes (a Xen grant mapping)
  -- and `unmap_foreign(paddr, size=4096)` removes such a mapping;
- registers by name (`reg`, `set_reg`, `register(name)` a fast reader of one, and `reader`/`writer`
  for a fixed list on a hot path), and
  `eip_ebp`, the two registers every exit reads, and `enter_ring0(ss, cs)` for a delivery from ring 3;
- `run(count)`: execute at most `count` instructions from EIP and say how the slice ended (SliceEnd),
  with `counter`, the exact instruction counter inside any callback (`executed()`, `current.value`,
  `set_limit(n)` to end the slice after n instructions, `stop_after_current()`);
- traps, each a callback with the event's own arguments: port in/out, CPUID, an invalid opcode, an
  interrupt or exception raised by an instruction, the start of one block of code (`trap_block`,
  optionally only while a `flag()` is set and EFLAGS has given bits, checked without Python), and
  `watch_code`, which shows every block of code before it first runs (and again when the guest
  rewrote it), so that traps can be set in code the guest runs without a callback per block;
- `reset_exception_state()` after the host delivered an exception itself.

The Unicorn engine counts exactly in either of two ways with the same results: a block at a time with
a small C helper compiled on first use (blockcount.py), or Unicorn's count mode (a callback per
instruction) when there is no compiler or VMEXIT_PURE=1.

Engines are listed in ENGINES (name -> "module:Class", imported when a run builds one): Unicorn
(unicorn.py), and the host's KVM (kvm.py, over the raw API in kvmapi.py), which runs the guest on the
real CPU and so offers only RAM, registers and MMIO ranges -- no instruction counter and no traps: its
exits come back from KVM_RUN, and a run loop of its own (hwvcpu.py) takes them to the same devices,
recorder and stack walker. Neither is imported by analysis or renderers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

#: Every engine, explicitly: name -> "module:Class".
ENGINES: dict[str, str] = {
    "unicorn": ".unicorn:UnicornEngine",
    "kvm": ".kvm:KvmEngine",      # the host's KVM (--hypervisor kvm-hw): kvm.py says what it offers
    "kvm-irqchip": ".kvm:KvmIrqchipEngine",   # ... with KVM's in-kernel irqchip (vmexit calibrate only)
}


@dataclass
class Fault:
    """Why a slice stopped on an error: `fetch` (code fetched from unmapped or protected memory) or
    `other`, with the engine's message."""
    kind: str
    message: str


@dataclass
class SliceEnd:
    executed: int        # instructions executed in the slice
    exhausted: bool      # the count ran out (or a callback asked to stop after an instruction)
    fault: Fault | None


def engine_class(name: str) -> type:
    if name not in ENGINES:
        raise ValueError(f"unknown CPU engine {name!r} (known: {', '.join(ENGINES)})")
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module, __name__), cls)
