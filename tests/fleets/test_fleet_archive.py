"""Application zip checks: zip-slip, symlinks, bombs, entry point; safe extraction."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from fleets.archive import ZipRejected, extract_zip, validate_zip
from tests.support.common import make_settings


@pytest.fixture
def settings(tmp_path):
    return make_settings(
        tmp_path, max_unzipped_bytes=50 * 1024 * 1024, max_zip_ratio=100.0, max_zip_entries=50
    )


def make_zip(entries: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def add_raw(buf: io.BytesIO, info: zipfile.ZipInfo, data: bytes) -> io.BytesIO:
    buf.seek(0)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(info, data)
    buf.seek(0)
    return buf


def test_valid_zip_returns_entry_point_and_restores_position(settings):
    buf = make_zip({"main.py": b"print(1)\n", "lib/util.py": b"x = 1\n"})
    assert validate_zip(buf, settings) == "main.py"
    assert buf.tell() == 0
    assert validate_zip(make_zip({"run.sh": b"echo hi\n"}), settings) == "run.sh"
    # run.sh wins when both exist
    assert validate_zip(make_zip({"main.py": b"", "run.sh": b""}), settings) == "run.sh"


def test_path_argument(settings, tmp_path):
    p = tmp_path / "a.zip"
    p.write_bytes(make_zip({"main.py": b"print(1)\n"}).getvalue())
    assert validate_zip(p, settings) == "main.py"
    assert validate_zip(str(p), settings) == "main.py"


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "..\\evil.py", "a/..", "ok/../../x"])
def test_zip_slip_rejected(settings, name):
    with pytest.raises(ZipRejected, match=r"\.\."):
        validate_zip(make_zip({"main.py": b"", name: b"x"}), settings)


@pytest.mark.parametrize("name", ["/etc/passwd", "\\windows\\x", "C:/x.txt"])
def test_absolute_path_rejected(settings, name):
    with pytest.raises(ZipRejected, match="absolute"):
        validate_zip(make_zip({"main.py": b"", name: b"x"}), settings)


def test_symlink_rejected(settings):
    info = zipfile.ZipInfo("link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buf = add_raw(make_zip({"main.py": b""}), info, b"/etc/passwd")
    with pytest.raises(ZipRejected, match="symlink"):
        validate_zip(buf, settings)


def test_device_file_rejected(settings):
    info = zipfile.ZipInfo("dev")
    info.create_system = 3
    info.external_attr = (stat.S_IFCHR | 0o644) << 16
    with pytest.raises(ZipRejected, match="special file"):
        validate_zip(add_raw(make_zip({"main.py": b""}), info, b""), settings)


def test_duplicate_entry_rejected(settings):
    buf = make_zip({"main.py": b"a"})
    with pytest.warns(UserWarning, match="Duplicate name"):
        add_raw(buf, zipfile.ZipInfo("main.py"), b"b")
    with pytest.raises(ZipRejected, match="more than once"):
        validate_zip(buf, settings)


def test_ratio_bomb_rejected(settings):
    buf = make_zip({"main.py": b"", "zeros.bin": b"\0" * (5 * 1024 * 1024)})
    with pytest.raises(ZipRejected, match="compression ratio"):
        validate_zip(buf, settings)


def test_small_highly_compressible_file_is_fine(settings):
    # 64 KiB of zeros compresses ~1000:1 but is below the ratio check's floor
    assert validate_zip(make_zip({"main.py": b"", "z": b"\0" * 65536}), settings) == "main.py"


def test_total_size_bomb_rejected(tmp_path):
    s = make_settings(tmp_path, max_unzipped_bytes=1024 * 1024, max_zip_ratio=1e9)
    buf = make_zip({"main.py": b"", "a": b"\0" * 600_000, "b": b"\0" * 600_000})
    with pytest.raises(ZipRejected, match="expands to more than"):
        validate_zip(buf, s)


def test_too_many_entries_rejected(settings):
    buf = make_zip({"main.py": b"", **{f"f{i}": b"" for i in range(60)}})
    with pytest.raises(ZipRejected, match="entries"):
        validate_zip(buf, settings)


def test_no_entry_point(settings):
    with pytest.raises(ZipRejected, match="no entry point"):
        validate_zip(make_zip({"app.py": b""}), settings)


def test_entry_point_in_folder_gets_a_hint(settings):
    with pytest.raises(ZipRejected, match="myapp/main.py.*not their folder"):
        validate_zip(make_zip({"myapp/main.py": b""}), settings)


def test_not_a_zip(settings, tmp_path):
    with pytest.raises(ZipRejected, match="not a valid zip"):
        validate_zip(io.BytesIO(b"definitely not a zip" * 10), settings)
    p = tmp_path / "x.zip"
    p.write_bytes(b"")
    with pytest.raises(ZipRejected, match="not a valid zip"):
        validate_zip(p, settings)


def test_zip_rejected_is_a_value_error():
    assert issubclass(ZipRejected, ValueError)


def test_extract(settings, tmp_path):
    info = zipfile.ZipInfo("run.sh")
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | 0o4755) << 16  # setuid must not survive
    buf = add_raw(make_zip({"lib/data.txt": b"hello", "empty/": b""}), info, b"echo hi\n")
    dest = tmp_path / "out"
    assert extract_zip(buf, dest, settings) == "run.sh"
    assert (dest / "lib" / "data.txt").read_bytes() == b"hello"
    assert (dest / "empty").is_dir()
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "lib" / "data.txt").stat().st_mode) == 0o644


def test_extract_refuses_before_writing_anything(settings, tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(ZipRejected):
        extract_zip(make_zip({"main.py": b"", "x": b"1", "../escape": b"2"}), dest, settings)
    assert not (tmp_path / "escape").exists()
    assert list(dest.iterdir()) == []


def test_extract_stops_at_lying_headers(settings, tmp_path):
    """An entry whose header understates its size is cut off during extraction."""
    buf = make_zip({"main.py": b"", "big": b"A" * 4096}, compression=zipfile.ZIP_STORED)
    data = bytearray(buf.getvalue())
    # patch the central directory's uncompressed size of "big" to 10 bytes (local header too)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("big")
    for sig in (b"PK\x01\x02", b"PK\x03\x04"):
        pos = 0
        while (pos := data.find(sig, pos)) != -1:
            off = 24 if sig == b"PK\x01\x02" else 22
            name_off = 46 if sig == b"PK\x01\x02" else 30
            if data[pos + name_off : pos + name_off + 3] == b"big":
                data[pos + off : pos + off + 4] = (10).to_bytes(4, "little")
            pos += 4
    assert info.file_size == 4096
    with pytest.raises(ZipRejected):
        extract_zip(io.BytesIO(bytes(data)), tmp_path / "out", settings)
    assert not (Path(tmp_path / "out" / "big").exists() and (tmp_path / "out" / "big").stat().st_size > 10)


def test_lying_header_sizes_are_refused(tmp_path):
    """A zip whose central directory understates an entry's size must not pass validation."""
    import io
    import struct
    import zipfile

    from fleets.archive import ZipRejected, validate_zip

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("main.py", "print(1)\n")
        z.writestr("blob.bin", b"\0" * 100_000)
    data = bytearray(buf.getvalue())
    # rewrite blob.bin's uncompressed size to 10 bytes in both its local header and the central directory
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            name_len_off = 26 if sig == b"PK\x03\x04" else 28
            name_start = i + (30 if sig == b"PK\x03\x04" else 46)
            n = struct.unpack_from("<H", data, i + name_len_off)[0]
            if bytes(data[name_start : name_start + n]) == b"blob.bin":
                struct.pack_into("<I", data, i + off, 10)
            start = i + 4
    settings = make_settings(tmp_path, max_unzipped_bytes=10**9, max_zip_ratio=200.0, max_zip_entries=100)
    with pytest.raises(ZipRejected, match="declared size|corrupt"):
        validate_zip(io.BytesIO(bytes(data)), settings)
