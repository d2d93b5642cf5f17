"""The app's log lives in the artifact store for every driver: the local driver copies it there while the
app runs and when it ends, and the API reads it from there (no fleet driver, no disk shared with the worker).
Real SeaweedFS, real processes, the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import fleets.local
from fleets.base import FleetState
from fleets.local import LocalFleetDriver
from fleets.logstore import log_key, read_tail
from tests.support.api import insert_job_and_run, is_problem, setup_template
from tests.support.common import make_settings
from tests.support.fleet import FLEET_BUCKET, wait_until

# Prints a line, waits for --release (at most 60 s), prints another, exits 0.
WAITING_APP = {
    "main.py": """
import os, sys, time
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
print("started", flush=True)
end = time.time() + 60
while not os.path.exists(a["release"]) and time.time() < end:
    time.sleep(0.02)
print("released", flush=True)
"""
}


def test_api_reads_the_log_from_the_artifact_store(api, api_settings, s3):  # noqa: F811
    cid, h, tpl = setup_template(api)
    bucket = api_settings.s3_bucket
    # a local-driver record whose run dir exists on no disk of this API: only the stored copy can answer
    key = log_key(cid, "x", 2)
    fleet = {"driver": "local", "run_id": "x", "attempt": 2, "ref": {"dir": "x/2", "log_key": key}}
    _, local_run = insert_job_and_run(api_settings, cid, tpl, fleet=fleet)
    # before the first upload: an empty log, not an error
    got = api.get(f"/v1/runs/{local_run}/logs", headers=h)
    assert got.status_code == 200, got.text
    assert got.json() == {"run_id": local_run, "attempt": 2, "text": ""}

    s3.put_object(Bucket=bucket, Key=key, Body=b"line one\nline two\n")
    got = api.get(f"/v1/runs/{local_run}/logs", headers=h).json()
    assert got == {"run_id": local_run, "attempt": 2, "text": "line one\nline two\n"}
    assert api.get(f"/v1/runs/{local_run}/logs?tail_bytes=9", headers=h).json()["text"] == "line two\n"

    # an ec2 record names its key too; without one, the key follows the shared scheme
    _, ec2_run = insert_job_and_run(
        api_settings, cid, tpl, fleet={"driver": "ec2", "run_id": "y", "attempt": 1, "ref": {}}
    )
    s3.put_object(Bucket=bucket, Key=log_key(cid, "y", 1), Body=b"from the instance\n")
    assert api.get(f"/v1/runs/{ec2_run}/logs", headers=h).json()["text"] == "from the instance\n"

    # another tenant's run is not found, exactly like a missing one
    _, other_h, _ = setup_template(api)
    is_problem(api.get(f"/v1/runs/{local_run}/logs", headers=other_h), 404)


@pytest.fixture
def driver(s3_settings):  # noqa: F811
    d = Path(tempfile.mkdtemp(prefix="orch-logs-"))
    d.chmod(0o711)  # an app under its own uid (worker as root) must reach its run dir
    drv = LocalFleetDriver(make_settings(d / "data", s3_bucket=FLEET_BUCKET, **s3_settings))
    yield drv
    shutil.rmtree(d, ignore_errors=True)


def test_local_driver_copies_the_log_while_running_and_at_the_end(driver, upload_app, s3, monkeypatch):  # noqa: F811
    monkeypatch.setattr(fleets.local, "LOG_UPLOAD_MIN_INTERVAL_SEC", 0.2)
    exchange = Path(tempfile.mkdtemp(prefix="orch-logs-x-"))
    exchange.chmod(0o1777)
    release = exchange / "release"
    spec = upload_app(WAITING_APP, args={"release": str(release)})
    handle = driver.launch(spec)
    key = handle.ref["log_key"]
    assert (
        key == log_key(spec.client_id, spec.run_id, spec.attempt) == f"runs/client_test/{spec.run_id}/1/log"
    )
    assert handle.ref["result_bucket"] == FLEET_BUCKET

    def copied(text: str) -> bool:
        st = driver.poll(handle)  # what the monitor activity does every monitor_poll_sec
        assert st.state in (FleetState.PENDING, FleetState.RUNNING, FleetState.SUCCEEDED), st
        return text in read_tail(s3, FLEET_BUCKET, key)

    try:
        wait_until(lambda: copied("started"), 20, "the running app's log in S3")
        assert "released" not in read_tail(s3, FLEET_BUCKET, key)
        release.touch()
        wait_until(lambda: driver.poll(handle).state == FleetState.SUCCEEDED, 20, "the app to finish")
        # the final copy is made by the poll that saw the end, whatever the interval
        assert read_tail(s3, FLEET_BUCKET, key) == driver.logs(handle) == "started\nreleased\n"
        assert driver.upload_log(handle, final=True) is False  # unchanged since: not copied again
    finally:
        release.touch()
        driver.terminate(handle)
        shutil.rmtree(exchange, ignore_errors=True)
