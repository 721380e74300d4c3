"""VmexitError: the one exception type for bad input, whoever gives it — the command line or Python.

Every error that is the user's input and not a bug derives from it: an unknown or unreadable guest
(loader.LoadError), a source that does not assemble (asm.AsmError), a bad cost profile
(costs.ProfileError), an unreadable trace (trace.TraceError), an unknown --opt (optimizations.OptionError),
an unusable disk image (devices.ide.DiskError), a run option out of its range (options.RunOptionError),
a host without a usable KVM for `--hypervisor kvm-hw` (KvmUnavailable).
The command line prints it as one line and exits with 2; the Python API (vmexit.run, vmexit.load, ...)
lets it propagate. It is a ValueError, so code that catches ValueError keeps working.

This module imports nothing: every layer may raise it.
"""
from __future__ import annotations


class VmexitError(ValueError):
    """Bad input or usage: the message says what is wrong and what is valid.

    `cli`, when set, is the same message as the command line spells the option (`--memory 5G: ...`
    where Python says `memory=5G: ...`)."""

    cli: str | None = None


class KvmUnavailable(VmexitError):
    """`--hypervisor kvm-hw` or `vmexit calibrate` on a host without a usable /dev/kvm: none, no
    permission, or a KVM that refuses a setting vmexit needs (the message names what is missing)."""
