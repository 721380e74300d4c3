"""The host (host.py): several domains on one CPU and one virtual clock -- round-robin slices, the
switch cost, halted domains woken by their own events -- and a single domain that is today's run."""
from __future__ import annotations

import numpy as np

from vmexit import session
from vmexit.costs import load_profile
from vmexit.domain import Domain
from vmexit.exits import ExitReason
from vmexit.host import Host

from .conftest import inline_image
from .snippets import EOI_HANDLER, EXIT, IDT_DATA, IDT_SETUP, PIT_1000HZ

N = 2000


def _ports(n: int, port: int) -> str:
    """n `out` to one port with interrupts off, then the exit port."""
    return f"""
    cli
    mov ecx, {n}
loop:
    out {port}, al
    dec ecx
    jnz loop
""" + EXIT


def _halting(n: int) -> str:
    """Sleep in HLT until n ticks of the 1000 Hz PIT were handled, then exit."""
    return IDT_SETUP + PIT_1000HZ + f"""
    sti
.Lwait:
    hlt
    cmp dword ptr [ticks], {n}
    jb .Lwait
""" + EXIT + EOI_HANDLER + IDT_DATA


def _domains(*bodies: str, **options) -> list[Domain]:
    profile = load_profile(None)
    return [Domain(inline_image(body), profile, session.RunOptions(**options), domid=i)
            for i, body in enumerate(bodies)]


def _solo(body: str):
    return session.run(inline_image(body), load_profile(None), session.RunOptions())


def _shared(bodies, switch_cycles=0, slice_cycles=20_000):
    domains = _domains(*bodies)
    host = Host(domains, switch_cycles=switch_cycles, slice_cycles=slice_cycles)
    ends = host.run()
    return host, ends, [d.trace() for d in domains]


def test_one_domain_is_the_plain_run():
    body = _ports(100, 0x80)
    domain = _domains(body)[0]
    host = Host([domain])
    host.run()
    assert domain.trace().to_bytes() == _solo(body).to_bytes()
    assert host.switches == 0 and host.now == domain.clock.now()


def test_two_domains_share_the_cpu_in_slices():
    bodies = (_ports(N, 0x80), _ports(N, 0x81))
    host, ends, traces = _shared(bodies)
    assert [e.status for e in ends] == ["exited", "exited"]
    for body, t, port in zip(bodies, traces, (0x80, 0x81)):
        solo = _solo(body)
        # each domain's own work is unchanged: the same exits at the same addresses, the same instructions
        assert (t.exits["rip"] == solo.exits["rip"]).all() and (t.exits["qualifier"] == solo.exits["qualifier"]).all()
        assert int((t.exits["qualifier"] == port).sum()) == N
        assert t.meta["instructions"] == solo.meta["instructions"]
    a, b = (t.exits["cycles"].astype(np.int64) for t in traces)
    assert a[0] < b[0] < a[-1] and b[0] < a[-1] < b[-1]  # interleaved on the one clock
    assert host.switches >= 4


def test_switch_cost_is_charged_per_switch():
    bodies = (_ports(N, 0x80), _ports(N, 0x81))
    free, _, _ = _shared(bodies, switch_cycles=0)
    paid, _, _ = _shared(bodies, switch_cycles=5000)
    solo = sum(_solo(b).meta["cycles"] for b in bodies)
    # with nothing idle, host time is both domains' own time plus the switches
    assert free.now == solo
    assert paid.switches == free.switches
    assert paid.now == solo + 5000 * paid.switches


def test_a_halted_domain_wakes_on_its_own_timer():
    # A sleeps in HLT between PIT ticks while B computes with interrupts off: A runs only when a tick
    # is due (at B's next slice end), handles it and halts again; both do exactly their solo work.
    sleeper, worker = _halting(3), _ports(20_000, 0x80)
    host, ends, (a, b) = _shared((sleeper, worker), slice_cycles=100_000)
    assert [e.status for e in ends] == ["exited", "exited"]
    solo_a = _solo(sleeper)
    for reason in (ExitReason.IO_INSTRUCTION, ExitReason.HLT):
        assert int((a.exits["reason"] == reason).sum()) == int((solo_a.exits["reason"] == reason).sum())
    assert not (a.exits["reason"] == ExitReason.EXTERNAL_INTERRUPT).any()  # it was never running when they came
    assert a.meta["cycles"] >= solo_a.meta["cycles"]
    assert int((b.exits["qualifier"] == 0x80).sum()) == 20_000


def test_shared_runs_are_deterministic():
    bodies = (_halting(2), _ports(N, 0x80))
    first = [t.to_bytes() for t in _shared(bodies)[2]]
    second = [t.to_bytes() for t in _shared(bodies)[2]]
    assert first == second
