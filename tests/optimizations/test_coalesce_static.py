"""Static I/O coalescing: the XKVM_IO_COALESCE hypercall and the guests that use it."""
from __future__ import annotations

import numpy as np

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason, Place
from vmexit.optimizations.coalesce_static import EFAULT, EINVAL, MAX_ENTRIES, XKVM_IO_COALESCE

from ..conftest import count, run_inline

EXIT = "    out 0xf4, al\n"
# io_insn array at 0x20000: two outs to the scratch port 0x80, an in from the UART's LSR (0x3fd),
# then vmcall(XKVM_IO_COALESCE, 0x20000, ECX); EAX and the IN result are reported on port 0x81.
CALL = """
    mov edi, 0x20000
    mov dword ptr [edi], 0x01
    mov dword ptr [edi + 4], 0x80
    mov dword ptr [edi + 8], 0x1234
    mov dword ptr [edi + 12], 0x02
    mov dword ptr [edi + 16], 0x80
    mov dword ptr [edi + 20], 0xbeef
    mov dword ptr [edi + 24], {in_type}
    mov dword ptr [edi + 28], 0x3fd
    mov dword ptr [edi + 32], 0
    mov eax, {nr}
    mov ebx, {gpa}
    mov ecx, {count}
    xor edx, edx
    vmcall
    out 0x81, eax
    mov eax, [0x20020]
    out 0x81, eax
"""


def call(count_=3, gpa=0x20000, in_type=0x11):
    return run_inline(CALL.format(nr=XKVM_IO_COALESCE, gpa=gpa, count=count_, in_type=in_type) + EXIT)


def reported(t):
    e = t.exits
    return e[(e["reason"] == ExitReason.IO_INSTRUCTION) & (e["qualifier"] == 0x81)]["value"].tolist()


def test_one_vmcall_runs_every_entry_in_order_and_writes_in_results_back():
    t = call()
    assert count(t, ExitReason.VMCALL, qualifier=XKVM_IO_COALESCE) == 1
    assert count(t, ExitReason.IO_INSTRUCTION, qualifier=0x80) == 0
    em = t.emulated
    assert em["port"].tolist() == [0x80, 0x80, 0x3FD]
    assert em["value"].tolist() == [0x34, 0xBEEF, 0x60]  # OUTB keeps the low byte; LSR: THR empty
    assert em["direction"].tolist() == [Direction.OUT, Direction.OUT, Direction.IN]
    assert em["size"].tolist() == [1, 2, 1]
    vmcall = t.exits[t.exits["reason"] == ExitReason.VMCALL][0]
    assert set(em["exit"].tolist()) == {int(vmcall["seq"])} and set(em["rip"].tolist()) == {int(vmcall["rip"])}
    assert reported(t) == [0, 0x60]
    # the exit's cost is the round trip plus each access's handling without one
    prof = load_profile(None)
    handling = [prof.emulation_cost(Place.USER, d) for d in (Direction.OUT, Direction.OUT, Direction.IN)]
    assert em["cost"].tolist() == handling
    assert int(vmcall["cost"]) == prof.cost(ExitReason.VMCALL) + sum(handling)
    assert prof.emulation_cost(Place.USER, Direction.OUT) == prof.cost(ExitReason.IO_INSTRUCTION, Place.USER,
                                                                      Direction.OUT) - prof.cost(ExitReason.VMCALL)


def test_bad_requests_return_an_error_and_touch_no_port():
    for kw, errno in (({"count_": 0}, EINVAL), ({"count_": MAX_ENTRIES + 1}, EINVAL),
                      ({"in_type": 0x13}, EINVAL), ({"gpa": 0x7FFFFFF0}, EFAULT)):
        t = call(**kw)
        assert t.meta["status"] == "exited", kw
        assert len(t.emulated) == 0, kw
        assert reported(t)[0] == (-errno) & 0xFFFFFFFF, kw


def _run(name, **constants):
    return session.run(guests.resolve(name, constants), load_profile(None), session.RunOptions())


def test_ide_coalesced_variant_takes_one_exit_for_the_eleven_outb():
    before, after = _run("ide"), _run("ide", COALESCE=1)
    requests = 2 * 16
    assert after.meta["console"] == before.meta["console"] == "ide: start\nide: ok\n"
    sym = after.symbols
    rw = (after.exits["rip"] >= sym["__ide_do_rw_disk"]) & (after.exits["rip"] < sym["ide_execute_command"])
    assert int(rw.sum()) == requests
    assert set(after.exits[rw]["reason"].tolist()) == {ExitReason.VMCALL}
    ports = after.emulated["port"].reshape(requests, 11)
    assert (ports == [0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5] * 2 + [0x1F6]).all()
    # 15 exits a request become 5
    assert len(before.exits) - len(after.exits) == 10 * requests
    assert after.meta["ide"] == before.meta["ide"]


def test_bonnie_coalesced_variant_loads_the_taskfile_in_one_exit():
    before, after = _run("bonnie"), _run("bonnie", COALESCE=1)
    requests = 16
    assert after.meta["console"] == before.meta["console"] == "bonnie: start\nbonnie: ok\n"
    assert count(after, ExitReason.VMCALL, qualifier=XKVM_IO_COALESCE) == requests
    assert len(after.emulated) == 11 * requests
    # left: 6 iowrite8 a request outside ata_sff_tf_load and the probe's 27 (test_guests counts them)
    assert functions(after).count("iowrite8") == functions(before).count("iowrite8") - 11 * requests == 6 * requests + 27


def functions(t) -> list[str]:
    sym = {v: k for k, v in t.symbols.items()}
    starts = np.array(sorted(sym))
    return [sym[int(starts[i])] for i in np.searchsorted(starts, t.exits["rip"], "right") - 1]


def test_repricing_under_the_same_profile_gives_the_recorded_costs():
    from vmexit.analysis import Pricing
    t = _run("ide", COALESCE=1)
    prof = load_profile(None)
    assert np.array_equal(Pricing.of(t).costs, Pricing.of(t, prof).costs)
    sky = Pricing.of(t, load_profile("kvm-skylake"))
    vm = t.exits["reason"] == ExitReason.VMCALL
    per = load_profile("kvm-skylake")
    handling = sum(per.emulation_cost(Place.USER, Direction.OUT) for _ in range(11))
    assert set(sky.costs[vm].tolist()) == {per.cost(ExitReason.VMCALL) + handling}
