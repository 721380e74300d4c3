"""Trace: the exit records of one run plus its metadata, saved as a .npz file.

The file holds `exits` (EXIT_DTYPE), `emulated` (EMULATED_DTYPE, since format 2), `symbol_names` / `symbol_addresses` (so reports name functions
without the guest), and `meta`, a JSON document (format version, vmexit version, guest name and
sha256, options, profile, CPU frequency, instruction count, virtual time, end status, console output).
Files are compressed and written atomically (temporary file in the same directory, then rename), so an
interrupted write never leaves a half trace behind. Each array is streamed into its member of the zip
archive (zip64, fixed timestamps, so that equal traces are equal bytes) SAVE_ROWS records at a time:
saving holds no second copy of the records, compressed or not.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .exits import EMULATED_DTYPE, EXIT_DTYPE

FORMAT = "vmexit-trace"
FORMAT_VERSION = 2  # 2: the emulated array; version 1 files read with it empty
SAVE_ROWS = 1 << 16  # records compressed at a time when saving (3.5 MiB of exits)


class TraceError(ValueError):
    """A file that is not a usable vmexit trace."""


@dataclass
class Trace:
    exits: np.ndarray
    meta: dict
    symbols: dict[str, int] = field(default_factory=dict)
    emulated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=EMULATED_DTYPE))

    @property
    def freq_hz(self) -> int:
        return int(self.meta["freq_hz"])

    def members(self) -> list[tuple[str, np.ndarray]]:
        """The arrays of the file, in its order."""
        names = sorted(self.symbols, key=lambda n: (self.symbols[n], n))
        meta = dict(self.meta, format=FORMAT, format_version=FORMAT_VERSION)
        return [
            ("exits", self.exits),
            ("emulated", self.emulated),
            ("symbol_names", np.array(names, dtype=np.str_) if names else np.zeros(0, dtype="<U1")),
            ("symbol_addresses", np.array([self.symbols[n] for n in names], dtype=np.uint32)),
            ("meta", np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)),
        ]

    def write(self, f: BinaryIO, rows: int = SAVE_ROWS) -> None:
        """The .npz file into a binary file object, `rows` records at a time."""
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in self.members():
                _write_member(archive, name, array, rows)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), self.write)


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray, rows: int) -> None:
    """One array as the member NAME.npy, as np.save writes it, compressed as it is written."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with archive.open(info, "w", force_zip64=True) as out:  # zip64: members may pass 4 GiB
        np.lib.format.write_array_header_1_0(out, np.lib.format.header_data_from_array_1_0(array))
        for start in range(0, len(array), rows):
            out.write(array[start:start + rows].tobytes())


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function writing into the open file) to a temporary file in the same
    directory, then rename it to `path`: readers see the old file or the whole new one."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OSError(f"{directory}: no such directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: The exit record before the domain and subop columns (issue 15): such traces load with both 0.
_EXIT_DTYPE_56 = np.dtype([(n, EXIT_DTYPE.fields[n][0]) for n in EXIT_DTYPE.names if n not in ("domain", "subop")])


def _upgrade(exits: np.ndarray) -> np.ndarray:
    if exits.dtype != _EXIT_DTYPE_56:
        return exits
    out = np.zeros(len(exits), dtype=EXIT_DTYPE)
    for name in _EXIT_DTYPE_56.names:
        out[name] = exits[name]
    return out


def load(path: str | Path) -> Trace:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if "meta" not in names or "exits" not in names:
                raise TraceError(f"{path}: not a vmexit trace (no exits/meta arrays)")
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise TraceError(f"{path}: not a vmexit trace")
            version = meta.get("format_version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise TraceError(f"{path}: trace format version {version} is newer than this vmexit "
                                 f"reads ({FORMAT_VERSION}); upgrade vmexit")
            exits = _upgrade(z["exits"])
            if exits.dtype != EXIT_DTYPE:
                raise TraceError(f"{path}: exit records have an unexpected layout")
            emulated = z["emulated"] if "emulated" in names else np.zeros(0, dtype=EMULATED_DTYPE)
            if emulated.dtype != EMULATED_DTYPE:
                raise TraceError(f"{path}: emulated-access records have an unexpected layout")
            symbols = {str(n): int(a) for n, a in zip(z["symbol_names"], z["symbol_addresses"])}
    except TraceError:
        raise
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a trace") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError,
            UnicodeDecodeError) as e:
        raise TraceError(f"{path}: not a readable vmexit trace ({type(e).__name__}: {e})") from None
    return Trace(exits=exits, meta=meta, symbols=symbols, emulated=emulated)
