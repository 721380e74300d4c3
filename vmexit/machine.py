"""X86Machine: one 32-bit x86 CPU and its RAM on a CPU engine, entered as a multiboot loader leaves it.

The machine runs on a CPU engine (engine/: Unicorn today) and adds what an engine does not do:
delivery of interrupts and exceptions through the guest IDT (Intel SDM vol. 3A, 6.12: push EFLAGS, CS,
EIP and an error code where the vector has one, clear IF for interrupt gates, clear TF/NT/RF), and
virtual-to-physical translation for the 32-bit two-level page tables (4 KiB pages and 4 MiB PSE pages)
so that the IDT, the stack and frame pointers can be followed when the guest turns paging on.

The boot state follows the Multiboot Specification 0.6.96, section 3.2: protected mode, flat 4 GiB code
and data segments, paging off, IF clear, EAX = 0x2BADB002, EBX = physical address of the multiboot
information structure.
"""
from __future__ import annotations

import struct

from . import bios
from .engine import engine_class
from .loader import MULTIBOOT_BOOTLOADER_MAGIC, Image, LoadError

GDT_ADDRESS = 0x800
MBI_ADDRESS = 0x900
MMAP_ADDRESS = 0x980            # the multiboot memory map, right after the info structure (116 bytes)
CPU_SIGNATURE = 0x1067A         # the MP table's processor entry: family 6 model 23 (the profiles' Core 2)
BOOT_STACK = 0x7000
LOW_MEMORY_KIB = 639
IF_FLAG = 1 << 9
#: Vectors whose exceptions push an error code (SDM vol. 3A, table 6-1).
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21})


class GuestCrash(Exception):
    """The guest did something a real CPU would reset on (triple fault, fetch from nowhere)."""

    def __init__(self, cause: str, address: int | None = None):
        super().__init__(cause)
        self.cause = cause
        self.address = address


class X86Machine:
    def __init__(self, ram_size: int = 64 << 20, engine: str = "unicorn", **engine_options):
        if ram_size < (2 << 20) or ram_size % 4096:
            raise ValueError("RAM size must be a multiple of 4 KiB and at least 2 MiB")
        self.ram_size = ram_size
        # engine_options: the engine's own choices (Unicorn's block_counting, watch_every_block)
        self.engine = engine_class(engine)(ram_size, **engine_options)
        self.ram = self.engine.ram
        self.reset_exception_state = self.engine.reset_exception_state

    # memory ------------------------------------------------------------------------------------
    def load(self, image: Image) -> None:
        for seg in image.segments:
            end = seg.address + seg.memsize
            if seg.address < 0x1000 or end > self.ram_size:
                raise LoadError(f"{image.name}: segment 0x{seg.address:x}-0x{end:x} lies outside guest RAM "
                                f"(0x1000-0x{self.ram_size:x}; see --memory)")
            self.engine.write(seg.address, seg.data)
            if seg.memsize > len(seg.data):
                self.engine.write(seg.address + len(seg.data), bytes(seg.memsize - len(seg.data)))

    def read_physical(self, paddr: int, size: int) -> bytes | None:
        """Guest-physical bytes for a device (DMA); None when any part is outside RAM."""
        return self.ram[paddr:paddr + size] if self.in_ram(paddr, size) else None

    def write_physical(self, paddr: int, data: bytes) -> bool:
        """A device's write to guest RAM (through Unicorn, so translated code stays coherent)."""
        if not self.in_ram(paddr, len(data)):
            return False
        self.engine.write(paddr, data)
        return True

    def in_ram(self, address: int, size: int = 1) -> bool:
        return 0 <= address and address + size <= self.ram_size

    def translate(self, vaddr: int) -> int | None:
        """Physical address for a linear address under the guest's current page tables."""
        cr0 = self.engine.reg("cr0")
        vaddr &= 0xFFFFFFFF
        if not cr0 & 0x80000000:
            return vaddr
        cr3 = self.engine.reg("cr3") & 0xFFFFF000
        pde_addr = cr3 + ((vaddr >> 22) << 2)
        if not self.in_ram(pde_addr, 4):
            return None
        pde = struct.unpack_from("<I", self.ram, pde_addr)[0]
        if not pde & 1:
            return None
        if pde & 0x80 and self.engine.reg("cr4") & 0x10:
            return (pde & 0xFFC00000) | (vaddr & 0x3FFFFF)
        pte_addr = (pde & 0xFFFFF000) + (((vaddr >> 12) & 0x3FF) << 2)
        if not self.in_ram(pte_addr, 4):
            return None
        pte = struct.unpack_from("<I", self.ram, pte_addr)[0]
        if not pte & 1:
            return None
        return (pte & 0xFFFFF000) | (vaddr & 0xFFF)

    def read_virtual(self, vaddr: int, size: int) -> bytes | None:
        out = bytearray()
        while size > 0:
            paddr = self.translate(vaddr)
            chunk = min(size, 0x1000 - (vaddr & 0xFFF))
            if paddr is None or not self.in_ram(paddr, chunk):
                return None
            out += self.ram[paddr:paddr + chunk]
            vaddr += chunk
            size -= chunk
        return bytes(out)

    def write_virtual(self, vaddr: int, data: bytes) -> bool:
        while data:
            paddr = self.translate(vaddr)
            chunk = min(len(data), 0x1000 - (vaddr & 0xFFF))
            if paddr is None or not self.in_ram(paddr, chunk):
                return False
            self.engine.write(paddr, data[:chunk])
            vaddr += chunk
            data = data[chunk:]
        return True

    # boot ----------------------------------------------------------------------------------------
    def boot(self, image: Image) -> None:
        """Enter the image as its loader would: a Linux bzImage by the 32-bit boot protocol, anything
        else as a multiboot kernel."""
        if image.linux is not None:
            self.boot_linux(image.linux, image.entry)
        else:
            self.boot_multiboot(image.entry)

    def _flat_segments(self, code: int, data: int) -> None:
        """A GDT with flat 4 GiB code and data at these selectors, loaded; the BIOS tables."""
        e = self.engine
        gdt = bytearray(8 * (max(code, data) // 8 + 1))
        struct.pack_into("<Q", gdt, code, 0x00CF9A000000FFFF)
        struct.pack_into("<Q", gdt, data, 0x00CF92000000FFFF)
        e.write(GDT_ADDRESS, bytes(gdt))
        e.set_reg("gdtr", (0, GDT_ADDRESS, len(gdt) - 1, 0))
        e.set_reg("cs", code)
        for reg in ("ds", "es", "ss", "fs", "gs"):
            e.set_reg(reg, data)
        for address, blob in bios.bios_data_area() + bios.mp_tables(CPU_SIGNATURE):
            e.write(address, blob)

    def boot_linux(self, boot, entry: int) -> None:
        """The 32-bit boot protocol (Documentation/arch/x86/boot.rst, "32-bit boot protocol"): the
        command line, the initrd and boot_params in RAM, __BOOT_CS 0x10 / __BOOT_DS 0x18 flat, ESI =
        boot_params, EBP = EDI = EBX = 0, interrupts off, paging off."""
        from . import bzimage
        if boot.kernel_end > self.ram_size:
            raise LoadError(f"the kernel needs memory up to 0x{boot.kernel_end:x} to decompress: give --memory "
                            f"{-(-boot.kernel_end >> 20)}M or more")
        page = bzimage.zero_page(boot, bios.memory_regions(self.ram_size), self.ram_size)
        initrd = bzimage.initrd_address(boot, self.ram_size)
        e = self.engine
        self._flat_segments(0x10, 0x18)
        e.write(bzimage.ZERO_PAGE, page)
        e.write(bzimage.CMDLINE, boot.cmdline + b"\0")
        if boot.initrd:
            e.write(initrd, boot.initrd)
        for reg in ("eax", "ebx", "ecx", "edx", "edi", "ebp"):
            e.set_reg(reg, 0)
        e.set_reg("esi", bzimage.ZERO_PAGE)
        e.set_reg("esp", BOOT_STACK)
        e.set_reg("eflags", 0x2)
        e.set_reg("eip", entry)

    def boot_multiboot(self, entry: int) -> None:
        e = self.engine
        # null, flat code (0x08), flat data (0x10): what GRUB leaves
        self._flat_segments(0x08, 0x10)
        mem_upper = (self.ram_size - (1 << 20)) // 1024
        mmap = bios.memory_map(self.ram_size)
        e.write(MMAP_ADDRESS, mmap)
        # flags bit 0: mem_lower/mem_upper valid; bit 6: mmap_length/mmap_addr valid
        info = bytearray(struct.pack("<III", 0x41, LOW_MEMORY_KIB, mem_upper) + bytes(104))
        struct.pack_into("<II", info, 44, len(mmap), MMAP_ADDRESS)
        e.write(MBI_ADDRESS, bytes(info))
        e.set_reg("eax", MULTIBOOT_BOOTLOADER_MAGIC)
        e.set_reg("ebx", MBI_ADDRESS)
        e.set_reg("esp", BOOT_STACK)
        e.set_reg("eflags", 0x2)
        e.set_reg("eip", entry)

    # execution -----------------------------------------------------------------------------------
    def eip(self) -> int:
        return self.engine.reg("eip")

    def interrupts_enabled(self) -> bool:
        return bool(self.engine.reg("eflags") & IF_FLAG)

    def deliver_to(self, handler: int, selector: int, return_eip: int, error_code: int | None = None,
                   mask_interrupts: bool = True) -> None:
        """Enter a handler the hypervisor knows (a Xen trap table entry) with an interrupt frame."""
        e = self.engine
        eflags = e.reg("eflags")
        cs = e.reg("cs")
        esp = e.reg("esp")
        frame = struct.pack("<III", return_eip & 0xFFFFFFFF, cs, eflags)
        if error_code is not None:
            frame = struct.pack("<I", error_code & 0xFFFFFFFF) + frame
        esp = (esp - len(frame)) & 0xFFFFFFFF
        if not self.write_virtual(esp, frame):
            raise GuestCrash(f"stack at 0x{esp:x} is not writable while entering a handler", return_eip)
        eflags &= ~((1 << 8) | (1 << 14) | (1 << 16))
        if mask_interrupts:
            eflags &= ~IF_FLAG
        e.set_reg("esp", esp)
        e.set_reg("eflags", eflags)
        if selector and selector != cs:
            e.set_reg("cs", selector)
        e.set_reg("eip", handler)
        self.reset_exception_state()

    def deliver(self, vector: int, return_eip: int, error_code: int | None = None, software: int = 0) -> None:
        """Enter the guest's handler for `vector` through its IDT, as the CPU does (Intel SDM vol. 3A,
        6.12): a gate of lower DPL than the current privilege refuses a software `int n` with
        #GP(vector * 8 + 2) (`software` is the length of the int instruction, 0 for anything else);
        from ring 3 the handler runs on the TSS's SS0:ESP0 stack, with the old
        SS:ESP pushed below EFLAGS, CS, EIP and the error code; an interrupt gate clears IF."""
        e = self.engine
        _, idt_base, idt_limit, _ = e.reg("idtr")
        if vector * 8 + 7 > idt_limit:
            raise GuestCrash(f"vector {vector} is beyond the IDT limit ({idt_limit})", return_eip)
        gate = self.read_virtual(idt_base + vector * 8, 8)
        if gate is None:
            raise GuestCrash(f"IDT entry for vector {vector} is not in guest memory", return_eip)
        off_lo, selector, _, type_attr, off_hi = struct.unpack("<HHBBH", gate)
        gate_type = type_attr & 0x1F
        if not type_attr & 0x80 or gate_type not in (0x0E, 0x0F):
            raise GuestCrash(f"no present interrupt/trap gate for vector {vector}", return_eip)
        cs = e.reg("cs")
        cpl = cs & 3
        if software and (type_attr >> 5) & 3 < cpl:
            self.deliver(13, return_eip - software, vector * 8 + 2)
            return
        eflags = e.reg("eflags")
        esp = e.reg("esp")
        frame = struct.pack("<III", return_eip & 0xFFFFFFFF, cs, eflags)
        to_ring0 = cpl > (selector & 3)
        if to_ring0:
            frame += struct.pack("<II", esp, e.reg("ss"))
            tss = e.reg("tr")[1]
            raw = self.read_virtual(tss + 4, 8)
            if raw is None:
                raise GuestCrash(f"no TSS to find the ring-0 stack for vector {vector}", return_eip)
            esp, ss0 = struct.unpack("<II", raw)
            ss0 &= 0xFFFF
        if error_code is not None:
            frame = struct.pack("<I", error_code & 0xFFFFFFFF) + frame
        esp = (esp - len(frame)) & 0xFFFFFFFF
        if not self.write_virtual(esp, frame):
            raise GuestCrash(f"stack at 0x{esp:x} is not writable while delivering vector {vector}", return_eip)
        eflags &= ~((1 << 8) | (1 << 14) | (1 << 16) | (1 << 17))  # TF, NT, RF, VM
        if gate_type == 0x0E:
            eflags &= ~IF_FLAG
        if to_ring0:
            self.engine.enter_ring0(ss0, selector)
        elif selector != cs:
            e.set_reg("cs", selector)
        e.set_reg("esp", esp)
        e.set_reg("eflags", eflags)
        e.set_reg("eip", off_lo | (off_hi << 16))
        self.reset_exception_state()
