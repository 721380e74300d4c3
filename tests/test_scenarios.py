"""Bundled scenarios (scenarios.py): the registry, how -D constants reach each domain's source, and the
xennet wiring (start_info pages, the toolstack's port) on small test guests."""
from __future__ import annotations

import struct

import pytest

from vmexit import session
from vmexit.costs import load_profile
from vmexit.loader import LoadError
from vmexit.scenarios import (BUFS_REF, DOMU_MAC, RX_RING_REF, SCENARIOS, START_INFO, TX_RING_REF, route_constants,
                              run_scenario, run_xennet)

from .conftest import inline_image

DEFAULTS = {0: ".ifndef MSG_SIZE\n.set MSG_SIZE, 4096\n.endif\n.ifndef NAPI\n.set NAPI, 1\n.endif\n",
            1: ".ifndef MSG_SIZE\n.set MSG_SIZE, 4096\n.endif\n.ifndef SHARED_BUFFERS\n.set SHARED_BUFFERS, 0\n.endif\n"}


def test_constants_reach_every_source_that_defines_them():
    routed = route_constants({"MSG_SIZE": 1024, "SHARED_BUFFERS": 1, "NAPI": 0}, DEFAULTS)
    assert routed == {0: {"MSG_SIZE": 1024, "NAPI": 0}, 1: {"MSG_SIZE": 1024, "SHARED_BUFFERS": 1}}
    with pytest.raises(LoadError, match="BOGUS: no domain's source defines it"):
        route_constants({"BOGUS": 1}, DEFAULTS)


def test_registry_names_its_entries():
    assert {"xennet", "xenidc", "dbnet"} <= set(SCENARIOS) and SCENARIOS["xennet"].profile == "xen-pv-q9550"
    assert SCENARIOS["dbnet"].hypervisor == "xen-pv" and SCENARIOS["dbnet"].paper is not None
    assert SCENARIOS["xennet"].hypervisor == "xen-pv" and isinstance(SCENARIOS["xennet"].defaults, dict)
    with pytest.raises(LoadError, match="unknown scenario"):
        run_scenario("nope", {}, load_profile(None), session.RunOptions())


# dom0 and domU report their start_info fields on port 0x80 and exit
REPORT_START_INFO = "".join(f"    mov eax, [{START_INFO + off}]\n    out 0x80, eax\n"
                            for off in (0, 32, 40, 0x800, 0x804, 0x808, 0x80C, 0x810, 0x814, 0x818, 0x81C)) \
    + "    cmp esi, 0x9000\n    jne .Lbad\n    out 0xf4, al\n.Lbad:\n    hlt\n"


def test_xennet_wiring_fills_start_info_and_runs_both_domains():
    images = {0: inline_image(REPORT_START_INFO), 1: inline_image(REPORT_START_INFO)}
    run = run_xennet(images, load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=0.01))
    dom0, domu = run.traces
    magic = struct.unpack("<I", b"xen-")[0]
    mac_lo = struct.unpack("<I", DOMU_MAC[:4])[0]
    pages = (64 << 20) // 4096
    for t, domid, flags in ((dom0, 0, 3), (domu, 1, 0)):
        e = t.exits
        values = e[(e["reason"] == 30) & (e["qualifier"] == 0x80)]["value"].tolist()
        assert values == [magic, pages, flags, domid, 1 - domid, 1, TX_RING_REF, RX_RING_REF, BUFS_REF, 0, mac_lo]
        assert t.meta["status"] == "exited" and t.meta["domid"] == domid
        assert set(e["domain"].tolist()) == {domid}
    assert dom0.meta["nic"] is not None and domu.meta["nic"] is None
    assert dom0.meta["options"]["net_rate_bps"] == 1_000_000_000
    assert run.host["domains"] == 2 and run.host["ends"][1]["status"] == "exited"
    # nothing was received (dom0 never enabled its receiver): a stream of 0 bytes
    assert run.host["net_bytes"] == 0 and run.host["throughput_mbit_s"] == 0.0


def test_xennet_runs_the_bundled_guests_when_they_are_there():
    from vmexit.scenarios import xennet_sources
    profile, options = load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=0.002)
    if not all(p.is_file() for p in xennet_sources().values()):
        with pytest.raises(LoadError, match="not in this checkout"):
            run_scenario("xennet", {}, profile, options)
        return
    run = run_scenario("xennet", {"MESSAGES": 4}, profile, options)
    assert [t.meta["domid"] for t in run.traces] == [0, 1]
    assert run.traces[1].meta["status"] in ("exited", "budget")
    xen = [t.meta["xen"] for t in run.traces]
    assert xen[0]["events_sent"] == xen[1]["events_received"] and xen[1]["events_sent"] == xen[0]["events_received"]
    again = run_scenario("xennet", {"MESSAGES": 4}, profile, options)
    assert [t.to_bytes() for t in again.traces] == [t.to_bytes() for t in run.traces] and again.host == run.host


@pytest.mark.parametrize("constants, bufs, sends", [({}, 0, True), ({"SHARED_BUFFERS": 1}, 128, True),
                                                   ({"SHARED_BUFFERS": 1, "SHARED_BUF_PAGES": 5, "RECEIVE": 0}, 5,
                                                    False)])
def test_xennet_wiring_follows_the_frontends_constants(constants, bufs, sends):
    images = {0: inline_image(REPORT_START_INFO), 1: inline_image(REPORT_START_INFO)}
    images[1].constants = dict(constants)
    run = run_xennet(images, load_profile("xen-pv-q9550"), session.RunOptions(max_seconds=0.01))
    for t in run.traces:
        e = t.exits
        assert e[(e["reason"] == 30) & (e["qualifier"] == 0x80)]["value"].tolist()[9] == bufs
    assert run.traces[0].meta["options"]["net_peer_sends"] is sends


@pytest.mark.parametrize("shared", [0, 1])
def test_xennet_per_domain_totals_add_up_to_the_run(shared):
    """The merged run: the domains' exits and instructions are the run's; the host's time is every
    domain's CPU time, the domain switches and the time no domain ran, exactly."""
    from vmexit.trace import cpu_cycles, merge_domains
    profile = load_profile("xen-pv-q9550")
    run = run_scenario("xennet", {"MESSAGES": 8, "SHARED_BUFFERS": shared}, profile, session.RunOptions())
    merged = merge_domains(run.traces, {"name": "xennet", **run.host})
    assert len(merged.exits) == sum(len(t.exits) for t in run.traces)
    assert merged.meta["instructions"] == sum(t.meta["instructions"] for t in run.traces)
    busy = sum(cpu_cycles(t.meta, int(t.exits["cost"].sum())) for t in run.traces)
    host = merged.meta["host"]
    assert busy + host["switch_total_cycles"] + merged.meta["idle_cycles"] == merged.meta["cycles"] == run.host["cycles"]
    for domid, t in enumerate(run.traces):
        assert (merged.exits["domain"] == domid).sum() == len(t.exits)
