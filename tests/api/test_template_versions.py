"""Templates and jobs as real resources (issue 19), on SQLite and PostgreSQL with the real Temporal dev server
(``no_worker_api``: workflows and Schedules are created, nothing runs): PATCH makes a version and runs keep
the one they were planned with, DELETE retires (readable; new use refused with 409), a recurring job
switches template (its Schedule rewritten), and POST /v1/runs/{id}/rerun."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session
from temporalio.client import Client as TemporalClient

from activities.run_activities import RunActivities
from core.db import Database
from models.db import Job, Run
from models.workflow import LaunchRequest
from services.job_templates import template_at
from tests.support.api import engine_for, is_problem, setup_template, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def one_time(tpl: str, **over) -> dict:
    return {"job_template_id": tpl, "type": "ONE_TIME", "intended_time": _iso(datetime.now(UTC))} | over


def window(tpl: str, hours: int = 24, **over) -> dict:
    now = datetime.now(UTC)
    return {
        "job_template_id": tpl,
        "type": "RESCHEDULABLE",
        "earliest_start": _iso(now + timedelta(hours=1)),
        "latest_finish": _iso(now + timedelta(hours=1 + hours)),
    } | over


def rec_body(tpl: str) -> dict:
    return {"job_template_id": tpl, "cron": "0 1 * * *", "margin_before": "PT3H", "margin_after": "PT3H"}


def test_patch_makes_a_version_and_runs_keep_theirs(no_worker_api, api_settings):
    api = no_worker_api
    cid, h, tpl = setup_template(api)
    t = api.get(f"/v1/job-templates/{tpl}", headers=h).json()
    assert (t["version"], t["status"], t["retired_at"]) == (1, "active", None)
    first = api.post("/v1/jobs", json=one_time(tpl, args={"extra": 1}), headers=h)
    assert first.status_code == 201, first.text

    r = api.patch(
        f"/v1/job-templates/{tpl}",
        json={"default_args": {"arg1": "changed"}, "expected_runtime_sec": 600},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["default_args"], r.json()["expected_runtime_sec"]) == (
        2,
        {"arg1": "changed"},
        600,
    )
    assert r.json()["updated_at"] is not None
    # a patch that changes nothing makes no version
    same = api.patch(f"/v1/job-templates/{tpl}", json={"expected_runtime_sec": 600}, headers=h)
    assert same.json()["version"] == 2
    versions = api.get(f"/v1/job-templates/{tpl}/versions", headers=h).json()
    assert [(v["version"], v["default_args"]["arg1"]) for v in versions] == [(2, "changed"), (1, "value")]

    second = api.post("/v1/jobs", json=one_time(tpl), headers=h)
    assert second.status_code == 201, second.text
    old_run = api.get(f"/v1/runs/{first.json()['run_id']}", headers=h).json()
    new_run = api.get(f"/v1/runs/{second.json()['run_id']}", headers=h).json()
    assert (old_run["job_template_version"], new_run["job_template_version"]) == (1, 2)
    assert api.get(f"/v1/jobs/{first.json()['job_id']}", headers=h).json()["job_template_version"] == 1

    # what the worker plans and launches the first run with: version 1's fields
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            run = s.get_one(Run, first.json()["run_id"])
            old = template_at(s, run.job_template_id, run.job_template_version)
            assert (old.version, old.default_args, old.expected_runtime_sec) == (1, {"arg1": "value"}, 1800)
            cur = template_at(s, tpl, 2)
            assert (cur.version, cur.default_args) == (2, {"arg1": "changed"})
    finally:
        eng.dispose()
    # the launch activity's spec: the first run launches with version 1's args, the second with version 2's
    db = Database(api_settings)
    try:
        acts = RunActivities(api_settings, db, driver=None)  # type: ignore[arg-type]  # _spec needs no driver
        spec1 = acts._spec(LaunchRequest(run_id=first.json()["run_id"], attempt=1))
        spec2 = acts._spec(LaunchRequest(run_id=second.json()["run_id"], attempt=1))
        assert spec1.args == {"arg1": "value", "extra": 1} and spec2.args == {"arg1": "changed"}
    finally:
        db.dispose()


def test_patch_validation_and_tenancy(api):
    _, h, tpl = setup_template(api, name="validated")
    bad = api.patch(f"/v1/job-templates/{tpl}", json={"fleet_template_id": "m9.nothing"}, headers=h)
    assert any(e["path"] == "fleet_template_id" for e in is_problem(bad, 422)["errors"])
    null = api.patch(f"/v1/job-templates/{tpl}", json={"name": None}, headers=h)
    assert [e["path"] for e in is_problem(null, 422)["errors"]] == ["name"]
    shape = api.patch(f"/v1/job-templates/{tpl}", json={"expected_runtime_sec": -1}, headers=h)
    assert "expected_runtime_sec" in str(is_problem(shape, 422)["errors"])
    unknown = api.patch(f"/v1/job-templates/{tpl}", json={"colour": "red"}, headers=h)
    assert "colour" in str(is_problem(unknown, 422)["errors"])
    assert api.get(f"/v1/job-templates/{tpl}", headers=h).json()["version"] == 1  # nothing stored

    # a name the client already uses
    art = api.get(f"/v1/job-templates/{tpl}", headers=h).json()["app_artifact_id"]
    other = api.post("/v1/job-templates", json=template_body(art, name="other-name"), headers=h).json()["id"]
    is_problem(api.patch(f"/v1/job-templates/{other}", json={"name": "validated"}, headers=h), 409)

    # another tenant's template is 404 for every verb
    _, h2 = new_client(api, "intruder")
    for r in (
        api.patch(f"/v1/job-templates/{tpl}", json={"expected_runtime_sec": 5}, headers=h2),
        api.delete(f"/v1/job-templates/{tpl}", headers=h2),
        api.get(f"/v1/job-templates/{tpl}/versions", headers=h2),
    ):
        is_problem(r, 404)
    # an artifact of another tenant is 404 too (the artifact is checked like on create)
    art2 = upload(api, h2, make_zip()).json()["artifact_id"]
    is_problem(api.patch(f"/v1/job-templates/{tpl}", json={"app_artifact_id": art2}, headers=h), 404)


def test_retire_refuses_new_use_and_names_recurring_users(no_worker_api):
    api = no_worker_api
    _, h, tpl = setup_template(api, name="to-retire")
    art = api.get(f"/v1/job-templates/{tpl}", headers=h).json()["app_artifact_id"]
    spare = api.post("/v1/job-templates", json=template_body(art, name="spare"), headers=h).json()["id"]
    job = api.post("/v1/jobs", json=one_time(tpl), headers=h).json()
    rec = api.post("/v1/recurring-jobs", json=rec_body(tpl) | {"name": "nightly"}, headers=h)
    assert rec.status_code == 201, rec.text
    rec_id = rec.json()["id"]

    refused = is_problem(api.delete(f"/v1/job-templates/{tpl}", headers=h), 409)
    assert rec_id in refused["detail"] and "nightly" in refused["detail"]
    assert api.get(f"/v1/job-templates/{tpl}", headers=h).json()["status"] == "active"

    # switch the recurring job away, then retiring works
    sw = api.patch(f"/v1/recurring-jobs/{rec_id}", json={"job_template_id": spare}, headers=h)
    assert sw.status_code == 200, sw.text
    gone = api.delete(f"/v1/job-templates/{tpl}", headers=h)
    assert gone.status_code == 200, gone.text
    assert gone.json()["status"] == "retired" and gone.json()["retired_at"]
    assert api.delete(f"/v1/job-templates/{tpl}", headers=h).status_code == 200  # idempotent

    # readable: the template, its versions, its job and run
    assert api.get(f"/v1/job-templates/{tpl}", headers=h).json()["status"] == "retired"
    assert api.get(f"/v1/job-templates/{tpl}/versions", headers=h).status_code == 200
    assert api.get(f"/v1/runs/{job['run_id']}", headers=h).status_code == 200
    listed = [t["id"] for t in api.get("/v1/job-templates", headers=h).json()["items"]]
    active = [t["id"] for t in api.get("/v1/job-templates?include_retired=false", headers=h).json()["items"]]
    assert tpl in listed and tpl not in active and spare in active

    # new use: 409 naming the retired template
    now = datetime.now(UTC)
    for r in (
        api.post("/v1/jobs", json=one_time(tpl), headers=h),
        api.post(
            "/v1/schedules/preview",
            json={
                "job_template_id": tpl,
                "earliest_start": _iso(now),
                "latest_finish": _iso(now + timedelta(hours=12)),
            },
            headers=h,
        ),
        api.post("/v1/recurring-jobs", json=rec_body(tpl), headers=h),
        api.patch(f"/v1/recurring-jobs/{rec_id}", json={"job_template_id": tpl}, headers=h),
        api.post(f"/v1/runs/{job['run_id']}/rerun", headers=h),
        api.patch(f"/v1/job-templates/{tpl}", json={"expected_runtime_sec": 60}, headers=h),
    ):
        p = is_problem(r, 409)
        assert tpl in p["detail"] and "retired" in p["detail"], p
    api.delete(f"/v1/recurring-jobs/{rec_id}", headers=h)


def test_recurring_job_switches_template_and_its_schedule(no_worker_api):
    api = no_worker_api
    _, h, a = setup_template(api, name="tpl-a")
    art = api.get(f"/v1/job-templates/{a}", headers=h).json()["app_artifact_id"]
    b = api.post("/v1/job-templates", json=template_body(art, name="tpl-b"), headers=h).json()["id"]
    rec = api.post("/v1/recurring-jobs", json=rec_body(a), headers=h).json()
    r = api.patch(f"/v1/recurring-jobs/{rec['id']}", json={"job_template_id": b}, headers=h)
    assert r.status_code == 200, r.text
    assert api.get(f"/v1/recurring-jobs/{rec['id']}", headers=h).json()["job_template_id"] == b

    settings = api.app.state.services.settings

    async def describe():
        c = await TemporalClient.connect(settings.temporal_address)
        return await c.get_schedule_handle(rec["schedule_id"]).describe()

    desc = asyncio.run(describe())
    assert "tpl-b" in (desc.schedule.state.note or "") and "tpl-a" not in (desc.schedule.state.note or "")

    _, h2 = new_client(api, "other")
    _, _, foreign = setup_template(api, name="foreign")
    switch = {"job_template_id": foreign}
    is_problem(api.patch(f"/v1/recurring-jobs/{rec['id']}", json=switch, headers=h), 404)
    null = api.patch(f"/v1/recurring-jobs/{rec['id']}", json={"job_template_id": None}, headers=h)
    assert [e["path"] for e in is_problem(null, 422)["errors"]] == ["job_template_id"]
    is_problem(api.patch(f"/v1/recurring-jobs/{rec['id']}", json={"job_template_id": a}, headers=h2), 404)
    api.delete(f"/v1/recurring-jobs/{rec['id']}", headers=h)


def test_rerun_keeps_version_args_and_window_shape(no_worker_api, api_settings):
    api = no_worker_api
    _, h, tpl = setup_template(api, name="rerun-me")
    once = api.post("/v1/jobs", json=one_time(tpl, args={"day": "mon"}, risk_mode="CONSERVATIVE"), headers=h)
    win = api.post("/v1/jobs", json=window(tpl, hours=10, args={"day": "tue"}), headers=h)
    assert once.status_code == win.status_code == 201, (once.text, win.text)
    api.patch(f"/v1/job-templates/{tpl}", json={"default_args": {"arg1": "v2"}}, headers=h)

    again = api.post(f"/v1/runs/{once.json()['run_id']}/rerun", headers=h, json={})
    assert again.status_code == 201, again.text
    new = api.get(f"/v1/jobs/{again.json()['job_id']}", headers=h).json()
    old = api.get(f"/v1/jobs/{once.json()['job_id']}", headers=h).json()
    assert new["id"] != old["id"] and new["rerun_of"] == once.json()["run_id"]
    assert (new["type"], new["args"], new["risk_mode"], new["job_template_version"]) == (
        "ONE_TIME",
        {"day": "mon"},
        "CONSERVATIVE",
        1,
    )
    run = api.get(f"/v1/runs/{again.json()['run_id']}", headers=h).json()
    assert run["job_template_version"] == 1 and run["status"] in ("PENDING", "SCHEDULED")

    # Idempotency-Key: the same key and request give the same job
    k = {"Idempotency-Key": "rerun-1"} | h
    r1 = api.post(f"/v1/runs/{win.json()['run_id']}/rerun", headers=k)
    r2 = api.post(f"/v1/runs/{win.json()['run_id']}/rerun", headers=k)
    assert r1.status_code == 201 and r2.status_code == 201, (r1.text, r2.text)
    assert r1.json()["job_id"] == r2.json()["job_id"] and r2.headers.get("Idempotent-Replayed") == "true"
    other = api.post(f"/v1/runs/{once.json()['run_id']}/rerun", headers=k)  # same key, other run
    is_problem(other, 409)
    w = api.get(f"/v1/jobs/{r1.json()['job_id']}", headers=h).json()
    span = datetime.fromisoformat(w["latest_finish"]) - datetime.fromisoformat(w["earliest_start"])
    assert span == timedelta(hours=10) and w["args"] == {"day": "tue"} and w["type"] == "RESCHEDULABLE"
    assert datetime.fromisoformat(w["earliest_start"]) <= datetime.now(UTC)  # the window starts now

    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            assert s.get_one(Job, r1.json()["job_id"]).job_template_version == 1
    finally:
        eng.dispose()

    # another tenant's run: 404; a bad body: 422 naming the field
    _, h2 = new_client(api, "stranger")
    is_problem(api.post(f"/v1/runs/{once.json()['run_id']}/rerun", headers=h2), 404)
    bad = api.post(f"/v1/runs/{once.json()['run_id']}/rerun", headers=h, json={"intended_time": "soon"})
    assert "intended_time" in str(is_problem(bad, 422)["errors"])
    wrong = api.post(
        f"/v1/runs/{once.json()['run_id']}/rerun", headers=h, json={"earliest_start": _iso(datetime.now(UTC))}
    )
    assert [e["path"] for e in is_problem(wrong, 422)["errors"]] == ["earliest_start"]
