"""Seed 002's DBNet on the xennet host (`vmexit run xennet -D DBNET=1`), and the `dbnet` scenario entry
whose paper compares the split-driver path, DBNet and native Linux.

The wiring DBNet adds to xennet's (wire()): the host's NIC -- probed and started by dom0's driver, as
before -- is handed to the hypervisor's driver (hypervisors/dbnet.py) once dom0 attaches it; the
NIC's peer, the other end of the wire, keeps its events on the clock of the guest it talks to (so a
frame coming in while dom0 sleeps does not schedule dom0: the interrupt is Xen's, taken on the CPU
the guest runs on, an EXTERNAL_INTERRUPT exit when the guest is running), and the driver's work in
interrupts is charged to that guest's time.
"""
from __future__ import annotations

from ..hypervisors.dbnet import DBNet


def make(profile) -> DBNet:
    return DBNet(profile)


def wire(dbnet: DBNet, events, dom0, domu) -> None:
    """The host's NIC and its peer, for DBNet: see the module docstring."""
    nic, peer = dom0.devices["nic"], dom0.devices["peer"]
    dbnet.nic = nic
    dbnet.events = events
    dbnet.irq_clock, dbnet.irq_domid = domu.clock, domu.domid
    moved = [t for t in dom0.vcpu.timed if t.device is peer]
    for t in moved:
        dom0.vcpu.timed.remove(t)
        domu.vcpu.timed.append(t)
    peer._now = domu.clock.now
