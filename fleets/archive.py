"""Application zip checks and safe extraction (used by the artifact upload and the local fleet driver).

A zip is accepted only if every entry is a plain file or directory with a relative path that stays inside
the extraction directory (no absolute paths, no ``..``, no symlinks or device files, no duplicate names),
it is not a zip bomb (entry count, total uncompressed bytes, per-entry compression ratio), and it has an
entry point, ``run.sh`` or ``main.py``, at its root (``run.sh`` wins when both exist).
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any

ENTRY_POINTS = ("run.sh", "main.py")

# Entries smaller than this are not judged by compression ratio: a few KiB of zeros compresses 1000:1
# but cannot hurt anyone; the total-size limit still bounds them.
RATIO_MIN_ENTRY_BYTES = 1024 * 1024

_CHUNK = 1024 * 1024


class ZipRejected(ValueError):
    """The archive is not an acceptable application zip; the message says why, for a person."""


def _limits(settings: Any) -> tuple[int, float, int]:
    return (
        int(getattr(settings, "max_unzipped_bytes", 2 * 1024**3)),
        float(getattr(settings, "max_zip_ratio", 200.0)),
        int(getattr(settings, "max_zip_entries", 10_000)),
    )


def _check_name(name: str) -> PurePosixPath:
    """The entry's path as a safe relative POSIX path, or ZipRejected."""
    if not name or "\x00" in name:
        raise ZipRejected(f"zip entry with an empty or NUL-containing name: {name!r}")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":"):
        raise ZipRejected(f"zip entry has an absolute path: {name!r}")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ZipRejected(f"zip entry escapes the extraction directory ('..'): {name!r}")
    if not parts:
        raise ZipRejected(f"zip entry with an empty path: {name!r}")
    return PurePosixPath(*parts)


def _entry_kind(info: zipfile.ZipInfo) -> str:
    """'dir', 'file', or the name of a forbidden kind (symlink, device...)."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # unix attributes present
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFLNK:
            return "symlink"
        if fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "special file"
    return "dir" if info.is_dir() else "file"


def inspect_zip(zf: zipfile.ZipFile, settings: Any) -> str:
    """Check an open zip against every rule; return its entry point (``run.sh`` or ``main.py``)."""
    max_total, max_ratio, max_entries = _limits(settings)
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise ZipRejected(f"zip has {len(infos)} entries; the limit is {max_entries}")
    total = 0
    seen: dict[str, str] = {}
    root_files: set[str] = set()
    nested_entry: str | None = None
    for info in infos:
        path = _check_name(info.filename)
        kind = _entry_kind(info)
        if kind not in ("dir", "file"):
            raise ZipRejected(f"zip entry is a {kind}, only regular files and directories are allowed: "
                              f"{info.filename!r}")
        key = str(path)
        if key in seen and (kind, seen[key]) != ("dir", "dir"):
            raise ZipRejected(f"zip has the entry {info.filename!r} more than once")
        seen[key] = kind
        if kind == "dir":
            continue
        total += info.file_size
        if total > max_total:
            raise ZipRejected(f"zip expands to more than {max_total} bytes (zip bomb guard)")
        if info.file_size >= RATIO_MIN_ENTRY_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise ZipRejected(f"zip entry {info.filename!r} has compression ratio {ratio:.0f}:1; "
                                  f"the limit is {max_ratio:.0f}:1 (zip bomb guard)")
        if len(path.parts) == 1:
            root_files.add(key)
        elif path.name in ENTRY_POINTS and nested_entry is None:
            nested_entry = key
    for entry in ENTRY_POINTS:
        if entry in root_files:
            return entry
    hint = f"; found {nested_entry!r}: zip the files, not their folder" if nested_entry else ""
    raise ZipRejected(f"zip has no entry point: run.sh or main.py must be at the zip's root{hint}")


def _check_contents(zf: zipfile.ZipFile) -> None:
    """Decompress every entry once, streaming: refuse entries that expand beyond the size their header
    declares (headers can lie: the declared sizes are what the bomb guards checked) and corrupt data (CRC).
    Bounded: never more than the declared total, which inspect_zip already capped."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        seen = 0
        try:
            with zf.open(info) as f:
                while chunk := f.read(1 << 20):
                    seen += len(chunk)
                    if seen > info.file_size:
                        raise ZipRejected(f"zip entry {info.filename!r} expands beyond its declared size "
                                          f"of {info.file_size} bytes (zip bomb guard)")
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise ZipRejected(f"zip entry {info.filename!r} is corrupt or unsupported ({exc})") from None


def _open(path_or_fileobj: str | os.PathLike[str] | IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path_or_fileobj)  # type: ignore[arg-type]
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ZipRejected(f"not a valid zip file ({exc})") from None
    except zipfile.LargeZipFile:
        raise ZipRejected("zip64 archive too large") from None


def validate_zip(path_or_fileobj: str | os.PathLike[str] | IO[bytes], settings: Any) -> str:
    """Validate an application zip (a path or a seekable binary file object).

    Returns the entry point, ``"run.sh"`` or ``"main.py"``. Raises :class:`ZipRejected` with a message
    fit for the uploader. Limits come from ``settings``: ``max_unzipped_bytes`` (bytes),
    ``max_zip_ratio`` (uncompressed/compressed, entries >= 1 MiB), ``max_zip_entries``.
    A file object's position is restored afterwards.
    """
    pos = path_or_fileobj.tell() if hasattr(path_or_fileobj, "tell") else None
    try:
        with _open(path_or_fileobj) as zf:
            entry = inspect_zip(zf, settings)
            _check_contents(zf)
            return entry
    finally:
        if pos is not None:
            path_or_fileobj.seek(pos)  # type: ignore[union-attr]


def extract_zip(path_or_fileobj: str | os.PathLike[str] | IO[bytes], dest: str | os.PathLike[str],
                settings: Any) -> str:
    """Validate, then extract into ``dest`` (created; should be empty). Returns the entry point.

    Extraction counts the bytes actually written, so a zip whose headers lie about sizes is stopped at
    ``max_unzipped_bytes`` too. Files get mode 0644 (0755 if executable in the zip); nothing else of the
    zip's permissions (setuid, ownership) is kept.
    """
    max_total, _, _ = _limits(settings)
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    root = dest_path.resolve()
    with _open(path_or_fileobj) as zf:
        entry = inspect_zip(zf, settings)
        written = 0
        for info in zf.infolist():
            rel = _check_name(info.filename)
            target = (root / rel).resolve()
            if target != root and root not in target.parents:  # belt and braces after _check_name
                raise ZipRejected(f"zip entry escapes the extraction directory: {info.filename!r}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            budget = info.file_size
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        budget -= len(chunk)
                        if written > max_total or budget < 0:
                            raise ZipRejected("zip expands beyond its declared sizes or the size limit")
                        out.write(chunk)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise ZipRejected(f"zip entry {info.filename!r} conflicts with another entry") from None
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise ZipRejected(f"corrupt zip entry {info.filename!r} ({exc})") from None
            mode = (info.external_attr >> 16) & 0o777 if info.create_system == 3 else 0
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    return entry
