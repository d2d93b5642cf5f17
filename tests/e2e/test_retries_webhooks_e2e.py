"""Issue 19 on the real stack (API and worker processes, Temporal dev server, SeaweedFS, SQLite, the local
fleet driver), one stack for the module: retries (attempt 3 succeeds with three logs; always failing ends
FAILED at max attempts, never past the deadline; cancel during backoff ends CANCELLED with no further
attempt) and webhooks to plain-HTTP receivers on 127.0.0.1 (every event in order, each signature verified, a
receiver answering 500 retried with backoff while the run goes on, a worker SIGKILLed mid-delivery loses
nothing and its duplicate carries the same event id, deadline at risk before the deadline). Backoffs are
short through the template's retry policy and the stack's ORCH_WEBHOOK_RETRY_* settings."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli.devstack import wait_for
from core.migrate import upgrade
from services.webhooks import verify
from tests.support.e2e_stack import Stack, make_stack_settings, record_history
from tests.support.zips import make_zip

pytestmark = pytest.mark.slow  # API and worker as processes (a stack of their own)

# fails (exit 1) on its first `fail_times` starts, counted as files in count_dir (each attempt runs under a
# uid of its own, so each leaves its own file); prints its attempt number
FLAKY_APP = """\
import os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
open(os.path.join(args["count_dir"], f"start-{os.getpid()}-{time.time_ns()}"), "w").close()
n = len(os.listdir(args["count_dir"]))
print(f"ATTEMPT {n}", flush=True)
time.sleep(float(args.get("sleep", 0)))
sys.exit(0 if n > int(args.get("fail_times", 0)) else 1)
"""


class Receiver:
    """A plain-HTTP webhook receiver on 127.0.0.1: records every POST (path, headers, body, time); paths
    starting /fail answer 500, /hold holds the first request until ``release`` is set, others 200."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.holding = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with outer.lock:
                    outer.got.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.time()}
                    )
                    first_hold = self.path.startswith("/hold") and not outer.holding.is_set()
                if first_hold:
                    outer.holding.set()
                    outer.release.wait(60)
                code = 500 if self.path.startswith("/fail") else 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker that sent it is gone

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [g for g in self.got if g["path"] == path]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def stack(open_tmp_root, temporal_dev_server, s3_settings):
    tmp = Path(tempfile.mkdtemp(prefix="e2e-i19-", dir=open_tmp_root))  # apps run under their own uids
    settings = make_stack_settings(
        tmp,
        temporal_dev_server.ports["grpc"],
        s3_settings,
        webhook_allow_http_loopback=True,
        webhook_retry_initial_sec=0.5,
        webhook_retry_backoff=2.0,
        webhook_retry_max_interval_sec=4.0,
        webhook_max_attempts=5,
        webhook_timeout_sec=2.0,
    )
    upgrade(settings)
    st = Stack(settings, tmp)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


ALL = [
    "run.scheduled",
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "run.expired",
    "run.retrying",
    "run.deadline_at_risk",
]


def starts(count_dir: Path) -> int:
    return len(list(count_dir.iterdir()))


def counter(app_tmp: Path) -> Path:
    d = app_tmp / f"count-{time.monotonic_ns()}"
    d.mkdir()
    d.chmod(0o1777)
    return d


def flaky_template(stack: Stack, h: dict, count_dir: Path, retry: dict, **over) -> str:
    art = stack.http.post(
        "/v1/artifacts/upload",
        headers=h,
        files={"file": ("app.zip", make_zip({"main.py": FLAKY_APP}), "application/zip")},
        data={"version": "1.0.0"},
    )
    assert art.status_code in (200, 201), art.text
    body = {
        "name": f"flaky-{time.monotonic_ns()}",
        "app_artifact_id": art.json()["artifact_id"],
        "default_args": {"count_dir": str(count_dir)},
        "fleet_template_id": "m5.large",
        "expected_runtime_sec": 5,
        "retry_policy": retry,
    } | over
    r = stack.http.post("/v1/job-templates", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def webhook(stack: Stack, h: dict, url: str, types: list[str] = ALL) -> dict:
    r = stack.http.post("/v1/webhooks", json={"url": url, "event_types": types}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def deliveries(stack: Stack, h: dict, wid: str) -> list[dict]:
    r = stack.http.get(f"/v1/webhooks/{wid}/deliveries?limit=200", headers=h)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def events_of(receiver: Receiver, path: str, run_id: str) -> list[dict]:
    out = []
    for g in receiver.at(path):
        payload = json.loads(g["body"])
        if payload["data"].get("run_id") == run_id:
            out.append(g | {"payload": payload})
    return out


def test_fails_twice_then_succeeds_with_every_event_signed_and_in_order(stack, receiver, app_tmp):
    h = stack.client()
    ok = webhook(stack, h, receiver.url("/ok"))
    failing = webhook(stack, h, receiver.url("/fail"), ["run.scheduled"])
    count = counter(app_tmp)
    tpl = flaky_template(
        stack, h, count, {"max_attempts": 3, "initial_interval_sec": 1, "backoff_coefficient": 1}
    )
    job = stack.submit(h, tpl, args={"fail_times": 2})
    run = stack.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED"}, timeout=90)
    assert run["status"] == "SUCCEEDED" and run["attempts"] == 3, (
        run["status_reason"],
        run["attempt_history"],
    )
    assert [(a["attempt"], a["state"], a["exit_code"]) for a in run["attempt_history"]] == [
        (1, "FAILED", 1),
        (2, "FAILED", 1),
        (3, "SUCCEEDED", 0),
    ]
    for n in (1, 2, 3):  # one log per attempt
        log = stack.http.get(f"/v1/runs/{job['run_id']}/logs?attempt={n}", headers=h).json()
        assert log["attempt"] == n and f"ATTEMPT {n}" in log["text"], log
    record_history(stack, job["workflow_id"], "retried_e2e_succeeded_at_attempt_3")

    expected = [
        "run.scheduled",
        "run.started",
        "run.retrying",
        "run.started",
        "run.retrying",
        "run.started",
        "run.succeeded",
    ]
    wait_for(lambda: len(events_of(receiver, "/ok", job["run_id"])) >= len(expected), 30, "every event")
    got = events_of(receiver, "/ok", job["run_id"])
    assert [g["payload"]["type"] for g in got] == expected  # in the order the run emitted them
    for g in got:
        hdr = {k.lower(): v for k, v in g["headers"].items()}
        assert verify(ok["secret"], hdr["orch-signature"], g["body"]), g
        assert hdr["orch-event-id"] == g["payload"]["id"] and hdr["orch-event-type"] == g["payload"]["type"]
    assert len({g["payload"]["id"] for g in got}) == len(expected)
    assert got[-1]["payload"]["data"]["status"] == "SUCCEEDED"

    # the 500 receiver: retried with growing gaps, then given up; the run never waited for it
    wait_for(
        lambda: [d["status"] for d in deliveries(stack, h, failing["id"])] == ["failed"], 60, "the give-up"
    )
    [d] = deliveries(stack, h, failing["id"])
    assert d["attempts"] == 5 and d["last_status_code"] == 500 and d["event_type"] == "run.scheduled"
    tries = [g["at"] for g in events_of(receiver, "/fail", job["run_id"])]
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert len(tries) == 5 and gaps[-1] > 2 * gaps[0], gaps  # 0.5 s, 1 s, 2 s, 4 s
    # the run went on meanwhile: its next event reached the healthy receiver while the 500 one was retried
    first_started = next(g["at"] for g in got if g["payload"]["type"] == "run.started")
    assert first_started < tries[-1], (first_started, tries)
    assert {x["status"] for x in deliveries(stack, h, ok["id"])} == {"delivered"}


def test_always_failing_ends_failed_at_max_attempts(stack, app_tmp):
    h = stack.client()
    count = counter(app_tmp)
    tpl = flaky_template(stack, h, count, {"max_attempts": 3, "initial_interval_sec": 0.5})
    latest = datetime.now(UTC) + timedelta(minutes=10)
    job = stack.submit(h, tpl, args={"fail_times": 99}, latest_finish=latest.isoformat())
    run = stack.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED"}, timeout=90)
    assert run["status"] == "FAILED" and run["attempts"] == 3
    assert "no retries left" in run["status_reason"]
    assert starts(count) == 3
    assert datetime.fromisoformat(run["finished_at"]) < latest


def test_never_retried_past_the_deadline(stack, app_tmp):
    """p50 5 s (expected_runtime_sec), 25 s to the deadline, backoffs 4 s, 8 s, 16 s: the third retry
    could not finish in time, so it never starts and the run ends FAILED before the deadline, saying why."""
    h = stack.client()
    count = counter(app_tmp)
    tpl = flaky_template(stack, h, count, {"max_attempts": 10, "initial_interval_sec": 4})
    latest = datetime.now(UTC) + timedelta(seconds=25)
    job = stack.submit(h, tpl, args={"fail_times": 99}, latest_finish=latest.isoformat())
    run = stack.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED"}, timeout=60)
    assert run["status"] == "FAILED" and "not retried" in run["status_reason"], run
    assert "latest_finish" in run["status_reason"]
    assert 2 <= run["attempts"] < 10 and starts(count) == run["attempts"]
    assert datetime.fromisoformat(run["finished_at"]) < latest


def test_cancel_during_backoff_ends_cancelled_without_another_attempt(stack, app_tmp):
    h = stack.client()
    count = counter(app_tmp)
    tpl = flaky_template(stack, h, count, {"max_attempts": 3, "initial_interval_sec": 3600})
    job = stack.submit(h, tpl, args={"fail_times": 99})

    def backing_off() -> bool:
        r = stack.run(h, job["run_id"])
        return r["status"] == "SCHEDULED" and (r["status_reason"] or "").startswith("retrying")

    wait_for(backing_off, 60, "the backoff")
    r = stack.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=h, json={"reason": "stop retrying"})
    assert r.status_code == 202, r.text
    run = stack.wait_status(h, job["run_id"], "CANCELLED", timeout=30)
    assert run["status_reason"] == "stop retrying" and run["attempts"] == 1
    assert [a["attempt"] for a in run["attempt_history"]] == [1]
    assert starts(count) == 1


def test_deadline_at_risk_is_emitted_before_the_deadline(stack, receiver, app_tmp):
    """Expected runtime 20 s (p90 30 s) and 25 s to the deadline: at risk from the start."""
    h = stack.client()
    webhook(stack, h, receiver.url("/risk"), ["run.deadline_at_risk", "run.started"])
    count = counter(app_tmp)
    tpl = flaky_template(stack, h, count, {"max_attempts": 1}, expected_runtime_sec=20)
    latest = datetime.now(UTC) + timedelta(seconds=25)
    job = stack.submit(h, tpl, latest_finish=latest.isoformat())
    wait_for(
        lambda: any(
            g["payload"]["type"] == "run.deadline_at_risk"
            for g in events_of(receiver, "/risk", job["run_id"])
        ),
        30,
        "run.deadline_at_risk",
    )
    [risk] = [
        g
        for g in events_of(receiver, "/risk", job["run_id"])
        if g["payload"]["type"] == "run.deadline_at_risk"
    ]
    assert datetime.fromtimestamp(risk["at"], UTC) < latest
    assert datetime.fromisoformat(risk["payload"]["data"]["p90_finish"]) > latest
    stack.wait_status(h, job["run_id"], "SUCCEEDED", timeout=30)


def test_worker_sigkill_during_delivery_loses_nothing_and_duplicates_share_the_event_id(stack, receiver):
    h = stack.client()
    hook = webhook(stack, h, receiver.url("/hold"), ["run.succeeded"])
    r = stack.http.post(f"/v1/webhooks/{hook['id']}/test", headers=h)
    assert r.status_code == 202, r.text
    assert receiver.holding.wait(30), "the delivery never arrived"
    for w in [w for w in stack.workers if w.alive()]:
        stack.kill_worker(w)
    receiver.release.set()
    stack.start_worker()
    wait_for(
        lambda: [d["status"] for d in deliveries(stack, h, hook["id"])] == ["delivered"], 60, "the delivery"
    )
    got = receiver.at("/hold")
    assert len(got) >= 2  # the attempt cut by the SIGKILL, then the retry
    ids = {json.loads(g["body"])["id"] for g in got} | {
        {k.lower(): v for k, v in g["headers"].items()}["orch-event-id"] for g in got
    }
    assert ids == {r.json()["event_id"]}
    logs = [w.log_path for w in stack.workers] + ([stack.api.log_path] if stack.api else [])
    assert not [p for p in logs if hook["secret"] in p.read_text()], "a webhook secret was logged"
    assert all(
        verify(hook["secret"], {k.lower(): v for k, v in g["headers"].items()}["orch-signature"], g["body"])
        for g in got
    )
