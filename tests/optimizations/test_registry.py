"""--opt parsing: names from the explicit table, defaults, bounds, one-line errors."""
import pytest

from vmexit.optimizations import OPTIMIZATIONS, OptionError, parse_opts
from vmexit.optimizations.coalesce_dynamic import DEFAULT_WINDOW


def test_parse_defaults_values_and_last_wins():
    assert parse_opts([]) == {}
    assert parse_opts(["coalesce"]) == {"coalesce": DEFAULT_WINDOW}
    assert parse_opts(["coalesce=8", "tick-hz=100", "coalesce=0x10"]) == {"coalesce": 16, "tick-hz": 100}
    assert set(OPTIMIZATIONS) == {"coalesce", "tick-hz", "xen-pf-offload"}


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown optimization 'nope'"),
    ("tick-hz", "needs a value"),
    ("tick-hz=fast", "not an integer"),
    ("tick-hz=0", "outside"),
    ("coalesce=100000", "outside"),
])
def test_bad_options(text, message):
    with pytest.raises(OptionError, match=message):
        parse_opts([text])


def test_an_option_at_a_hook_point_the_model_lacks_is_a_reported_no_op():
    from vmexit import guests, session
    from vmexit.costs import load_profile
    from vmexit.render import totals_line
    from vmexit.analysis import report
    t = session.run(guests.resolve("fork"), load_profile(None), session.RunOptions(optimizations={"xen-pf-offload": 1}))
    entry = t.meta["optimizations"]["xen-pf-offload"]
    assert entry == {"value": 1, "hook": "page_fault", "note": "no-op: the kvm model has no page_fault hook point for it"}
    assert "Optimization xen-pf-offload=1: no-op: the kvm model" in totals_line(report(t))


def test_every_entry_carries_its_wiring():
    from vmexit.hypervisors import HYPERVISORS
    hooks = {h for hv in HYPERVISORS.values() for h in hv.hook_points}
    for opt in OPTIMIZATIONS.values():
        assert opt.hook in hooks and callable(opt.build) and callable(opt.report) and callable(opt.describe)
