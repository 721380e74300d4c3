"""The Xen PV model: hypercalls, page-table validation, writable page tables, bounced faults; the fork
guest's exits by construction in every batching mode, and the native baseline."""
from __future__ import annotations

import math

import pytest

from vmexit import guests, session
from vmexit.costs import load_profile
from vmexit.exits import Direction, ExitReason, Place
from vmexit.hypervisors.xen import EFAULT, EINVAL, ENOSYS

from ..conftest import count, inline_image

PAGES, TOUCH, FORKS = 32, 8, 4


def fork(hypervisor: str, **constants):
    profile = load_profile("xen-pv-q9550" if hypervisor == "xen-pv" else None)
    return session.run(guests.resolve("fork", constants), profile, session.RunOptions(hypervisor=hypervisor))


def hypercalls(t, nr: int) -> int:
    return count(t, ExitReason.VMCALL, qualifier=nr)


@pytest.mark.parametrize("batch", [1, 4, 16, 64])
def test_fork_batched_mmu_updates_by_construction(batch):
    t = fork("xen-pv", BATCH=batch)
    assert t.meta["status"] == "exited" and t.meta["console"] == "fork: start\nfork: ok\n"
    per_fork = math.ceil(2 * PAGES / batch) + math.ceil(PAGES / batch)   # copy_page_range, zap_pte_range
    assert hypercalls(t, 1) == FORKS * per_fork
    assert hypercalls(t, 14) == FORKS * TOUCH                              # do_wp_page's update_va_mapping
    assert hypercalls(t, 26) == 3 + 4 * FORKS                              # 2 pins + first base; per fork
    assert count(t, ExitReason.EXCEPTION_NMI, place=Place.GUEST) == FORKS * TOUCH   # COW faults bounced
    assert count(t, ExitReason.EXCEPTION_NMI, place=Place.KERNEL) == 0
    mmu = t.exits[(t.exits["reason"] == ExitReason.VMCALL) & (t.exits["qualifier"] == 1)]
    assert int(mmu["size"].sum()) == FORKS * 3 * PAGES                     # requests carried
    assert t.meta["xen"]["pt_updates"] == FORKS * (3 * PAGES + TOUCH)


def test_fork_direct_writes_trap_one_by_one():
    t = fork("xen-pv", BATCH=0)
    assert t.meta["console"] == "fork: start\nfork: ok\n"
    assert hypercalls(t, 1) == 0 and hypercalls(t, 14) == 0
    emulated = t.exits[(t.exits["reason"] == ExitReason.EXCEPTION_NMI) & (t.exits["place"] == Place.KERNEL)]
    assert len(emulated) == FORKS * (3 * PAGES + TOUCH) == t.meta["xen"]["pt_writes_emulated"]
    assert set(emulated["direction"].tolist()) == {Direction.OUT}
    assert count(t, ExitReason.EXCEPTION_NMI, place=Place.GUEST) == FORKS * TOUCH


def test_batching_makes_a_fork_cheaper_and_native_has_no_exits():
    native, b0, b1, b16 = fork("native"), fork("xen-pv", BATCH=0), fork("xen-pv", BATCH=1), fork("xen-pv", BATCH=16)
    assert native.meta["console"] == "fork: start\nfork: ok\n" and len(native.exits) == 0
    seconds = [t.meta["virtual_seconds"] for t in (native, b16, b1, b0)]
    assert seconds == sorted(seconds)
    kvm = fork("kvm")  # shadow paging on the paper's KVM host: every guest #PF is trapped
    assert count(kvm, ExitReason.EXCEPTION_NMI, qualifier=14) == FORKS * TOUCH


def test_profile_prices_each_request():
    t = fork("xen-pv", BATCH=16)
    prof = load_profile("xen-pv-q9550")
    mmu = t.exits[(t.exits["reason"] == ExitReason.VMCALL) & (t.exits["qualifier"] == 1)]
    expected = prof.cost(ExitReason.VMCALL) + prof.per_item(ExitReason.VMCALL) * mmu["size"].astype(int)
    assert (mmu["cost"].astype(int) == expected).all()
    assert (prof.price(t.exits) == t.exits["cost"]).all()


# bad hypercall arguments: an inline guest, paging off, reports each result on port 0x80
XEN_PRELUDE = """
    mov edi, 0x20000                   # an L2 at 0x20000 pointing at an L1 at 0x21000 that maps 0x22000
    mov dword ptr [edi], 0x21003
    mov dword ptr [0x21000], 0x22003
    mov dword ptr [0x30000], 1         # mmuext_op {PIN_L2_TABLE, mfn 0x20}
    mov dword ptr [0x30004], 0x20
    mov eax, 26
    mov ebx, 0x30000
    mov ecx, 1
    xor edx, edx
    mov esi, 0x7ff0
    int 0x82
    out 0x80, eax
"""


def mmu_update(ptr: int, val: int, count_: int = 1, reqs: int = 0x31000) -> str:
    return f"""
    mov dword ptr [0x31000], {ptr}
    mov dword ptr [0x31004], 0
    mov dword ptr [0x31008], {val}
    mov dword ptr [0x3100c], 0
    mov eax, 1
    mov ebx, {reqs}
    mov ecx, {count_}
    xor edx, edx
    mov esi, 0x7ff0
    int 0x82
    out 0x80, eax
"""


def run_xen(body: str):
    t = session.run(inline_image(XEN_PRELUDE + body + "    out 0xf4, al\n"), load_profile("xen-pv-q9550"),
                    session.RunOptions(hypervisor="xen-pv"))
    assert t.meta["status"] == "exited"
    e = t.exits
    return [v - (1 << 32) if v >> 31 else v
            for v in e[(e["reason"] == ExitReason.IO_INSTRUCTION) & (e["qualifier"] == 0x80)]["value"].tolist()]


def test_bad_hypercall_arguments_fail_with_errno_and_change_nothing():
    results = run_xen(
        mmu_update(0x21004, 0x23003)             # ok: a new entry in the pinned L1
        + mmu_update(0x22000, 0x23003)           # the PTE is not in a page table
        + mmu_update(0x21008, 0x21003)           # maps the L1 itself writable
        + mmu_update(0x21008, 0x21001)           # ... read-only is fine
        + mmu_update(0x21004, 0x23003, count_=0)
        + mmu_update(0x21004, 0x23003, reqs=0x7FFFFFF0)
        + mmu_update(0x21006, 0x23003)           # misaligned
        + mmu_update(0x21004, 0x7FFF0003)        # a frame outside guest RAM
        + "    mov eax, 99\n    int 0x82\n    out 0x80, eax\n")
    assert results == [0, 0, -EINVAL, -EINVAL, 0, -EINVAL, -EFAULT, -EINVAL, -EINVAL, -ENOSYS]


def test_multicall_runs_each_entry_and_stores_results():
    body = """
    mov dword ptr [0x32000], 1           # multicall_entry {op mmu_update, result, args...}
    mov dword ptr [0x32008], 0x31000
    mov dword ptr [0x3200c], 1
    mov dword ptr [0x32020], 99          # an unknown op: -ENOSYS in its result
    mov dword ptr [0x31000], 0x21004
    mov dword ptr [0x31008], 0x23003
    mov eax, 13
    mov ebx, 0x32000
    mov ecx, 2
    int 0x82
    out 0x80, eax
    mov eax, [0x32004]
    out 0x80, eax
    mov eax, [0x32024]
    out 0x80, eax
"""
    assert run_xen(body) == [0, 0, 0, -ENOSYS]


EXECS = 4


def execve(hypervisor: str, opts: dict | None = None, **constants):
    profile = load_profile("xen-pv-q9550" if hypervisor == "xen-pv" else None)
    return session.run(guests.resolve("exec", constants), profile,
                       session.RunOptions(hypervisor=hypervisor, optimizations=opts or {}))


@pytest.mark.parametrize("batch", [0, 1, 16])
def test_exec_demand_zero_faults_by_construction(batch):
    t = execve("xen-pv", BATCH=batch)
    assert t.meta["console"] == "exec: start\nexec: ok\n"
    assert count(t, ExitReason.EXCEPTION_NMI, place=Place.GUEST) == EXECS * PAGES
    assert hypercalls(t, 26) == 3 + 3 * EXECS
    if batch:
        assert hypercalls(t, 14) == EXECS * PAGES
        assert hypercalls(t, 1) == EXECS * math.ceil(PAGES / batch)
    else:
        assert count(t, ExitReason.EXCEPTION_NMI, place=Place.KERNEL, direction=Direction.OUT) == EXECS * 2 * PAGES


@pytest.mark.parametrize("guest, faults", [("fork", FORKS * TOUCH), ("exec", EXECS * PAGES)])
def test_enhanced_xen_fixes_the_faults_itself(guest, faults):
    run = fork if guest == "fork" else execve
    plain = run("xen-pv") if guest == "fork" else execve("xen-pv")
    enhanced = (session.run(guests.resolve("fork"), load_profile("xen-pv-q9550"),
                            session.RunOptions(hypervisor="xen-pv", optimizations={"xen-pf-offload": 1}))
                if guest == "fork" else execve("xen-pv", {"xen-pf-offload": 1}))
    assert enhanced.meta["console"] == plain.meta["console"]
    offloaded = enhanced.exits[(enhanced.exits["reason"] == ExitReason.EXCEPTION_NMI)
                               & (enhanced.exits["direction"] == Direction.IN)]
    assert len(offloaded) == faults and set(offloaded["place"].tolist()) == {Place.KERNEL}
    assert count(enhanced, ExitReason.EXCEPTION_NMI, place=Place.GUEST) == 0
    assert hypercalls(enhanced, 14) == 0                      # no update_va_mapping from the guest
    assert enhanced.meta["virtual_seconds"] < plain.meta["virtual_seconds"]
    kind = "cow_faults" if guest == "fork" else "zero_faults"
    assert enhanced.meta["optimizations"]["xen-pf-offload"][kind] == faults


def test_offload_is_a_no_op_with_a_note_elsewhere():
    t = session.run(guests.resolve("fork"), load_profile(None),
                    session.RunOptions(hypervisor="kvm", optimizations={"xen-pf-offload": 1}))
    assert "no-op" in t.meta["optimizations"]["xen-pf-offload"]["note"]


def test_xen_runs_are_deterministic():
    def once():
        return session.run(guests.resolve("exec", {"BATCH": 4}), load_profile("xen-pv-q9550"),
                           session.RunOptions(hypervisor="xen-pv", optimizations={"xen-pf-offload": 1})).to_bytes()
    assert once() == once()
