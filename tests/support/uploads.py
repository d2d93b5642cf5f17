"""Helpers for the upload tests: a live API process, raw zips built fast, a breakable TCP proxy."""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from pathlib import Path

from cli.devstack import free_port
from core.migrate import upgrade
from core.settings import Settings
from tests.support.e2e_stack import ADMIN, Stack


def live_api(tmp: Path, db_url: str, s3: dict[str, str], bucket: str, **over) -> Stack:
    """The API as its own uvicorn process (``orch api``) on a free port, migrations applied."""
    from tests.support.common import make_settings

    settings: Settings = make_settings(
        tmp,
        admin_api_key=ADMIN,
        api_port=free_port(),
        database_url=db_url,
        temporal_address="127.0.0.1:1",
        s3_bucket=bucket,
        **(s3 | {k: v for k, v in over.items() if k.startswith("s3_")}),
        **{k: v for k, v in over.items() if not k.startswith("s3_")},
    )
    upgrade(settings)
    stack = Stack(settings, tmp / "logs")
    stack.start_api()
    return stack


def repeated_entry_zip(count: int, size: int, extra: dict[str, bytes] | None = None) -> bytes:
    """A deflated zip of ``count`` entries of ``size`` zero bytes each (plus ``extra`` files), written by
    hand so the zeros are compressed once: a 2,047 x 1 MiB zip builds in milliseconds."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(b"\0" * size) + comp.flush()
    crc = zlib.crc32(b"\0" * size)
    entries: list[tuple[str, bytes, int, int, int]] = [
        (f"d/{i:05d}.bin", data, crc, size, 8) for i in range(count)
    ]
    for name, content in (extra or {}).items():
        entries.append((name, content, zlib.crc32(content), len(content), 0))
    out, central = bytearray(), bytearray()
    for name, payload, crc32, usize, method in entries:
        fname = name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc32, len(payload), usize, len(fname), 0
        )
        out += fname + payload
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc32,
            len(payload),
            usize,
            len(fname),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += fname
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    return bytes(out)


class BreakableProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port``; :meth:`break_now` drops every connection and
    refuses new ones (the store "goes down" for its clients), :meth:`restore` accepts again."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self.up = threading.Event()
        self.up.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self._server.accept()
            except OSError:
                return
            if not self.up.is_set():
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def break_now(self) -> None:
        self.up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._closed = True
        self.break_now()
        self._server.close()
