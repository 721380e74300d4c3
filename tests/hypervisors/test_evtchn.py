"""Xen event channels (hypervisors/evtchn.py, xen_io.py): the table's rules and error codes on two
machines, and guests on two domains of one host -- block / wake, the upcall, masking, poll, yield,
deadlock and budget -- with counts by construction."""
from __future__ import annotations

import struct

import pytest

from vmexit.hypervisors.evtchn import (EINVAL, ENOSPC, EPERM, ESRCH, EVTCHN_MASK, EVTCHN_PENDING, NR_PORTS,
                                       PENDING_SEL, UPCALL_PENDING, EventChannels)
from vmexit.machine import X86Machine

from .xen_pair import ARGS, EXIT, PORT, SI, call, hypercalls, place_shared_info, report, reported, run_pair, \
    set_callbacks, store


def _table(n: int = 2):
    kicks = {d: [] for d in range(n)}
    events = EventChannels()
    for d in range(n):
        events.attach(d, X86Machine(2 << 20), kicks[d].append, privileged=d == 0)
    return events, kicks


def test_ports_errors_and_states():
    ev, _ = _table(3)
    assert ev.alloc_unbound(1, 0x7FF0, 0) == 1            # DOMID_SELF; port 0 is reserved
    assert ev.alloc_unbound(1, 2, 0) == -EPERM             # for another domain: privileged only
    assert ev.alloc_unbound(0, 2, 1) == 1                  # dom0 may
    assert ev.alloc_unbound(0, 9, 1) == -ESRCH
    assert ev.bind_interdomain(0, 9, 1) == -ESRCH
    assert ev.bind_interdomain(2, 1, 1) == -EINVAL         # unbound for dom0, not for dom2
    assert ev.bind_interdomain(0, 1, 5) == -EINVAL         # no such port
    assert ev.bind_interdomain(0, 1, 1) == 1               # dom0's port 1 <-> dom1's port 1
    assert ev.bind_interdomain(0, 1, 1) == -EINVAL         # bound already
    for bad in (0, 7, NR_PORTS, -1):
        assert ev.send(1, bad) == -EINVAL                  # reserved, free, beyond the table
        assert ev.unmask(1, bad) == -EINVAL or bad == 0
        assert ev.close(1, bad) == -EINVAL
    assert ev.send(2, 1) == 0 and ev.domains[2].stats["events_sent"] == 0   # unbound: dropped silently
    assert ev.close(1, 1) == 0                             # dom0's end returns to unbound for dom1
    assert ev.domains[0].ports[1].state == "unbound" and ev.domains[0].ports[1].remote_dom == 1
    assert ev.bind_interdomain(1, 0, 1) == 1               # ... which dom1 can bind again


def test_no_free_port_is_enospc():
    ev, _ = _table(1)
    assert [ev.alloc_unbound(0, 0, 0) for _ in range(NR_PORTS - 1)] == list(range(1, NR_PORTS))
    assert ev.alloc_unbound(0, 0, 0) == -ENOSPC


def test_masked_sends_set_pending_once_and_unmask_raises_the_upcall():
    ev, kicks = _table()
    port = ev.alloc_unbound(None, 1, 0)
    local = ev.bind_interdomain(0, 1, port)
    kicks[0].clear()
    sh = ev.domains[1].shared
    sh.test_and_set(EVTCHN_MASK, port)
    for _ in range(5):
        assert ev.send(0, local) == 0
    assert ev.domains[0].stats["events_sent"] == 5 and ev.domains[1].stats["events_received"] == 5
    assert sh.test(EVTCHN_PENDING, port) and not sh.byte(UPCALL_PENDING) and not sh.test(PENDING_SEL, 0)
    assert kicks[1] == [port]                              # pollers: once, when it became pending
    assert ev.unmask(1, port) == 0
    assert sh.byte(UPCALL_PENDING) == 1 and sh.test(PENDING_SEL, 0) and kicks[1] == [port, None]
    ev.send(0, local)                                      # already pending: nothing more
    assert kicks[1] == [port, None]


def test_bind_sets_the_new_local_port_pending():
    ev, kicks = _table()
    port = ev.alloc_unbound(None, 1, 0)
    local = ev.bind_interdomain(0, 1, port)
    assert ev.is_pending(0, local) and not ev.is_pending(1, port)
    assert kicks[0] == [None, local]
    # before the shared info page is placed the state waits in Xen's own page, and moves there
    m = ev.domains[0].shared.m
    ev.domains[0].shared.place(0x10000)
    assert struct.unpack_from("<I", m.ram, 0x10000 + EVTCHN_PENDING)[0] == 1 << local
    assert m.ram[0x10000 + UPCALL_PENDING] == 1


# two domains --------------------------------------------------------------------------------------
N = 5


def _bind_and(body: str) -> str:
    """dom1 binds dom0's unbound port (start_info) and keeps its own port's send argument at ARGS + 16."""
    return store(ARGS, 0) + f"""
    mov eax, [{PORT}]
    mov [{ARGS + 4}], eax
""" + call(32, 0, ARGS) + f"""
    mov eax, [{ARGS + 8}]
    mov [{ARGS + 16}], eax
""" + body


def _blocking_receiver(n: int) -> str:
    return place_shared_info() + set_callbacks() + """
.Lwait:
""" + call(29, 1, report=False) + f"""
    cmp dword ptr [upcalls], {n}
    jb .Lwait
""" + report("upcalls") + EXIT


def _sender(n: int, yield_: bool = True) -> str:
    return _bind_and(f"""
    mov edi, {n}
.Lsend:
""" + call(32, 4, ARGS + 16, report=False) + (call(29, 0, report=False) if yield_ else "") + """
    dec edi
    jnz .Lsend
""" + EXIT)


def test_a_blocked_domain_wakes_on_each_event():
    run, _ = run_pair(_blocking_receiver(N), _sender(N), unbound=(0, 1))
    r, s = run.traces
    assert [t.meta["status"] for t in run.traces] == ["exited", "exited"]
    assert reported(r) == [N] and r.meta["xen"]["upcalls"] == N and r.meta["xen"]["events_received"] == N
    assert s.meta["xen"]["events_sent"] == N and s.meta["xen"]["upcalls"] == 0   # no callback registered
    assert hypercalls(r, 29, 1) == N                       # one block per event
    assert hypercalls(s, 32, 4) == N and hypercalls(s, 29, 0) == N
    # dom0 blocks, dom1 sends and yields, dom0 handles and blocks ... : two switches per event, one at the end
    assert run.host["switches"] == 2 * N + 1
    assert set(r.exits["domain"].tolist()) == {0} and set(s.exits["domain"].tolist()) == {1}


def test_host_time_is_the_domains_work_plus_the_switches():
    run, _ = run_pair(_blocking_receiver(N), _sender(N), unbound=(0, 1))
    from vmexit.costs import load_profile
    prof = load_profile("xen-pv-q9550")
    busy = sum(t.meta["instructions"] + int(t.exits["cost"].sum()) + t.meta["xen"]["upcalls"] * prof.host_cost(
        "event_upcall") for t in run.traces)
    # nobody idles: whenever one domain waits, the other runs
    assert run.host["cycles"] == busy + run.host["switches"] * prof.host_cost("domain_switch")
    assert sum(t.meta["xen"]["events_sent"] for t in run.traces) == \
        sum(t.meta["xen"]["events_received"] for t in run.traces)


def test_events_to_a_masked_vcpu_give_one_upcall():
    # dom1 sends N without yielding while dom0 masks event delivery; dom0 then unmasks and forces
    # delivery with xen_version(0): N sends, N received, one upcall
    masked = place_shared_info() + f"    mov byte ptr [{SI + 1}], 1\n" + set_callbacks() \
        + call(29, 0, report=False) + f"    mov byte ptr [{SI + 1}], 0\n" + call(17, 0) + report("upcalls") + EXIT
    run, _ = run_pair(masked, _sender(N, yield_=False), unbound=(0, 1))
    r, s = run.traces
    assert reported(r) == [(3 << 16) | 2, 1]
    assert r.meta["xen"]["upcalls"] == 1 and r.meta["xen"]["events_received"] == N
    assert s.meta["xen"]["events_sent"] == N


def test_poll_wakes_on_its_port_or_at_the_timeout():
    timeout_ns = 2_000_000
    poll = store(ARGS + 0x100, 1) + store(ARGS, ARGS + 0x100, 1, timeout_ns, 0)
    # dom0 polls its port with events masked; dom1 never sends: the poll returns at the timeout
    lone = place_shared_info() + f"    mov byte ptr [{SI + 1}], 1\n" + poll + call(29, 3, ARGS) + EXIT
    run, _ = run_pair(lone, _bind_and(EXIT), unbound=(0, 1))
    r = run.traces[0]
    assert reported(r) == [0] and r.meta["status"] == "exited"
    assert r.meta["cycles"] >= timeout_ns * r.meta["freq_hz"] // 10**9
    # ... and when dom1 sends, at once (the port is pending though masked, no upcall)
    run, _ = run_pair(lone, _sender(1), unbound=(0, 1))
    r = run.traces[0]
    assert reported(r) == [0] and r.meta["cycles"] < timeout_ns * r.meta["freq_hz"] // 10**9
    assert r.meta["xen"]["upcalls"] == 0


def test_bad_event_arguments_return_errors_in_the_guest():
    body = (call(32, 4, ARGS + 0x200)                     # send on port 0 (reserved)
            + store(ARGS, 5) + call(32, 4, ARGS)          # a free port
            + store(ARGS, 2000) + call(32, 9, ARGS)       # unmask beyond the table
            + store(ARGS, 0, 1, 0) + call(32, 0, ARGS)    # bind dom0's port 1, unbound for dom1: ok
            + store(ARGS, 0, 1, 0) + call(32, 0, ARGS)    # ... bound already
            + store(ARGS, 9, 1, 0) + call(32, 0, ARGS)    # no domain 9
            + store(ARGS, 0x00010000) + call(32, 6, ARGS)  # alloc_unbound for dom1: not privileged
            + call(32, 4, 0x7FFFFFF0)                     # an argument outside memory
            + call(32, 77, ARGS)                          # a command not modeled
            + store(ARGS, ARGS + 0x100, 129, 0, 0) + call(29, 3, ARGS) + EXIT)  # poll: 129 ports > 128
    run, _ = run_pair(EXIT, body, unbound=(0, 1))
    assert reported(run.traces[1]) == [-EINVAL, -EINVAL, -EINVAL, 0, -EINVAL, -ESRCH, -EPERM, -14, -38, -EINVAL]


def test_deadlock_ends_each_blocked_domain_halted():
    sleeper = place_shared_info() + set_callbacks() + call(29, 1, report=False) + EXIT
    run, _ = run_pair(sleeper, sleeper, unbound=None)
    for t in run.traces:
        assert t.meta["status"] == "halted" and "deadlock" in t.meta["detail"]
        assert hypercalls(t, 29, 1) == 1


def test_a_domain_left_alone_blocked_ends_halted_saying_why():
    sleeper = place_shared_info() + set_callbacks() + call(29, 1, report=False) + EXIT
    run, _ = run_pair(sleeper, EXIT, unbound=None)
    r = run.traces[0]
    assert r.meta["status"] == "halted" and "no domain is left to send it an event (ended: 1)" in r.meta["detail"]
    assert run.traces[1].meta["status"] == "exited"


def test_a_domain_that_never_yields_ends_by_budget_with_both_traces():
    spinner = "spin:\n    jmp spin\n"
    run, _ = run_pair(_blocking_receiver(1), spinner, unbound=(0, 1), max_seconds=0.001)
    assert [t.meta["status"] for t in run.traces] == ["budget", "budget"]
    assert hypercalls(run.traces[0], 29, 1) == 1 and run.traces[1].meta["instructions"] > 0


@pytest.mark.parametrize("twice", [0, 1])
def test_runs_are_deterministic(twice):
    first = [t.to_bytes() for t in run_pair(_blocking_receiver(N), _sender(N), unbound=(0, 1))[0].traces]
    second = [t.to_bytes() for t in run_pair(_blocking_receiver(N), _sender(N), unbound=(0, 1))[0].traces]
    assert first == second


def test_a_domain_alone_polls_to_its_timeout_and_cannot_block_forever():
    from vmexit import session
    from vmexit.costs import load_profile

    from ..conftest import inline_image

    def alone(body):
        return session.run(inline_image(body), load_profile("xen-pv-q9550"), session.RunOptions(hypervisor="xen-pv"))
    port = store(ARGS + 0x100, 1) + store(ARGS, ARGS + 0x100, 1, 3_000_000, 0)
    t = alone(store(ARGS + 0x80, 0x7FF0, 0) + call(32, 6, ARGS + 0x80) + port + call(29, 3, ARGS) + EXIT)
    assert reported(t) == [0, 0] and t.meta["status"] == "exited"
    assert t.meta["idle_cycles"] > 0 and t.meta["cycles"] >= 3_000_000 * t.meta["freq_hz"] // 10**9
    t = alone(call(29, 1) + EXIT)
    assert t.meta["status"] == "halted" and "sleeps forever" in t.meta["detail"]
    assert "xen" in t.meta and "events_sent" not in t.meta["xen"]   # a domain alone keeps today's statistics


@pytest.mark.parametrize("preempt, upcalls", [(False, 1), (True, N)])
def test_waking_a_blocked_domain_preempts_the_sender_when_asked(preempt, upcalls):
    # dom1 sends N events without yielding to dom0, blocked: without preemption dom1 sends them all
    # (one pending bit, one upcall); with it, each send hands the CPU to dom0, which handles and blocks
    receiver = place_shared_info() + set_callbacks() + """
.Lwait:
""" + call(29, 1, report=False) + f"""
    cmp dword ptr [upcalls], {upcalls}
    jb .Lwait
""" + report("upcalls") + EXIT
    run, _ = run_pair(receiver, _sender(N, yield_=False), unbound=(0, 1), wake_preempts=preempt)
    r, s = run.traces
    assert reported(r) == [upcalls] and r.meta["xen"]["events_received"] == N == s.meta["xen"]["events_sent"]
    assert run.host["switches"] == (2 * N + 1 if preempt else 2)


def test_the_workload_domains_end_stops_the_domain_serving_it():
    """dom0 blocks for good; dom1 (the workload) exits: without a workload the host finds dom0
    deadlocked, with one dom0 stops when dom1 ends, at the host's time."""
    block = place_shared_info() + call(29, 1, 0, report=False) + EXIT
    done = "    mov eax, 0\n" + EXIT
    alone, _ = run_pair(block, done, unbound=None)
    assert alone.host["ends"][0]["status"] == "halted"
    served, _ = run_pair(block, done, unbound=None, workload=1)
    assert served.host["ends"][0] == {"status": "stopped", "detail": "the workload domain 1 ended (exited)"}
    assert served.host["ends"][1]["status"] == "exited"
    assert served.traces[0].meta["cycles"] == served.host["cycles"]
