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
