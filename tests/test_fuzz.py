"""Property tests: random guests never crash vmexit, random device programming keeps devices in spec.

VMEXIT_FUZZ_EXAMPLES sets the number of random guests (300 by default; 5000 for a long run).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmexit import session
from vmexit.costs import load_profile
from vmexit.devices.ide import Disk, IDEDisk
from vmexit.devices.pic import PIC8259
from vmexit.devices.pit import PIT8254
from vmexit.loader import load_flat

EXAMPLES = int(os.environ.get("VMEXIT_FUZZ_EXAMPLES", "300"))
PROFILE = load_profile(None)
ENDINGS = {"exited", "halted", "budget", "crashed"}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.binary(min_size=1, max_size=128))
def test_random_bytes_as_a_guest(code):
    image = load_flat(code, "fuzz", {"_start": 0x100000}, 0x100000, None)
    trace = session.run(image, PROFILE, session.RunOptions(max_instructions=5000, ram_size=4 << 20))
    assert trace.meta["status"] in ENDINGS
    assert trace.meta["instructions"] <= 5000
    e = trace.exits
    assert (e["seq"] == range(len(e))).all()
    assert (e["icount"][1:] >= e["icount"][:-1]).all() and (e["cycles"][1:] >= e["cycles"][:-1]).all()


PORT_WRITES = st.lists(st.tuples(st.sampled_from([0x40, 0x41, 0x42, 0x43]), st.integers(0, 255)), max_size=40)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(PORT_WRITES, st.lists(st.integers(0, 10 ** 9), max_size=10))
def test_pit_programming_stays_in_spec(writes, times):
    now = [0]
    pit = PIT8254(lambda: now[0], 2_830_000_000, lambda: None)
    for port, value in writes:
        pit.write(port, 1, value)
    for t in sorted(times):
        now[0] = t
        assert 0 <= pit.read(0x40, 1) <= 0xFF
        pit.advance(t)
        due = pit.next_event()
        assert due is None or due > t
    for ch in pit.channels:
        assert 1 <= ch.reload <= 0x10000 and 0 <= ch.mode <= 5


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from([0x20, 0x21, 0xA0, 0xA1]), st.integers(0, 255)), max_size=40),
       st.lists(st.integers(0, 15), max_size=20))
def test_pic_programming_stays_in_spec(writes, irqs):
    pic = PIC8259()
    for port, value in writes:
        pic.write(port, 1, value)
    for irq in irqs:
        pic.raise_irq(irq)
        vector = pic.acknowledge() if pic.pending() else None
        assert vector is None or 0 <= vector <= 0xFF
    for chip in (pic.master, pic.slave):
        assert 0 <= chip.imr <= 0xFF and 0 <= chip.isr <= 0xFF and 0 <= chip.irr <= 0xFF
        assert 0 <= pic.read(0x20, 1) <= 0xFF


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(list(range(0x1F0, 0x1F8)) + [0x3F6]), st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=60))
def test_ide_programming_stays_in_spec(ops):
    ide = IDEDisk(Disk(size=64 * 512), lambda: None, Disk(size=64 * 512) if len(ops) % 2 else None)
    for port, size, value, is_write in ops:
        if is_write:
            ide.write(port, size, value)
        else:
            assert 0 <= ide.read(port, size) < 1 << (8 * size)
        assert 0 <= ide.status <= 0xFF and 0 <= ide.pos <= 512
        assert all(0 <= lba < 64 and len(data) == 512 for lba, data in ide.disks[0].overlay.items())


# Random Xen hypercalls (numbers, arguments, request arrays): the model answers with a result in EAX
# and never crashes the run; random bytes run as a PV domain too.
XEN_PROFILE = load_profile("xen-pv-q9550")
WORDS = st.integers(0, 0xFFFFFFFF) | st.sampled_from([0, 1, 2, 0x20000, 0x21000, 0x21004, 0x7FFFFFF0])


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 12, 13, 14, 18, 26, 29, 48, 99]), WORDS, WORDS, WORDS,
                          st.lists(WORDS, min_size=8, max_size=8)), min_size=1, max_size=6),
       st.booleans())
def test_random_xen_hypercalls_never_crash_the_run(calls, offload):
    body = []
    for nr, b, c, d, memory in calls:
        for i, word in enumerate(memory):            # a request array the arguments may point at
            body.append(f"    mov dword ptr [{0x21000 + 4 * i}], {word}")
        body += [f"    mov eax, {nr}", f"    mov ebx, {b}", f"    mov ecx, {c}", f"    mov edx, {d}",
                 "    mov esi, 0x7ff0", "    int 0x82", "    out 0x80, eax"]
    from .conftest import inline_image
    image = inline_image("\n".join(body) + "\n    out 0xf4, al\n")
    opts = {"xen-pf-offload": 1} if offload else {}
    trace = session.run(image, XEN_PROFILE, session.RunOptions(hypervisor="xen-pv", max_instructions=20000,
                                                               ram_size=4 << 20, optimizations=opts))
    assert trace.meta["status"] in ENDINGS


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(st.binary(min_size=1, max_size=128))
def test_random_bytes_as_a_xen_domain(code):
    image = load_flat(code, "fuzz", {"_start": 0x100000}, 0x100000, None)
    trace = session.run(image, XEN_PROFILE, session.RunOptions(hypervisor="xen-pv", max_instructions=5000,
                                                               ram_size=4 << 20))
    assert trace.meta["status"] in ENDINGS
