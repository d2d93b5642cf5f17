"""Application zip checks and safe extraction (used by the artifact upload and the local fleet driver).

A zip is accepted only if every entry is a plain file or directory with a relative path that stays inside
the extraction directory (no absolute paths, no ``..``, no symlinks or device files, no duplicate names),
it is not a zip bomb (entry count, total uncompressed bytes, per-entry and whole-archive compression ratio),
its entry names fit any file system (<= 255 UTF-8 bytes per path component, ``max_zip_name_bytes`` in all,
at most ``max_zip_depth`` levels deep), and it has an entry point, ``run.sh`` or ``main.py``, at its root
(``run.sh`` wins when both exist).

Every message names entries by their path inside the archive, never by a host path: they are shown to
the tenant (upload refusals, launch failures of the local driver).
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from core.settings import Settings

ENTRY_POINTS = ("run.sh", "main.py")

# Entries smaller than this are not judged by compression ratio: a few KiB of zeros compresses 1000:1
# but cannot hurt anyone; the total-size limit still bounds them.
RATIO_MIN_ENTRY_BYTES = 1024 * 1024

_CHUNK = 1024 * 1024

# Linux NAME_MAX: a longer path component cannot be created on the hosts that extract the zip.
MAX_COMPONENT_BYTES = 255


class ZipRejected(ValueError):
    """The archive is not an acceptable application zip; the message says why, for a person."""


def _limits(settings: Settings) -> tuple[int, float, int]:
    return settings.max_unzipped_bytes, settings.max_zip_ratio, settings.max_zip_entries


def _name_limits(settings: Settings) -> tuple[int, int]:
    return settings.max_zip_name_bytes, settings.max_zip_depth


def _show(name: str, limit: int = 80) -> str:
    """An entry name for a message: quoted, and shortened when long (the limit messages give the length)."""
    return repr(name if len(name) <= limit else name[: limit - 3] + "...")


def _check_name(name: str, settings: Settings) -> PurePosixPath:
    """The entry's path as a safe relative POSIX path, or ZipRejected."""
    if not name or "\x00" in name:
        raise ZipRejected(f"zip entry with an empty or NUL-containing name: {_show(name)}")
    max_bytes, max_depth = _name_limits(settings)
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > max_bytes:
        raise ZipRejected(
            f"zip entry name is {size} bytes long; the limit is {max_bytes} bytes: {_show(name)}"
        )
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":"):
        raise ZipRejected(f"zip entry has an absolute path: {name!r}")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ZipRejected(f"zip entry escapes the extraction directory ('..'): {name!r}")
    if not parts:
        raise ZipRejected(f"zip entry with an empty path: {name!r}")
    for part in parts:
        n = len(part.encode("utf-8", "surrogateescape"))
        if n > MAX_COMPONENT_BYTES:
            raise ZipRejected(
                f"zip entry has a path component of {n} bytes; the limit is "
                f"{MAX_COMPONENT_BYTES} bytes per file or directory name: {_show(name)}"
            )
    if len(parts) > max_depth:
        raise ZipRejected(f"zip entry is {len(parts)} levels deep; the limit is {max_depth}: {_show(name)}")
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


def inspect_zip(zf: zipfile.ZipFile, settings: Settings, archive_bytes: int | None = None) -> str:
    """Check an open zip against every rule; return its entry point (``run.sh`` or ``main.py``).

    ``archive_bytes`` is the zip file's size, for the whole-archive compression ratio (default: the sum
    of the entries' compressed sizes). Only the central directory is read: no entry is decompressed."""
    max_total, max_ratio, max_entries = _limits(settings)
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise ZipRejected(f"zip has {len(infos)} entries; the limit is {max_entries} entries")
    declared = sum(i.file_size for i in infos if not i.is_dir())
    if declared > max_total:
        raise ZipRejected(
            f"zip expands to more than {max_total} bytes ({declared} declared); "
            f"the limit is max_unzipped_bytes = {max_total} (zip bomb guard)"
        )
    total = 0
    seen: dict[str, str] = {}
    root_files: set[str] = set()
    nested_entry: str | None = None
    for info in infos:
        path = _check_name(info.filename, settings)
        kind = _entry_kind(info)
        if kind not in ("dir", "file"):
            raise ZipRejected(
                f"zip entry is a {kind}, only regular files and directories are allowed: {info.filename!r}"
            )
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
                raise ZipRejected(
                    f"zip entry {info.filename!r} has compression ratio {ratio:.0f}:1; "
                    f"the limit is {max_ratio:.0f}:1 (zip bomb guard)"
                )
        if len(path.parts) == 1:
            root_files.add(key)
        elif path.name in ENTRY_POINTS and nested_entry is None:
            nested_entry = key
    # many small entries each under the per-entry floor (2,047 x (1 MiB - 1) zeros) are judged together
    if archive_bytes is None:
        archive_bytes = sum(i.compress_size for i in infos)
    whole_ratio = declared / max(archive_bytes, 1)
    if declared >= RATIO_MIN_ENTRY_BYTES and whole_ratio > max_ratio:
        raise ZipRejected(
            f"zip has a whole-archive compression ratio of {whole_ratio:.0f}:1 ({declared} bytes from "
            f"{archive_bytes}); the limit is {max_ratio:.0f}:1 (zip bomb guard)"
        )
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
                        raise ZipRejected(
                            f"zip entry {_show(info.filename)} expands beyond its declared size "
                            f"of {info.file_size} bytes (zip bomb guard)"
                        )
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise ZipRejected(f"zip entry {info.filename!r} is corrupt or unsupported ({exc})") from None


def _open(path_or_fileobj: str | os.PathLike[str] | IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path_or_fileobj)  # type: ignore[arg-type]
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ZipRejected(f"not a valid zip file ({exc})") from None
    except zipfile.LargeZipFile:
        raise ZipRejected("zip64 archive too large") from None


def _size_of(path_or_fileobj: str | os.PathLike[str] | IO[bytes]) -> int | None:
    try:
        if hasattr(path_or_fileobj, "seek"):
            return path_or_fileobj.seek(0, os.SEEK_END)  # type: ignore[union-attr]
        return os.stat(path_or_fileobj).st_size  # type: ignore[arg-type]
    except (OSError, ValueError):
        return None


def _reason(exc: BaseException) -> str:
    """An OS error's reason without the file name it carries (that would be a host path)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def validate_zip(path_or_fileobj: str | os.PathLike[str] | IO[bytes], settings: Settings) -> str:
    """Validate an application zip (a path or a seekable binary file object).

    Returns the entry point, ``"run.sh"`` or ``"main.py"``. Raises :class:`ZipRejected` with a message
    fit for the uploader. Limits come from ``settings``: ``max_unzipped_bytes`` (bytes),
    ``max_zip_ratio`` (uncompressed/compressed, per entry >= 1 MiB and for the whole archive once it
    expands to >= 1 MiB), ``max_zip_entries``, ``max_zip_name_bytes``, ``max_zip_depth``.
    A file object's position is restored afterwards.
    """
    pos = path_or_fileobj.tell() if hasattr(path_or_fileobj, "tell") else None
    size = _size_of(path_or_fileobj)
    if pos is not None:
        path_or_fileobj.seek(pos)  # type: ignore[union-attr]
    try:
        with _open(path_or_fileobj) as zf:
            entry = inspect_zip(zf, settings, size)
            _check_contents(zf)
            return entry
    finally:
        if pos is not None:
            path_or_fileobj.seek(pos)  # type: ignore[union-attr]


def extract_zip(
    path_or_fileobj: str | os.PathLike[str] | IO[bytes], dest: str | os.PathLike[str], settings: Settings
) -> str:
    """Validate, then extract into ``dest`` (created; should be empty). Returns the entry point.

    Extraction counts the bytes actually written, so a zip whose headers lie about sizes is stopped at
    ``max_unzipped_bytes`` too. Files get mode 0644 (0755 if executable in the zip); nothing else of the
    zip's permissions (setuid, ownership) is kept.
    """
    max_total, _, _ = _limits(settings)
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    root = dest_path.resolve()
    size = _size_of(path_or_fileobj)
    if hasattr(path_or_fileobj, "seek"):
        path_or_fileobj.seek(0)  # type: ignore[union-attr]
    with _open(path_or_fileobj) as zf:
        entry = inspect_zip(zf, settings, size)
        written = 0
        for info in zf.infolist():
            rel = _check_name(info.filename, settings)
            try:
                target = (root / rel).resolve()
            except (OSError, RuntimeError) as exc:
                raise ZipRejected(
                    f"zip entry {_show(info.filename)} cannot be extracted ({_reason(exc)})"
                ) from None
            if target != root and root not in target.parents:  # belt and braces after _check_name
                raise ZipRejected(f"zip entry escapes the extraction directory: {info.filename!r}")
            if info.is_dir():
                try:
                    target.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # never the host path in the message: the tenant reads it
                    raise ZipRejected(
                        f"zip entry {_show(info.filename)} cannot be extracted ({_reason(exc)})"
                    ) from None
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
            except OSError as exc:  # e.g. ENAMETOOLONG, ENOSPC: the reason, never the host path
                raise ZipRejected(
                    f"zip entry {_show(info.filename)} cannot be extracted ({_reason(exc)})"
                ) from None
            mode = (info.external_attr >> 16) & 0o777 if info.create_system == 3 else 0
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    return entry
