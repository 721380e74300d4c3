"""Dynamic I/O coalescing (`--opt coalesce[=WINDOW]`), for unmodified guests: the future work the KVM
paper proposes (Zhang et al., "Modifying Guest OS to Optimize I/O Virtualization in KVM", Chinese
Journal of Computers, 2010, section 3.1.1): on one I/O exit, look ahead at the guest's following
instructions and emulate a whole run of mergeable I/O before returning to the guest.

On an I/O exit the hypervisor decodes the instructions after the exiting one (capstone) and keeps
going while they are port I/O or instructions that touch only registers -- the moves, ALU ops and
shifts gcc puts between successive outb (`mov dx, imm`, `mov eax, ebx`, `shr eax, 8`) -- up to WINDOW
instructions: no memory operand, no stack, no branch, nothing that changes IF or privilege. The port
accesses in that run are then handled inside the one exit. The guest still executes the run here (in
Unicorn), so its registers, memory and device state are exactly those of the run without the option;
what changes is that those accesses are recorded as emulated (costed without a round trip, see
costs.py) rather than as exits. A run is cut where anything else happens between: another exit, an
interrupt taken, an interrupt pending when the next access comes (the VMM would stop there to inject).
"""
from __future__ import annotations

DEFAULT_WINDOW = 64   # instructions looked ahead (ours; the paper gives no figure)
MAX_WINDOW = 4096

#: Instructions a look-ahead may pass over when all their operands are registers or immediates,
#: most specific first: port I/O (non-string), then register-only data movement and arithmetic.
PORT_IO = frozenset({"in", "out"})
REGISTER_ONLY = frozenset({
    "mov", "movzx", "movsx", "xchg", "add", "sub", "adc", "sbb", "and", "or", "xor", "not", "neg",
    "inc", "dec", "shl", "shr", "sar", "sal", "rol", "ror", "test", "cmp", "nop", "cbw", "cwde",
    "cwd", "cdq", "bswap",
})


class LookAhead:
    """Plans, per exiting I/O address, which following instructions' port accesses one exit covers."""

    def __init__(self, read_code, window: int = DEFAULT_WINDOW):
        self._read_code = read_code       # (address, size) -> bytes
        self.window = window
        from capstone import CS_ARCH_X86, CS_MODE_32, Cs  # here: the option table must load without capstone
        self._md = Cs(CS_ARCH_X86, CS_MODE_32)
        self._md.detail = True
        self._plans: dict[int, dict[int, int]] = {}

    def plan(self, eip: int) -> dict[int, int]:
        """{address of a later port I/O instruction: instructions after the one at eip}."""
        plan = self._plans.get(eip)
        if plan is None:
            plan = self._plans[eip] = self._scan(eip)
        return plan

    def _scan(self, eip: int) -> dict[int, int]:
        plan: dict[int, int] = {}
        code = self._read_code(eip, 15 * (self.window + 1)) or b""
        insns = self._md.disasm(code, eip)
        first = next(insns, None)
        if first is None or first.mnemonic not in PORT_IO:
            return plan
        for offset, insn in enumerate(insns, start=1):
            if offset > self.window or not _mergeable(insn):
                break
            if insn.mnemonic in PORT_IO:
                plan[insn.address] = offset
        return plan


def _mergeable(insn) -> bool:
    from capstone.x86 import X86_OP_IMM, X86_OP_REG
    if insn.mnemonic not in PORT_IO and insn.mnemonic not in REGISTER_ONLY:
        return False
    if insn.prefix[0] in (0xF2, 0xF3):  # rep/lock-like prefixes: string or locked forms
        return False
    return all(op.type in (X86_OP_REG, X86_OP_IMM) for op in insn.operands)
