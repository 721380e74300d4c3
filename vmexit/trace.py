"""Trace: the exit records of one run plus its metadata, saved as a .npz file.

The file holds `exits` (EXIT_DTYPE), `emulated` (EMULATED_DTYPE, since format 2), `symbol_names` / `symbol_addresses` (so reports name functions
without the guest), and `meta`, a JSON document (format version, vmexit version, guest name and
sha256, options, profile, CPU frequency, instruction count, virtual time, end status, console output).
Files are compressed and written atomically (temporary file in the same directory, then rename), so an
interrupted write never leaves a half trace behind.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exits import EMULATED_DTYPE, EXIT_DTYPE

FORMAT = "vmexit-trace"
FORMAT_VERSION = 2  # 2: the emulated array; version 1 files read with it empty


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

    def to_bytes(self) -> bytes:
        names = sorted(self.symbols, key=lambda n: (self.symbols[n], n))
        buf = io.BytesIO()
        meta = dict(self.meta, format=FORMAT, format_version=FORMAT_VERSION)
        np.savez_compressed(
            buf,
            exits=self.exits,
            emulated=self.emulated,
            symbol_names=np.array(names, dtype=np.str_) if names else np.zeros(0, dtype="<U1"),
            symbol_addresses=np.array([self.symbols[n] for n in names], dtype=np.uint32),
            meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
        )
        return _normalize_zip(buf.getvalue())

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), self.to_bytes())


def _normalize_zip(data: bytes) -> bytes:
    """Rewrite the archive with fixed timestamps so that equal traces are equal bytes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OSError(f"{directory}: no such directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
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
            exits = z["exits"]
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
