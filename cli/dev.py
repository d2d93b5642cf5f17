"""``orch dev`` / ``make dev``: the embedded stack in one command, persistent under ORCH_DATA_DIR."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from urllib.parse import urlparse

from cli.devstack import Server, port_open, spawn, start_seaweedfs, start_temporal, wait_for
from core.migrate import upgrade
from core.settings import Settings


def admin_key(settings: Settings) -> tuple[str, str]:
    """ORCH_ADMIN_API_KEY if set, else the key kept in <data_dir>/admin_api_key (created once, mode 0600)."""
    if settings.admin_api_key:
        return settings.admin_api_key, "from ORCH_ADMIN_API_KEY"
    path = settings.data_dir / "admin_api_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("orch_admin_" + secrets.token_urlsafe(32))
    return path.read_text().strip(), f"stored in {path}"


def _port(url_or_addr: str) -> int:
    if "://" in url_or_addr:
        return urlparse(url_or_addr).port or 80
    return int(url_or_addr.rsplit(":", 1)[1])


def run_dev_stack(settings: Settings | None = None) -> int:
    settings = settings or Settings()
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    key, key_src = admin_key(settings)
    env = {**os.environ, "ORCH_ADMIN_API_KEY": key, "ORCH_DATA_DIR": str(data)}
    settings = Settings(**{**settings.model_dump(), "admin_api_key": key, "data_dir": data})

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    servers: list[Server] = []
    try:
        print("applying database migrations ...", flush=True)
        upgrade(settings)
        s3_port = _port(settings.s3_endpoint_url or "http://127.0.0.1:8333")
        print(f"starting SeaweedFS S3 on 127.0.0.1:{s3_port} ...", flush=True)
        servers.append(
            start_seaweedfs(
                data / "s3",
                s3_port,
                settings.s3_access_key_id,
                settings.s3_secret_access_key,
                master_port=settings.seaweed_master_port,
                volume_port=settings.seaweed_volume_port,
                filer_port=settings.seaweed_filer_port,
            )
        )
        t_port = _port(settings.temporal_address)
        print(
            f"starting Temporal dev server on 127.0.0.1:{t_port} (UI :{settings.temporal_ui_port}) ...",
            flush=True,
        )
        servers.append(
            start_temporal(data / "temporal.db", t_port, settings.temporal_ui_port, logs / "temporal.log")
        )
        py = sys.executable
        servers.append(spawn("worker", [py, "-m", "cli", "worker"], logs / "worker.log", env))
        servers.append(spawn("api", [py, "-m", "cli", "api"], logs / "api.log", env))
        wait_for(lambda: port_open(settings.api_port) or not servers[-1].alive(), 60, "the API")
        if not servers[-1].alive():
            print(f"the API exited:\n{servers[-1].log_tail()}", file=sys.stderr)
            return 1
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(
            f"""
Carbon-aware orchestrator is running (data in {data})
  API          {base}        (OpenAPI docs: {base}/docs)
  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}
  Temporal     {settings.temporal_address}  (temporal workflow list --address {settings.temporal_address})
  S3           {settings.s3_endpoint_url}  (bucket {settings.s3_bucket})
  Logs         {logs}
  Admin key    {key}  ({key_src})
Press Ctrl-C to stop.
""",
            flush=True,
        )
        while not stop.wait(1.0):
            dead = [s for s in servers if not s.alive()]
            if dead:
                for s in dead:
                    print(f"{s.name} exited unexpectedly; last log lines:\n{s.log_tail()}", file=sys.stderr)
                return 1
        return 0
    finally:
        print("stopping ...", flush=True)
        for s in reversed(servers):
            s.stop()
        print("stopped.", flush=True)
