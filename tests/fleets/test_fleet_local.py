"""The local fleet driver against the session's real SeaweedFS: real processes, real process groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleets import get_driver
from fleets.base import FleetHandle, FleetState
from fleets.local import LocalFleetDriver
from tests.support.fleet import alive, wait_final, wait_until

REPO = Path(__file__).resolve().parents[2]

ARGS_APP = {
    "main.py": """
import os, sys
print("argv", sys.argv[1:])
for k in ("ORCH_RUN_ID", "ORCH_DATA_URI", "ORCH_ARGS", "AWS_SECRET_ACCESS_KEY"):
    print(k + "=" + os.environ.get(k, "<unset>"))
print("cwd-has-main", os.path.exists("main.py"))
"""
}

EXIT3_APP = {"run.sh": "echo bye from run.sh\nexit 3\n"}

# Appends one line per start to --counter, then waits until --release exists (at most 60 s).
COUNTER_APP = {
    "main.py": """
import os, sys, time
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
with open(a["counter"], "a") as f:
    f.write("start\\n")
end = time.time() + 60
while not os.path.exists(a["release"]) and time.time() < end:
    time.sleep(0.02)
print("released")
"""
}

# Spawns a long child in its own group, records its pid, waits for it.
GROUP_APP = {
    "run.sh": """
for a in "$@"; do case "$a" in --child=*) CHILD="${a#--child=}";; esac; done
sleep 300 &
echo $! > "$CHILD.tmp" && mv "$CHILD.tmp" "$CHILD"
wait
"""
}

STUBBORN_APP = {
    "main.py": """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
with open(a["ready"], "w") as f:
    f.write(str(os.getpid()))
while True:
    time.sleep(0.1)
"""
}


def test_registry(settings):
    assert isinstance(get_driver("local", settings), LocalFleetDriver)
    with pytest.raises(ValueError, match="unknown fleet driver"):
        get_driver("k8s", settings)


def test_success_with_args_and_env(driver, upload_app, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-secret-must-not-leak")
    spec = upload_app(ARGS_APP, args={"alpha": 1, "name": "x y", "flag": True})
    handle = driver.launch(spec)
    assert handle.driver == "local" and handle.run_id == spec.run_id and handle.attempt == 1
    st = wait_final(driver, handle)
    assert st.state == FleetState.SUCCEEDED and st.exit_code == 0, st
    text = driver.logs(handle)
    assert "argv ['--alpha=1', '--flag=true', '--name=x y']" in text
    assert f"ORCH_RUN_ID={spec.run_id}" in text
    assert "ORCH_DATA_URI=s3://data/in/" in text
    assert 'ORCH_ARGS={"alpha": 1, "flag": true, "name": "x y"}' in text
    assert "AWS_SECRET_ACCESS_KEY=<unset>" in text  # the worker's secrets stay out of the app
    assert "cwd-has-main True" in text
    app_dir = Path(driver.settings.data_dir).resolve() / "runs" / spec.run_id / "1" / "app"
    assert (app_dir / "main.py").is_file()
    assert driver.logs(handle, tail_bytes=10) == text[-10:]
    assert driver.terminate(handle).state == FleetState.SUCCEEDED  # no-op once finished


def test_exit_code_3_is_failed(driver, upload_app):  # noqa: F811
    handle = driver.launch(upload_app(EXIT3_APP))
    st = wait_final(driver, handle)
    assert (st.state, st.exit_code) == (FleetState.FAILED, 3)
    assert "exited with code 3" in st.reason
    assert "bye from run.sh" in driver.logs(handle)


def test_checksum_mismatch_is_not_an_app_failure(driver, upload_app, xchg):  # noqa: F811
    spec = upload_app(
        COUNTER_APP, args={"counter": str(xchg / "c"), "release": str(xchg / "r")}, sha_override="0" * 64
    )
    handle = driver.launch(spec)
    st = driver.poll(handle)
    assert st.state == FleetState.FAILED and st.exit_code is None
    assert st.reason == "artifact checksum mismatch"
    assert driver.launch(spec) == handle  # idempotent: still refused, never run
    assert not (xchg / "c").exists()
    assert "artifact checksum mismatch" in driver.logs(handle)


def test_missing_artifact(driver, upload_app):  # noqa: F811
    spec = upload_app(EXIT3_APP)
    spec.artifact_key = "client_test/apps/does-not-exist.zip"
    st = driver.poll(driver.launch(spec))
    assert st.state == FleetState.FAILED and "artifact not found" in st.reason


def test_double_launch_starts_once(driver, upload_app, xchg):  # noqa: F811
    counter, release = xchg / "counter", xchg / "release"
    spec = upload_app(COUNTER_APP, args={"counter": str(counter), "release": str(release)})
    handles, errors = [], []

    def go():
        try:
            handles.append(driver.launch(spec))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    handles.append(driver.launch(spec))  # and once more, sequentially
    assert all(h == handles[0] for h in handles)
    wait_until(lambda: counter.exists(), 10, "the app to start")
    assert driver.poll(handles[0]).state == FleetState.RUNNING
    release.touch()
    assert wait_final(driver, handles[0]).state == FleetState.SUCCEEDED
    assert counter.read_text().splitlines() == ["start"]


LAUNCHER = """
import json, sys
from core.settings import Settings
from fleets.base import LaunchSpec
from fleets.local import LocalFleetDriver
spec = LaunchSpec(**json.loads(sys.argv[1]))
LocalFleetDriver(Settings(**json.loads(sys.argv[2]))).launch(spec)
print("launched", flush=True)
sys.stdin.read()  # block until killed
"""


def test_app_survives_death_of_its_launcher(driver, upload_app, xchg, s3_settings):  # noqa: F811
    counter, release = xchg / "counter", xchg / "release"
    spec = upload_app(COUNTER_APP, args={"counter": str(counter), "release": str(release)})
    cfg = {"data_dir": str(driver.settings.data_dir), "cancel_grace_sec": 5.0, **s3_settings}
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, json.dumps(spec.__dict__), json.dumps(cfg)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert launcher.stdout.readline().strip() == "launched"
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
    handle = driver.launch(spec)  # a "new worker" re-attaches
    assert driver.poll(handle).state == FleetState.RUNNING
    release.touch()
    assert wait_final(driver, handle).state == FleetState.SUCCEEDED
    assert counter.read_text().splitlines() == ["start"]
    assert "released" in driver.logs(handle)


def test_terminate_kills_the_whole_group(driver, upload_app, xchg):  # noqa: F811
    child_file = xchg / "child.pid"
    handle = driver.launch(upload_app(GROUP_APP, args={"child": str(child_file)}))
    child = int(wait_until(lambda: child_file.exists() and child_file.read_text().strip(), 10, "child pid"))
    pid = json.loads((driver.attempt_dir(handle.run_id, handle.attempt) / "pid").read_text())["pid"]
    assert alive(pid) and alive(child)
    assert os.getpgid(child) == pid  # same group as the app's leader, which is not ours
    assert os.getpgid(pid) != os.getpgid(0)
    st = driver.terminate(handle)
    assert st.state == FleetState.TERMINATED, st
    assert not alive(pid) and not alive(child)
    assert driver.poll(handle).state == FleetState.TERMINATED
    assert driver.terminate(handle).state == FleetState.TERMINATED  # idempotent


def test_terminate_escalates_to_sigkill(driver, upload_app, xchg):  # noqa: F811
    ready = xchg / "ready"
    driver.grace_sec = 0.5
    handle = driver.launch(upload_app(STUBBORN_APP, args={"ready": str(ready)}))
    pid = int(wait_until(lambda: ready.exists() and ready.read_text(), 10, "app ready"))
    t0 = time.monotonic()
    st = driver.terminate(handle)
    took = time.monotonic() - t0
    assert st.state == FleetState.TERMINATED
    assert st.exit_code == 128 + signal.SIGKILL
    assert took >= 0.5
    assert not alive(pid)


def test_terminate_before_launch_prevents_start(driver, upload_app, xchg):  # noqa: F811
    counter = xchg / "counter"
    spec = upload_app(COUNTER_APP, args={"counter": str(counter), "release": str(xchg / "r")})
    handle = FleetHandle("local", spec.run_id, spec.attempt, {})
    assert driver.terminate(handle).state == FleetState.TERMINATED
    launched = driver.launch(spec)
    assert (launched.driver, launched.run_id, launched.attempt) == ("local", spec.run_id, spec.attempt)
    assert launched.ref["dir"] == f"{spec.run_id}/{spec.attempt}"
    assert driver.poll(handle).state == FleetState.TERMINATED
    assert not counter.exists()


def test_stale_pid_of_another_process_is_not_the_app(driver, tmp_path):
    """A pid file whose pid now belongs to someone else (reuse) must not look RUNNING. The "someone else"
    is a process this test starts in a group of its own (never pytest or pytest's group: the teardown
    would otherwise signal a group the test did not create)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        d = driver.attempt_dir("run_stale", 1)
        d.mkdir(parents=True)
        (d / "launched").write_text(json.dumps({"supervisor_pid": other.pid, "supervisor_ticks": "1"}))
        (d / "pid").write_text(json.dumps({"pid": other.pid, "pgid": other.pid, "ticks": "1"}))
        st = driver.poll(FleetHandle("local", "run_stale", 1, {"dir": str(d)}))
        assert st.state == FleetState.FAILED and "vanished" in st.reason
        assert other.poll() is None  # polling signals nobody
    finally:
        other.kill()  # by pid: the one process this test started
        other.wait()


def test_unsafe_run_id_rejected(driver, upload_app):  # noqa: F811
    spec = upload_app(EXIT3_APP)
    spec.run_id = "../../etc"
    with pytest.raises(ValueError, match="run_id"):
        driver.launch(spec)
