"""The Unicorn engine (unicorn 2.1.x): guest RAM is our own anonymous mapping handed to Unicorn, so the
exit path reads guest memory without a call through the binding; exact instruction counting and the
exception-state reset come from two internal fields found by probing (_uc.py); every trap is a raw
libunicorn callback that calls its handler with the event's own arguments.

Unicorn facts this relies on (2.1.4, measured): VMCALL raises UC_ERR_INSN_INVALID with EIP at the
instruction; writing EIP works in invalid-opcode, interrupt and code callbacks but not in IN/OUT/CPUID
ones; Unicorn delivers nothing through the guest IDT; HLT ends emu_start with EIP after it. Runs end
from callbacks or counts only, never from emu_start's wall-clock timeout (not deterministic).
"""
from __future__ import annotations

import ctypes
import mmap

from unicorn import (UC_ARCH_X86, UC_HOOK_BLOCK, UC_HOOK_EDGE_GENERATED, UC_HOOK_INSN,
                     UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_32, UC_PROT_ALL,
                     UC_PROT_EXEC, UC_PROT_READ,
                     Uc, UcError)
from unicorn.unicorn_const import UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED
from unicorn.unicorn_py3.arch.intel import (HOOK_INSN_CPUID_CFUNC, HOOK_INSN_IN_CFUNC, HOOK_INSN_OUT_CFUNC)
from unicorn.unicorn_py3.unicorn import (HOOK_CODE_CFUNC, HOOK_EDGE_GEN_CFUNC, HOOK_INSN_INVALID_CFUNC,
                                         HOOK_INTR_CFUNC, MMIO_READ_CFUNC, MMIO_WRITE_CFUNC)
from unicorn import x86_const as X

from . import Fault, SliceEnd, blockcount
from ._uc import (CpuState, ExceptionStateReset, FieldRegister, FlagsAfterFault, InstructionCounter,
                  RegisterReader, RegisterWriter, ScalarRegister, add_raw_hook, emu_start, flush_tlb, mmio_map_raw,
                  raw_callback, register_at, remove_cache)

#: Register names the rest of vmexit uses -> Unicorn's ids.
REGISTERS: dict[str, int] = {
    name: getattr(X, f"UC_X86_REG_{name.upper()}")
    for name in ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip", "eflags", "cs", "ds", "es",
                 "ss", "fs", "gs", "cr0", "cr2", "cr3", "cr4", "gdtr", "idtr", "tr")
}

#: emu_start's end address: never reached (runs end from callbacks and counts)
UNTIL = 0xFFFFFFFF

#: Registers read straight from the CPU state where located: two values that locate each (written
#: on a throwaway engine, _uc.field_offset). Every slice reads CR0 and CR2, every look at guest code
#: under paging CR0, CR3 and CR4, every rdtsc writes EAX and EDX.
FIELDS: dict[str, tuple[int, int]] = {
    "cr0": (0x11, 0x13), "cr2": (0x5EB0A000, 0x1AB2C000), "cr3": (0x5EB0A000, 0x1AB2C000), "cr4": (0x10, 0x210),
    **{name: (0x5EB0A11F, 0x1AB2C3D4) for name in ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp")}}
#: ... of which these are written into the field too (libunicorn's write does nothing else for them)
PLAIN = frozenset({"eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp"})


class UnicornEngine:
    name = "unicorn"

    def __init__(self, ram_size: int, block_counting: bool = True, watch_every_block: bool = False):
        """block_counting False: Unicorn's count mode even where the helper is there (the same counts;
        tests compare the two). watch_every_block: watch_code also sees the blocks Unicorn's edge hook
        never reports (see _watch_every_block), at the price of a look-up per block run: in C in the
        helper's block hook, in a Python block hook without the helper. (Linux once ran in count mode:
        a slice the helper stopped inside a `rep` was seen to leave stale lazy flags. Slices stopped
        at every point inside rep string instructions after flag-setting ones keep them either way
        (tests/engine/test_blockcount.py); the stale flags found are count mode's, after a fault in a
        block with the code hook, and _fault_flags mends them. A Linux boot gives the same trace both
        ways, tests/engine/test_linux_counting.py.)"""
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.ram = mmap.mmap(-1, ram_size)
        self._ram_anchor = ctypes.c_char.from_buffer(self.ram)
        self.uc.mem_map_ptr(0, ram_size, UC_PROT_ALL, ctypes.addressof(self._ram_anchor))
        # the integer registers through libunicorn directly; the descriptor-table registers (tuples)
        # through the binding
        self._scalars = {name: ScalarRegister(self.uc, reg) for name, reg in REGISTERS.items()
                         if name not in ("gdtr", "idtr", "tr")}
        # Exact counting a block at a time with the compiled helper when it is there (blockcount.py),
        # else Unicorn's count mode: the same counts either way.
        lib = blockcount.helper() if block_counting else None
        self._blocks = blockcount.BlockCounting(self.uc, lib, self._read_ram) \
            if lib is not None and blockcount.hook_range_offset() is not None else None
        self._installed = False
        if self._blocks is not None:
            self._blocks.user_paged = self._user_paged
        self.counter = self._blocks.counter if self._blocks else InstructionCounter(self.uc)
        # EIP and EBP at every exit, EIP and the control registers by name, and the exception-state
        # reset: straight from the CPU state when it can be located, else through libunicorn; both
        # give the same numbers (tests/test_vcpu.py checks the traces).
        cpu = CpuState.locate(self.uc)
        self.eip_ebp = cpu or RegisterReader(self.uc, [X.UC_X86_REG_EIP, X.UC_X86_REG_EBP])
        self.reset_exception_state = ExceptionStateReset(self.uc, cpu)
        self._cc_op_eflags = FlagsAfterFault(self.uc, cpu)
        self._locate_fields(cpu)
        self._emu_start = emu_start(self.uc)
        self._remove_cache = remove_cache(self.uc)
        # Unicorn adds its instruction-counting hook at the first emu_start with a count, and only
        # blocks translated after that are counted: start (and at once stop) counting before any
        # block is translated, here or by a look at the code (watch_code). The helper's hooks are
        # added at the first run instead (a bare Unicorn run of this engine's Uc gets none).
        if self._blocks is None:
            self.uc.emu_start(0, 0, 0, 1)
        self._keep: list = []  # callbacks libunicorn holds pointers to
        self._every_block = watch_every_block
        self._code_watch = None  # see watch_code
        self._stopped_at_edge = False
        self._cr2 = 0  # the guest's CR2 (see _undo_stray_fault)
        self._entries: dict[int, int] = {}  # block starts entered without an edge -> block size
        self._foreign: dict[int, object] = {}  # guest-physical page -> the ctypes anchor of the RAM mapped there

    def _locate_fields(self, cpu: CpuState | None) -> None:
        """EIP and the FIELDS registers read from the CPU state where it is located."""
        if cpu is None:
            return
        self._scalars["eip"] = FieldRegister(cpu.eip_address, self._scalars["eip"])
        for name, values in FIELDS.items():
            address = register_at(self.uc, cpu, REGISTERS[name], values)
            if address is not None:
                self._scalars[name] = FieldRegister(address, self._scalars[name], plain=name in PLAIN)

    # registers -----------------------------------------------------------------------------------
    def reg(self, name: str):
        scalar = self._scalars.get(name)
        return scalar.read() if scalar is not None else self.uc.reg_read(REGISTERS[name])

    def register(self, name: str):
        """A fast reader of one integer register: a callable with no arguments."""
        return self._scalars[name].read

    def set_reg(self, name: str, value) -> None:
        scalar = self._scalars.get(name)
        if scalar is not None:
            scalar.write(value)
        else:
            self.uc.reg_write(REGISTERS[name], value)

    def reader(self, names: list[str]):
        """A callable returning the values of `names`, one call into libunicorn."""
        return RegisterReader(self.uc, [REGISTERS[n] for n in names])

    def writer(self, names: list[str]):
        """A callable taking the values of `names` (32-bit), one call into libunicorn."""
        return RegisterWriter(self.uc, [REGISTERS[n] for n in names])

    def enter_ring0(self, ss: int, cs: int) -> None:
        """Load a ring-0 SS and CS from ring 3. Unicorn 2.1 refuses SS of another privilege while CPL
        is 3, so protection is switched off for the one write that clears SS, as measured to work."""
        cr0 = self.reg("cr0")
        self.set_reg("cr0", cr0 & ~1)
        self.set_reg("ss", 0)
        self.set_reg("cr0", cr0)
        self.set_reg("ss", ss)
        self.set_reg("cs", cs)

    # memory ----------------------------------------------------------------------------------------
    def write(self, paddr: int, data: bytes) -> None:
        self.uc.mem_write(paddr, bytes(data))

    def map_mmio(self, base: int, size: int, on_read, on_write) -> None:
        """on_read(offset, size) -> value; on_write(offset, size, value). A (no-op) memory hook on the
        range makes Unicorn keep EIP exact inside the callbacks, so exits get the accessing instruction."""
        read = raw_callback(self.uc, MMIO_READ_CFUNC, on_read, 2)
        write = raw_callback(self.uc, MMIO_WRITE_CFUNC, on_write, 3)
        self._keep += [read, write]
        if self._blocks is not None:
            self._blocks.map_mmio(base, size, read, write)  # in front of them, the helper's
        else:
            mmio_map_raw(self.uc, base, size, read, write)
        self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, _no_op, None, base, base + size - 1)

    def _fault_flags(self) -> None:
        """A fault inside a block translated with the code hook (count mode, or a block the helper
        counts one by one): its lazy flags as a block without the hook leaves them (FlagsAfterFault)."""
        blocks = self._blocks
        if blocks is None or not blocks.counter.state.block_n:
            self._cc_op_eflags()

    def _settle(self) -> None:
        """A trap inside a block-counted block: the count up to the trapping instruction, included."""
        blocks = self._blocks
        if blocks is not None and blocks.counter.state.block_n:
            blocks.counter.settle(self.eip_ebp()[0], done=True)

    def _user_paged(self) -> bool:
        """Whether the CPU runs in ring 3 with paging on."""
        return bool(self.reg("cr0") & 0x80000000) and self.reg("cs") & 3 == 3

    def _read_ram(self, address: int, size: int) -> bytes | None:
        """Guest code at a linear address, read as physical (read_code replaces it where the guest pages)."""
        return bytes(self.ram[address:address + size]) if address + size <= len(self.ram) else None

    @property
    def read_code(self):
        return self._blocks.read_code if self._blocks is not None else self._read_ram

    @read_code.setter
    def read_code(self, fn) -> None:
        """fn(address, size) -> bytes | None: guest code at a linear address (for the helper's decoding)."""
        if self._blocks is not None:
            self._blocks.read_code = fn

    def flush_tlb(self) -> None:
        flush_tlb(self.uc)

    def map_foreign(self, paddr: int, source, source_paddr: int, size: int = 0x1000,
                    readonly: bool = False) -> None:
        """Map `size` bytes of another RAM buffer (another engine's `ram`) at guest-physical `paddr`:
        the same memory, not a copy. Page-aligned; `paddr` must be unmapped and outside this RAM
        (ValueError otherwise)."""
        if paddr % 0x1000 or source_paddr % 0x1000 or size % 0x1000 or source_paddr + size > len(source):
            raise ValueError("map_foreign: page-aligned ranges inside the source RAM only")
        anchor = (ctypes.c_char * size).from_buffer(source, source_paddr)
        prot = UC_PROT_READ | UC_PROT_EXEC if readonly else UC_PROT_ALL
        try:
            self.uc.mem_map_ptr(paddr, size, prot, ctypes.addressof(anchor))
        except UcError as e:   # overlaps a mapping: the caller's error, in its terms
            raise ValueError(f"map_foreign at 0x{paddr:x}: {e}") from None
        self._foreign[paddr] = anchor
        flush_tlb(self.uc)

    def unmap_foreign(self, paddr: int, size: int = 0x1000) -> None:
        """Remove a mapping map_foreign made at `paddr`."""
        if self._foreign.pop(paddr, None) is None:
            raise ValueError(f"unmap_foreign: nothing mapped at 0x{paddr:x}")
        self.uc.mem_unmap(paddr, size)
        flush_tlb(self.uc)

    # running ---------------------------------------------------------------------------------------
    def run(self, count: int) -> SliceEnd:
        """Run at most `count` instructions from the current EIP."""
        self._cr2 = self.reg("cr2")
        if self._blocks is not None:
            return self._run_blocks(count)
        fault = None
        eip = self._enter()
        try:
            self._emu_start(eip, UNTIL, count)
        except UcError as e:
            self._fault_flags()
            fault = _fault(e)
        return self._end(fault)

    def _undo_stray_fault(self) -> None:
        """Unicorn 2.1.4 drops the translation at emu_start's `until` address when a run ends (in count
        mode; the helper's ctl_remove_cache does the same): it looks the address up as an instruction
        fetch, and under guest paging, with 0xffffffff unmapped, that lookup takes a page fault that is
        never delivered but leaves CR2 = the address and old_exception = #PF, so the guest's next
        page fault becomes #DF and the one after a triple fault that stops Unicorn without a word
        (measured; Linux's first #PF after paging is on, test_wp_bit, hit it). Put back the CR2 of
        the last page fault really delivered (or the one before the slice) and clear the state."""
        if self.reg("cr2") != self._cr2:
            self.set_reg("cr2", self._cr2)
            self.reset_exception_state()

    def _run_blocks(self, count: int) -> SliceEnd:
        """run() with the helper: Unicorn runs without a count, the helper counts (blockcount.py) and
        may stop the run for Python to change how a block is counted; the run then goes on."""
        blocks = self._blocks
        if not self._installed:
            blocks.install()
            self._installed = True
        blocks.counter.begin(count)
        eip = self._enter()
        fault = None
        while True:
            try:
                self._emu_start(eip, UNTIL, 0)
            except UcError as e:
                self._fault_flags()
                blocks.counter.settle(self.eip_ebp()[0], done=True)
                fault = _fault(e)
                break
            eip = self.eip_ebp()[0]
            reason = blocks.stopped(eip)
            if reason == blockcount.STOP_NONE or blocks.counter.raw() > blocks.counter.limit():
                break
            if reason == blockcount.STOP_MMIO:
                blocks.take_back(eip)
            if self._code_watch is not None:
                self._scan_entry(eip)
        # what the end of an emu_start does in count mode: drop the translation at its `until`
        # address (side effects included: see BlockCounting.install)
        self._remove_cache(UNTIL, UNTIL + 1)
        return self._end(fault)

    def _enter(self) -> int:
        """Before a slice: the EIP it starts at, shown to the code watch."""
        eip = self.reg("eip")
        if self._stopped_at_edge:
            # Stopped between two blocks, the CPU may still hold the last exception as "being
            # delivered" (Unicorn never clears it), which would turn the next fault into #DF.
            self._stopped_at_edge = False
            self.reset_exception_state()
        if self._code_watch is not None:
            self._scan_entry(eip)
        return eip

    def _end(self, fault: Fault | None) -> SliceEnd:
        self._undo_stray_fault()
        raw = self.counter.raw()
        limit = self.counter.limit()
        return SliceEnd(executed=min(raw, limit), exhausted=raw > limit, fault=fault)

    # traps -----------------------------------------------------------------------------------------
    def trap_port_in(self, fn) -> None:
        """fn(port, size) -> value read."""
        self._hook(UC_HOOK_INSN, HOOK_INSN_IN_CFUNC, fn, 2, 1, 0, X.UC_X86_INS_IN)

    def trap_port_out(self, fn) -> None:
        """fn(port, size, value)."""
        self._hook(UC_HOOK_INSN, HOOK_INSN_OUT_CFUNC, fn, 3, 1, 0, X.UC_X86_INS_OUT)

    def trap_cpuid(self, fn) -> None:
        """fn() handles the CPUID at EIP (registers in and out through reg/set_reg)."""
        self._hook(UC_HOOK_INSN, HOOK_INSN_CPUID_CFUNC, _returning(fn, 1), 0, 1, 0, X.UC_X86_INS_CPUID)

    def trap_invalid(self, fn) -> None:
        """fn() -> True when it handled the invalid opcode at EIP (VMCALL lands here)."""
        def handled() -> bool:
            self._settle()
            result = fn()
            self._entered()
            return result
        self._hook(UC_HOOK_INSN_INVALID, HOOK_INSN_INVALID_CFUNC, handled, 0)

    def trap_interrupt(self, fn) -> None:
        """fn(vector): an instruction raised an exception or executed int n (EIP past it for int n)."""
        def handled(vector: int) -> None:
            self._fault_flags()
            self._settle()
            if vector == 14:
                self._cr2 = self.reg("cr2")  # a page fault really taken: its CR2 is the guest's
            fn(vector)
            self._entered()
        self._hook(UC_HOOK_INTR, HOOK_INTR_CFUNC, handled, 1)

    def flag(self) -> ctypes.c_int32:
        """A flag for trap_block's `only_if` (set through `.value`)."""
        return ctypes.c_int32(0)

    def trap_block(self, address: int, fn, only_if: ctypes.c_int32 | None = None, eflags: int = 0) -> None:
        """fn(address, size) at the start of the block of code that starts at `address`, each time it
        runs: an entry in the helper's table, looked up by its one block hook, where the helper is
        there; else a Unicorn block hook bounded to that one address (a code hook would slow every
        instruction in count mode: libunicorn walks all code hooks for each).
        That block stays counted one instruction at a time (the callback may end the slice inside it).
        With `only_if` (a flag()), fn is called only while the flag is set and EFLAGS has all the
        `eflags` bits: decided in C where the helper is there, without a call into Python."""
        if self._blocks is not None and address != 0:
            self._trap_block_in_helper(address, fn, only_if, eflags)
            return
        if self._blocks is not None:
            self._blocks.pin(address)
        if only_if is None:
            self._hook(UC_HOOK_BLOCK, HOOK_CODE_CFUNC, fn, 2, address, address)
            return
        self._hook(UC_HOOK_BLOCK, HOOK_CODE_CFUNC, self._gated(fn, only_if, eflags), 2, address, address)

    def _gated(self, fn, only_if: ctypes.c_int32, eflags: int):
        """fn, called only while `only_if` is set and EFLAGS has the `eflags` bits (checked in Python)."""
        read = self._scalars["eflags"].read

        def gated(pc: int, size: int) -> None:
            if only_if.value and read() & eflags == eflags:
                fn(pc, size)
        return gated

    def _trap_block_in_helper(self, address: int, fn, only_if, eflags: int) -> None:
        """trap_block through the helper's one block hook (a table in C: libunicorn would walk a list
        of every bounded block hook at each block start). The gate is checked in C where EFLAGS can be
        read there."""
        eflags_at = getattr(self.eip_ebp, "eflags_address", None)
        if only_if is not None and eflags_at is None:
            fn, only_if = self._gated(fn, only_if, eflags), None
        ptr = raw_callback(self.uc, HOOK_CODE_CFUNC, fn, 2)
        self._keep.append(ptr)
        self._blocks.add_trap(address, ptr, only_if, eflags_at, eflags)

    def forget_code(self, address: int) -> None:
        """Drop the translated block at `address`, if any, so that it is translated again (with the
        callbacks set since)."""
        if self._blocks is not None:
            self._blocks.forget(address)
        else:
            self.uc.ctl_remove_cache(address, address + 1)

    def watch_code(self, fn) -> None:
        """fn(address, size) for each block of guest code before it first runs, and again when it is
        translated anew (the guest rewrote it); fn returns True when it trapped an instruction there.
        The block is then translated again, with its traps, before it runs.

        Unicorn reports a new block through its edge hook (a new transition between two blocks,
        counted once, not per execution); a block entered without one -- the first of a slice, or
        where execution resumes after a trap that moved EIP or delivered an exception -- is found
        here by asking Unicorn for the block at EIP. An edge's block is stopped before its first
        instruction (the count limit), so that it runs translated with its traps."""
        self._code_watch = fn

        def on_edge(cur, _prev) -> None:
            tb = cur.contents
            self._show(fn, tb.pc, tb.size)
        self._hook(UC_HOOK_EDGE_GENERATED, HOOK_EDGE_GEN_CFUNC, on_edge, 2)
        if self._every_block:
            self._watch_every_block(fn)

    def _watch_every_block(self, fn) -> None:
        """The edge hook fires only where Unicorn links a new block to the one before it (tb_find with a
        previous block): a block first reached by an indirect jump or a return (the jump cache misses,
        cpu_exec looks it up with no previous block) or one spanning two pages is never reported. A
        large kernel reaches most of its code that way (measured on Linux 6.1: none of its rdtsc was
        trapped), so there every block start is looked up as it runs, and one not shown before (or
        not with this size: translated anew) is shown, stopped before it runs as an edge's block is.
        The look-up is the helper's (C, in its block hook, before its counting) where it is there,
        else a Python block hook's: the same blocks are shown at the same points either way."""
        def on_new(pc: int, size: int) -> None:
            self._show(fn, pc, size)
        if self._blocks is not None:
            ptr = raw_callback(self.uc, HOOK_CODE_CFUNC, on_new, 2)
            self._keep.append(ptr)
            self._blocks.watch(ptr)
            return
        shown: dict[int, int] = {}  # block start -> the size it was last shown with

        def on_block(pc: int, size: int) -> None:
            if shown.get(pc) != size:
                shown[pc] = size
                on_new(pc, size)
        self._hook(UC_HOOK_BLOCK, HOOK_CODE_CFUNC, on_block, 2)

    def _show(self, fn, pc: int, size: int) -> None:
        """A block about to run shown to the code watch: one that needs a trap it lacks is dropped and
        the slice stopped before it, so that it runs translated anew with its trap."""
        if fn(pc, size):
            self.uc.ctl_remove_cache(pc, pc + size)
            self.counter.stop_after_current()
            self._stopped_at_edge = True

    def _entered(self) -> None:
        """A trap moved EIP or delivered an exception: the block there runs without an edge."""
        if self._code_watch is not None:
            self._scan_entry(self.eip_ebp()[0])

    def _scan_entry(self, eip: int) -> None:
        size = self._entries.get(eip)
        if size is None:
            try:
                _, _, size = self.uc.ctl_request_cache(eip)
            except UcError:
                return  # nothing to translate there: the run will fault when it gets there
            self._entries[eip] = size
        if self._code_watch(eip, size):
            self.uc.ctl_remove_cache(eip, eip + size)

    def _hook(self, htype: int, cfunctype, fn, arity: int, begin: int = 1, end: int = 0, *extra: int) -> int:
        return add_raw_hook(self.uc, htype, raw_callback(self.uc, cfunctype, fn, arity), begin, end, *extra)


def _fault(e: UcError) -> Fault:
    return Fault("fetch" if e.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_FETCH_PROT) else "other", str(e))


def _returning(fn, value: int):
    def call():
        fn()
        return value
    return call


def _no_op(*_args) -> None:
    return None
