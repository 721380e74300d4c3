"""physdev_op set_iopl (hypervisors/xen_physdev.py): a privileged domain's port accesses stop exiting
once it holds an I/O privilege level; an unprivileged domain's keep exiting; bad arguments get Xen's
error codes. Counts by construction: each guest makes 3 port writes before and 3 after the call."""
from __future__ import annotations

from vmexit.exits import ExitReason

from .xen_pair import ARGS, EXIT, call, reported, run_pair, store

PHYSDEV_OP, SET_IOPL = 33, 6
WRITES = "    out 0x70, al\n" * 3          # the CMOS index port: a device both domains have


def _guest(iopl: int) -> str:
    return (WRITES + store(ARGS, iopl) + call(PHYSDEV_OP, SET_IOPL, ARGS) + WRITES
            + call(PHYSDEV_OP, 99, ARGS) + call(PHYSDEV_OP, SET_IOPL, 0x7FFFF000) + store(ARGS, 4)
            + call(PHYSDEV_OP, SET_IOPL, ARGS, report=False) + "    mov eax, 0\n" + EXIT)


def _results(trace) -> list[int]:
    e = trace.exits
    values = e[(e["reason"] == ExitReason.VMCALL) & (e["qualifier"] == PHYSDEV_OP)]["value"].tolist()
    return [v - (1 << 32) if v >> 31 else v for v in values]


def _port_writes(trace) -> int:
    e = trace.exits
    return int(((e["reason"] == ExitReason.IO_INSTRUCTION) & (e["qualifier"] == 0x70)).sum())


def test_set_iopl_takes_a_privileged_domains_ports_off_the_exit_path():
    run, _ = run_pair(_guest(1), _guest(1), unbound=None)
    dom0, dom1 = run.traces
    assert _port_writes(dom0) == 3          # the three before set_iopl
    assert _port_writes(dom1) == 6          # not allowed the ports: every access still traps
    # set_iopl(1) succeeds in both; an unknown command is -ENOSYS, an unreadable argument -EFAULT,
    # an iopl above 3 -EINVAL (each result is in its exit's value); dom0's writes of them to port 0x80
    # no longer exit, dom1's do
    for trace in (dom0, dom1):
        assert _results(trace) == [0, -38, -14, -22]
    assert reported(dom0) == []
    assert reported(dom1) == [0, -38, -14]


def test_iopl_zero_keeps_the_ports_trapped():
    run, _ = run_pair(_guest(0), "    mov eax, 0\n" + EXIT, unbound=None)
    assert _port_writes(run.traces[0]) == 6
