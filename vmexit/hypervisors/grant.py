"""Xen grant tables, version 1 (xen/include/public/grant_table.h), one object per host shared by
every domain's Xen model; the checks and GNTST_* codes follow xen/common/grant_table.c.

A domain's table lives in its own memory: it places table frame `idx` at a guest-physical frame with
memory_op(XENMAPSPACE_grant_table) (the HVM way: our domains have no machine frames), up to
MAX_FRAMES frames of 512 8-byte entries {flags u16, domid u16, frame u32}. A ref whose frame is not
placed is out of the table (GNTST_bad_gntref).

- map: the granter's entry must permit access (GTF_permit_access) to the mapping domain, not be
  read-only for a writable map, and name a frame in the granter's RAM (else GNTST_general_error /
  GNTST_bad_page). Our domains do not page, so the mapping's host_addr is a guest-physical address,
  page-aligned, in the mapper's grant window GRANT_WINDOW (else GNTST_bad_virt_addr) and not mapped
  already (GNTST_general_error); the granter's page is mapped there (engine.map_foreign: the same
  bytes, shared). A handle from the mapper's maptrack (GNTST_no_device_space when full).
- unmap: by handle (GNTST_bad_handle if none) with the same host_addr (GNTST_general_error);
  one TLB flush each (counted).
- copy: offsets + length within a page (GNTST_bad_copy_arg), a side given by frame only for
  DOMID_SELF (GNTST_permission_denied), domains (GNTST_bad_domain), entries as for map (the source
  pinned read-only, the destination writable), bytes copied between the two RAMs.
- transfer (page flip): the receiver's entry must be exactly GTF_accept_transfer for the sender
  (GNTST_general_error); our domains have separate RAM, so the page's bytes are copied into the frame
  the receiver offered, and the entry gets GTF_transfer_committed | GTF_transfer_completed. The
  sender keeps its page (a real Xen takes it away).
- Pins: while an entry is mapped or copied from, GTF_reading is set in it, and GTF_writing while it is
  mapped or copied to writable; both are cleared when the last such use ends (Xen's pin counts).

MAX_FRAMES is Xen 3.x's DEFAULT_MAX_NR_GRANT_FRAMES (32) and the maptrack limit its
MAX_MAPTRACK_TO_GRANTS_RATIO (8) times the entries of that many frames. Counted per domain (the
caller's): maps, unmaps, tlb_flushes, copies, bytes_copied, transfers.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .evtchn import DOMID_SELF

PAGE = 0x1000
ENTRIES_PER_FRAME = PAGE // 8
MAX_FRAMES = 32
MAX_MAPTRACK = 8 * MAX_FRAMES * ENTRIES_PER_FRAME
GRANT_WINDOW = (0x40000000, 0x40000000 + (64 << 20))

GNTST_okay, GNTST_general_error, GNTST_bad_domain, GNTST_bad_gntref = 0, -1, -2, -3
GNTST_bad_handle, GNTST_bad_virt_addr, GNTST_bad_dev_addr, GNTST_no_device_space = -4, -5, -6, -7
GNTST_permission_denied, GNTST_bad_page, GNTST_bad_copy_arg = -8, -9, -10

GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly = 1, 2, 4
GTF_permit_access, GTF_accept_transfer, GTF_type_mask = 1, 2, 3
GTF_readonly, GTF_reading, GTF_writing = 4, 8, 16
GTF_transfer_committed, GTF_transfer_completed = 4, 8
GNTCOPY_source_gref, GNTCOPY_dest_gref = 1, 2


@dataclass
class Mapping:
    granter: int
    ref: int
    host_addr: int          # 0: no host mapping (device map only)
    readonly: bool


@dataclass
class DomainGrants:
    domid: int
    machine: object
    privileged: bool
    frames: dict[int, int] = field(default_factory=dict)        # table frame idx -> guest frame number
    maptrack: dict[int, Mapping] = field(default_factory=dict)   # handle -> mapping (this domain maps)
    mapped: dict[int, int] = field(default_factory=dict)        # host_addr -> handle
    pins: dict[int, list[int]] = field(default_factory=dict)     # ref -> [readers, writers] (others use)
    stats: dict[str, int] = field(default_factory=lambda: {
        "maps": 0, "unmaps": 0, "tlb_flushes": 0, "copies": 0, "bytes_copied": 0, "transfers": 0})

    def entry_address(self, ref: int) -> int | None:
        gpfn = self.frames.get(ref // ENTRIES_PER_FRAME)
        return None if gpfn is None or ref < 0 else (gpfn << 12) + (ref % ENTRIES_PER_FRAME) * 8

    def entry(self, ref: int) -> tuple[int, int, int] | None:
        """(flags, domid, frame) of a grant entry, None when the ref is outside the table."""
        address = self.entry_address(ref)
        raw = self.machine.read_physical(address, 8) if address is not None else None
        return struct.unpack("<HHI", raw) if raw is not None else None

    def set_flags(self, ref: int, set_: int = 0, clear: int = 0) -> None:
        address = self.entry_address(ref)
        flags = struct.unpack("<H", self.machine.read_physical(address, 2))[0]
        self.machine.write_physical(address, struct.pack("<H", (flags | set_) & ~clear & 0xFFFF))

    def page(self, frame: int) -> bool:
        return self.machine.in_ram(frame << 12, PAGE)


class GrantTables:
    """Every domain's grant table on one host."""

    def __init__(self, max_maptrack: int = MAX_MAPTRACK):
        self.domains: dict[int, DomainGrants] = {}
        self.max_maptrack = max_maptrack

    def attach(self, domid: int, machine, privileged: bool = False) -> DomainGrants:
        if domid in self.domains:
            raise ValueError(f"domain {domid} already has a grant table")
        self.domains[domid] = DomainGrants(domid, machine, privileged)
        return self.domains[domid]

    def _domain(self, caller: int, domid: int) -> DomainGrants | None:
        return self.domains.get(caller if domid == DOMID_SELF else domid)

    # the table's frames -------------------------------------------------------------------------------
    def place_frame(self, domid: int, idx: int, gpfn: int) -> bool:
        """memory_op(XENMAPSPACE_grant_table): table frame idx at guest frame gpfn (moved with its
        entries if it was placed before). False for a bad index or frame."""
        d = self.domains[domid]
        if not 0 <= idx < MAX_FRAMES or not d.page(gpfn):
            return False
        old = d.frames.get(idx)
        data = d.machine.read_physical(old << 12, PAGE) if old is not None else bytes(PAGE)
        d.frames[idx] = gpfn
        d.machine.write_physical(gpfn << 12, data)
        return True

    def setup_table(self, caller: int, dom: int, nr_frames: int) -> tuple[int, list[int]]:
        """(status, the gpfns of frames 0..nr_frames-1)."""
        d = self._domain(caller, dom)
        if d is None:
            return GNTST_bad_domain, []
        if d.domid != caller and not self.domains[caller].privileged:
            return GNTST_permission_denied, []
        if nr_frames > MAX_FRAMES or any(i not in d.frames for i in range(nr_frames)):
            return GNTST_general_error, []
        return GNTST_okay, [d.frames[i] for i in range(nr_frames)]

    # pins on a granter's entry ------------------------------------------------------------------------
    def _acquire(self, granter: DomainGrants, ref: int, user: int, readonly: bool) -> tuple[int, int]:
        """Check an entry for `user` and pin it: (status, frame)."""
        entry = granter.entry(ref)
        if entry is None:
            return GNTST_bad_gntref, 0
        flags, domid, frame = entry
        if flags & GTF_type_mask != GTF_permit_access or domid != user:
            return GNTST_general_error, 0
        if not readonly and flags & GTF_readonly:
            return GNTST_general_error, 0
        if not granter.page(frame):
            return GNTST_bad_page, 0
        pin = granter.pins.setdefault(ref, [0, 0])
        pin[0 if readonly else 1] += 1
        granter.set_flags(ref, GTF_reading | (0 if readonly else GTF_writing))
        return GNTST_okay, frame

    @staticmethod
    def _release(granter: DomainGrants, ref: int, readonly: bool) -> None:
        pin = granter.pins[ref]
        pin[0 if readonly else 1] -= 1
        clear = (GTF_writing if not pin[1] else 0) | (GTF_reading if not pin[0] and not pin[1] else 0)
        if not pin[0] and not pin[1]:
            del granter.pins[ref]
        if clear:
            granter.set_flags(ref, clear=clear)

    # map / unmap ---------------------------------------------------------------------------------------
    def map(self, caller: int, host_addr: int, flags: int, ref: int, dom: int) -> tuple[int, int, int]:
        """GNTTABOP_map_grant_ref: (status, handle, dev_bus_addr)."""
        if not flags & (GNTMAP_device_map | GNTMAP_host_map):
            return GNTST_bad_gntref, 0, 0
        granter = self.domains.get(dom)
        if granter is None:
            return GNTST_bad_domain, 0, 0
        mapper = self.domains[caller]
        if len(mapper.maptrack) >= self.max_maptrack:
            return GNTST_no_device_space, 0, 0
        host = flags & GNTMAP_host_map
        if host:
            status = self._check_host_addr(mapper, host_addr)
            if status:
                return status, 0, 0
        readonly = bool(flags & GNTMAP_readonly)
        status, frame = self._acquire(granter, ref, caller, readonly)
        if status:
            return status, 0, 0
        if host:
            try:
                mapper.machine.engine.map_foreign(host_addr, granter.machine.ram, frame << 12, readonly=readonly)
            except ValueError:   # the address holds something else (a device): Xen's failed host mapping
                self._release(granter, ref, readonly)
                return GNTST_general_error, 0, 0
        handle = next(h for h in range(len(mapper.maptrack) + 1) if h not in mapper.maptrack)
        mapper.maptrack[handle] = Mapping(dom, ref, host_addr if host else 0, readonly)
        if host:
            mapper.mapped[host_addr] = handle
        mapper.stats["maps"] += 1
        return GNTST_okay, handle, (frame << 12) if flags & GNTMAP_device_map else 0

    @staticmethod
    def _check_host_addr(mapper: DomainGrants, host_addr: int) -> int:
        lo, hi = GRANT_WINDOW
        if host_addr % PAGE or not lo <= host_addr < hi or mapper.machine.in_ram(host_addr):
            return GNTST_bad_virt_addr
        return GNTST_general_error if host_addr in mapper.mapped else GNTST_okay

    def unmap(self, caller: int, host_addr: int, handle: int) -> int:
        """GNTTABOP_unmap_grant_ref: the status."""
        mapper = self.domains[caller]
        mapping = mapper.maptrack.get(handle)
        if mapping is None:
            return GNTST_bad_handle
        if mapping.host_addr and host_addr != mapping.host_addr:
            return GNTST_general_error
        if mapping.host_addr:
            mapper.machine.engine.unmap_foreign(mapping.host_addr)
            del mapper.mapped[mapping.host_addr]
        del mapper.maptrack[handle]
        self._release(self.domains[mapping.granter], mapping.ref, mapping.readonly)
        mapper.stats["unmaps"] += 1
        mapper.stats["tlb_flushes"] += 1
        return GNTST_okay

    # copy / transfer ------------------------------------------------------------------------------------
    def copy(self, caller: int, source: tuple[int, int, int], dest: tuple[int, int, int], length: int,
             flags: int) -> int:
        """GNTTABOP_copy; source/dest: (ref or gmfn, domid, offset). The status."""
        if source[2] + length > PAGE or dest[2] + length > PAGE:
            return GNTST_bad_copy_arg
        sides = ((source, flags & GNTCOPY_source_gref, True), (dest, flags & GNTCOPY_dest_gref, False))
        if any(side[1] != DOMID_SELF and not gref for side, gref, _ in sides):
            return GNTST_permission_denied
        held, addresses, status = [], [], GNTST_okay
        for (ref, domid, offset), gref, readonly in sides:
            d = self._domain(caller, domid)
            if d is None:
                status = GNTST_bad_domain
                break
            if gref:
                status, frame = self._acquire(d, ref, caller, readonly)
                if status:
                    break
                held.append((d, ref, readonly))
            elif not d.page(ref):
                status = GNTST_bad_page
                break
            else:
                frame = ref
            addresses.append((d, (frame << 12) + offset))
        if status == GNTST_okay:
            (src, src_addr), (dst, dst_addr) = addresses
            dst.machine.write_physical(dst_addr, src.machine.read_physical(src_addr, length))
            stats = self.domains[caller].stats
            stats["copies"] += 1
            stats["bytes_copied"] += length
        for d, ref, readonly in held:
            self._release(d, ref, readonly)
        return status

    def transfer(self, caller: int, gpfn: int, domid: int, ref: int) -> int:
        """GNTTABOP_transfer of the caller's page gpfn to domid's accept-transfer entry ref."""
        sender = self.domains[caller]
        if not sender.page(gpfn):
            return GNTST_bad_page
        receiver = self.domains.get(domid)
        if receiver is None:
            return GNTST_bad_domain
        entry = receiver.entry(ref)
        if entry is None or entry[0] != GTF_accept_transfer or entry[1] != caller \
                or not receiver.page(entry[2]):
            return GNTST_general_error
        receiver.machine.write_physical(entry[2] << 12, sender.machine.read_physical(gpfn << 12, PAGE))
        receiver.set_flags(ref, GTF_transfer_committed | GTF_transfer_completed)
        sender.stats["transfers"] += 1
        return GNTST_okay
