"""Two small xen-pv domains on one host for the event-channel and grant-table tests: assembly fragments
for the hypercalls (int 0x82, results reported on port 0x80) and a runner that wires the domains as
the xennet scenario does, without NICs (scenarios.start_info, a toolstack port)."""
from __future__ import annotations

from vmexit import session
from vmexit.costs import load_profile
from vmexit.domain import Domain
from vmexit.exits import ExitReason
from vmexit.hypervisors.xen_host import XenHost
from vmexit.scenarios import run_domains, start_info

from ..conftest import inline_image

SI = 0x10000            # where each test guest places its shared info page
ARGS = 0x30000          # hypercall argument structures
PORT = 0x9808           # start_info's net wiring: the event port
EXIT = "    out 0xf4, al\n"


def call(nr: int, ebx=0, ecx=0, edx=0, esi=None, report: bool = True) -> str:
    """A hypercall; its result goes out on port 0x80 when `report`."""
    s = f"    mov eax, {nr}\n    mov ebx, {ebx}\n    mov ecx, {ecx}\n    mov edx, {edx}\n"
    if esi is not None:
        s += f"    mov esi, {esi}\n"
    s += "    int 0x82\n"
    return s + ("    out 0x80, eax\n" if report else "")


def store(address: int, *dwords: int) -> str:
    return "".join(f"    mov dword ptr [{address + 4 * i}], {v}\n" for i, v in enumerate(dwords))


def place_shared_info(report: bool = False) -> str:
    """memory_op(XENMEM_add_to_physmap, {DOMID_SELF, space shared_info, idx 0, gpfn SI >> 12})."""
    return store(ARGS, 0x7FF0, 0, 0, SI >> 12) + call(12, 7, ARGS, report=report)


def set_callbacks(handler: str = "upcall") -> str:
    return call(4, 0x08, handler, 0x08, 0, report=False)


def report(symbol: str) -> str:
    return f"    mov eax, [{symbol}]\n    out 0x80, eax\n"


#: The event callback: counts, clears upcall_pending, the selector and the first pending word, unmasks.
UPCALL = f"""
upcall:
    push eax
    inc dword ptr [upcalls]
    mov byte ptr [{SI}], 0
    xor eax, eax
    xchg eax, [{SI + 4}]
    mov dword ptr [{SI + 0x800}], 0
    mov byte ptr [{SI + 1}], 0
    pop eax
    iretd
.align 4
upcalls:
    .long 0
"""


def run_pair(body0: str, body1: str, unbound=(1, 0), profile: str = "xen-pv-q9550", xen: XenHost | None = None,
             workload: int | None = None, **options):
    """dom0 and dom1 run their bodies (each ends with EXIT unless it ends otherwise); `unbound`: the
    toolstack's port, (its domain, the domain that may bind it), written to both start_info pages;
    `workload`: the domid whose end stops the other. Returns (ScenarioRun, the XenHost)."""
    prof = load_profile(profile)
    xen = xen or XenHost()
    opts = session.RunOptions(hypervisor="xen-pv", nic=False, **options)
    domains = [Domain(inline_image(body), prof, opts, domid=i, xen_host=xen)
               for i, body in enumerate((body0 + UPCALL, body1 + UPCALL))]
    port = xen.events.alloc_unbound(None, *unbound) if unbound else 0
    for d in domains:
        start_info(d, peer=1 - d.domid, port=port)
    chosen = domains[workload] if workload is not None else None
    return run_domains(domains, prof, opts, workload=chosen), xen


def reported(trace) -> list[int]:
    """The values a guest wrote to port 0x80, as signed 32-bit numbers."""
    e = trace.exits
    values = e[(e["reason"] == ExitReason.IO_INSTRUCTION) & (e["qualifier"] == 0x80)]["value"].tolist()
    return [v - (1 << 32) if v >> 31 else v for v in values]


def hypercalls(trace, nr: int, subop: int | None = None) -> int:
    e = trace.exits
    mask = (e["reason"] == ExitReason.VMCALL) & (e["qualifier"] == nr)
    if subop is not None:
        mask &= e["subop"] == subop
    return int(mask.sum())
