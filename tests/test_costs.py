"""Cost profiles: every number has a source, lookups go from specific to general, bad files are refused."""
import json

import numpy as np
import pytest

from vmexit.costs import PROFILE_DIR, PROFILES, ProfileError, load_profile, parse_profile
from vmexit.exits import EXIT_DTYPE, Direction, ExitReason, Place


@pytest.mark.parametrize("name", list(PROFILES))
def test_bundled_profiles_are_complete(name):
    p = load_profile(name)
    assert p.freq_hz > 0 and all(p.sources[k] for k in p.costs)
    for r in ExitReason:
        for place in Place:
            for d in Direction:
                assert p.cost(r, place, d) >= 0


def test_paper_derived_numbers():
    p = load_profile("kvm76-q9550")
    # Table 2 row 1: 101.64 s / 16,545,487 exits at 2.83 GHz
    assert p.cost(ExitReason.IO_INSTRUCTION, Place.USER, Direction.IN) == round(101.64 / 16545487 * 2.83e9)
    assert p.cost(ExitReason.IO_INSTRUCTION, Place.USER, Direction.OUT) == round(85.33 / 14317411 * 2.83e9)
    assert p.cost(ExitReason.INTERRUPT_WINDOW) == round(0.10 / 602546 * 2.83e9)
    assert p.cost(ExitReason.VMCALL) == 3898
    assert 14 in p.trapped_exceptions and 14 not in load_profile("kvm-skylake").trapped_exceptions


def test_price_matches_scalar_lookup():
    p = load_profile("kvm-skylake")
    rows = np.zeros(6, dtype=EXIT_DTYPE)
    rows["reason"] = [30, 30, 18, 10, 12, 0xFFFF]
    rows["place"] = [0, 1, 0, 0, 0, 1]
    rows["direction"] = [2, 1, 0, 0, 0, 0]
    expected = [p.cost(int(r["reason"]), int(r["place"]), int(r["direction"])) for r in rows]
    assert p.price(rows).tolist() == expected


def _doc():
    return json.loads((PROFILE_DIR / PROFILES["kvm-skylake"]).read_text())


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["costs"]["VMCALL"].pop("cycles"), "missing number"),
    (lambda d: d["costs"]["VMCALL"].update(cycles=-5), "non-negative"),
    (lambda d: d["costs"]["VMCALL"].update(source=""), "no source"),
    (lambda d: d["costs"].pop("HLT"), "no cost for exit reason HLT"),
    (lambda d: d["costs"].update({"BOGUS": {"cycles": 1, "source": "x"}}), "unknown exit reason"),
    (lambda d: d["cpu"].update(freq_hz=0), "freq_hz"),
])
def test_bad_profiles(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(ProfileError, match=message):
        parse_profile(json.dumps(doc), "p.json")


def test_profile_file_errors(tmp_path):
    with pytest.raises(ProfileError, match="unknown cost profile"):
        load_profile("no-such-profile")
    bad = tmp_path / "p.json"
    bad.write_text("{")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(str(bad))
