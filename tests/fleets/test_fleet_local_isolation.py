# ruff: noqa: F811 - pytest fixtures imported by name are parameters of the tests
"""What the ``local`` driver keeps an app from (README: "What `local` isolates and what it does not"), with
real processes: a probe app tries to read the worker's data and other runs; plus run-dir retention and
run-relative error messages."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleets.base import FleetHandle, FleetState
from fleets.local import UID_LOCKS, clean_run_dirs
from tests.support.fleet import alive, wait_final, wait_until

SECRETS = {
    "ORCH_ADMIN_API_KEY": "orch_admin_probe-secret-admin-key",
    "ORCH_DATABASE_URL": "postgresql://orch:probe-secret-db-password@db/orch",
    "AWS_SECRET_ACCESS_KEY": "probe-secret-aws-key",
    "ORCH_S3_SECRET_ACCESS_KEY": "probe-secret-s3-key",
}
APP_ENV = {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED", "ORCH_RUN_ID", "ORCH_DATA_URI", "ORCH_ARGS"}

# Another tenant's run: logs a secret, says it is ready, waits for --release (at most 60 s).
VICTIM_APP = {
    "main.py": """
import os, sys, time
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
print("victim-log-secret", flush=True)
with open(a["ready"] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(a["ready"] + ".tmp", a["ready"])
end = time.time() + 60
while not os.path.exists(a["release"]) and time.time() < end:
    time.sleep(0.02)
"""
}

# Tries everything it should not be able to do and prints what happened as one JSON line; exits 7.
PROBE_APP = {
    "main.py": r"""
import json, os, subprocess, sys
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
out = {}
for name, path in json.loads(a["reads"]).items():
    try:
        with open(path, "rb") as f:
            out[name] = "READ " + f.read(200).decode("utf-8", "replace")
    except OSError as e:
        out[name] = type(e).__name__
for name, path in json.loads(a["lists"]).items():
    try:
        out[name] = "LISTED " + ",".join(os.listdir(path))
    except OSError as e:
        out[name] = type(e).__name__
for name in ("exit_code", "pid", "launched", "log"):  # the supervisor's state, one level up
    try:
        with open(os.path.join("..", name), "a") as f:
            f.write('{"exit_code": 0}')
        out["write " + name] = "WROTE"
    except OSError as e:
        out["write " + name] = type(e).__name__
for var in ("HOME", "TMPDIR"):
    with open(os.path.join(os.environ[var], "probe.txt"), "w") as f:
        f.write("mine")
daemon = subprocess.Popen(["sleep", "300"], start_new_session=True)  # escapes the process group
nnp = [x.split()[1] for x in open("/proc/self/status") if x.startswith("NoNewPrivs:")]
print("PROBE " + json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                             "groups": os.getgroups(), "env": dict(os.environ), "out": out,
                             "daemon": daemon.pid, "no_new_privs": nnp}), flush=True)
sys.exit(7)
"""
}


def _dev_data_dir(data: Path) -> dict[str, Path]:
    """What ``make dev`` keeps in the data dir, with the permissive modes of a default umask."""
    (data / "logs").mkdir(parents=True)
    (data / "s3").mkdir()
    db = data / "orchestrator.db"
    with sqlite3.connect(db) as con:
        con.execute("create table clients (key_hash text)")
        con.execute("insert into clients values ('db-secret-row')")
    con.close()
    (data / "logs" / "worker.log").write_text("worker-log-secret\n")
    ids = data / "s3" / "s3-identities.json"
    ids.write_text(json.dumps({"identities": [{"credentials": [{"secretKey": "s3-identities-secret"}]}]}))
    secret = data / "s3_secret"  # make dev's per-deployment S3 secret
    secret.write_text("s3-deployment-secret")
    for p, mode in (
        (db, 0o644),
        (data / "logs", 0o755),
        (data / "s3", 0o755),
        (ids, 0o644),
        (secret, 0o644),
        (data, 0o755),
    ):
        p.chmod(mode)
    return {"db": db, "worker_log": data / "logs" / "worker.log", "s3_identities": ids, "s3_secret": secret}


@pytest.fixture
def secret_process():
    """A long-lived root process with secrets in its environment (stands in for the API / worker)."""
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SECRETS},
    )
    yield p
    p.kill()
    p.wait(10)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="per-run uids need a root worker; otherwise only the scrubbed env applies",
)
def test_probe_app_reads_nothing_of_the_worker_or_other_runs(
    driver,
    upload_app,
    settings,
    xchg,
    secret_process,
    monkeypatch,
):
    data = Path(settings.data_dir)
    files = _dev_data_dir(data)
    for k, v in SECRETS.items():  # in the worker's own environment too
        monkeypatch.setenv(k, v)

    # another tenant's run, still running
    ready, release = xchg / "victim.ready", xchg / "victim.release"
    victim_spec = upload_app(VICTIM_APP, args={"ready": str(ready), "release": str(release)})
    victim = driver.launch(victim_spec)
    victim_pid = int(wait_until(lambda: ready.exists() and ready.read_text(), 15, "the victim app"))
    victim_dir = driver.attempt_dir(victim.run_id, victim.attempt)
    wait_until(lambda: "victim-log-secret" in driver.logs(victim), 10, "the victim's log line")

    reads = {
        **{k: str(v) for k, v in files.items()},
        "other_run_log": str(victim_dir / "log"),
        "other_run_app": str(victim_dir / "app" / "main.py"),
        "other_run_home": str(victim_dir / "home"),
        "environ_of_api": f"/proc/{secret_process.pid}/environ",
        "environ_of_worker": f"/proc/{os.getpid()}/environ",
        "environ_of_other_run": f"/proc/{victim_pid}/environ",
    }
    lists = {"list_data_dir": str(data), "list_runs": str(data / "runs"), "list_other_run": str(victim_dir)}
    # the targets are real and readable by the worker: a refusal below is the isolation, not a typo
    assert "db-secret-row" in files["db"].read_bytes().decode("latin-1")
    assert SECRETS["ORCH_ADMIN_API_KEY"] in Path(reads["environ_of_api"]).read_bytes().decode()
    assert "victim-log-secret" in Path(reads["other_run_log"]).read_text()

    probe = driver.launch(
        upload_app(PROBE_APP, args={"reads": json.dumps(reads), "lists": json.dumps(lists)})
    )
    st = wait_final(driver, probe)
    text = driver.logs(probe)
    assert (st.state, st.exit_code) == (FleetState.FAILED, 7), (st, text)  # it ran, and its code is kept
    line = next(x for x in text.splitlines() if x.startswith("PROBE "))
    report = json.loads(line[len("PROBE ") :])

    for name in reads:
        assert report["out"][name] == "PermissionError", (name, report["out"][name])
    for name in lists:
        assert report["out"][name] == "PermissionError", (name, report["out"][name])
    for name in ("exit_code", "pid", "launched", "log"):
        assert report["out"][f"write {name}"] == "PermissionError", name
    assert set(report["env"]) <= APP_ENV, report["env"]
    assert report["env"]["ORCH_RUN_ID"] == probe.run_id
    for secret in SECRETS.values():
        assert secret not in line and secret not in text

    pdir = driver.attempt_dir(probe.run_id, probe.attempt)
    uid = json.loads((pdir / "run_uid").read_text())["uid"]
    vuid = json.loads((victim_dir / "run_uid").read_text())["uid"]
    assert report["uid"] == report["euid"] == report["gid"] == uid
    assert uid not in (0, vuid) and report["groups"] == []
    assert report["no_new_privs"] == ["1"]  # setuid programs (sudo, su) cannot raise it
    assert report["env"]["HOME"].startswith(str(pdir)) and (pdir / "home" / "probe.txt").read_text() == "mine"
    assert (pdir / "tmp" / "probe.txt").read_text() == "mine"
    # what the worker left for the app to reach, and nothing more
    mode = {
        p: stat.S_IMODE(p.stat().st_mode)
        for p in (
            data,
            files["db"],
            data / "logs",
            data / "s3",
            data / "runs",
            pdir,
            pdir / "app",
            pdir / "log",
        )
    }
    assert mode == {
        data: 0o711,
        files["db"]: 0o600,
        data / "logs": 0o700,
        data / "s3": 0o700,
        data / "runs": 0o711,
        pdir: 0o711,
        pdir / "app": 0o700,
        pdir / "log": 0o600,
    }
    assert (pdir / "app").stat().st_uid == uid and pdir.stat().st_uid == 0
    # the app's setsid daemon did not outlive it
    wait_until(lambda: not alive(report["daemon"]), 15, "the probe's escaped daemon to be killed")

    # the other run was untouched, and cancel still stops it
    assert driver.poll(victim).state == FleetState.RUNNING
    assert driver.launch(victim_spec) == victim  # re-attach, not a second start
    assert driver.terminate(victim).state == FleetState.TERMINATED
    assert not alive(victim_pid)


def test_app_env_is_scrubbed(driver, upload_app, monkeypatch):
    """Root or not: nothing of the worker's environment reaches the app."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    app = {"main.py": "import json, os\nprint('ENV ' + json.dumps(dict(os.environ)))\n"}
    handle = driver.launch(upload_app(app))
    assert wait_final(driver, handle).state == FleetState.SUCCEEDED
    text = driver.logs(handle)
    env = json.loads(next(x for x in text.splitlines() if x.startswith("ENV "))[4:])
    assert set(env) <= APP_ENV and {"ORCH_RUN_ID", "ORCH_ARGS", "HOME", "TMPDIR"} <= set(env)
    assert env["PATH"] == driver.settings.local_app_path
    assert not any(s in text for s in SECRETS.values())


def test_entry_name_too_long_fails_once_without_host_path(driver, upload_app):
    spec = upload_app({"main.py": "print('never')\n", "d/" + "n" * 300 + ".txt": "x"})
    t0 = time.monotonic()
    handle = driver.launch(spec)  # no retry loop: the artifact's fault is this attempt's outcome
    st = driver.poll(handle)
    assert time.monotonic() - t0 < 15
    assert st.state == FleetState.FAILED and st.exit_code is None, st
    assert "artifact rejected" in st.reason
    text = driver.logs(handle)
    data = str(Path(driver.settings.data_dir).resolve())
    for msg in (st.reason, text):
        assert data not in msg and "/runs/" not in msg and ".stage-" not in msg, msg
    assert "never" not in text


def test_clean_run_dirs_removes_only_finished_runs_after_retention(
    driver,
    upload_app,
    settings,
    xchg,
):
    done = driver.launch(upload_app({"run.sh": "echo done\n"}))
    assert wait_final(driver, done).state == FleetState.SUCCEEDED
    refused = driver.launch(upload_app({"run.sh": "exit 0\n"}, sha_override="0" * 64))
    assert driver.poll(refused).state == FleetState.FAILED
    ready, release = xchg / "ready", xchg / "release"
    running = driver.launch(upload_app(VICTIM_APP, args={"ready": str(ready), "release": str(release)}))
    wait_until(ready.exists, 15, "the long app")
    runs = Path(settings.data_dir) / "runs"
    locks = runs / UID_LOCKS
    done_uid = json.loads((driver._dir(done) / "run_uid").read_text())["uid"] if os.geteuid() == 0 else None

    now = time.time()
    assert clean_run_dirs(settings, now) == []  # all within the 72 h retention
    later = now + 72 * 3600 + 60
    removed = clean_run_dirs(settings, later)
    assert sorted(removed) == sorted([f"{done.run_id}/1", f"{refused.run_id}/1"])
    assert not (runs / done.run_id).exists() and not (runs / refused.run_id).exists()
    assert driver._dir(running).is_dir() and driver.poll(running).state == FleetState.RUNNING
    if done_uid is not None:
        assert not (locks / str(done_uid)).exists()  # its uid is free again
    assert clean_run_dirs(settings, later) == []

    release.touch()
    assert wait_final(driver, running).state == FleetState.SUCCEEDED
    assert clean_run_dirs(settings, time.time()) == []
    assert clean_run_dirs(settings, time.time() + 73 * 3600) == [f"{running.run_id}/1"]
    if os.geteuid() == 0:
        assert [p.name for p in locks.iterdir() if not p.name.startswith(".")] == []


def test_handles_of_the_same_attempt_keep_their_uid(driver, upload_app):
    if os.geteuid() != 0:
        pytest.skip("per-run uids need a root worker")
    spec = upload_app({"run.sh": "id -u\n"})
    handle = driver.launch(spec)
    assert wait_final(driver, handle).state == FleetState.SUCCEEDED
    uid = json.loads((driver._dir(handle) / "run_uid").read_text())["uid"]
    assert driver.logs(handle).strip() == str(uid)
    assert driver.launch(spec) == handle
    assert json.loads((driver._dir(handle) / "run_uid").read_text())["uid"] == uid
    assert driver.terminate(FleetHandle("local", spec.run_id, 1, handle.ref)).state == FleetState.SUCCEEDED


def test_root_worker_with_closed_data_dir_parents_runs_from_the_temp_dir(tmp_path, s3_settings, upload_app):
    """Under a root-only parent (pytest's tmp_path is 0700, like a checkout under /root) a run uid could not
    reach data_dir/runs: the attempts live in a directory of the system temp dir instead (isolation kept).
    A configured ORCH_LOCAL_RUNS_DIR under a closed parent fails at once with a reason naming no host path."""
    if os.geteuid() != 0:
        pytest.skip("per-run uids need a root worker")
    import tempfile

    from fleets.local import LocalFleetDriver
    from tests.support.common import make_settings

    assert not tmp_path.stat().st_mode & 0o001
    drv = LocalFleetDriver(make_settings(tmp_path / "data", **s3_settings))
    assert drv.runs_dir.parent == Path(tempfile.gettempdir())
    handle = drv.launch(upload_app({"run.sh": "id -u\n"}))
    try:
        assert wait_final(drv, handle).state == FleetState.SUCCEEDED
        assert drv.logs(handle).strip() != "0"  # ran under its own uid, not root
    finally:
        shutil.rmtree(drv.runs_dir, ignore_errors=True)

    closed = LocalFleetDriver(make_settings(tmp_path / "d2", local_runs_dir=tmp_path / "runs", **s3_settings))
    h2 = closed.launch(upload_app({"run.sh": "echo ran\n"}))
    st = closed.poll(h2)
    assert st.state == FleetState.FAILED and "closed to other users" in st.reason
    assert str(tmp_path) not in st.reason and "ran" not in closed.logs(h2)
    ok = LocalFleetDriver(make_settings(tmp_path / "d3", local_run_as_run_uid=False, **s3_settings))
    h3 = ok.launch(upload_app({"run.sh": "echo ran\n"}))  # no uid isolation: any dir works
    assert wait_final(ok, h3).state == FleetState.SUCCEEDED and "ran" in ok.logs(h3)


def test_launch_errors_name_no_host_path(driver, upload_app):
    """An OS error while launching (here: ``runs`` is a file) raises for the activity to retry, with paths
    relative to the data dir only: the message may end up in the run's status_reason."""
    data = Path(driver.settings.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    (data / "runs").write_text("not a directory")
    with pytest.raises(RuntimeError, match="cannot launch the app") as info:
        driver.launch(upload_app({"run.sh": "echo hi\n"}))
    assert str(data) not in str(info.value) and "/tmp" not in str(info.value), str(info.value)


# Connects to each given 127.0.0.1 port (and the host's other addresses), lists its interfaces, and checks
# that its own loopback works; prints one JSON line.
NET_PROBE_APP = {
    "main.py": r"""
import json, socket, sys
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
out = {}
def attempt(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "CONNECTED"
    except OSError as e:
        return type(e).__name__ + ":" + str(e.errno)
for name, port in json.loads(a["ports"]).items():
    out[name] = attempt("127.0.0.1", port)
for addr in json.loads(a["host_addrs"]):
    out["host " + addr] = attempt(addr, 22)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
out["own_loopback"] = attempt("127.0.0.1", srv.getsockname()[1])
out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
print("NETPROBE " + json.dumps(out), flush=True)
"""
}


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="network namespaces need a root worker",
)
def test_app_reaches_no_server_of_the_stack(driver, upload_app, seaweedfs, temporal_dev_server):
    """Issue 21 item 3: an app must not reach the (unauthenticated) SeaweedFS filer and master, the S3
    gateway or the Temporal frontend of the real servers the worker uses, nor other hosts."""
    import errno
    import socket

    import psutil

    from fleets.local import network_namespaces_available

    if not network_namespaces_available():
        pytest.skip("this host cannot create network namespaces (no CAP_SYS_ADMIN)")

    ports = {
        "s3": seaweedfs.ports["s3"],
        "filer": seaweedfs.ports["filer"],
        "master": seaweedfs.ports["master"],
        "volume": seaweedfs.ports["volume"],
        "temporal": temporal_dev_server.ports["grpc"],
    }
    for port in ports.values():  # they do listen: a refusal below is the isolation
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    host_addrs = [
        a.address
        for nic, addrs in psutil.net_if_addrs().items()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ][:3]
    args = {"ports": json.dumps(ports), "host_addrs": json.dumps(host_addrs)}
    handle = driver.launch(upload_app(NET_PROBE_APP, args=args))
    assert wait_final(driver, handle).state == FleetState.SUCCEEDED, driver.logs(handle)
    text = driver.logs(handle)
    out = json.loads(next(x for x in text.splitlines() if x.startswith("NETPROBE "))[len("NETPROBE ") :])
    for name in ports:
        assert out[name] == f"ConnectionRefusedError:{errno.ECONNREFUSED}", (name, out)
    for addr in host_addrs:
        assert out["host " + addr] == f"OSError:{errno.ENETUNREACH}", (addr, out)
    assert out["own_loopback"] == "CONNECTED"  # its own servers on 127.0.0.1 still work
    assert out["interfaces"] == ["lo"]


def test_host_network_is_a_setting(s3_settings, open_dir, upload_app, seaweedfs):
    """ORCH_LOCAL_APP_NETWORK=host (or a non-root worker) shares the worker's network, as documented."""
    from fleets.local import LocalFleetDriver
    from tests.support.common import make_settings

    drv = LocalFleetDriver(make_settings(open_dir / "hostnet", local_app_network="host", **s3_settings))
    assert not drv.isolate_network
    args = {"ports": json.dumps({"s3": seaweedfs.ports["s3"]}), "host_addrs": "[]"}
    handle = drv.launch(upload_app(NET_PROBE_APP, args=args))
    assert wait_final(drv, handle).state == FleetState.SUCCEEDED, drv.logs(handle)
    assert '"s3": "CONNECTED"' in drv.logs(handle)


def test_start_up_says_what_local_isolates():
    """A worker that cannot isolate apps says so (logged once when the driver is built)."""
    import logging

    from fleets.local import isolation_summary

    level, msg = isolation_summary(False, False)
    assert level == logging.WARNING and "own user on the worker's network" in msg
    assert "reach the API, Temporal and SeaweedFS" in msg
    level, msg = isolation_summary(True, False)
    assert level == logging.WARNING and "ORCH_LOCAL_APP_NETWORK=host" in msg
    assert isolation_summary(True, True)[0] == logging.INFO


def test_unlaunchable_args_fail_the_attempt_at_once_without_host_paths(driver, upload_app, monkeypatch):
    """Issue 21 item 11: args stored before the API refused them (a lone surrogate, more than the OS passes
    to a program) fail their attempt once with a reason; an OS error while launching names no host path
    (not the worker's interpreter, not the data dir)."""
    from models.api import MAX_ARG_STRLEN

    data = str(Path(driver.settings.data_dir).resolve())
    for args, why in (
        ({"x": "a\ud800"}, "not valid Unicode"),
        ({f"a{i}": "x" * 4096 for i in range(40)}, "ORCH_ARGS"),
    ):
        handle = driver.launch(upload_app({"run.sh": "echo never\n"}, args=args))
        st = driver.poll(handle)
        assert st.state == FleetState.FAILED and why in st.reason, st
        assert data not in st.reason and "never" not in driver.logs(handle)
    # the limits the API applies are those of what the driver really passes (fleets.contract)
    from fleets.contract import app_argv, app_env
    from models.api import args_launch_problem

    args = {"a": "x" * (MAX_ARG_STRLEN - len('ORCH_ARGS={"a": ""}') - 1)}
    assert len(("ORCH_ARGS=" + app_env("r", None, args)["ORCH_ARGS"]).encode()) + 1 == MAX_ARG_STRLEN
    assert args_launch_problem(args) is None
    assert args_launch_problem({"a": args["a"] + "x"}) is not None
    assert app_argv({"b": "é"}) == ["--b=é"]

    monkeypatch.setattr("fleets.local.sys.executable", "/opt/hidden-venv/bin/python-missing")
    with pytest.raises(RuntimeError, match="cannot launch the app") as info:
        driver.launch(upload_app({"run.sh": "echo hi\n"}))
    assert "/opt" not in str(info.value) and "hidden" not in str(info.value), str(info.value)


# Leaves files and a directory in the host's shared temporary directories, and a daemon that keeps one open.
LITTER_APP = {
    "run.sh": """
set -e
echo left > /tmp/orch-litter-$ORCH_RUN_ID
mkdir -p /var/tmp/orch-litter-$ORCH_RUN_ID/sub && echo left > /var/tmp/orch-litter-$ORCH_RUN_ID/sub/f
echo left > /dev/shm/orch-litter-$ORCH_RUN_ID
ln -s /etc/hostname /tmp/orch-litter-link-$ORCH_RUN_ID
setsid sleep 300 < /tmp/orch-litter-$ORCH_RUN_ID > /dev/null 2>&1 &
echo done
"""
}


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="per-run uids need a root worker (a non-root worker's files cannot be told from the app's)",
)
def test_files_an_app_leaves_in_shared_tmp_dirs_go_with_the_run(driver, upload_app):
    """Issue 21 item 12: /tmp, /var/tmp and /dev/shm hold nothing of a run once it ended; what is not the
    run uid's (the host's own files, the target of a symlink it made) stays."""
    spec = upload_app(LITTER_APP)
    mine = Path("/tmp") / f"orch-litter-{spec.run_id}.root"  # the host's: same prefix, another owner
    mine.write_text("host")
    litter = [Path(p) / f"orch-litter-{spec.run_id}" for p in ("/tmp", "/var/tmp", "/dev/shm")] + [
        Path(f"/tmp/orch-litter-link-{spec.run_id}")
    ]
    try:
        handle = driver.launch(spec)
        st = wait_final(driver, handle)
        assert st.state == FleetState.SUCCEEDED and "done" in driver.logs(handle), driver.logs(handle)
        assert not [p for p in litter if os.path.lexists(p)]
        assert mine.read_text() == "host" and Path("/etc/hostname").exists()
    finally:
        mine.unlink(missing_ok=True)
        for p in litter:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                p.unlink()


def test_two_stacks_get_distinct_run_uid_ranges_by_default(open_dir, s3_settings):
    """Issue 21 item 12: the default range comes from a hash of the data dir; a set base wins."""
    from fleets.local import LocalFleetDriver, default_uid_base
    from tests.support.common import make_settings

    a = LocalFleetDriver(make_settings(open_dir / "stack-a", **s3_settings))
    b = LocalFleetDriver(make_settings(open_dir / "stack-b", **s3_settings))
    again = LocalFleetDriver(make_settings(open_dir / "stack-a", **s3_settings))
    count = a.uid_count
    assert a.uid_base == again.uid_base == default_uid_base(a.data_dir, count)
    assert abs(a.uid_base - b.uid_base) >= count  # disjoint ranges
    for d in (a, b):
        assert d.uid_base >= 2_000_000_000 and d.uid_base + count <= 4_000_000_000
        assert (d.uid_base - 2_000_000_000) % count == 0
    bases = {default_uid_base(open_dir / f"s{i}", count) for i in range(50)}
    assert len(bases) >= 45  # spread over the 2000 slots
    fixed = LocalFleetDriver(make_settings(open_dir / "stack-c", local_run_uid_base=3_000_000, **s3_settings))
    assert fixed.uid_base == 3_000_000
