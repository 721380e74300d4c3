"""The exit recorder: whatever its chunk size, the same records as the plain definition (one EXIT_DTYPE
row per append, seq = row number, add_size and emulate changing the last row), byte for byte."""
from __future__ import annotations

import numpy as np
import pytest

from vmexit import exits
from vmexit.exits import EMULATED_DTYPE, EXIT_DTYPE, ExitRecorder


def script(n: int, seed: int = 7) -> list[tuple]:
    """A run's calls to the recorder: appends, with rep-string growth and emulated accesses among them."""
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(n):
        calls.append(("append", i * 3, i * 3 * 5 + 11, 0x100000 + int(rng.integers(0, 64)) * 4, 30,
                      int(rng.integers(0, 2)), int(rng.integers(1, 3)), int(rng.integers(0, 0x400)), 1,
                      int(rng.integers(0, 1 << 63)), int(rng.choice([1790, 14526, 17385])),
                      int(rng.integers(0, 1 << 32)), *([int(rng.integers(0, 11))] if i % 3 else [])))
        for _ in range(int(rng.integers(0, 3)) if i % 5 == 0 else 0):
            calls.append(("add_size", int(rng.integers(1, 5))))
        for _ in range(int(rng.integers(0, 3)) if i % 7 == 0 else 0):
            calls.append(("emulate", 0x100100, 1, 2, 0x1F0 + int(rng.integers(0, 8)), 1, int(rng.integers(0, 256)),
                          int(rng.integers(100, 2000))))
    return calls


def play(recorder: ExitRecorder, calls: list[tuple]) -> ExitRecorder:
    for name, *args in calls:
        getattr(recorder, name)(*args)
    return recorder


def expected(calls: list[tuple], domain: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The definition, without buffers or chunks: the recorder's domain in every row, subop 0 unless given."""
    rows, emulated = [], []
    for name, *args in calls:
        if name == "append":
            rows.append([len(rows), *args[:11], domain, args[11] if len(args) > 11 else 0,
                         args[12] if len(args) > 12 else 0])
        elif name == "add_size":
            rows[-1][8] += args[0]
        else:
            rip, place, direction, port, size, value, cost = args
            emulated.append((len(rows) - 1, rip, place, direction, size, port, value, cost))
            rows[-1][10] += cost
    return (np.array([tuple(r) for r in rows], dtype=EXIT_DTYPE), np.array(emulated, dtype=EMULATED_DTYPE))


@pytest.mark.parametrize("chunk", [1, 2, 3, 64, ExitRecorder.CHUNK])
def test_any_chunk_size_gives_the_same_records(chunk):
    calls = script(3000)
    want_exits, want_emulated = expected(calls, domain=7)
    r = play(ExitRecorder(chunk, domain=7), calls)
    assert r.count == len(want_exits)
    assert r.records().tobytes() == want_exits.tobytes()
    assert r.emulated().tobytes() == want_emulated.tobytes()


def test_records_are_a_view_and_recording_may_go_on():
    calls = script(500)
    r = play(ExitRecorder(16), calls[:300])
    first = r.records()
    snapshot = first.copy()
    play(r, calls[300:])  # the mapping cannot grow in place under `first`: it is copied once
    assert first.tobytes() == snapshot.tobytes()
    assert r.records().tobytes() == expected(calls)[0].tobytes()
    assert not r.records().flags.owndata  # no copy is handed out


def test_a_value_that_does_not_fit_leaves_no_partial_row():
    r = ExitRecorder(4)
    r.append(1, 2, 3, 30, 0, 1, 0x80, 1, 5, 10, 0)
    with pytest.raises(OverflowError):
        r.append(1, 2, 3, 30, 0, 1, 0x80, 1, -1, 10, 0)
    r.append(4, 5, 6, 30, 0, 1, 0x80, 1, 7, 10, 0)
    assert r.count == 2 and r.records()["icount"].tolist() == [1, 4]


def test_an_interrupt_inside_a_pack_loses_and_repeats_no_row(monkeypatch):
    real = exits._write
    interrupts = []

    def interrupted(out, rows, names):
        real(out, rows, names)
        if not interrupts:
            interrupts.append(len(out))
            raise KeyboardInterrupt  # the rows are written, not yet counted

    monkeypatch.setattr(exits, "_write", interrupted)
    calls = script(200)
    r = ExitRecorder(8)
    for name, *args in calls:  # the interrupted call had recorded its row: the run goes on after it
        try:
            getattr(r, name)(*args)
        except KeyboardInterrupt:
            pass
    assert interrupts == [8] and r.records().tobytes() == expected(calls)[0].tobytes()


def test_wider_values_wrap_into_their_fields_as_astype_does():
    r = ExitRecorder()
    r.append(1, 2, (1 << 32) + 5, 30, 0x101, 2, 0x80, 1, 0, 10, 0)
    row = r.records()[0]
    assert (int(row["rip"]), int(row["place"])) == (5, 1)


def test_sixty_four_bytes_a_row_with_domain_subop_and_stack_last():
    assert EXIT_DTYPE.itemsize == 60
    assert EXIT_DTYPE.names[-4:] == ("caller", "domain", "subop", "stack")
    r = ExitRecorder(domain=1)
    r.append(1, 2, 3, 18, 0, 0, 20, 4, 0, 10, 0, subop=5, stack=7)
    r.append(1, 2, 3, 18, 0, 0, 17, 1, 0, 10, 0)
    assert [(int(x["domain"]), int(x["subop"]), int(x["stack"])) for x in r.records()] == [(1, 5, 7), (1, 0, 0)]


def test_empty():
    r = ExitRecorder()
    assert r.count == 0 and len(r.records()) == 0 and len(r.emulated()) == 0
    assert r.records().dtype == EXIT_DTYPE and r.emulated().dtype == EMULATED_DTYPE


def test_a_run_packed_in_tiny_chunks_saves_the_same_trace_file(monkeypatch):
    """ide with dynamic coalescing: rep string exits (add_size) and emulated accesses (emulate) cross
    pack boundaries; the trace file is the same bytes."""
    from vmexit import guests, session
    from vmexit.costs import load_profile

    def run():
        options = session.RunOptions(optimizations={"coalesce": 64})
        return session.run(guests.resolve("ide", {"SECTORS": 4}), load_profile(None), options)

    whole = run()
    monkeypatch.setattr(ExitRecorder, "CHUNK", 3)
    tiny = run()
    assert len(whole.exits) > 50 and len(whole.emulated) > 10 and (whole.exits["size"] > 2).any()
    assert tiny.to_bytes() == whole.to_bytes()
