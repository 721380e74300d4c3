"""Trace files: round trip, byte-stable, atomic, streamed, older formats, and clear errors for anything else."""
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from vmexit import trace as trace_module
from vmexit.exits import EMULATED_DTYPE, EXIT_DTYPE
from vmexit.trace import FORMAT_VERSION, SAVE_ROWS, Trace, TraceError, load


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
    """Files as formats 1 (no emulated array) and 2 were written: np.savez_compressed, no zip64."""
    t = large(200)
    meta = dict(t.meta, format="vmexit-trace", format_version=version)
    arrays = {"exits": t.exits, "symbol_names": np.array(["f", "g"]),
              "symbol_addresses": np.array([0x100000, 0x100200], dtype=np.uint32),
              "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    if version == 2:
        arrays["emulated"] = t.emulated
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    back = load(tmp_path / "old.npz")
    assert back.exits.tobytes() == t.exits.tobytes() and back.symbols == t.symbols
    assert back.emulated.tobytes() == (t.emulated.tobytes() if version == 2 else b"")


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
    old = np.dtype([(n, EXIT_DTYPE.fields[n][0]) for n in EXIT_DTYPE.names if n not in ("domain", "subop")])
    legacy = np.zeros(len(t.exits), dtype=old)
    for name in old.names:
        legacy[name] = t.exits[name]
    path = tmp_path / "old.npz"
    Trace(legacy, t.meta, t.symbols).save(path)
    back = load(path)
    assert back.exits.dtype == EXIT_DTYPE and back.exits["domain"].tolist() == [0, 0, 0]
    assert back.exits["subop"].tolist() == [0, 0, 0]
    assert all(np.array_equal(back.exits[n], legacy[n]) for n in old.names)
