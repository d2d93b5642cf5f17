"""`make dev`'s entry point (`python -m cli dev`) in a subprocess: it comes up, serves the seed's calls,
and stops every child cleanly on SIGINT (Ctrl-C) or SIGHUP (terminal closed). A second start reuses the
data. Its children die with it even on SIGKILL; taken ports and a stale stack are named in one line each
before anything starts; a child that fails to start is one line plus the tail of its own log."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cli.devstack import free_ports, pid_alive, port_free, port_open, proc_start_time, wait_for
from tests.support.zips import make_zip

NAMES = ["api", "temporal", "ui", "s3", "master", "volume", "filer"]


def _ports() -> dict[str, int]:
    return dict(zip(NAMES, free_ports(len(NAMES)), strict=True))


def _env(data: Path, ports: dict[str, int], admin: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        {
            "ORCH_DATA_DIR": str(data),
            "ORCH_API_PORT": str(ports["api"]),
            "ORCH_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
            "ORCH_TEMPORAL_UI_PORT": str(ports["ui"]),
            "ORCH_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
            "ORCH_SEAWEED_MASTER_PORT": str(ports["master"]),
            "ORCH_SEAWEED_VOLUME_PORT": str(ports["volume"]),
            "ORCH_SEAWEED_FILER_PORT": str(ports["filer"]),
        }
    )
    if admin:
        env["ORCH_ADMIN_API_KEY"] = admin
    return env


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(
    data: Path, ports: dict[str, int], admin: str | None, stdout=subprocess.PIPE, sigint_ignored=False
) -> subprocess.Popen:
    """``orch dev`` in a process group of its own (the test signals only that group). ``sigint_ignored``:
    started as a background job of a non-interactive shell is, with SIGINT ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "dev"],
        env=_env(data, ports, admin),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def _run_dev(data: Path, ports: dict[str, int], *args: str) -> subprocess.CompletedProcess:
    """`python -m cli dev` that is expected to stop by itself (a pre-check failed)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "dev", *args],
        env=_env(data, ports),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ready(base: str) -> bool:
    return httpx.get(f"{base}/readyz", timeout=5).status_code == 200


def _stop(proc: subprocess.Popen, ports: dict[str, int], sig: int = signal.SIGINT) -> str:
    os.killpg(proc.pid, sig)  # SIGINT: what Ctrl-C in a terminal does; SIGHUP: the terminal was closed
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    for name, port in ports.items():
        assert not port_open(port), f"{name} port {port} still open after shutdown"
    return out


@pytest.mark.slow
def test_dev_stack_end_to_end(tmp_path):
    ports = _ports()
    base = f"http://127.0.0.1:{ports['api']}"
    proc = _start(tmp_path, ports, admin=None)
    try:
        wait_for(lambda: proc.poll() is None and _ready(base), 120, "the dev stack's /readyz")
        admin = (tmp_path / "admin_api_key").read_text().strip()
        assert oct((tmp_path / "admin_api_key").stat().st_mode & 0o777) == "0o600"
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post("/v1/clients", json={"name": "acme"}, headers={"X-API-Key": admin})
            assert r.status_code == 201, r.text
            cid, key = r.json()["id"], {"X-API-Key": r.json()["api_key"]}
            r = http.put(
                f"/v1/clients/{cid}/aws",
                headers=key,
                json={
                    "role_arn": "arn:aws:iam::123456789012:role/client",
                    "external_id": "ext-dev-stack",
                    "region_default": "us-east-1",
                    "session_name_template": "orch-{client_id}",
                },
            )
            assert r.status_code == 200, r.text
            r = http.post(
                "/v1/artifacts/upload",
                headers=key,
                data={"version": "1.0.0"},
                files={"file": ("app.zip", make_zip(), "application/zip")},
            )
            assert r.status_code == 201, r.text
            r = http.post(
                "/v1/job-templates",
                headers=key,
                json={
                    "name": "daily-etl",
                    "app_artifact_id": r.json()["artifact_id"],
                    "default_args": {"arg1": "value"},
                    "data_uri": "s3://bucket/data",
                    "fleet_template_id": "m5.4xlarge",
                },
            )
            assert r.status_code == 201, r.text
            assert port_open(ports["ui"]), "Temporal Web UI is not listening"
        _s3_refuses_public_and_anonymous_access(ports["s3"], (tmp_path / "s3_secret").read_text().strip())
        demo = subprocess.run(
            [sys.executable, "-m", "cli", "demo", "--api", base, "--admin-key", admin, "--timeout", "120"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert (
            "Summary: run" in demo.stdout
            and "SUCCEEDED" in demo.stdout
            and "word count: 15000" in demo.stdout
        )
    finally:
        if proc.poll() is None:
            out = _stop(proc, ports)
            assert "Admin key    stored in" in out and "stopped." in out
            assert f"Dashboard    {base}/ui/" in out  # the banner names the dashboard's URL
            # the banner's export lines name the stack's real port and where the key is, never the key
            key_file = shlex.quote(str(tmp_path / "admin_api_key"))
            assert f"export ORCH_URL={base} ORCH_ADMIN_API_KEY=$(cat {key_file})" in out, out
            assert admin not in out
            exported = subprocess.run(
                ["bash", "-c", f"export ORCH_ADMIN_API_KEY=$(cat {key_file}); printf %s $ORCH_ADMIN_API_KEY"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            assert exported.stdout == admin  # the line works as printed
            assert "orch dev --stop" in out and f"kill -INT {proc.pid}" in out, out

    # a second start reuses the data (same admin key file, the client still exists); started with SIGINT
    # ignored (a background job of a script), `kill -INT <pid>` from another shell still stops it
    proc = _start(tmp_path, ports, admin=None, sigint_ignored=True)
    try:
        wait_for(lambda: proc.poll() is None and _ready(base), 120, "the second start's /readyz")
        got = httpx.get(f"{base}/v1/clients/{cid}", headers={"X-API-Key": admin}, timeout=10)
        assert got.status_code == 200 and got.json()["name"] == "acme"
        os.kill(proc.pid, signal.SIGINT)  # the orch dev process only, as `kill -INT $pid` does
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped." in out, out
        for name, port in ports.items():
            assert not port_open(port), f"{name} port {port} still open after kill -INT"
    finally:
        if proc.poll() is None:
            _stop(proc, ports)


def _s3_refuses_public_and_anonymous_access(port: int, secret: str) -> None:
    """The dev stack's S3 gateway answers its own per-deployment secret only (issue 21 item 3)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    def client(**kw):
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", **kw)

    ok = client(aws_access_key_id="orchdev", aws_secret_access_key=secret)
    assert ok.list_objects_v2(Bucket="orchestrator-artifacts")["KeyCount"] >= 1  # the artifact just uploaded
    for bad in (
        client(aws_access_key_id="orchdev", aws_secret_access_key="orchdev-secret"),  # the public default
        client(config=Config(signature_version=UNSIGNED)),  # anonymous
    ):
        with pytest.raises(ClientError):
            bad.list_objects_v2(Bucket="orchestrator-artifacts")
        with pytest.raises(ClientError):
            bad.put_object(Bucket="orchestrator-artifacts", Key="x", Body=b"x")


@pytest.mark.slow
def test_dev_stack_uses_admin_key_from_env_and_stops_on_sighup(tmp_path):
    ports = _ports()
    base = f"http://127.0.0.1:{ports['api']}"
    admin = "orch_admin_from_env_" + "z" * 32
    proc = _start(tmp_path, ports, admin=admin)
    try:
        wait_for(lambda: proc.poll() is None and _ready(base), 120, "the dev stack's /readyz")
        r = httpx.post(f"{base}/v1/clients", json={"name": "x"}, headers={"X-API-Key": admin}, timeout=10)
        assert r.status_code == 201
        assert not (tmp_path / "admin_api_key").exists()
        assert (tmp_path / "devstack.pid").exists()
    finally:
        if proc.poll() is None:
            out = _stop(proc, ports, signal.SIGHUP)
            assert "stopped." in out, out
            assert admin not in out  # (the banner may not be out yet: /readyz answers just before it)
    assert not (tmp_path / "devstack.pid").exists(), "a clean stop removes the pidfile"


# --- pre-checks: nothing starts when a port is taken or an earlier stack is still alive --------------------


def _nothing_started(data: Path, ports: dict[str, int], taken: int | None = None) -> None:
    assert not (data / "logs").exists(), "a log was written: something was started"
    for name, port in ports.items():
        if port != taken:
            assert port_free(port), f"{name} port {port} is in use after a failed pre-check"


def _listener() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


@pytest.mark.parametrize(
    ("key", "line"),
    [
        (
            "volume",
            "port {p} (SeaweedFS volume server) is in use: set ORCH_SEAWEED_VOLUME_PORT to a free port",
        ),
        ("api", "port {p} (API) is in use: set ORCH_API_PORT to a free port"),
        ("s3", "port {p} (SeaweedFS S3 gateway) is in use: set ORCH_S3_ENDPOINT_URL to a free port"),
        ("ui", "port {p} (Temporal Web UI) is in use: set ORCH_TEMPORAL_UI_PORT to a free port"),
    ],
)
def test_taken_port_is_named_in_one_line_and_nothing_starts(tmp_path, key, line):
    sock, port = _listener()
    with sock:
        ports = _ports() | {key: port}
        r = _run_dev(tmp_path, ports)
    assert r.returncode == 1, r.stdout + r.stderr
    assert line.format(p=port) in r.stderr.splitlines(), r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.count(" is in use") == 1, r.stderr
    _nothing_started(tmp_path, ports, taken=port)
    assert not (tmp_path / "devstack.pid").exists()


def test_every_taken_port_is_listed_and_a_port_used_twice_is_named(tmp_path):
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))  # bound, not listening: still taken for a server
        ports = _ports() | {"temporal": a.getsockname()[1], "master": b.getsockname()[1]}
        ports["filer"] = ports["api"]
        r = _run_dev(tmp_path, ports)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    t, m, api = ports["temporal"], ports["master"], ports["api"]
    assert f"port {t} (Temporal gRPC) is in use: set ORCH_TEMPORAL_ADDRESS to a free port" in lines
    assert f"port {m} (SeaweedFS master) is in use: set ORCH_SEAWEED_MASTER_PORT to a free port" in lines
    assert (
        f"port {api} is configured for both API (ORCH_API_PORT) and SeaweedFS filer "
        "(ORCH_SEAWEED_FILER_PORT): set ORCH_SEAWEED_FILER_PORT to another free port"
    ) in lines
    assert "Traceback" not in r.stdout + r.stderr


def _pidfile(data: Path, main: tuple[int, int | None], procs: list[dict]) -> Path:
    path = data / "devstack.pid"
    record = {"orch_dev": {"pid": main[0], "start": main[1]}, "processes": procs}
    path.write_text(json.dumps(record))
    return path


def _dead_pid() -> tuple[int, int | None]:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(p.pid)
    p.wait()
    return p.pid, start


def test_pidfile_of_dead_or_reused_pids_is_removed(tmp_path):
    dead = _dead_pid()
    # our own (live) pid with another start time: a reused pid, not the earlier stack's process
    reused = {"name": "temporal", "pid": os.getpid(), "start": 1, "ports": {"grpc": 7233}}
    path = _pidfile(tmp_path, dead, [{"name": "api", "pid": dead[0], "start": dead[1]}, reused])
    sock, port = _listener()
    with sock:  # stop at the port check, after the pidfile check
        r = _run_dev(tmp_path, _ports() | {"api": port})
    assert r.returncode == 1
    assert "still running" not in r.stderr and f"port {port} (API) is in use" in r.stderr, r.stderr
    assert not path.exists(), "a pidfile naming no live process is removed"


def _fake_server() -> tuple[subprocess.Popen, int]:
    """A live process holding a port, as a server of a crashed stack would."""
    port = free_ports(1)[0]
    code = (
        "import socket, time; s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout.readline().strip() == "up"
    return proc, port


def test_stale_stack_is_named_then_stopped_with_kill_stale(tmp_path):
    fake, fport = _fake_server()
    try:
        dead_main = _dead_pid()
        entry = {
            "name": "temporal",
            "pid": fake.pid,
            "start": proc_start_time(fake.pid),
            "ports": {"grpc": fport},
        }
        path = _pidfile(
            tmp_path, dead_main, [entry, {"name": "api", "pid": dead_main[0], "start": dead_main[1]}]
        )
        ports = _ports()
        r = _run_dev(tmp_path, ports)
        assert r.returncode == 1
        lines = r.stderr.splitlines()
        assert f"  temporal (pid {fake.pid}) is still running, port {fport}" in lines, r.stderr
        assert any(f"kill {fake.pid}" in line and "--kill-stale" in line for line in lines), r.stderr
        assert f"(pid {dead_main[0]})" not in r.stderr, "a dead process is not named"
        assert "Traceback" not in r.stdout + r.stderr
        assert fake.poll() is None and path.exists(), "detection alone kills nothing"
        _nothing_started(tmp_path, ports)

        # --kill-stale stops it, then carries on (here: to the port check, which fails on purpose)
        sock, port = _listener()
        with sock:
            r = _run_dev(tmp_path, ports | {"api": port}, "--kill-stale")
        assert fake.wait(30) is not None
        assert not path.exists()
        assert r.returncode == 1 and f"port {port} (API) is in use" in r.stderr, r.stdout + r.stderr
        assert port_free(fport)
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()


def test_running_stack_in_the_same_data_dir_is_named(tmp_path):
    """A live `orch dev` recorded in the pidfile: the second start names it rather than fight over ports."""
    fake, fport = _fake_server()  # stands in for the running `orch dev`
    try:
        _pidfile(tmp_path, (fake.pid, proc_start_time(fake.pid)), [])
        r = _run_dev(tmp_path, _ports())
        assert r.returncode == 1
        assert f"a dev stack is already running from this data dir: orch dev (pid {fake.pid})" in r.stderr
        assert fake.poll() is None
    finally:
        fake.kill()
        fake.wait()


def test_dev_stop_stops_the_stack_running_from_the_data_dir(tmp_path, capsys):
    """`orch dev --stop` from another shell: the recorded `orch dev` process and its children are stopped
    (called in-process: what `orch dev --stop` runs)."""
    from cli.dev import stop_dev_stack
    from core.settings import Settings

    main, _ = _fake_server()  # stands in for the running `orch dev`
    child, cport = _fake_server()
    try:
        entry = {
            "name": "api",
            "pid": child.pid,
            "start": proc_start_time(child.pid),
            "ports": {"http": cport},
        }
        path = _pidfile(tmp_path, (main.pid, proc_start_time(main.pid)), [entry])
        settings = Settings(data_dir=tmp_path)
        assert stop_dev_stack(settings) == 0
        assert "stopped." in capsys.readouterr().out
        assert main.wait(30) is not None and child.wait(30) is not None
        assert not path.exists() and port_free(cport)
        assert stop_dev_stack(settings) == 0
        assert "no dev stack is running" in capsys.readouterr().out
    finally:
        for p in (main, child):
            if p.poll() is None:
                p.kill()
                p.wait()


# --- the full stack: dies with its parent; a child failing to start -----------------------------------------


@pytest.mark.slow
def test_sigkill_of_dev_stops_every_child_and_frees_the_ports(tmp_path):
    ports = _ports()
    out_path = tmp_path / "out.txt"
    with open(out_path, "w") as out:
        proc = _start(tmp_path / "data", ports, admin=None, stdout=out)
    pids: list[tuple[str, int, int | None]] = []
    try:
        wait_for(
            lambda: "is running" in out_path.read_text() or proc.poll() is not None,
            180,
            "the dev stack to run",
        )
        assert proc.poll() is None, out_path.read_text()
        record = json.loads((tmp_path / "data" / "devstack.pid").read_text())
        pids = [(p["name"], p["pid"], p["start"]) for p in record["processes"]]
        assert sorted(n for n, _, _ in pids) == ["api", "seaweedfs", "temporal", "worker"]
        assert all(pid_alive(pid, start) for _, pid, start in pids)
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/readyz", timeout=10).status_code == 200

        os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only the parent-death signal can stop them
        proc.wait(10)
        wait_for(
            lambda: not any(pid_alive(pid, start) for _, pid, start in pids),
            60,
            "every child of the killed dev stack to exit",
        )
        for name, port in ports.items():
            wait_for(lambda port=port: port_free(port), 10, f"{name} port {port} to be free")
    finally:
        for _, pid, start in pids:
            if pid_alive(pid, start):
                os.killpg(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_sigkill_of_make_dev_stops_the_whole_stack(tmp_path):
    """`make dev` killed hard: `cli dev` (a child of make) gets SIGTERM from the kernel and stops cleanly."""
    root = Path(__file__).resolve().parents[2]
    ports = _ports()
    data = tmp_path / "data"
    out_path = tmp_path / "out.txt"
    argv = ["make", "-s", "-C", str(root), "-o", ".venv/.installed-stamp", "dev", f"PY={sys.executable}"]
    with open(out_path, "w") as out:
        make = subprocess.Popen(argv, env=_env(data, ports), stdout=out, stderr=subprocess.STDOUT)
    procs: list[tuple[int, int | None]] = []
    try:
        running = lambda: "is running" in out_path.read_text() or make.poll() is not None  # noqa: E731
        wait_for(running, 180, "make dev to run")
        assert make.poll() is None, out_path.read_text()
        record = json.loads((data / "devstack.pid").read_text())
        procs = [(p["pid"], p["start"]) for p in record["processes"]]
        procs.append((record["orch_dev"]["pid"], record["orch_dev"]["start"]))
        assert len(procs) == 5 and all(pid_alive(*p) for p in procs)

        make.kill()
        make.wait(10)
        wait_for(lambda: not any(pid_alive(*p) for p in procs), 90, "`cli dev` and its children to exit")
        for name, port in ports.items():
            wait_for(lambda port=port: port_free(port), 10, f"{name} port {port} to be free")
        assert "stopped." in out_path.read_text()
        assert not (data / "devstack.pid").exists(), "a clean stop removes the pidfile"
    finally:
        for pid, start in procs:
            if pid_alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if make.poll() is None:
            make.kill()
            make.wait()


@pytest.mark.slow
def test_child_failing_to_start_is_one_line_and_its_own_log_tail(tmp_path):
    ports = _ports()
    data = tmp_path / "data"
    (data / "temporal.db").mkdir(parents=True)  # the Temporal dev server cannot open a directory as its DB
    (data / "logs").mkdir()
    (data / "logs" / "temporal.log").write_text("OLD-START-MARKER from an earlier start\n")
    r = subprocess.run(
        [sys.executable, "-m", "cli", "dev"],
        env=_env(data, ports),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("temporal exited at start (code ") and "temporal.log:" in first, r.stderr
    assert "OLD-START-MARKER" not in r.stderr, "the tail must be this start's log only"
    assert len(r.stderr.strip().splitlines()) > 1, "the tail of temporal's log follows"
    assert "Traceback" not in r.stdout + r.stderr
    assert "is running" not in r.stdout
    assert "OLD-START-MARKER" in (data / "logs" / "temporal.log.1").read_text()
    for name, port in ports.items():
        assert port_free(port), f"{name} port {port} still in use after the failed start"
    assert not (data / "devstack.pid").exists()


def test_data_dir_is_owner_only_from_the_start(tmp_path):
    """Issue 21 item 12: `orch dev` creates its data dir 0700 before anything else (even a start that stops
    at its pre-checks); an existing world-readable one loses read and write for others."""
    import stat

    from core.datadir import make_data_dir

    sock, port = _listener()
    with sock:
        r = _run_dev(tmp_path / "fresh", _ports() | {"api": port})
    assert r.returncode == 1, r.stdout + r.stderr
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    old.chmod(0o755)
    assert stat.S_IMODE(make_data_dir(old).stat().st_mode) == 0o711  # traverse only: lists nothing
    assert stat.S_IMODE(make_data_dir(tmp_path / "new" / "data").stat().st_mode) == 0o700


def test_five_earlier_logs_are_kept(tmp_path):
    """Issue 21 item 12: each start keeps the previous starts' logs as .log.1 (the last) .. .log.5."""
    from cli.dev import KEPT_LOGS, _fresh_log

    log = tmp_path / "worker.log"
    for start in range(1, 9):
        assert _fresh_log(log) == log and not log.exists()
        log.write_text(f"start {start}\n")
    assert log.read_text() == "start 8\n"
    kept = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert KEPT_LOGS == 5
    assert kept == {"worker.log": "start 8\n", **{f"worker.log.{i}": f"start {8 - i}\n" for i in range(1, 6)}}


def test_dev_s3_secret_is_per_deployment(tmp_path):
    """Issue 21 item 3: `make dev`'s S3 gateway never accepts the public default secret: each data dir gets
    its own (kept 0600); one set explicitly is used as it is."""
    import stat

    from cli.dev import DEV_S3_SECRET, s3_secret
    from core.settings import Settings

    a1, _ = s3_secret(Settings(_env_file=None, data_dir=tmp_path / "a"))
    a2, _ = s3_secret(Settings(_env_file=None, data_dir=tmp_path / "a"))
    b, _ = s3_secret(Settings(_env_file=None, data_dir=tmp_path / "b"))
    assert Settings(_env_file=None).s3_secret_access_key == DEV_S3_SECRET
    assert a1 == a2 and a1 != b and DEV_S3_SECRET not in (a1, b) and len(a1) >= 40
    assert stat.S_IMODE((tmp_path / "a" / "s3_secret").stat().st_mode) == 0o600
    mine = Settings(_env_file=None, data_dir=tmp_path / "c", s3_secret_access_key="set-by-the-operator")
    assert s3_secret(mine)[0] == "set-by-the-operator" and not (tmp_path / "c").exists()
