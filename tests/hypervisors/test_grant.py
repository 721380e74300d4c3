"""Xen grant tables (hypervisors/grant.py, xen_io.py): every GNTST status the model gives, by
construction on two machines, the GTF_reading / GTF_writing bookkeeping, and two guests sharing a
page through a real mapping, copying into a grant and pricing each sub-operation."""
from __future__ import annotations

import json
import struct

import pytest

from vmexit.costs import PROFILE_DIR, load_profile
from vmexit.exits import ExitReason
from vmexit.hypervisors.grant import (GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle,
                                      GNTST_bad_page, GNTST_bad_virt_addr, GNTST_general_error,
                                      GNTST_no_device_space, GNTST_okay, GNTST_permission_denied, GRANT_WINDOW,
                                      GTF_accept_transfer, GTF_permit_access, GTF_readonly, GTF_reading,
                                      GTF_transfer_committed, GTF_transfer_completed, GTF_writing, MAX_FRAMES,
                                      GrantTables)
from vmexit.hypervisors.hypercalls import XEN, XEN_SUBOPS, full_name
from vmexit.machine import X86Machine

from .xen_pair import ARGS, EXIT, PORT, call, hypercalls, place_shared_info, reported, run_pair, set_callbacks, store

SELF = 0x7FF0
TABLE = 0x11000             # domU's table frame 0
W = GRANT_WINDOW[0]
MAP, RO = 2, 2 | 4          # GNTMAP_host_map, + GNTMAP_readonly


def _tables(max_maptrack: int | None = None):
    g = GrantTables(max_maptrack) if max_maptrack else GrantTables()
    machines = [X86Machine(2 << 20), X86Machine(2 << 20)]
    for d, m in enumerate(machines):
        g.attach(d, m, privileged=d == 0)
    assert g.place_frame(1, 0, TABLE >> 12)
    return g, machines


def _grant(m, ref: int, flags: int, domid: int, frame: int) -> None:
    m.write_physical(TABLE + 8 * ref, struct.pack("<HHI", flags, domid, frame))


def _flags(m, ref: int) -> int:
    return struct.unpack_from("<H", m.ram, TABLE + 8 * ref)[0]


def test_map_and_unmap_pin_the_entry_and_flush():
    g, (m0, m1) = _tables()
    _grant(m1, 8, GTF_permit_access, 0, 0x50)
    _grant(m1, 9, GTF_permit_access | GTF_readonly, 0, 0x51)
    assert g.map(0, W, MAP, 8, 1) == (GNTST_okay, 0, 0)
    assert _flags(m1, 8) == GTF_permit_access | GTF_reading | GTF_writing
    assert g.map(0, W + 0x1000, RO, 9, 1)[:2] == (GNTST_okay, 1)
    assert _flags(m1, 9) == GTF_permit_access | GTF_readonly | GTF_reading
    assert g.map(0, W + 0x2000, RO | 1, 8, 1) == (GNTST_okay, 2, 0x50000)  # + device map: its bus address
    assert g.unmap(0, W, 7) == GNTST_bad_handle
    assert g.unmap(0, W + 0x1000, 0) == GNTST_general_error              # not where handle 0 is mapped
    assert g.unmap(0, W, 0) == GNTST_okay
    assert _flags(m1, 8) == GTF_permit_access | GTF_reading               # the read-only map still holds it
    assert g.unmap(0, W + 0x2000, 2) == GNTST_okay and g.unmap(0, W + 0x1000, 1) == GNTST_okay
    assert (_flags(m1, 8), _flags(m1, 9)) == (GTF_permit_access, GTF_permit_access | GTF_readonly)
    assert g.unmap(0, W, 0) == GNTST_bad_handle
    assert g.domains[0].stats == {"maps": 3, "unmaps": 3, "tlb_flushes": 3, "copies": 0, "bytes_copied": 0,
                                  "transfers": 0}


def test_map_errors():
    g, (m0, m1) = _tables(max_maptrack=1)
    _grant(m1, 8, GTF_permit_access, 0, 0x50)
    _grant(m1, 10, GTF_permit_access, 1, 0x52)                           # granted to dom1 itself
    _grant(m1, 11, GTF_permit_access | GTF_readonly, 0, 0x53)
    _grant(m1, 12, GTF_permit_access, 0, 0x7FFFF)                        # a frame outside dom1's RAM
    cases = [((W, 0, 8, 1), GNTST_bad_gntref),                           # neither host nor device map
             ((W, MAP, 8, 9), GNTST_bad_domain),
             ((W + 1, MAP, 8, 1), GNTST_bad_virt_addr),                  # not page-aligned
             ((0x10000, MAP, 8, 1), GNTST_bad_virt_addr),                # inside RAM, outside the window
             ((GRANT_WINDOW[1], MAP, 8, 1), GNTST_bad_virt_addr),
             ((W, MAP, 600, 1), GNTST_bad_gntref),                       # table frame 1 is not placed
             ((W, MAP, 9, 1), GNTST_general_error),                      # entry 9 grants nothing
             ((W, MAP, 10, 1), GNTST_general_error),                     # granted to another domain
             ((W, MAP, 11, 1), GNTST_general_error),                     # a writable map of a read-only grant
             ((W, MAP, 12, 1), GNTST_bad_page)]
    for args, status in cases:
        assert g.map(0, *args)[0] == status, args
    assert _flags(m1, 8) == GTF_permit_access                            # failures pin nothing
    assert g.map(0, W, MAP, 8, 1)[0] == GNTST_okay
    assert g.map(0, W + 0x1000, RO, 11, 1)[0] == GNTST_no_device_space   # the maptrack holds one
    g.max_maptrack = 2
    assert g.map(0, W, RO, 11, 1)[0] == GNTST_general_error              # W is mapped already


def test_setup_table():
    g, _ = _tables()
    assert g.setup_table(1, SELF, 1) == (GNTST_okay, [TABLE >> 12])
    assert g.setup_table(0, 1, 1) == (GNTST_okay, [TABLE >> 12])          # dom0 may ask for another's
    assert g.setup_table(1, 0, 1)[0] == GNTST_permission_denied
    assert g.setup_table(1, 9, 1)[0] == GNTST_bad_domain
    assert g.setup_table(1, SELF, 2)[0] == GNTST_general_error            # only one frame placed
    assert g.setup_table(1, SELF, MAX_FRAMES + 1)[0] == GNTST_general_error
    assert not g.place_frame(1, MAX_FRAMES, 0x12) and not g.place_frame(1, 0, 0x7FFFF)


def test_copy_statuses_and_bytes():
    g, (m0, m1) = _tables()
    _grant(m1, 8, GTF_permit_access, 0, 0x50)
    _grant(m1, 11, GTF_permit_access | GTF_readonly, 0, 0x53)
    m0.write_physical(0x60000 + 10, bytes(range(100)))
    ok = ((0x60, SELF, 10), (8, 1, 20), 100, 2)
    assert g.copy(0, *ok) == GNTST_okay
    assert bytes(m1.ram[0x50000 + 20:0x50000 + 120]) == bytes(range(100))
    assert _flags(m1, 8) == GTF_permit_access                            # pinned only while copying
    cases = [(((0x60, SELF, 4000), (8, 1, 0), 200, 2), GNTST_bad_copy_arg),
             (((0x60, SELF, 0), (8, 1, 4000), 200, 2), GNTST_bad_copy_arg),
             (((0x60, SELF, 0), (0x50, 1, 0), 10, 0), GNTST_permission_denied),   # a frame of dom1, no gref
             (((0x60, SELF, 0), (8, 9, 0), 10, 2), GNTST_bad_domain),
             (((0x60, SELF, 0), (600, 1, 0), 10, 2), GNTST_bad_gntref),
             (((0x60, SELF, 0), (11, 1, 0), 10, 2), GNTST_general_error),  # writing a read-only grant
             (((0x7FFFF, SELF, 0), (8, 1, 0), 10, 2), GNTST_bad_page),
             (((11, 1, 0), (0x7FFFF, SELF, 0), 10, 1), GNTST_bad_page)]   # source pinned, then released
    for args, status in cases:
        assert g.copy(0, *args) == status, args
    assert (_flags(m1, 8), _flags(m1, 11)) == (GTF_permit_access, GTF_permit_access | GTF_readonly)
    assert g.copy(0, (11, 1, 0), (0x61, SELF, 0), 16, 1) == GNTST_okay   # reading a read-only grant is fine
    assert g.domains[0].stats["copies"] == 2 and g.domains[0].stats["bytes_copied"] == 116


def test_transfer_flips_into_the_offered_frame():
    g, (m0, m1) = _tables()
    _grant(m1, 9, GTF_accept_transfer, 0, 0x70)
    _grant(m1, 8, GTF_permit_access, 0, 0x50)
    m0.write_physical(0x60000, b"\xab" * 4096)
    assert g.transfer(0, 0x7FFFF, 1, 9) == GNTST_bad_page
    assert g.transfer(0, 0x60, 9, 9) == GNTST_bad_domain
    assert g.transfer(0, 0x60, 1, 8) == GNTST_general_error                 # not an accept-transfer entry
    assert g.transfer(0, 0x60, 1, 600) == GNTST_general_error               # beyond the table
    assert g.transfer(0, 0x60, 1, 9) == GNTST_okay
    assert bytes(m1.ram[0x70000:0x71000]) == b"\xab" * 4096
    assert _flags(m1, 9) == GTF_accept_transfer | GTF_transfer_committed | GTF_transfer_completed
    assert g.transfer(0, 0x60, 1, 9) == GNTST_general_error                 # used up
    assert g.domains[0].stats["transfers"] == 1


# two guests -----------------------------------------------------------------------------------------
def _status(address: int) -> str:
    return f"    movsx eax, word ptr [{address}]\n    out 0x80, eax\n"


def _wait_upcalls(n: int) -> str:
    return f"""
.Lwait{n}:
""" + call(29, 1, report=False) + f"""
    cmp dword ptr [upcalls], {n}
    jb .Lwait{n}
"""


MAP_OP, UNMAP_OP, COPY_OP, BAD_OP = ARGS + 0x40, ARGS + 0x80, ARGS + 0xC0, ARGS + 0x100
DOM0 = place_shared_info() + set_callbacks() + _wait_upcalls(1) + "    mov dword ptr [0x60000], 0x12345678\n" \
    + store(MAP_OP, W, 0, MAP, 8, 1) + call(20, 0, MAP_OP, 1) + _status(MAP_OP + 18) \
    + "    mov dword ptr [0x40000000], 0xCAFE\n" \
    + store(UNMAP_OP, W, 0, 0, 0) + "    mov eax, [0x30054]\n    mov [0x30090], eax\n" \
    + call(20, 1, UNMAP_OP, 1) + _status(UNMAP_OP + 20) \
    + store(COPY_OP, 0x60, SELF, 8, 1 | (16 << 16), 100 | (2 << 16)) + call(20, 5, COPY_OP, 1) \
    + _status(COPY_OP + 20) \
    + store(BAD_OP, W, 0, MAP, 9, 1) + call(20, 0, BAD_OP, 1) + _status(BAD_OP + 18) \
    + call(20, 0, 0x7FFFFFF0, 1) + call(20, 9, ARGS, 1) + call(20, 2, ARGS, 2) \
    + f"    mov eax, [{PORT}]\n    mov [{ARGS + 0x200}], eax\n" + call(32, 4, ARGS + 0x200, report=False) + EXIT
DOMU = place_shared_info() + set_callbacks() + store(ARGS, 0, 0, 0) + f"""
    mov eax, [{PORT}]
    mov [{ARGS + 4}], eax
""" + call(32, 0, ARGS, report=False) + f"""
    mov eax, [{ARGS + 8}]
    mov [{ARGS + 16}], eax
""" + store(ARGS + 0x20, SELF, 1, 0, TABLE >> 12) + call(12, 7, ARGS + 0x20) \
    + store(TABLE + 64, GTF_permit_access, 0x50, GTF_permit_access | GTF_readonly, 0x51) \
    + call(32, 4, ARGS + 16, report=False) + _wait_upcalls(2) \
    + "    mov eax, [0x50000]\n    out 0x80, eax\n    mov eax, [0x50010]\n    out 0x80, eax\n" \
    + f"    movzx eax, word ptr [{TABLE + 64}]\n    out 0x80, eax\n" + EXIT


def _profile_with_copy_price(tmp_path) -> str:
    doc = json.loads((PROFILE_DIR / "xen-pv-q9550.json").read_text())
    doc["costs"]["VMCALL/grant_table_op:copy"] = {"cycles": 5000, "per_item": 3, "source": "test"}
    path = tmp_path / "priced.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_two_guests_share_a_granted_page_and_copy_into_a_grant(tmp_path):
    profile = _profile_with_copy_price(tmp_path)
    run, _ = run_pair(DOM0, DOMU, unbound=(0, 1), profile=profile)
    d0, du = run.traces
    assert [t.meta["status"] for t in run.traces] == ["exited", "exited"]
    # map ok, write through it, unmap ok, copy ok, a writable map of a read-only grant, then bad calls
    assert reported(d0) == [0, 0, 0, 0, 0, 0, 0, GNTST_general_error, -14, -38, -22]
    # domU sees dom0's store in its own page, the copied bytes, and its entry unpinned again
    assert reported(du) == [0, 0xCAFE, 0x12345678, GTF_permit_access]
    assert d0.meta["xen"]["maps"] == 1 and d0.meta["xen"]["unmaps"] == 1 and d0.meta["xen"]["tlb_flushes"] == 1
    assert d0.meta["xen"]["copies"] == 1 and d0.meta["xen"]["bytes_copied"] == 100
    e = d0.exits
    gnt = e[(e["reason"] == ExitReason.VMCALL) & (e["qualifier"] == 20)]
    assert gnt["subop"].tolist() == [0, 1, 5, 0, 0, 9, 2]
    assert gnt["size"].tolist() == [1, 1, 100, 1, 0, 1, 2]                 # ops, bytes for copy
    prof = load_profile(profile)
    copy = gnt[gnt["subop"] == 5]
    assert copy["cost"].tolist() == [5000 + 3 * 100]
    map_price = prof.call_price("grant_table_op:map_grant_ref")
    assert gnt["cost"][0] == map_price[0] + map_price[1]
    assert (prof.price(e, lambda nr, sub: full_name(XEN, XEN_SUBOPS, nr, sub)) == e["cost"]).all()
    assert hypercalls(du, 12, 7) == 2                                       # shared info, the table frame


@pytest.mark.parametrize("run_index", [0])
def test_grant_runs_are_deterministic(run_index):
    once = [t.to_bytes() for t in run_pair(DOM0, DOMU, unbound=(0, 1))[0].traces]
    assert once == [t.to_bytes() for t in run_pair(DOM0, DOMU, unbound=(0, 1))[0].traces]


def test_a_profile_without_subop_keys_prices_a_copy_as_one_round_trip():
    run, _ = run_pair(DOM0, DOMU, unbound=(0, 1), profile="kvm76-q9550")
    e = run.traces[0].exits
    copy = e[(e["reason"] == ExitReason.VMCALL) & (e["qualifier"] == 20) & (e["subop"] == 5)]
    prof = load_profile("kvm76-q9550")
    assert copy["size"].tolist() == [100] and copy["cost"].tolist() == [prof.cost(ExitReason.VMCALL)]
    assert run.host["switch_cycles"] == 0                                  # no host costs in that profile
