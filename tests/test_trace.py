"""Trace files: round trip, byte-stable, atomic, and clear errors for anything else."""
import json
import zipfile

import numpy as np
import pytest

from vmexit.exits import EXIT_DTYPE
from vmexit.trace import FORMAT_VERSION, Trace, TraceError, load


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
