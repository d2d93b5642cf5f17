"""Issue 19 at the API: webhook endpoints (URL rules, the secret shown once, tenancy, delivery log, test
event, redelivery), the signature scheme, and retry policies on templates and jobs (validation, override,
the run's attempt list and per-attempt logs). Real DB (SQLite and PostgreSQL) and SeaweedFS; deliveries
themselves are exercised end to end in tests/e2e/test_retries_webhooks_e2e.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from models.api import WebhookEventType
from models.db import Run, WebhookDelivery
from models.workflow import RUN_EVENT_TYPES, RunEvent, event_id_for
from services import webhooks
from tests.support.api import engine_for, insert_job_and_run, is_problem, setup_template
from tests.support.common import new_client


# ---------------------------------------------------------------- URL rules and signatures (pure)
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # http to anything but loopback
        "ftp://example.com/hook",
        "https://169.254.169.254/latest/meta-data",  # metadata
        "https://[fd00:ec2::254]/",  # IPv6 metadata
        "https://10.0.0.5/hook",  # private
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://[::ffff:10.0.0.1]/hook",  # IPv4-mapped private
        "https://169.254.10.10/hook",  # link-local
        "https://100.64.0.1/hook",  # shared address space
        "https://localhost/hook",
        "https://metadata.google.internal/",
        "https://user:pw@example.com/hook",
        "http://127.0.0.2/hook",  # only 127.0.0.1 itself
    ],
)
def test_refused_urls(url):
    with pytest.raises(webhooks.UrlRefused):
        webhooks.check_url(url, allow_http_loopback=True)


def test_loopback_http_needs_the_setting():
    webhooks.check_url("http://127.0.0.1:8123/hook", allow_http_loopback=True)
    webhooks.check_url("http://[::1]:8123/hook", allow_http_loopback=True)
    webhooks.check_url("https://hooks.example.com/x?y=1", allow_http_loopback=False)
    with pytest.raises(webhooks.UrlRefused, match="ORCH_WEBHOOK_ALLOW_HTTP_LOOPBACK"):
        webhooks.check_url("http://127.0.0.1:8123/hook", allow_http_loopback=False)
    with pytest.raises(webhooks.UrlRefused, match="loopback"):  # https to loopback: the same setting
        webhooks.check_url("https://127.0.0.1:8123/hook", allow_http_loopback=False)


def test_the_loopback_exception_is_off_in_prod_by_default():
    from core.settings import Settings

    assert Settings.model_construct(env="dev", webhook_allow_http_loopback=None).webhook_loopback_allowed
    assert not Settings.model_construct(env="prod", webhook_allow_http_loopback=None).webhook_loopback_allowed
    assert Settings.model_construct(env="prod", webhook_allow_http_loopback=True).webhook_loopback_allowed


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(monkeypatch):
    """DNS rebinding: a public name accepted when stored that resolves to a private address at delivery."""
    import socket

    def rebinding(host, *a, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    webhooks.check_url("https://hooks.example.com/x", allow_http_loopback=False)  # fine as a name
    with pytest.raises(webhooks.UrlRefused, match="resolves to a refused address"):
        webhooks.resolve_target("https://hooks.example.com/x", allow_http_loopback=False)


def test_resolved_target_keeps_host_and_sni(monkeypatch):
    import socket

    answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **kw: answer)
    t = webhooks.resolve_target("https://hooks.example.com:8443/x?y=1", allow_http_loopback=False)
    assert t.url == "https://93.184.216.34:8443/x?y=1"
    assert t.host_header == "hooks.example.com:8443" and t.sni_hostname == "hooks.example.com"


def test_signature_verifies_within_the_replay_window_only():
    secret, body = webhooks.new_secret(), '{"id":"evt_1"}'
    now = int(time.time())
    header = webhooks.signature_header(secret, body, now)
    assert webhooks.verify(secret, header, body)
    assert not webhooks.verify(secret, header, body + " ")  # body changed
    assert not webhooks.verify("whsec_other", header, body)  # another secret
    assert not webhooks.verify(
        secret, header, body, now=now + webhooks.REPLAY_WINDOW_SEC + 1
    )  # replayed late
    import hashlib
    import hmac

    t, v1 = (p.split("=", 1)[1] for p in header.split(","))
    assert v1 == hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()


def test_event_types_are_one_list():
    assert set(WebhookEventType.__args__) == set(RUN_EVENT_TYPES)  # type: ignore[attr-defined]
    assert event_id_for("run_a", "run.started", 1) == event_id_for("run_a", "run.started", 1)
    assert event_id_for("run_a", "run.started", 1) != event_id_for("run_a", "run.started", 2)


# ---------------------------------------------------------------- /v1/webhooks
def hook(**over) -> dict:
    return {"url": "http://127.0.0.1:9/hook", "event_types": ["run.failed", "run.succeeded"]} | over


def test_create_shows_the_secret_once_and_never_again(api):
    _, h = new_client(api)
    r = api.post("/v1/webhooks", json=hook(description="ops"), headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    got = api.get(f"/v1/webhooks/{body['id']}", headers=h)
    assert got.status_code == 200 and "secret" not in got.json()
    assert body["secret"] not in api.get("/v1/webhooks", headers=h).text
    patched = api.patch(f"/v1/webhooks/{body['id']}", json={"event_types": ["run.started"]}, headers=h)
    assert patched.status_code == 200 and "secret" not in patched.json()
    assert patched.json()["event_types"] == ["run.started"] and patched.json()["description"] == "ops"
    every = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/all"}, headers=h).json()
    assert sorted(every["event_types"]) == sorted(RUN_EVENT_TYPES)  # default: every run event
    assert api.delete(f"/v1/webhooks/{body['id']}", headers=h).status_code == 204
    assert api.get(f"/v1/webhooks/{body['id']}", headers=h).status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (hook(url="http://10.0.0.1/hook"), "url"),
        (hook(url="https://169.254.169.254/"), "url"),
        (hook(event_types=[]), "event_types"),
        (hook(event_types=["run.exploded"]), "event_types/0"),
        (hook(secret="mine"), "secret"),  # the secret is generated, never chosen
    ],
)
def test_bad_input_is_422_naming_the_field(api, body, path):
    _, h = new_client(api)
    problem = is_problem(api.post("/v1/webhooks", json=body, headers=h), 422)
    assert any(e["path"].startswith(path) for e in problem["errors"]), problem


def test_patch_checks_the_url_too(api):
    _, h = new_client(api)
    wid = api.post("/v1/webhooks", json=hook(), headers=h).json()["id"]
    problem = is_problem(
        api.patch(f"/v1/webhooks/{wid}", json={"url": "https://192.168.0.1/"}, headers=h), 422
    )
    assert problem["errors"][0]["path"] == "url"


def test_another_clients_webhooks_and_deliveries_are_404(api):
    _, mine = new_client(api)
    _, theirs = new_client(api, "other")
    wid = api.post("/v1/webhooks", json=hook(), headers=mine).json()["id"]
    for method, path in [
        ("GET", f"/v1/webhooks/{wid}"),
        ("PATCH", f"/v1/webhooks/{wid}"),
        ("DELETE", f"/v1/webhooks/{wid}"),
        ("GET", f"/v1/webhooks/{wid}/deliveries"),
        ("POST", f"/v1/webhooks/{wid}/test"),
        ("POST", f"/v1/webhooks/{wid}/deliveries/dlv_x/redeliver"),
    ]:
        r = api.request(method, path, headers=theirs, json={} if method == "PATCH" else None)
        is_problem(r, 404)
    assert api.get("/v1/webhooks", headers=theirs).json()["items"] == []


def test_run_events_make_one_delivery_per_subscribed_endpoint_idempotently(api, api_settings):
    """What the run activities do in the transaction of a change: a delivery per (endpoint subscribed to
    the type, event), the same rows when the activity is retried, none for disabled endpoints."""
    from sqlalchemy.orm import Session

    cid, h, tpl = setup_template(api)
    failed = api.post("/v1/webhooks", json=hook(event_types=["run.failed"]), headers=h).json()["id"]
    both = api.post("/v1/webhooks", json=hook(event_types=["run.failed", "run.started"]), headers=h).json()[
        "id"
    ]
    off = api.post("/v1/webhooks", json=hook(event_types=["run.failed"]), headers=h).json()["id"]
    api.patch(f"/v1/webhooks/{off}", json={"enabled": False}, headers=h)
    _, run_id = insert_job_and_run(api_settings, cid, tpl)
    events = [
        RunEvent(event_id=event_id_for(run_id, "run.started", 1), type="run.started", attempt=1),
        RunEvent(event_id=event_id_for(run_id, "run.failed", 0), type="run.failed", attempt=1, data={"x": 1}),
    ]
    eng = engine_for(api_settings)
    try:
        for _ in range(2):  # the activity retried: no second row
            with Session(eng) as s, s.begin():
                pending = webhooks.record_run_events(s, s.get_one(Run, run_id), events)
            assert len(pending) == 3
        with Session(eng) as s:
            rows = s.query(WebhookDelivery).filter_by(run_id=run_id).all()
            assert sorted((r.endpoint_id == both, r.event_type) for r in rows) == [
                (False, "run.failed"),
                (True, "run.failed"),
                (True, "run.started"),
            ]
            assert not [r for r in rows if r.endpoint_id == off]
            one = next(r for r in rows if r.event_type == "run.failed")
            import json

            payload = json.loads(one.body)
            assert payload["id"] == events[1].event_id and payload["type"] == "run.failed"
            assert payload["data"]["run_id"] == run_id and payload["data"]["x"] == 1
    finally:
        eng.dispose()
    log = api.get(f"/v1/webhooks/{failed}/deliveries", headers=h).json()["items"]
    assert [(d["event_type"], d["status"], d["attempts"]) for d in log] == [("run.failed", "pending", 0)]
    assert log[0]["event_id"] == events[1].event_id


def test_a_run_cancelled_without_a_workflow_still_sends_run_cancelled(api, api_settings):
    """Cancel of a PENDING run whose workflow does not exist (Temporal unreachable here): the run.cancelled
    event is stored with the id the workflow would have used, and the redrive task finds it."""
    from sqlalchemy.orm import Session

    cid, h, tpl = setup_template(api)
    wid = api.post("/v1/webhooks", json=hook(event_types=["run.cancelled"]), headers=h).json()["id"]
    _, run_id = insert_job_and_run(api_settings, cid, tpl, status="PENDING")
    r = api.post(f"/v1/runs/{run_id}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "CANCELLED", r.text
    [d] = api.get(f"/v1/webhooks/{wid}/deliveries", headers=h).json()["items"]
    assert d["event_type"] == "run.cancelled" and d["run_id"] == run_id and d["status"] == "pending"
    assert d["event_id"] == event_id_for(run_id, "run.cancelled", 0)
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            assert d["id"] in webhooks.stale_pending(s, datetime.now(UTC) + timedelta(seconds=1), 1000)
            assert d["id"] not in webhooks.stale_pending(s, datetime.now(UTC) - timedelta(minutes=5), 1000)
    finally:
        eng.dispose()


def test_test_event_and_redelivery_start_delivery_workflows(no_worker_api):
    api = no_worker_api
    _, h = new_client(api)
    wid = api.post("/v1/webhooks", json=hook(), headers=h).json()["id"]
    r = api.post(f"/v1/webhooks/{wid}/test", headers=h)
    assert r.status_code == 202, r.text
    d = r.json()
    assert d["event_type"] == "webhook.test" and d["status"] == "pending"
    again = api.post(f"/v1/webhooks/{wid}/deliveries/{d['id']}/redeliver", headers=h)
    assert again.status_code == 202, again.text
    assert again.json()["event_id"] == d["event_id"] and again.json()["redeliveries"] == 1
    assert [x["id"] for x in api.get(f"/v1/webhooks/{wid}/deliveries", headers=h).json()["items"]] == [
        d["id"]
    ]


# ---------------------------------------------------------------- retry policies
def test_retry_policy_on_template_and_job_override(no_worker_api):
    api = no_worker_api
    policy = {"max_attempts": 4, "initial_interval_sec": 1, "retryable_exit_codes": [1, 75], "replan": True}
    _, h, tpl = setup_template(api, retry_policy=policy)
    got = api.get(f"/v1/job-templates/{tpl}", headers=h).json()["retry_policy"]
    assert (
        got["max_attempts"] == 4
        and got["retryable_exit_codes"] == [1, 75]
        and got["backoff_coefficient"] == 2
    )
    versions = api.get(f"/v1/job-templates/{tpl}/versions", headers=h).json()
    assert versions[0]["retry_policy"] == got  # each version records its policy
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job = {
        "job_template_id": tpl,
        "type": "ONE_TIME",
        "intended_time": when,
        "retry_policy": {"max_attempts": 1},
    }
    r = api.post("/v1/jobs", json=job, headers=h)
    assert r.status_code == 201, r.text
    assert api.get(f"/v1/jobs/{r.json()['job_id']}", headers=h).json()["retry_policy"]["max_attempts"] == 1
    run = api.get(f"/v1/runs/{r.json()['run_id']}", headers=h).json()
    assert run["attempt_history"] == []


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ({"max_attempts": 0}, "retry_policy/max_attempts"),
        ({"max_attempts": 21}, "retry_policy/max_attempts"),
        ({"backoff_coefficient": 0.5}, "retry_policy/backoff_coefficient"),
        ({"initial_interval_sec": -1}, "retry_policy/initial_interval_sec"),
        ({"retryable_exit_codes": [0]}, "retry_policy/retryable_exit_codes/0"),
        ({"retryable_exit_codes": [256]}, "retry_policy/retryable_exit_codes/0"),
        ({"max_attempts": 3, "surprise": True}, "retry_policy/surprise"),
    ],
)
def test_bad_retry_policy_is_422_naming_the_field(api, policy, path):
    _, h, _tpl = setup_template(api)
    art = api.get("/v1/artifacts", headers=h).json()["items"][0]["artifact_id"]
    body = {
        "name": "with-retries",
        "app_artifact_id": art,
        "fleet_template_id": "m5.large",
        "retry_policy": policy,
    }
    problem = is_problem(api.post("/v1/job-templates", json=body, headers=h), 422)
    assert any(e["path"] == path for e in problem["errors"]), problem


def test_run_lists_attempts_and_logs_per_attempt(api, api_settings):
    from sqlalchemy.orm import Session

    cid, h, tpl = setup_template(api)
    _, run_id = insert_job_and_run(api_settings, cid, tpl, status="FAILED")
    eng = engine_for(api_settings)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        with Session(eng) as s, s.begin():
            run = s.get_one(Run, run_id)
            run.attempts = 2
            run.fleet = {"driver": "local", "run_id": run_id, "attempt": 2, "ref": {}}
            run.attempt_log = [
                {
                    "attempt": 2,
                    "state": "FAILED",
                    "exit_code": 1,
                    "started_at": (t0 + timedelta(minutes=2)).isoformat(),
                },
                {
                    "attempt": 1,
                    "state": "FAILED",
                    "exit_code": 3,
                    "started_at": t0.isoformat(),
                    "finished_at": (t0 + timedelta(minutes=1)).isoformat(),
                    "reason": "exit code 3",
                },
            ]
    finally:
        eng.dispose()
    body = api.get(f"/v1/runs/{run_id}", headers=h).json()
    assert [(a["attempt"], a["exit_code"]) for a in body["attempt_history"]] == [(1, 3), (2, 1)]
    assert body["attempt_history"][0]["log_url"] == f"/v1/runs/{run_id}/logs?attempt=1"
    one = api.get(f"/v1/runs/{run_id}/logs?attempt=1", headers=h)
    assert one.status_code == 200 and one.json()["attempt"] == 1  # no upload yet: empty text
    is_problem(api.get(f"/v1/runs/{run_id}/logs?attempt=7", headers=h), 404)
    is_problem(api.get(f"/v1/runs/{run_id}/logs?attempt=0", headers=h), 422)


def test_patching_a_templates_retry_policy_makes_a_new_version(no_worker_api):
    api = no_worker_api
    _, h, tpl = setup_template(api, retry_policy={"max_attempts": 2})
    r = api.patch(f"/v1/job-templates/{tpl}", json={"retry_policy": {"max_attempts": 5}}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["retry_policy"]["max_attempts"] == 5 and r.json()["version"] == 2
    bad = api.patch(f"/v1/job-templates/{tpl}", json={"retry_policy": {"max_attempts": 0}}, headers=h)
    assert any(e["path"].startswith("retry_policy") for e in is_problem(bad, 422)["errors"])
