"""Run options are checked once (options.py, from session.RunOptions), for the CLI and the API alike:
a value out of range is a usage error (exit 2) whose one line says the valid range, never an internal
error or a run that stops at once (issue 17)."""
from __future__ import annotations

import pytest

from vmexit import session
from vmexit.cli import EXIT_USAGE, main
from vmexit.errors import VmexitError
from vmexit.options import RAM_MAX, RunOptionError, check_top, format_size, parse_size


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,message", [
    (["--memory", "5G"], "--memory 5G: give 2M to 4076M"),
    (["--memory", "1K"], "--memory 1K: give 2M to 4076M"),
    (["--memory", "2050K"], "a multiple of 4K"),
    (["--max-seconds", "nan"], "--max-seconds nan: give a finite budget of virtual seconds above 0"),
    (["--max-seconds", "inf"], "--max-seconds inf: give a finite budget"),
    (["--max-seconds", "0"], "--max-seconds 0.0: give a finite budget"),
    (["--max-instructions", "-1"], "--max-instructions -1: give a budget of 1 to"),
    (["--net-ack-every", "0"], "--net-ack-every 0: give 1 to"),
    (["--net-ack-delay-us", "nan"], "--net-ack-delay-us nan: give 0 to"),
    (["--net-frame-size", "20"], "--net-frame-size 20: give an Ethernet frame size of 60 to 1514 bytes"),
    (["--net-window", "0"], "--net-window 0: give 1 to"),
    (["--host-timer-hz", "-1"], "--host-timer-hz -1: give 0 (off)"),
    (["--until-console", ""], "--until-console '': give the text to wait for"),
])
def test_run_options_out_of_range_are_usage_errors(capsys, argv, message):
    code, out, err = run_cli(capsys, "run", "timer", "--no-progress", *argv)
    assert code == EXIT_USAGE and out == ""
    assert err.startswith("vmexit: error: ") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["run", "timer", "--top", "-3"], ["compare", "a.npz", "b.npz", "--top", "-1"],
                                  ["run", "timer", "--top", "many"]])
def test_top_must_be_a_row_count(capsys, argv):
    with pytest.raises(SystemExit) as e:  # argparse's own usage error
        main(argv)
    assert e.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "argument --top" in err and ("0 (all) or more" in err or "not a number" in err)


def test_guest_constants_fit_32_bits(capsys):
    code, _, err = run_cli(capsys, "run", "timer", "-D", f"TICKS={1 << 32}", "--no-progress")
    assert code == EXIT_USAGE and "give -2147483648 to 4294967295" in err


def test_sweep_checks_its_runs_the_same_way(capsys):
    code, _, err = run_cli(capsys, "sweep", "timer", "-D", "TICKS=1,2", "--max-seconds", "nan", "--no-progress")
    assert code == EXIT_USAGE and "--max-seconds nan: give a finite budget" in err


@pytest.mark.parametrize("field,value", [("ram_size", 1 << 10), ("ram_size", RAM_MAX + 4096),
                                         ("max_instructions", 0), ("max_seconds", float("-inf")),
                                         ("net_window", -2), ("hypervisor", "vmware")])
def test_run_options_check_themselves(field, value):
    with pytest.raises(RunOptionError) as e:
        session.RunOptions(**{field: value})
    assert isinstance(e.value, VmexitError) and e.value.cli.startswith("--")


def test_the_largest_ram_is_accepted():
    assert session.RunOptions(ram_size=RAM_MAX).ram_size == 0xFEC00000
    assert format_size(RAM_MAX) == "4076M" and parse_size("4076M") == RAM_MAX and parse_size(" 64MiB") == 64 << 20


def test_check_top():
    assert check_top(0) is None and check_top(5) == 5
    for bad in (-3, 1.5, True, "3"):
        with pytest.raises(RunOptionError):
            check_top(bad)
