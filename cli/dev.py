"""``orch dev`` / ``make dev``: the embedded stack in one command, persistent under ORCH_DATA_DIR.

Before starting anything it checks that no earlier stack from this data dir is still alive (the pidfile
``<data_dir>/devstack.pid``) and that every port it needs is free; each problem is one line that says what
to do. Every child dies with this process (parent-death signal, see ``cli.devstack.spawn``), and SIGINT,
SIGTERM and SIGHUP all stop the whole stack cleanly (SIGINT too when it was started with SIGINT ignored, as a
background job of a script is); run by ``make dev``, it also stops when make dies. ``orch dev --stop`` stops
the stack of this data dir from another shell.
Logs of this start are in ``<data_dir>/logs/<name>.log`` (the five previous starts' in ``<name>.log.1`` ..
``.5``). Everything it creates is owner-only (umask 077, inherited by its servers): the data dir is 0700
from the start.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
from pydantic import ValidationError

from cli.devstack import (
    Server,
    StartError,
    die_with_parent,
    pid_alive,
    port_free,
    port_open,
    proc_start_time,
    spawn,
    start_seaweedfs,
    start_temporal,
)
from core.datadir import make_data_dir
from core.migrate import upgrade
from core.secretbox import key_source
from core.settings import Settings

PIDFILE = "devstack.pid"
COMPONENTS = ("seaweedfs", "temporal", "worker", "api")
START_TIMEOUT = 120.0  # per component; generous for a busy machine


class DevStackError(Exception):
    """An expected failure: its lines are printed as they are (no traceback) and ``orch dev`` exits 1."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = lines


def _say(*lines: str, err: bool = False) -> None:
    """Print, but never fail: after SIGHUP the terminal may be gone and the stack must still be stopped."""
    try:
        print("\n".join(lines), file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        pass


def admin_key(settings: Settings) -> tuple[str, str]:
    """ORCH_ADMIN_API_KEY if set, else the key kept in <data_dir>/admin_api_key (created once, mode 0600);
    and where it comes from, for the banner (which never prints the key itself)."""
    if settings.admin_api_key:
        return settings.admin_api_key, "from ORCH_ADMIN_API_KEY"
    path = settings.data_dir / "admin_api_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("orch_admin_" + secrets.token_urlsafe(32))
    return path.read_text().strip(), f"stored in {path}"


DEV_S3_SECRET = "orchdev-secret"  # Settings' default: public, so never what the dev stack's S3 accepts


def s3_secret(settings: Settings) -> tuple[str, str]:
    """The S3 gateway's secret key for this deployment: ORCH_S3_SECRET_ACCESS_KEY if set to anything but the
    public default, else a random one kept in <data_dir>/s3_secret (created once, mode 0600)."""
    if settings.s3_secret_access_key != DEV_S3_SECRET:
        return settings.s3_secret_access_key or "", "from ORCH_S3_SECRET_ACCESS_KEY"
    path = settings.data_dir / "s3_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip(), f"stored in {path}"


def _port(url_or_addr: str, setting: str) -> int:
    try:
        if "://" in url_or_addr:
            port = urlparse(url_or_addr).port or 80
        else:
            port = int(url_or_addr.rsplit(":", 1)[1])
    except (ValueError, IndexError):
        raise DevStackError(f"{setting}={url_or_addr!r} has no valid port") from None
    return port


@dataclass(frozen=True)
class PortNeed:
    port: int
    what: str
    setting: str
    host: str = "127.0.0.1"


def needed_ports(settings: Settings) -> list[PortNeed]:
    """Every fixed port the dev stack listens on, with what it is for and the setting that moves it.
    (Internal ports - Temporal's HTTP API, metrics and services, SeaweedFS gRPC, WebDAV and admin - are
    picked free at start.)"""
    needs = [
        PortNeed(settings.api_port, "API", "ORCH_API_PORT", settings.api_host),
        PortNeed(
            _port(settings.temporal_address, "ORCH_TEMPORAL_ADDRESS"),
            "Temporal gRPC",
            "ORCH_TEMPORAL_ADDRESS",
        ),
        PortNeed(settings.temporal_ui_port, "Temporal Web UI", "ORCH_TEMPORAL_UI_PORT"),
        PortNeed(
            _port(settings.s3_endpoint_url or "http://127.0.0.1:8333", "ORCH_S3_ENDPOINT_URL"),
            "SeaweedFS S3 gateway",
            "ORCH_S3_ENDPOINT_URL",
        ),
        PortNeed(settings.seaweed_master_port, "SeaweedFS master", "ORCH_SEAWEED_MASTER_PORT"),
        PortNeed(settings.seaweed_volume_port, "SeaweedFS volume server", "ORCH_SEAWEED_VOLUME_PORT"),
        PortNeed(settings.seaweed_filer_port, "SeaweedFS filer", "ORCH_SEAWEED_FILER_PORT"),
    ]
    if settings.worker_metrics_port:
        needs.append(
            PortNeed(
                settings.worker_metrics_port,
                "worker metrics",
                "ORCH_WORKER_METRICS_PORT",
                settings.worker_metrics_host,
            )
        )
    return needs


def port_problems(needs: list[PortNeed]) -> list[str]:
    """One line per port that is configured twice, invalid, or already in use."""
    problems: list[str] = []
    first: dict[int, PortNeed] = {}
    for n in needs:
        if not 0 < n.port < 65536:
            problems.append(f"port {n.port} ({n.what}) is not a valid port: set {n.setting} to a free port")
        elif n.port in first:
            o = first[n.port]
            problems.append(
                f"port {n.port} is configured for both {o.what} ({o.setting}) and {n.what} ({n.setting}): "
                f"set {n.setting} to another free port"
            )
        else:
            first[n.port] = n
            if not port_free(n.port, n.host):
                problems.append(f"port {n.port} ({n.what}) is in use: set {n.setting} to a free port")
    return problems


# --- the pidfile: which processes the current (or a crashed earlier) start owns ---------------------------


def _write_pidfile(path: Path, servers: list[Server]) -> None:
    record = {
        "orch_dev": {"pid": os.getpid(), "start": proc_start_time(os.getpid())},
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "processes": [
            {"name": s.name, "pid": s.proc.pid, "start": proc_start_time(s.proc.pid), "ports": s.ports}
            for s in servers
        ],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def _ports_text(ports: dict) -> str:
    shown = [str(p) for p in ports.values() if p]
    return f"port{'s' if len(shown) > 1 else ''} {', '.join(shown)}" if shown else "no port"


def stale_processes(path: Path) -> tuple[dict | None, list[dict]]:
    """From an existing pidfile: the earlier ``orch dev`` process if still alive, and its children still
    alive (same pid and start time, so a reused pid is not mistaken). A pidfile naming nobody alive, or an
    unreadable one, is removed."""
    try:
        record = json.loads(path.read_text())
        main = record.get("orch_dev") or {}
        procs = [p for p in record.get("processes", []) if isinstance(p.get("pid"), int)]
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError, AttributeError):
        path.unlink(missing_ok=True)
        return None, []
    main_alive = isinstance(main.get("pid"), int) and main.get("start") is not None
    main_alive = main_alive and pid_alive(main["pid"], main["start"])
    # a process recorded without its start time (it had already exited) could be a reused pid: ignored
    alive = [p for p in procs if p.get("start") is not None and pid_alive(p["pid"], p["start"])]
    if not main_alive and not alive:
        path.unlink(missing_ok=True)
    return (main if main_alive else None), alive


def _kill_stale(main: dict | None, alive: list[dict], timeout: float = 20.0) -> None:
    def still() -> list[dict]:
        return [p for p in ([main] if main else []) + alive if pid_alive(p["pid"], p.get("start"))]

    if main:  # a live `orch dev` stops its own children cleanly
        os.kill(main["pid"], signal.SIGTERM)
    for p in alive:
        try:
            os.killpg(p["pid"], signal.SIGTERM)  # each child leads its own process group
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while still() and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in still():
        try:
            os.killpg(p["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5
    while still() and time.monotonic() < deadline:
        time.sleep(0.1)
    if left := still():
        raise DevStackError(*(f"could not stop {p.get('name', 'orch dev')} (pid {p['pid']})" for p in left))


def stop_dev_stack(settings: Settings | None = None) -> int:
    """``orch dev --stop``: stop the stack running from this data dir (from another shell): SIGTERM to its
    ``orch dev`` process, which stops its children; any child left over (a crashed start) is stopped too.
    0 when it stopped (or none was running), 1 when something could not be stopped."""
    settings = settings or Settings()
    path = settings.data_dir.resolve() / PIDFILE
    main, alive = stale_processes(path)
    if not main and not alive:
        _say(f"no dev stack is running from {settings.data_dir.resolve()}")
        return 0
    pids = [p["pid"] for p in ([main] if main else []) + alive]
    _say(f"stopping the dev stack (pids {', '.join(map(str, pids))}) ...")
    try:
        _kill_stale(main, alive, timeout=60.0)
    except DevStackError as exc:
        _say(*exc.lines, err=True)
        return 1
    path.unlink(missing_ok=True)
    _say("stopped.")
    return 0


def _check_stale(path: Path, kill: bool) -> None:
    main, alive = stale_processes(path)
    if not main and not alive:
        return
    pids = [p["pid"] for p in alive] + ([main["pid"]] if main else [])
    if kill:
        _say(f"stopping the earlier dev stack (pids {', '.join(map(str, pids))}) ...")
        _kill_stale(main, alive)
        path.unlink(missing_ok=True)
        return
    lines = []
    if main:
        lines.append(f"a dev stack is already running from this data dir: orch dev (pid {main['pid']})")
    else:
        lines.append(f"processes of an earlier dev stack are still running (from {path}):")
    for p in alive:
        ports = _ports_text(p.get("ports") or {})
        lines.append(f"  {p.get('name', '?')} (pid {p['pid']}) is still running, {ports}")
    lines.append(
        f"stop {'them' if len(pids) > 1 else 'it'} with `kill {' '.join(map(str, pids))}`, "
        "or start with `orch dev --kill-stale` to stop them first"
    )
    raise DevStackError(*lines)


# --- start and wait ---------------------------------------------------------------------------------------


KEPT_LOGS = 5  # earlier starts' logs kept per component: <name>.log.1 (the last) .. <name>.log.5


def _fresh_log(path: Path, keep: int = KEPT_LOGS) -> Path:
    """This start's log file; the previous starts' are kept as ``<name>.log.1`` (the last) to
    ``<name>.log.<keep>`` (the oldest kept; an older one is deleted)."""
    if not path.exists():
        return path
    path.with_name(f"{path.name}.{keep}").unlink(missing_ok=True)
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(path.name + ".1"))
    return path


def _wait_ready(servers: list[Server], server: Server, ready: Callable[[], bool], what: str) -> None:
    """Wait until ``ready()``; a StartError naming the component if it (or any other child) exits first or
    it does not answer within START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        for s in servers:
            if not s.alive():
                raise StartError(
                    s.name, f"exited at start (code {s.proc.returncode})", s.log_path, s.log_tail()
                )
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not answering yet
            pass
        if time.monotonic() > deadline:
            raise StartError(
                server.name,
                f"did not answer ({what}) within {START_TIMEOUT:.0f}s",
                server.log_path,
                server.log_tail(),
            )
        time.sleep(0.2)


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def run_dev_stack(settings: Settings | None = None, *, kill_stale: bool = False) -> int:
    """Run the stack until a signal (0) or a failure (1: one line per problem, no traceback)."""
    # SIGINT (Ctrl-C, `kill -INT`), SIGTERM and SIGHUP (terminal closed) all stop the stack. SIGINT is set
    # explicitly: a background job of a non-interactive shell (`make dev &` in a script) inherits SIGINT
    # *ignored*, and Python then installs no KeyboardInterrupt handler, so `kill -INT` would do nothing.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_keyboard_interrupt)
    if "MAKELEVEL" in os.environ:  # run by `make dev`: killing make (even SIGKILL) stops the stack too
        die_with_parent()
    try:
        try:
            settings = settings or Settings()
        except ValidationError as exc:
            raise DevStackError(
                *(
                    f"invalid setting ORCH_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                    for e in exc.errors()
                )
            ) from None
        return _run(settings, kill_stale)
    except DevStackError as exc:
        _say(*exc.lines, err=True)
        return 1
    except KeyboardInterrupt:
        return 0


def _run(settings: Settings, kill_stale: bool) -> int:
    os.umask(0o077)  # the database, keys, logs, S3 store and pidfile: owner-only from the start
    data = make_data_dir(settings.data_dir.resolve())
    pidfile = data / PIDFILE
    _check_stale(pidfile, kill_stale)
    if problems := port_problems(needed_ports(settings)):
        raise DevStackError(*problems, "nothing was started")

    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    key, key_src = admin_key(settings)
    s3_key, s3_src = s3_secret(settings)  # per deployment: the dev default is public
    key_source(settings)  # the secrets key, made once here: API and worker would race to create it
    env = {
        **os.environ,
        "ORCH_ADMIN_API_KEY": key,
        "ORCH_DATA_DIR": str(data),
        "ORCH_S3_SECRET_ACCESS_KEY": s3_key,
    }
    settings = Settings(
        **{**settings.model_dump(), "admin_api_key": key, "data_dir": data, "s3_secret_access_key": s3_key}
    )

    servers: list[Server] = []
    try:
        _say("applying database migrations ...")
        upgrade(settings)
        s3_port = _port(settings.s3_endpoint_url or "http://127.0.0.1:8333", "ORCH_S3_ENDPOINT_URL")
        _say(f"starting SeaweedFS S3 on 127.0.0.1:{s3_port} ...")
        try:
            servers.append(
                start_seaweedfs(
                    data / "s3",
                    s3_port,
                    settings.s3_access_key_id or "",
                    settings.s3_secret_access_key or "",
                    master_port=settings.seaweed_master_port,
                    volume_port=settings.seaweed_volume_port,
                    filer_port=settings.seaweed_filer_port,
                    log_path=_fresh_log(logs / "seaweedfs.log"),
                    timeout=START_TIMEOUT,
                )
            )
        finally:
            _write_pidfile(pidfile, servers)
        t_port = _port(settings.temporal_address, "ORCH_TEMPORAL_ADDRESS")
        _say(f"starting Temporal dev server on 127.0.0.1:{t_port} (UI :{settings.temporal_ui_port}) ...")
        try:
            servers.append(
                start_temporal(
                    data / "temporal.db",
                    t_port,
                    settings.temporal_ui_port,
                    _fresh_log(logs / "temporal.log"),
                    timeout=START_TIMEOUT,
                )
            )
        finally:
            _write_pidfile(pidfile, servers)
        temporal = servers[-1]
        _wait_ready(servers, temporal, lambda: port_open(settings.temporal_ui_port), "Web UI port")

        _say("starting the worker and the API ...")
        py = sys.executable
        worker = spawn("worker", [py, "-m", "cli", "worker"], _fresh_log(logs / "worker.log"), env)
        worker.ports = {"metrics": settings.worker_metrics_port or 0}
        servers.append(worker)
        api = spawn("api", [py, "-m", "cli", "api"], _fresh_log(logs / "api.log"), env)
        api.ports = {"http": settings.api_port}
        servers.append(api)
        _write_pidfile(pidfile, servers)

        def worker_ready() -> bool:
            if "worker started" not in worker.log_text():
                return False
            mp = settings.worker_metrics_port
            return not mp or port_open(mp, settings.worker_metrics_host)

        _wait_ready(servers, worker, worker_ready, "'worker started' in its log")
        api_host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
        base = f"http://{api_host}:{settings.api_port}"
        _wait_ready(
            servers, api, lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200, "/readyz"
        )

        # the key itself never goes to the terminal (whose output may end up in a log): a reference to it
        key_from_env = key_src == "from ORCH_ADMIN_API_KEY"
        key_ref = (
            "$ORCH_ADMIN_API_KEY" if key_from_env else f"$(cat {shlex.quote(str(data / 'admin_api_key'))})"
        )
        _say(
            f"""
Carbon-aware orchestrator is running (data in {data})
  API          {base}        (OpenAPI docs: {base}/docs)
  Dashboard    {base}/ui/     (log in with a client's API key)
  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}
  Temporal     {settings.temporal_address}  (temporal workflow list --address {settings.temporal_address})
  S3           {settings.s3_endpoint_url}  (bucket {settings.s3_bucket})
  S3 keys      access key {settings.s3_access_key_id}, secret key {s3_src}
  Logs         {logs}
  Admin key    {key_src}

Use it from another shell (the orch client reads these):
  export ORCH_URL={base} ORCH_ADMIN_API_KEY={key_ref}
  export ORCH_API_KEY=$(.venv/bin/orch clients create my-team --key-only)
  .venv/bin/orch demo --ui http://127.0.0.1:{settings.temporal_ui_port}

Stop it: Ctrl-C here, or from another shell `kill -INT {os.getpid()}` or `.venv/bin/orch dev --stop`
(the pid is in {pidfile})."""
        )
        try:
            while True:
                time.sleep(1.0)
                if dead := [s for s in servers if not s.alive()]:
                    for s in dead:
                        _say(
                            f"{s.name} exited unexpectedly (code {s.proc.returncode}); "
                            f"last lines of {s.log_path}:",
                            s.log_tail(),
                            err=True,
                        )
                    return 1
        except KeyboardInterrupt:
            return 0
    except StartError as exc:
        _say(f"{exc.name} {exc.reason}; last lines of {exc.log_path}:", exc.log_tail, err=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # a second signal must not cut the shutdown short
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        _say("stopping ...")
        for s in reversed(servers):
            s.stop()
        if all(not s.alive() for s in servers):
            pidfile.unlink(missing_ok=True)
        _say("stopped.")
