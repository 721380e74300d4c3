"""The Linux KVM API (/dev/kvm) from Python: the ioctls and structures vmexit needs, nothing else.

No maintained Python binding of the KVM ioctls exists on PyPI (the packages named after KVM manage
libvirt hosts or KVM switches), so the few calls are made here with ctypes. Numbers and layouts are
those of include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h (x86-64 hosts): _IO/_IOR/_IOW/
_IOWR of type 0xAE, struct kvm_run (the shared page mapped from the vCPU descriptor), kvm_regs,
kvm_sregs with kvm_segment and kvm_dtable, kvm_userspace_memory_region, kvm_cpuid2/kvm_cpuid_entry2,
kvm_interrupt.

Every ioctl goes through libc's ioctl by ctypes, not fcntl.ioctl: Python retries a system call that a
signal interrupted (PEP 475), and vmexit needs KVM_RUN to return on a signal (EINTR: its timer kick,
Ctrl-C), as QEMU kicks a vCPU thread. ctypes returns -1 with errno EINTR instead.

Registers travel in kvm_run itself where the host offers KVM_CAP_SYNC_REGS (Linux 4.17+): KVM copies
the general and special registers into the shared page at every exit and reads back those marked dirty
at the next entry, so an exit costs no KVM_GET_REGS. Without it, KVM_GET/SET_(S)REGS are called.

The device path is /dev/kvm, or $VMEXIT_KVM_DEVICE (tests point it at a path that does not exist).
A host without KVM, or one that refuses a call at setup, is KvmUnavailable (bad input, exit code 2).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os

from ..errors import KvmUnavailable

DEVICE_ENV = "VMEXIT_KVM_DEVICE"
DEFAULT_DEVICE = "/dev/kvm"
API_VERSION = 12                 # KVM_API_VERSION, stable since Linux 2.6.22


def _ioc(direction: int, nr: int, size: int) -> int:
    """_IOC(dir, 0xAE, nr, size) of asm-generic/ioctl.h: dir 0 none, 1 write, 2 read, 3 both."""
    return (direction << 30) | (size << 16) | (0xAE << 8) | nr


class Segment(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32), ("selector", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8), ("g", ctypes.c_uint8),
                ("avl", ctypes.c_uint8), ("unusable", ctypes.c_uint8), ("padding", ctypes.c_uint8)]


class DTable(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


class Regs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12",
                 "r13", "r14", "r15", "rip", "rflags")]


SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")


class Sregs(ctypes.Structure):
    _fields_ = ([(name, Segment) for name in SEGMENTS] + [("gdt", DTable), ("idt", DTable)]
                + [(name, ctypes.c_uint64) for name in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")]
                + [("interrupt_bitmap", ctypes.c_uint64 * 4)])


class MemoryRegion(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("guest_phys_addr", ctypes.c_uint64),
                ("memory_size", ctypes.c_uint64), ("userspace_addr", ctypes.c_uint64)]


class CpuidEntry(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("function", "index", "flags", "eax", "ebx", "ecx", "edx")] \
        + [("padding", ctypes.c_uint32 * 3)]


MAX_CPUID_ENTRIES = 256


class Cpuid2(ctypes.Structure):
    _fields_ = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32),
                ("entries", CpuidEntry * MAX_CPUID_ENTRIES)]


class _Io(ctypes.Structure):
    _fields_ = [("direction", ctypes.c_uint8), ("size", ctypes.c_uint8), ("port", ctypes.c_uint16),
                ("count", ctypes.c_uint32), ("data_offset", ctypes.c_uint64)]


class _Mmio(ctypes.Structure):
    _fields_ = [("phys_addr", ctypes.c_uint64), ("data", ctypes.c_uint8 * 8), ("len", ctypes.c_uint32),
                ("is_write", ctypes.c_uint8)]


class _Internal(ctypes.Structure):
    _fields_ = [("suberror", ctypes.c_uint32), ("ndata", ctypes.c_uint32), ("data", ctypes.c_uint64 * 16)]


class _FailEntry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", ctypes.c_uint64), ("cpu", ctypes.c_uint32)]


class _Exit(ctypes.Union):
    _fields_ = [("io", _Io), ("mmio", _Mmio), ("internal", _Internal), ("fail_entry", _FailEntry),
                ("hardware_exit_reason", ctypes.c_uint64), ("padding", ctypes.c_char * 256)]


class _SyncRegs(ctypes.Structure):
    _fields_ = [("regs", Regs), ("sregs", Sregs)]


class Run(ctypes.Structure):
    """struct kvm_run up to the x86 sync-register area (the rest of the page is not used here)."""
    _fields_ = [("request_interrupt_window", ctypes.c_uint8), ("immediate_exit", ctypes.c_uint8),
                ("padding1", ctypes.c_uint8 * 6), ("exit_reason", ctypes.c_uint32),
                ("ready_for_interrupt_injection", ctypes.c_uint8), ("if_flag", ctypes.c_uint8),
                ("flags", ctypes.c_uint16), ("cr8", ctypes.c_uint64), ("apic_base", ctypes.c_uint64),
                ("exit", _Exit), ("kvm_valid_regs", ctypes.c_uint64), ("kvm_dirty_regs", ctypes.c_uint64),
                ("s", _SyncRegs)]


assert ctypes.sizeof(Segment) == 24 and ctypes.sizeof(Sregs) == 312 and ctypes.sizeof(Regs) == 144
assert Run.exit.offset == 32 and Run.kvm_valid_regs.offset == 288 and Run.s.offset == 304

GET_API_VERSION = _ioc(0, 0x00, 0)
CREATE_VM = _ioc(0, 0x01, 0)
CHECK_EXTENSION = _ioc(0, 0x03, 0)
GET_VCPU_MMAP_SIZE = _ioc(0, 0x04, 0)
GET_SUPPORTED_CPUID = _ioc(3, 0x05, 8)
CREATE_VCPU = _ioc(0, 0x41, 0)
SET_USER_MEMORY_REGION = _ioc(1, 0x46, ctypes.sizeof(MemoryRegion))
SET_TSS_ADDR = _ioc(0, 0x47, 0)
CREATE_IRQCHIP = _ioc(0, 0x60, 0)
RUN = _ioc(0, 0x80, 0)
GET_REGS = _ioc(2, 0x81, ctypes.sizeof(Regs))
SET_REGS = _ioc(1, 0x82, ctypes.sizeof(Regs))
GET_SREGS = _ioc(2, 0x83, ctypes.sizeof(Sregs))
SET_SREGS = _ioc(1, 0x84, ctypes.sizeof(Sregs))
INTERRUPT = _ioc(1, 0x86, 4)
SET_CPUID2 = _ioc(1, 0x90, 8)
GET_TSC_KHZ = _ioc(0, 0xA3, 0)

CAP_SYNC_REGS = 74
SYNC_X86_REGS, SYNC_X86_SREGS = 1, 2

#: KVM_EXIT_* (the reasons KVM_RUN returns to user space with).
EXIT_UNKNOWN, EXIT_EXCEPTION, EXIT_IO, EXIT_HYPERCALL, EXIT_DEBUG, EXIT_HLT, EXIT_MMIO = 0, 1, 2, 3, 4, 5, 6
EXIT_IRQ_WINDOW_OPEN, EXIT_SHUTDOWN, EXIT_FAIL_ENTRY, EXIT_INTR = 7, 8, 9, 10
EXIT_INTERNAL_ERROR, EXIT_SYSTEM_EVENT = 17, 24
EXIT_IO_IN, EXIT_IO_OUT = 0, 1
INTERNAL_ERROR_EMULATION = 1
#: The TSS KVM needs for real-mode emulation on Intel hosts: three pages below 4 GiB, outside RAM,
#: where QEMU puts them (target/i386/kvm/kvm.c, 0xfffbd000).
TSS_ADDRESS = 0xFFFBD000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int


def ioctl(fd: int, request: int, arg=None) -> int:
    """One ioctl; -errno on failure (never raises: each caller says what failed)."""
    pointer = ctypes.addressof(arg) if isinstance(arg, (ctypes.Structure, ctypes._SimpleCData)) else arg
    result = _libc.ioctl(fd, request, pointer)   # `arg` stays referenced until the call returns
    return -ctypes.get_errno() if result < 0 else result


def device_path() -> str:
    return os.environ.get(DEVICE_ENV) or DEFAULT_DEVICE


def _refused(what: str, err: int) -> KvmUnavailable:
    return KvmUnavailable(f"this host's KVM refused {what}: {os.strerror(-err)}")


class System:
    """/dev/kvm: checked for the API version, then asked for a VM."""

    def __init__(self, path: str | None = None):
        self.path = path or device_path()
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KvmUnavailable(f"no KVM on this host: {self.path} does not exist "
                                 "(kvm-hw needs Linux with the kvm module loaded)") from None
        except PermissionError:
            raise KvmUnavailable(f"no permission to open {self.path} "
                                 "(kvm-hw needs read/write access: root or the kvm group)") from None
        except OSError as e:
            raise KvmUnavailable(f"cannot open {self.path}: {e.strerror}") from None
        version = ioctl(self.fd, GET_API_VERSION)
        if version != API_VERSION:
            self.close()
            raise KvmUnavailable(f"{self.path} is not a KVM device of API version {API_VERSION} (got {version})")

    def check(self, cap: int) -> int:
        return max(ioctl(self.fd, CHECK_EXTENSION, cap), 0)

    def supported_cpuid(self) -> Cpuid2:
        cpuid = Cpuid2(nent=MAX_CPUID_ENTRIES)
        err = ioctl(self.fd, GET_SUPPORTED_CPUID, cpuid)
        if err < 0:
            raise _refused("KVM_GET_SUPPORTED_CPUID", err)
        return cpuid

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class VirtualMachine:
    """One VM with its guest RAM (a shared anonymous mapping, slot 0 at guest-physical 0) and one vCPU."""

    def __init__(self, system: System, ram_size: int, irqchip: bool = False):
        self.system = system
        fd = ioctl(system.fd, CREATE_VM, 0)
        if fd < 0:
            raise _refused("to create a VM (KVM_CREATE_VM)", fd)
        self.fd = fd
        self.ram = mmap.mmap(-1, ram_size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self._ram_anchor = ctypes.c_char.from_buffer(self.ram)
        self._check(ioctl(fd, SET_TSS_ADDR, TSS_ADDRESS), "KVM_SET_TSS_ADDR")
        if irqchip:   # calibration only: the in-kernel PIC, I/O APIC and local APIC
            self._check(ioctl(fd, CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP")
        region = MemoryRegion(0, 0, 0, ram_size, ctypes.addressof(self._ram_anchor))
        self._check(ioctl(fd, SET_USER_MEMORY_REGION, region), f"{ram_size >> 20} MiB of guest RAM")
        vcpu = ioctl(fd, CREATE_VCPU, 0)
        self._check(vcpu, "to create a vCPU (KVM_CREATE_VCPU)")
        self.vcpu_fd = vcpu
        size = ioctl(system.fd, GET_VCPU_MMAP_SIZE, 0)
        self._check(size, "KVM_GET_VCPU_MMAP_SIZE")
        self._run_map = mmap.mmap(vcpu, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.run = Run.from_buffer(self._run_map)
        self.run_page = self._run_map
        self._check(ioctl(vcpu, SET_CPUID2, system.supported_cpuid()), "KVM_SET_CPUID2 (the host's CPUID)")
        self.sync = system.check(CAP_SYNC_REGS) & (SYNC_X86_REGS | SYNC_X86_SREGS) == SYNC_X86_REGS | SYNC_X86_SREGS
        if self.sync:
            self.run.kvm_valid_regs = SYNC_X86_REGS | SYNC_X86_SREGS
        self._regs, self._sregs = Regs(), Sregs()

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result < 0:
            raise _refused(what, result)

    # registers: in kvm_run when synced, else by ioctl ------------------------------------------------
    def regs(self) -> Regs:
        if self.sync:
            return self.run.s.regs
        self._check(ioctl(self.vcpu_fd, GET_REGS, self._regs), "KVM_GET_REGS")
        return self._regs

    def sregs(self) -> Sregs:
        if self.sync:
            return self.run.s.sregs
        self._check(ioctl(self.vcpu_fd, GET_SREGS, self._sregs), "KVM_GET_SREGS")
        return self._sregs

    def put_regs(self, regs: Regs) -> None:
        if self.sync:
            self.run.kvm_dirty_regs |= SYNC_X86_REGS
        else:
            self._check(ioctl(self.vcpu_fd, SET_REGS, regs), "KVM_SET_REGS")

    def put_sregs(self, sregs: Sregs) -> None:
        if self.sync:
            self.run.kvm_dirty_regs |= SYNC_X86_SREGS
        else:
            self._check(ioctl(self.vcpu_fd, SET_SREGS, sregs), "KVM_SET_SREGS (the guest's segments)")

    def fetch_registers(self) -> None:
        """Before the first run, with sync registers: read them once so that the copies in kvm_run hold
        the vCPU's reset state (KVM fills them only at exits)."""
        if self.sync:
            self._check(ioctl(self.vcpu_fd, GET_REGS, self.run.s.regs), "KVM_GET_REGS")
            self._check(ioctl(self.vcpu_fd, GET_SREGS, self.run.s.sregs), "KVM_GET_SREGS")

    # running ---------------------------------------------------------------------------------------
    def enter(self) -> int:
        """KVM_RUN: 0, or -errno (-EINTR when a signal kicked the vCPU out)."""
        return ioctl(self.vcpu_fd, RUN, 0)

    def tsc_khz(self) -> int:
        """The guest's TSC rate in kHz (KVM_GET_TSC_KHZ), 0 when KVM does not say."""
        return max(ioctl(self.vcpu_fd, GET_TSC_KHZ, 0), 0)

    def interrupt(self, vector: int) -> int:
        return ioctl(self.vcpu_fd, INTERRUPT, ctypes.c_uint32(vector))

    def close(self) -> None:
        for fd in (getattr(self, "vcpu_fd", -1), self.fd):
            if fd >= 0:
                os.close(fd)
        self.vcpu_fd = self.fd = -1
