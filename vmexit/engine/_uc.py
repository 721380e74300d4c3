"""Two facts about Unicorn's internals that the binding does not expose, found by probing at run time.

1. The instruction counter behind `emu_start(count=N)` (`uc_struct.emu_counter` / `emu_count`, both
   uint64). Reading it inside a hook gives the exact number of guest instructions executed so far in
   the current slice; writing `emu_count` moves the end of the slice, so a hook can stop the guest
   after exactly the current instruction (emu_stop() only takes effect at the end of a block).
2. `CPUX86State.old_exception`: Unicorn hands exceptions to UC_HOOK_INTR instead of delivering them,
   and never resets this field as QEMU does after a successful delivery, so a second fault becomes
   #DF and a third a triple fault. We reset it to -1 after each delivery.

Both offsets are found by running tiny probe programs and diffing memory, then checked; if a future
Unicorn changes its layout the probe fails with a clear error instead of giving wrong counts.
"""
from __future__ import annotations

import ctypes
import functools
import struct

import numpy as np
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn.x86_const import UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EFLAGS, UC_X86_REG_EIP


class UnicornLayoutError(RuntimeError):
    """The installed Unicorn does not have the internal layout vmexit relies on."""


def _handle_address(uc: Uc) -> int:
    return ctypes.cast(uc._uch, ctypes.c_void_p).value


@functools.lru_cache(maxsize=None)
def counter_offsets() -> tuple[int, int]:
    """Offsets of (emu_counter, emu_count) inside uc_struct."""
    snaps = []
    for count in (17, 29):
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x2000)
        uc.mem_write(0x1000, b"\x90" * 64)
        uc.emu_start(0x1000, 0x1040, count=count)
        snaps.append(ctypes.string_at(_handle_address(uc), 4096))
        del uc
    found_counter = found_count = None
    for off in range(0, 4096 - 8, 8):
        a = struct.unpack_from("<Q", snaps[0], off)[0]
        b = struct.unpack_from("<Q", snaps[1], off)[0]
        if found_counter is None and (a, b) == (18, 30):
            found_counter = off
        elif found_count is None and (a, b) == (17, 29):
            found_count = off
    if found_counter is None or found_count is None:
        raise UnicornLayoutError("cannot find Unicorn's instruction counter; vmexit needs unicorn 2.1.x")
    return found_counter, found_count


@functools.lru_cache(maxsize=None)
def old_exception_offset() -> int:
    """Offset of CPUX86State.old_exception inside the bytes of a saved context."""

    def probe(code: bytes, eax: int, ecx: int) -> tuple[bytes, bytes]:
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x2000)
        uc.mem_write(0x1000, code)
        uc.reg_write(UC_X86_REG_EAX, eax)
        uc.reg_write(UC_X86_REG_ECX, ecx)
        before = bytes(uc.context_save())

        def on_intr(uc_, intno, _data):
            uc_.reg_write(UC_X86_REG_EIP, uc_.reg_read(UC_X86_REG_EIP) + 2)
            uc_.emu_stop()

        uc.hook_add(UC_HOOK_INTR, on_intr)
        uc.emu_start(0x1000, 0x1000 + len(code), count=4)
        return before, bytes(uc.context_save())

    de0, de1 = probe(b"\xf7\xf1\x90\x90", 1, 0)  # div ecx with ecx=0: #DE (vector 0)
    gp0, gp1 = probe(b"\x8e\xd8\x90\x90", 0x1234, 0)  # mov ds, ax with a bad selector: #GP (13)
    for off in range(0, min(len(de0), len(gp0)) - 4, 4):
        if (struct.unpack_from("<i", de0, off)[0], struct.unpack_from("<i", de1, off)[0],
                struct.unpack_from("<i", gp0, off)[0], struct.unpack_from("<i", gp1, off)[0]) == (-1, 0, -1, 13):
            return off
    raise UnicornLayoutError("cannot find Unicorn's exception state; vmexit needs unicorn 2.1.x")


class InstructionCounter:
    """Exact instruction counting for one Uc running in count mode."""

    __slots__ = ("_counter", "_count", "current")

    def __init__(self, uc: Uc):
        counter_off, count_off = counter_offsets()
        base = _handle_address(uc)
        self._counter = ctypes.c_uint64.from_address(base + counter_off)
        self._count = ctypes.c_uint64.from_address(base + count_off)
        #: Inside a hook the counter never exceeds the limit, so `current.value` is the number of
        #: instructions started in this slice, the hooked one included (the exit path reads this).
        self.current = self._counter

    def executed(self) -> int:
        """Instructions started in the current slice (the current one included, inside a hook)."""
        return min(self._counter.value, self._count.value)

    def raw(self) -> int:
        """The raw counter: one more than the limit when the count ran out."""
        return self._counter.value

    def limit(self) -> int:
        return self._count.value

    def stop_after_current(self) -> None:
        """End the slice once the instruction now executing completes."""
        self._count.value = self._counter.value

    def set_limit(self, n: int) -> None:
        """Make the current slice end after n instructions in total (never before the current one)."""
        self._count.value = max(n, self._counter.value)


def _guarded(uc: Uc, fn):
    """`fn` as a libunicorn callback body: like the binding's, an exception is kept on the Uc and
    re-raised by emu_start after the emulation stops."""
    def on_error(e: BaseException):
        if uc._hook_exception is None:
            uc._hook_exception = e
        uc.emu_stop()
        return 0
    return on_error


def raw_callback(uc: Uc, cfunctype, fn, arity: int):
    """A ctypes callback that calls fn with the hook's own arguments only (not the engine handle and
    the user-data pointer), without the binding's two Python layers per call."""
    on_error = _guarded(uc, fn)
    if arity == 0:
        def wrapper(_h, _d):
            try:
                return fn()
            except BaseException as e:
                return on_error(e)
    elif arity == 1:
        def wrapper(_h, a, _d):
            try:
                return fn(a)
            except BaseException as e:
                return on_error(e)
    elif arity == 2:
        def wrapper(_h, a, b, _d):
            try:
                return fn(a, b)
            except BaseException as e:
                return on_error(e)
    else:
        def wrapper(_h, a, b, c, _d):
            try:
                return fn(a, b, c)
            except BaseException as e:
                return on_error(e)
    return ctypes.cast(cfunctype(wrapper), cfunctype)


def add_raw_hook(uc: Uc, htype: int, fptr, begin: int = 1, end: int = 0, *extra: int) -> int:
    """Register a raw_callback as a hook (the binding keeps the pointer alive with the handle)."""
    return uc._Uc__do_hook_add(htype, fptr, begin, end, *[ctypes.c_int(x) for x in extra])


def mmio_map_raw(uc: Uc, base: int, size: int, read_ptr, write_ptr) -> None:
    """uc_mmio_map with raw callbacks; the caller keeps the pointers alive."""
    from unicorn import UcError
    from unicorn.unicorn_py3.unicorn import uclib
    status = uclib.uc_mmio_map(uc._uch, base, size, read_ptr, 0, write_ptr, 0)
    if status:
        raise UcError(status)


class _RegisterBatch:
    """A fixed register list and its value slots, for batch calls straight into libunicorn (the
    binding's reg_read_batch spends most of its time in Python bookkeeping: ~6.5 us against ~1.2 us)."""

    __slots__ = ("_fn", "_uch", "_ids", "_ptrs", "_vals", "_count")
    _FUNCTION = ""

    def __init__(self, uc: Uc, registers: list[int]):
        from unicorn.unicorn_py3.unicorn import uclib
        self._fn = getattr(uclib, self._FUNCTION)
        self._uch = uc._uch
        self._count = len(registers)
        self._ids = (ctypes.c_int * self._count)(*registers)
        self._vals = [ctypes.c_uint64(0) for _ in registers]
        self._ptrs = (ctypes.c_void_p * self._count)(*[ctypes.addressof(v) for v in self._vals])


class ScalarRegister:
    """One integer register read and written straight through libunicorn (the binding's reg_read costs
    ~6 us a call in Python bookkeeping; this ~1 us)."""

    __slots__ = ("_read", "_write", "_uch", "_id", "_val", "_ptr")

    def __init__(self, uc: Uc, register: int):
        from unicorn.unicorn_py3.unicorn import uclib
        self._read, self._write = uclib.uc_reg_read, uclib.uc_reg_write
        self._uch = uc._uch
        self._id = ctypes.c_int(register)
        self._val = ctypes.c_uint64(0)
        self._ptr = ctypes.byref(self._val)

    def read(self) -> int:
        self._val.value = 0
        if self._read(self._uch, self._id, self._ptr):
            raise RuntimeError("uc_reg_read failed")
        return self._val.value

    def write(self, value: int) -> None:
        self._val.value = value
        if self._write(self._uch, self._id, self._ptr):
            raise RuntimeError("uc_reg_write failed")


class RegisterReader(_RegisterBatch):
    __slots__ = ()
    _FUNCTION = "uc_reg_read_batch"

    def __call__(self) -> list[int]:
        if self._fn(self._uch, self._ids, self._ptrs, self._count):
            raise RuntimeError("uc_reg_read_batch failed")
        return [v.value for v in self._vals]


class RegisterWriter(_RegisterBatch):
    __slots__ = ()
    _FUNCTION = "uc_reg_write_batch"

    def __call__(self, *values: int) -> None:
        for slot, value in zip(self._vals, values):
            slot.value = value & 0xFFFFFFFF
        if self._fn(self._uch, self._ids, self._ptrs, self._count):
            raise RuntimeError("uc_reg_write_batch failed")


_PATTERNS = {"eax": 0x0EA0EA0E, "ebp": 0x5EB0A11F, "eip": 0x1AB2C3D4}
_ENV_HINT: list[tuple[int, int]] = []  # (offset of a pointer in uc_struct, env delta) found before


def _readable_ranges() -> list[tuple[int, int]] | None:
    try:
        with open("/proc/self/maps") as f:
            out = []
            for line in f:
                fields = line.split()
                if fields[1].startswith("r"):
                    lo, hi = fields[0].split("-")
                    out.append((int(lo, 16), int(hi, 16)))
            return out
    except OSError:
        return None


class CpuState:
    """EIP and EBP read straight from the live CPUX86State (~0.1 us against ~1.2 us for a batch read
    through libunicorn). The state is found by writing marker values into registers and looking for
    them behind the pointers in uc_struct (only in mapped memory, per /proc/self/maps), then checked
    with a second set of values. `locate` returns None where that fails; callers then use
    RegisterReader, which gives the same numbers."""

    __slots__ = ("_eip", "_ebp", "eflags_address", "eip_address", "env", "ctx_eax")

    def __init__(self, eip_address: int, ebp_address: int, eflags_address: int | None = None,
                 env: int | None = None, ctx_eax: int = 0):
        self._eip = ctypes.c_uint32.from_address(eip_address)
        self._ebp = ctypes.c_uint32.from_address(ebp_address)
        self.eip_address = eip_address
        #: where EFLAGS is kept (its IF bit is exact at any time), if found and checked
        self.eflags_address = eflags_address
        #: the live address of EAX, and its offset in a saved context (a context is a copy of the
        #: CPU state: live address = env + context offset - ctx_eax)
        self.env, self.ctx_eax = env, ctx_eax

    def live(self, ctx_offset: int) -> int | None:
        return None if self.env is None else self.env + ctx_offset - self.ctx_eax

    def __call__(self) -> tuple[int, int]:
        return self._eip.value, self._ebp.value

    @classmethod
    def locate(cls, uc: Uc) -> "CpuState | None":
        from unicorn.x86_const import UC_X86_REG_EAX, UC_X86_REG_EBP, UC_X86_REG_EIP
        regs = {"eax": UC_X86_REG_EAX, "ebp": UC_X86_REG_EBP, "eip": UC_X86_REG_EIP}
        saved = {k: uc.reg_read(r) for k, r in regs.items()}
        try:
            for k, r in regs.items():
                uc.reg_write(r, _PATTERNS[k])
            ctx = bytes(uc.context_save())
            offs = {}
            for k, v in _PATTERNS.items():
                at = ctx.find(struct.pack("<Q", v))
                if at < 0 or at % 4:
                    return None
                offs[k] = at - ctx.find(struct.pack("<Q", _PATTERNS["eax"]))
            base = _handle_address(uc)
            candidates = []
            for ptr_off, delta in _ENV_HINT:
                candidates.append((ptr_off, delta))
            env = None
            for ptr_off, delta in candidates:
                p = ctypes.c_uint64.from_address(base + ptr_off).value
                if cls._verify(uc, p + delta, offs, regs):
                    env = p + delta
                    break
            if env is None:
                env = cls._scan(uc, base, offs, regs)
            if env is None:
                return None
            return cls(env + offs["eip"], env + offs["ebp"], _eflags_at(uc, env, ctx), env,
                       ctx.find(struct.pack("<Q", _PATTERNS["eax"])))
        finally:
            for k, r in regs.items():
                uc.reg_write(r, saved[k])

    @staticmethod
    def _verify(uc: Uc, env: int, offs: dict, regs: dict) -> bool:
        ranges = _readable_ranges()
        if ranges is None or not any(lo <= env and env + 256 <= hi for lo, hi in ranges):
            return False
        for shift in (0, 0x01010101):
            for k, r in regs.items():
                uc.reg_write(r, (_PATTERNS[k] + shift) & 0xFFFFFFFF)
            for k in regs:
                if ctypes.c_uint32.from_address(env + offs[k]).value != (_PATTERNS[k] + shift) & 0xFFFFFFFF:
                    return False
        return True

    @classmethod
    def _scan(cls, uc: Uc, base: int, offs: dict, regs: dict) -> int | None:
        ranges = _readable_ranges()
        if ranges is None:
            return None
        struct_bytes = ctypes.string_at(base, 4096)
        window = 0x40000
        marker = struct.pack("<Q", _PATTERNS["ebp"])
        for ptr_off in range(0, 4096, 8):
            p = struct.unpack_from("<Q", struct_bytes, ptr_off)[0]
            if p < 0x10000 or not any(lo <= p and p + window <= hi for lo, hi in ranges):
                continue
            blob = ctypes.string_at(p, window)
            at = blob.find(marker)
            while at >= 0:
                env = p + at - offs["ebp"]
                if cls._verify(uc, env, offs, regs):
                    _ENV_HINT.append((ptr_off, env - p))
                    for k, r in regs.items():
                        uc.reg_write(r, _PATTERNS[k])
                    return env
                for k, r in regs.items():
                    uc.reg_write(r, _PATTERNS[k])
                at = blob.find(marker, at + 1)
        return None


def _eflags_at(uc: Uc, env: int, ctx: bytes) -> int | None:
    """The address of EFLAGS in the CPU state at `env` (the address of EAX there): its offset in a
    saved context is where two values written to EFLAGS show, checked against the live state."""
    from unicorn.x86_const import UC_X86_REG_EFLAGS
    saved = uc.reg_read(UC_X86_REG_EFLAGS)
    try:
        images = []
        for value in (0x2, 0x3202):
            uc.reg_write(UC_X86_REG_EFLAGS, value)
            images.append(bytes(uc.context_save()))
        eax = ctx.find(struct.pack("<Q", _PATTERNS["eax"]))
        for off in range(0, min(len(images[0]), len(images[1])) - 4, 4):
            if (struct.unpack_from("<I", images[0], off)[0], struct.unpack_from("<I", images[1], off)[0]) == (2, 0x3202):
                address = env + off - eax
                if ctypes.c_uint32.from_address(address).value == 0x3202:
                    return address
        return None
    finally:
        uc.reg_write(UC_X86_REG_EFLAGS, saved)


@functools.lru_cache(maxsize=None)
def field_offset(register: int, values: tuple[int, int]) -> int | None:
    """Offset in a saved context of a register Unicorn keeps as a plain 32-bit field (a control
    register: uc_reg_read returns the field as it is), found on a throwaway engine: the one offset
    where two values written to it show. None where not exactly one."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    images = []
    for value in values:
        uc.reg_write(register, value)
        images.append(np.frombuffer(bytes(uc.context_save()), dtype="<u4"))
    n = min(len(images[0]), len(images[1]))
    found = np.flatnonzero((images[0][:n] == values[0]) & (images[1][:n] == values[1]))
    return int(found[0]) * 4 if len(found) == 1 else None


def register_at(uc: Uc, cpu: "CpuState | None", register: int, values: tuple[int, int]) -> int | None:
    """The live address of such a register of `uc` (field_offset), checked against uc_reg_read; None
    where it cannot be located."""
    offset = field_offset(register, values)
    if cpu is None or offset is None or cpu.live(offset) is None:
        return None
    address = cpu.live(offset)
    return address if ctypes.c_uint32.from_address(address).value == uc.reg_read(register) & 0xFFFFFFFF else None


class ExceptionStateReset:
    """Resets old_exception to -1 (what QEMU does after delivering an exception): in the live CPU state
    where it is located (`cpu`), else through a saved context (a copy of the whole state each way)."""

    def __init__(self, uc: Uc, cpu: "CpuState | None" = None):
        self._uc = uc
        self._offset = old_exception_offset()
        self._ctx = uc.context_save()
        address = cpu.live(self._offset) if cpu is not None else None
        self._live = ctypes.c_int32.from_address(address) if address is not None else None

    def __call__(self) -> None:
        if self._live is not None:
            self._live.value = -1
            return
        self._uc.context_update(self._ctx)
        address = ctypes.cast(self._ctx._context, ctypes.c_void_p).value
        ctypes.c_int32.from_address(address + self._offset).value = -1
        self._uc.context_restore(self._ctx)


class FieldRegister:
    """A register read straight from its field in the live CPU state (~0.1 us, what uc_reg_read returns:
    the low 32 bits). Written through libunicorn (a control register's or EIP's write has side effects:
    hidden flags, the TLB, the translation loop), or, with `plain`, into the field as libunicorn does
    for a general register in 32-bit mode (the whole 64-bit field, zero-extended)."""

    __slots__ = ("_field", "_wide", "write")

    def __init__(self, address: int, through: "ScalarRegister", plain: bool = False):
        self._field = ctypes.c_uint32.from_address(address)
        self._wide = ctypes.c_uint64.from_address(address)
        self.write = self._write_plain if plain else through.write

    def read(self) -> int:
        return self._field.value

    def _write_plain(self, value: int) -> None:
        self._wide.value = value & 0xFFFFFFFF


#: QEMU's CCOp values (target/i386/cpu.h): the lazy-flags operation of the last flag-setting instruction
CC_OP_EFLAGS, CC_OP_ADDL, CC_OP_SUBL = 1, 8, 16


@functools.lru_cache(maxsize=None)
def cc_op_offset() -> int | None:
    """Offset of CPUX86State.cc_op in a saved context: the one place where runs of `cmp eax, ebx; hlt`
    and `add eax, ebx; hlt` leave CC_OP_SUBL and CC_OP_ADDL and a write of EFLAGS CC_OP_EFLAGS."""
    images = []
    for code in (b"\x39\xd8\xf4", b"\x01\xd8\xf4", None):
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        if code is None:
            uc.reg_write(UC_X86_REG_EFLAGS, 0x2)
        else:
            uc.mem_map(0, 0x2000)
            uc.mem_write(0x1000, code)
            uc.emu_start(0x1000, 0x1000 + len(code))
        images.append(np.frombuffer(bytes(uc.context_save()), dtype="<u4"))
    n = min(len(i) for i in images)
    found = np.flatnonzero((images[0][:n] == CC_OP_SUBL) & (images[1][:n] == CC_OP_ADDL)
                           & (images[2][:n] == CC_OP_EFLAGS))
    return int(found[0]) * 4 if len(found) == 1 else None


class FlagsAfterFault:
    """Sets cc_op to CC_OP_EFLAGS (in the live CPU state where located, else through a saved context).

    Why: in a block translated with a code hook (count mode; the helper's blocks counted one by one)
    Unicorn computes the flags into CC_SRC after each instruction's hook (cc_op EFLAGS from there on),
    but a fault in that instruction restores cc_op to the value recorded before the hook
    (restore_state_to_opc), the operation of an earlier instruction, over the computed flags: EFLAGS
    then reads back wrong (measured: cmp, then a load that faults, loses AF). QEMU changes no CC state
    before an instruction's last possible fault, so after such a fault CC_SRC holds the instruction's
    entry flags, and cc_op EFLAGS is what makes them read back (as a block without the hook gives)."""

    def __init__(self, uc: Uc, cpu: "CpuState | None" = None):
        self._uc = uc
        self._offset = cc_op_offset()
        address = cpu.live(self._offset) if cpu is not None and self._offset is not None else None
        self._live = ctypes.c_uint32.from_address(address) if address is not None else None
        self._ctx = uc.context_save() if self._live is None and self._offset is not None else None

    def __call__(self) -> None:
        if self._live is not None:
            self._live.value = CC_OP_EFLAGS
        elif self._ctx is not None:
            self._uc.context_update(self._ctx)
            address = ctypes.cast(self._ctx._context, ctypes.c_void_p).value
            ctypes.c_uint32.from_address(address + self._offset).value = CC_OP_EFLAGS
            self._uc.context_restore(self._ctx)


def remove_cache(uc: Uc):
    """uc.ctl_remove_cache without the binding's encoding of the call each time: a callable
    (begin, end)."""
    from unicorn import UcError
    from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TB_REMOVE_CACHE
    from unicorn.unicorn_py3.unicorn import uclib
    code = (UC_CTL_IO_WRITE << 30) | (2 << 26) | UC_CTL_TB_REMOVE_CACHE   # the binding's encoding
    ctl, uch, u64 = uclib.uc_ctl, uc._uch, ctypes.c_uint64

    def remove(begin: int, end: int) -> None:
        status = ctl(uch, code, u64(begin), u64(end))
        if status:
            raise UcError(status)
    return remove


def emu_start(uc: Uc):
    """uc.emu_start as the binding does it (an exception a callback kept is raised after the run),
    one Python layer less: a callable (begin, until, count)."""
    from unicorn import UcError
    from unicorn.unicorn_py3.unicorn import uclib
    start, uch = uclib.uc_emu_start, uc._uch

    def run(begin: int, until: int, count: int) -> None:
        uc._hook_exception = None
        status = start(uch, begin, until, 0, count)
        if status:
            raise UcError(status)
        if uc._hook_exception is not None:
            raise uc._hook_exception
    return run


def flush_tlb(uc: Uc) -> None:
    """Drop Unicorn's cached guest translations (uc_ctl UC_CTL_TLB_FLUSH), as a TLB flush would: needed
    after the host changes a guest page table behind the guest's back. The 2.1.4 binding has no method
    for it, only the private control writer."""
    from unicorn.unicorn_const import UC_CTL_TLB_FLUSH
    uc._Uc__ctl_w(UC_CTL_TLB_FLUSH)
