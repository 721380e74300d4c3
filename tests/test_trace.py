"""Trace files: round trip, byte-stable, atomic, streamed, older formats, and clear errors for anything else."""
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from numpy.lib import recfunctions

from vmexit import analysis
from vmexit import trace as trace_module
from vmexit.exits import EMULATED_DTYPE, EXIT_DTYPE
from vmexit.trace import (FORMAT_VERSION, OLD_EXIT_DTYPE, SAVE_ROWS, Trace, TraceError, domain_view, load,
                          merge_domains)

from .test_analysis import DOM1_SYMBOLS, HOST, two_domains
from .test_reference import REFERENCE


def sample():
    rows = np.zeros(3, dtype=EXIT_DTYPE)
    rows["seq"] = [0, 1, 2]
    rows["rip"] = [0x100010, 0x100020, 0x100010]
    rows["reason"] = 30
    rows["cost"] = [10, 20, 30]
    return Trace(rows, {"freq_hz": 1000, "guest": "t", "instructions": 5, "virtual_seconds": 1.0,
                        "status": "exited", "detail": "d"}, {"f": 0x100000, "g": 0x100018})


def test_round_trip(tmp_path):
    t = sample()
    path = tmp_path / "t.npz"
    t.save(path)
    back = load(path)
    assert np.array_equal(back.exits, t.exits) and back.symbols == t.symbols
    assert back.meta["guest"] == "t" and back.meta["format_version"] == FORMAT_VERSION
    assert path.read_bytes() == t.to_bytes() == sample().to_bytes()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_bad_files(tmp_path):
    with pytest.raises(TraceError, match="no such"):
        load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(TraceError, match="not a readable"):
        load(tmp_path / "text.npz")
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    with pytest.raises(TraceError, match="not a vmexit trace"):
        load(tmp_path / "foreign.npz")
    good = sample().to_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(TraceError):
        load(tmp_path / "cut.npz")


def test_newer_format_is_refused(tmp_path):
    t = sample()
    path = tmp_path / "t.npz"
    t.save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(path)["meta"].tobytes())
    meta["format_version"] = FORMAT_VERSION + 1
    np.savez(tmp_path / "new.npz", exits=t.exits, symbol_names=np.array(["f"]),
             symbol_addresses=np.array([1], dtype=np.uint32),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(TraceError, match="newer"):
        load(tmp_path / "new.npz")
    assert members


def test_unwritable_directory(tmp_path):
    with pytest.raises(OSError):
        sample().save(tmp_path / "no" / "such" / "dir.npz")


def large(n: int = 5000) -> Trace:
    """A trace with every member non-trivial: exits, emulated accesses, symbols."""
    rng = np.random.default_rng(3)
    rows = np.zeros(n, dtype=EXIT_DTYPE)
    rows["seq"] = np.arange(n)
    rows["icount"] = np.cumsum(rng.integers(1, 40, n))
    rows["rip"] = 0x100000 + rng.integers(0, 256, n) * 4
    rows["reason"] = rng.choice([1, 12, 18, 30], n)
    rows["cost"] = rng.choice([1790, 14526, 17385], n)
    rows["value"] = rng.integers(0, 1 << 62, n)
    emulated = np.zeros(n // 3, dtype=EMULATED_DTYPE)
    emulated["exit"] = np.sort(rng.integers(0, n, n // 3))
    emulated["port"] = 0x1F0
    emulated["cost"] = 900
    return Trace(rows, {"freq_hz": 2_830_000_000, "guest": "big", "instructions": int(rows["icount"][-1]),
                        "virtual_seconds": 1.0, "status": "exited", "detail": ""},
                 {"f": 0x100000, "g": 0x100200}, emulated)


def written(t: Trace, rows: int) -> bytes:
    buf = io.BytesIO()
    t.write(buf, rows)
    return buf.getvalue()


def test_a_trace_written_in_chunks_is_the_trace_written_whole(tmp_path):
    t = large()
    whole = written(t, len(t.exits))
    for rows in (1, 7, 1000, SAVE_ROWS):
        assert written(t, rows) == whole, rows
    t.save(tmp_path / "t.npz")
    assert (tmp_path / "t.npz").read_bytes() == whole == large().to_bytes()
    back = load(tmp_path / "t.npz")
    assert back.exits.tobytes() == t.exits.tobytes() and back.emulated.tobytes() == t.emulated.tobytes()


def test_members_are_what_numpy_saves():
    """The members are .npy files as np.save writes them: only the zip container is written by hand."""
    t = large(300)
    with zipfile.ZipFile(io.BytesIO(t.to_bytes())) as z:
        assert z.namelist() == [f"{name}.npy" for name, _ in t.members()]
        for name, array in t.members():
            ref = io.BytesIO()
            np.save(ref, array)
            assert z.read(f"{name}.npy") == ref.getvalue(), name


@pytest.mark.parametrize("version", [1, 2])
def test_older_formats_still_load(tmp_path, version):
    """Files as formats 1 (no emulated array) and 2 were written: np.savez_compressed, no zip64, 56-byte
    records without domain and subop, which load as 0."""
    t = large(200)
    meta = dict(t.meta, format="vmexit-trace", format_version=version)
    old = recfunctions.repack_fields(t.exits[list(OLD_EXIT_DTYPE.names)]).astype(OLD_EXIT_DTYPE)
    assert old.dtype.itemsize == 56
    arrays = {"exits": old, "symbol_names": np.array(["f", "g"]),
              "symbol_addresses": np.array([0x100000, 0x100200], dtype=np.uint32),
              "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    if version == 2:
        arrays["emulated"] = t.emulated
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    back = load(tmp_path / "old.npz")
    assert back.exits.tobytes() == t.exits.tobytes() and back.symbols == t.symbols
    assert back.emulated.tobytes() == (t.emulated.tobytes() if version == 2 else b"")
    assert back.meta["subops_recorded"] is False


def test_a_recorded_format_2_run_loads_with_domain_and_subop_zero(tmp_path):
    """The exits of a run recorded in format 2 (tests/reference), saved as vmexit 0.x saved them."""
    with np.load(REFERENCE / "fork-xen-pv.npz") as ref:
        recorded = ref["exits"]
    assert recorded.dtype == OLD_EXIT_DTYPE
    meta = {"format": "vmexit-trace", "format_version": 2, "freq_hz": 1000, "hypervisor": "xen-pv"}
    np.savez_compressed(tmp_path / "old.npz", exits=recorded, emulated=np.zeros(0, dtype=EMULATED_DTYPE),
                        symbol_names=np.zeros(0, dtype="<U1"), symbol_addresses=np.zeros(0, dtype=np.uint32),
                        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    back = load(tmp_path / "old.npz")
    assert back.exits.dtype == EXIT_DTYPE and len(back.exits) == len(recorded)
    for name in OLD_EXIT_DTYPE.names:
        assert np.array_equal(back.exits[name], recorded[name]), name
    assert not back.exits["domain"].any() and not back.exits["subop"].any()
    rows = {r["hypercall"] for r in analysis.report(back, "hypercall", top=None).rows}
    assert "mmu_update" in rows and not any(":" in r for r in rows)  # no sub-operation was recorded
    back.save(tmp_path / "new.npz")
    assert load(tmp_path / "new.npz").meta["format_version"] == FORMAT_VERSION


# runs of several domains -------------------------------------------------------------------------------
def test_merge_orders_by_virtual_time_then_domain():
    doms = two_domains()
    t = merge_domains(doms, HOST)
    ex = t.exits
    assert ex["seq"].tolist() == list(range(11))
    assert ex["cycles"].tolist() == [50, 100, 150, 200, 300, 300, 500, 600, 700, 800, 900]
    assert ex["domain"].tolist() == [0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1]  # the tie at 300: dom0 first
    for d, dom in enumerate(doms):  # each domain's rows, in its own order, unchanged but for seq
        mine = ex[ex["domain"] == d]
        assert mine[["cycles", "rip", "qualifier", "subop", "size", "cost"]].tolist() == \
            dom.exits[["cycles", "rip", "qualifier", "subop", "size", "cost"]].tolist()
    # dom0's emulated access was inside its exit 0 (row 0), dom1's inside its exit 1 (row 5)
    assert t.emulated["exit"].tolist() == [0, 5]
    assert t.symbols == {"d0:net_rx_action": 0x1000, "d0:netif_be_start_xmit": 0x1100,
                         "d1:xennet_start_xmit": 0x1000, "d1:xennet_poll": 0x1080}


def test_merged_meta_totals_and_host_facts(tmp_path):
    t = merge_domains(two_domains(), HOST)
    m = t.meta
    assert [(d["domid"], d["name"], d["guest"]) for d in m["domains"]] == [(0, "dom0", "netback"), (1, "domU", "netfront")]
    assert (m["instructions"], m["cycles"], m["virtual_seconds"], m["guest"]) == (3000, 10000, 10.0, "xennet")
    assert m["host"]["switches"] == 8 and m["host"]["switch_total_cycles"] == 400
    assert m["idle_cycles"] == 10000 - 400 - (2000 + 2100) - (1000 + 1050)
    assert m["nic"]["rx_frames"] == 6 and m["hypervisor"] == "xen-pv"
    t.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.exits.tobytes() == t.exits.tobytes() and back.symbols == t.symbols
    assert back.meta["domains"][1]["xen"] == {"events_sent": 2, "upcalls": 2}


def test_domain_view():
    t = merge_domains(two_domains(), HOST)
    d1 = domain_view(t, 1)
    assert d1.exits["seq"].tolist() == list(range(5)) and set(d1.exits["domain"].tolist()) == {1}
    assert d1.exits["cycles"].tolist() == [150, 300, 700, 800, 900]
    assert d1.emulated["exit"].tolist() == [1] and d1.symbols == DOM1_SYMBOLS
    assert d1.meta["guest"] == "netfront" and d1.meta["instructions"] == 1000 and "domains" not in d1.meta
    with pytest.raises(TraceError, match="no domain 2"):
        domain_view(t, 2)
    assert domain_view(sample(), 0) is not None
    with pytest.raises(TraceError, match="no domain 1"):
        domain_view(sample(), 1)


def test_merging_refuses_duplicate_domains():
    a, b = two_domains()
    b.meta["domid"] = 0
    with pytest.raises(ValueError, match="distinct"):
        merge_domains([a, b], HOST)


def test_an_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "t.npz"
    sample().save(path)
    before = path.read_bytes()
    calls = []

    def interrupted(archive, name, array, rows):
        calls.append(name)
        raise KeyboardInterrupt

    monkeypatch.setattr(trace_module, "_write_member", interrupted)
    with pytest.raises(KeyboardInterrupt):
        large().save(path)
    assert calls == ["exits"] and path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_saving_holds_no_second_copy_of_the_records(tmp_path):
    """Python-side allocations while saving (numpy's included, tracemalloc) are bounded by the chunk:
    SAVE_ROWS records and their compressed bytes at a time, never a copy of all of them."""
    t = large(400_000)
    bound = 3 * SAVE_ROWS * EXIT_DTYPE.itemsize
    assert t.exits.nbytes > 2 * bound
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        t.save(tmp_path / "t.npz")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < bound, peak


def test_traces_before_the_domain_column_load_with_domain_and_subop_zero(tmp_path):
    t = sample()
    t.exits["domain"], t.exits["subop"] = 1, 7    # what the old layout cannot hold
    old = OLD_EXIT_DTYPE     # 56 B: seq 64-bit, no domain, subop or stack
    legacy = np.zeros(len(t.exits), dtype=old)
    for name in old.names:
        legacy[name] = t.exits[name]
    path = tmp_path / "old.npz"
    Trace(legacy, t.meta, t.symbols).save(path)
    back = load(path)
    assert back.exits.dtype == EXIT_DTYPE and back.exits["domain"].tolist() == [0, 0, 0]
    assert back.exits["subop"].tolist() == [0, 0, 0]
    assert all(np.array_equal(back.exits[n], legacy[n]) for n in old.names)


def test_format_4_traces_load_with_the_same_values(tmp_path):
    """Format 4 kept seq 64-bit (64-byte records); format 5 keeps it in 32 bits: the same numbers."""
    from vmexit.trace import EXIT_DTYPE_64
    t = sample()
    wide = np.zeros(len(t.exits), dtype=EXIT_DTYPE_64)
    for name in EXIT_DTYPE_64.names:
        wide[name] = t.exits[name]
    assert wide.dtype.itemsize == 64 and EXIT_DTYPE.itemsize == 60
    path = tmp_path / "v4.npz"
    Trace(wide, t.meta, t.symbols).save(path)
    assert load(path).exits.tobytes() == t.exits.tobytes()
