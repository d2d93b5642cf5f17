"""/v1/recurring-jobs on SQLite and PostgreSQL against the real Temporal dev server (real Schedules; no
worker on the task queue, so nothing fires): CRUD, validation, the Schedule's spec / summary / state,
consistency with `temporal schedule toggle|delete`, and the firing activity's idempotency on the real DB."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError

from api.main import create_app
from cli.devstack import find_binary
from core.db import Database
from models.db import Job, RecurringJob, Run
from services.recurring import create_firing_run
from tests.support.api import count, is_problem, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="module")
def rec_settings(api_settings, temporal_dev_server):
    return api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-recurring",
        }
    )


@pytest.fixture(scope="module")
def rec_api(rec_settings):
    with TestClient(create_app(rec_settings), raise_server_exceptions=False) as client:
        yield client


def setup_template(api, name="daily-etl") -> tuple[dict, str]:
    _, h = new_client(api)
    art = upload(api, h, make_zip()).json()["artifact_id"]
    tpl = api.post(
        "/v1/job-templates", json=template_body(art, name=name, expected_runtime_sec=1800), headers=h
    )
    assert tpl.status_code == 201, tpl.text
    return h, tpl.json()["id"]


def body(tpl: str, **over) -> dict:
    return {
        "job_template_id": tpl,
        "cron": "0 1 * * *",
        "time_zone": "Europe/London",
        "margin_before": "PT3H",
        "margin_after": "PT3H",
        "risk_mode": "NEUTRAL",
        "args": {"day": "today"},
    } | over


def describe(settings, schedule_id: str):
    async def go():
        c = await TemporalClient.connect(settings.temporal_address)
        return await c.get_schedule_handle(schedule_id).describe()

    return asyncio.run(go())


def fires(desc) -> set[tuple[int, int]]:
    """(hour, minute) in London of the Schedule's next fire times."""
    return {(t.astimezone(LONDON).hour, t.astimezone(LONDON).minute) for t in desc.info.next_action_times}


def temporal_cli(settings, *args: str) -> str:
    out = subprocess.run(
        [find_binary("temporal"), *args, "--address", settings.temporal_address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_crud_and_the_schedule(rec_api, rec_settings):
    h, tpl = setup_template(rec_api)
    r = rec_api.post("/v1/recurring-jobs", json=body(tpl, name="nightly"), headers=h)
    assert r.status_code == 201, r.text
    rj = r.json()
    rid = rj["id"]
    assert rj["schedule_id"] == f"recurring-{rid}" and rj["status"] == "active"
    assert rj["summary"].startswith("daily-etl: cron '0 1 * * *' Europe/London, margin -PT3H/+PT3H")
    # the next nominal times are 01:00 London, each margin 22:00 .. 04:00 around it
    assert len(rj["next"]) == 5
    for n in rj["next"]:
        nominal = datetime.fromisoformat(n["nominal_time"])
        assert nominal.astimezone(LONDON).hour == 1
        assert datetime.fromisoformat(n["margin_start"]) == nominal - timedelta(hours=3)
        assert datetime.fromisoformat(n["margin_end"]) == nominal + timedelta(hours=3)

    d = describe(rec_settings, rj["schedule_id"])
    # Temporal fires when each margin opens: 22:00 London (it stores the cron as a calendar)
    assert fires(d) == {(22, 0)} and len(d.info.next_action_times) >= 5
    assert d.schedule.spec.time_zone_name == "Europe/London"
    assert d.schedule.state.note == rj["summary"] and not d.schedule.state.paused
    assert d.schedule.action.workflow == "RecurringFiringWorkflow"
    assert d.schedule.action.id == f"recurring-{rid}"
    assert d.schedule.policy.overlap.name == "SKIP"
    assert d.schedule.policy.catchup_window == timedelta(hours=1)

    g = rec_api.get(f"/v1/recurring-jobs/{rid}?next=3", headers=h).json()
    assert len(g["next"]) == 3 and g["schedule"]["reachable"] and g["schedule"]["paused"] is False
    preview = g["next_preview"]
    assert preview is not None, g.get("next_preview_error")
    first = datetime.fromisoformat(g["next"][0]["nominal_time"])
    chosen = datetime.fromisoformat(preview["chosen"]["proposed_start"])
    assert first - timedelta(hours=3) - timedelta(minutes=15) <= chosen <= first + timedelta(hours=3)

    # PATCH: the calendar is re-validated and the Schedule updated
    p = rec_api.patch(
        f"/v1/recurring-jobs/{rid}", json={"margin_before": "PT30M", "overlap": "buffer_one"}, headers=h
    )
    assert p.status_code == 200, p.text
    d = describe(rec_settings, rj["schedule_id"])
    assert fires(d) == {(0, 30)}
    assert d.schedule.policy.overlap.name == "BUFFER_ONE"
    bad = rec_api.patch(f"/v1/recurring-jobs/{rid}", json={"margin_after": "P2D"}, headers=h)
    assert is_problem(bad, 422)["errors"][0]["path"] == "margin_after"
    assert rec_api.get(f"/v1/recurring-jobs/{rid}", headers=h).json()["margin_after"] == "PT3H"

    # pause / resume go to Temporal
    pz = rec_api.post(f"/v1/recurring-jobs/{rid}/pause", json={"note": "maintenance"}, headers=h)
    assert pz.status_code == 200 and pz.json()["status"] == "paused"
    d = describe(rec_settings, rj["schedule_id"])
    assert d.schedule.state.paused and d.schedule.state.note == "maintenance"
    rs = rec_api.post(f"/v1/recurring-jobs/{rid}/resume", headers=h)
    assert rs.status_code == 200 and rs.json()["status"] == "active"
    assert not describe(rec_settings, rj["schedule_id"]).schedule.state.paused

    # list: filters and pagination; another client sees nothing
    for _ in range(2):
        assert (
            rec_api.post("/v1/recurring-jobs", json=body(tpl, cron="0 2 * * *"), headers=h).status_code == 201
        )
    page = rec_api.get("/v1/recurring-jobs?limit=2", headers=h).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = rec_api.get(f"/v1/recurring-jobs?limit=2&cursor={page['next_cursor']}", headers=h).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = {i["id"] for i in page["items"] + rest["items"]}
    assert rid in ids and len(ids) == 3
    assert len(rec_api.get(f"/v1/recurring-jobs?job_template_id={tpl}", headers=h).json()["items"]) == 3
    _, other = new_client(rec_api, "other")
    assert rec_api.get("/v1/recurring-jobs", headers=other).json()["items"] == []
    is_problem(rec_api.get(f"/v1/recurring-jobs/{rid}", headers=other), 404)
    is_problem(rec_api.post(f"/v1/recurring-jobs/{rid}/pause", headers=other), 404)

    # delete: the Schedule goes, the row stays readable as deleted
    dl = rec_api.delete(f"/v1/recurring-jobs/{rid}", headers=h)
    assert dl.status_code == 200 and dl.json()["status"] == "deleted"
    with pytest.raises(RPCError):
        describe(rec_settings, rj["schedule_id"])
    assert rid not in {i["id"] for i in rec_api.get("/v1/recurring-jobs", headers=h).json()["items"]}
    listed = rec_api.get("/v1/recurring-jobs?status=deleted", headers=h).json()["items"]
    assert [i["id"] for i in listed] == [rid]
    is_problem(rec_api.post(f"/v1/recurring-jobs/{rid}/trigger", headers=h), 409)


BAD = [
    ({"cron": "0 1 * * * *"}, "cron", "5-field"),
    ({"cron": "61 1 * * *"}, "cron", "not a valid"),
    ({"cron": None, "interval": None}, "cron", "exactly one"),
    ({"interval": "PT1H"}, "cron", "exactly one"),
    ({"time_zone": "Mars/Olympus"}, "time_zone", "unknown time zone"),
    ({"margin_before": "3 hours"}, "margin_before", "ISO 8601"),
    ({"margin_after": "P1M"}, "margin_after", "months"),
    ({"cron": "0 * * * *", "margin_before": "PT40M", "margin_after": "PT30M"}, "margin_after", "period"),
    ({"cron": "0 0 1 * *", "margin_before": "PT2H"}, "margin_before", "earlier day"),
    ({"end_at": "2020-01-01T00:00:00Z"}, "end_at", "past"),
    ({"catchup_window": "PT5S"}, "catchup_window", "PT10S"),
    ({"deadline": "PT1H"}, "deadline", "longer than margin_after"),
    ({"overlap": "sometimes"}, "overlap", ""),
    ({"risk_mode": "YOLO"}, "risk_mode", ""),
    ({"args": {"bad key": 1}}, "args", ""),
    ({"surprise": 1}, "surprise", ""),
    ({"start_at": "2027-01-01T00:00:00"}, "start_at", ""),
]


@pytest.mark.parametrize("over,path,words", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_clear_422_and_creates_nothing(rec_api, rec_settings, over, path, words):
    h, tpl = setup_template(rec_api)
    before = count(rec_settings, RecurringJob)
    r = rec_api.post("/v1/recurring-jobs", json=body(tpl, **over), headers=h)
    p = is_problem(r, 422)
    assert any(e["path"].startswith(path) for e in p["errors"]), p
    assert words in p["detail"] + " ".join(e["message"] for e in p["errors"])
    assert count(rec_settings, RecurringJob) == before


def test_unknown_template_is_404(rec_api):
    h, _ = setup_template(rec_api)
    is_problem(rec_api.post("/v1/recurring-jobs", json=body("tpl_nope"), headers=h), 404)


def test_temporal_down_creates_nothing(api, api_settings):
    """The session's `api` fixture has no Temporal: 503, and no row is left behind."""
    h, tpl = setup_template(api)
    before = count(api_settings, RecurringJob)
    r = api.post("/v1/recurring-jobs", json=body(tpl), headers=h)
    is_problem(r, 503)
    assert count(api_settings, RecurringJob) == before


def test_temporal_cli_toggle_and_delete_show_in_rest(rec_api, rec_settings):
    """Temporal is the source of truth: `temporal schedule toggle/delete` are reflected by GET."""
    h, tpl = setup_template(rec_api)
    rj = rec_api.post("/v1/recurring-jobs", json=body(tpl), headers=h).json()
    sid = rj["schedule_id"]
    listed = temporal_cli(rec_settings, "schedule", "list")
    assert sid in listed
    temporal_cli(
        rec_settings, "schedule", "toggle", "--schedule-id", sid, "--pause", "--reason", "ops freeze"
    )
    g = rec_api.get(f"/v1/recurring-jobs/{rj['id']}", headers=h).json()
    assert g["status"] == "paused" and g["status_reason"] == "ops freeze" and g["schedule"]["paused"]
    temporal_cli(rec_settings, "schedule", "toggle", "--schedule-id", sid, "--unpause", "--reason", "ok")
    assert rec_api.get(f"/v1/recurring-jobs/{rj['id']}", headers=h).json()["status"] == "active"
    temporal_cli(rec_settings, "schedule", "delete", "--schedule-id", sid)
    g = rec_api.get(f"/v1/recurring-jobs/{rj['id']}", headers=h).json()
    assert g["status"] == "deleted" and "outside the API" in g["status_reason"]
    is_problem(rec_api.post(f"/v1/recurring-jobs/{rj['id']}/pause", headers=h), 409)


def test_firing_is_idempotent_by_nominal_time(rec_api, rec_settings):
    """The firing activity's DB step, called again for the same fire time (a retry, a replay after a killed
    worker) returns the same run; another fire time makes another; the run filter finds them."""
    h, tpl = setup_template(rec_api)
    rj = rec_api.post("/v1/recurring-jobs", json=body(tpl, cron="0 1 * * *"), headers=h).json()
    db = Database(rec_settings)
    fire = datetime(2031, 3, 1, 22, 0, tzinfo=UTC)  # 22:00 GMT -> nominal 01:00 GMT on 2 March
    try:
        with db.session() as s:
            a = create_firing_run(s, rec_settings, rj["id"], fire, now=fire)
        with db.session() as s:
            b = create_firing_run(s, rec_settings, rj["id"], fire, now=fire)
        with db.session() as s:
            c = create_firing_run(s, rec_settings, rj["id"], fire + timedelta(days=1), now=fire)
    finally:
        db.dispose()
    assert a.created and not b.created and a.run_id == b.run_id
    assert a.nominal_time == datetime(2031, 3, 2, 1, 0, tzinfo=UTC)
    assert c.created and c.run_id != a.run_id
    assert count(rec_settings, Job, recurring_job_id=rj["id"]) == 2
    assert count(rec_settings, Run, recurring_job_id=rj["id"]) == 2
    inp = a.run_input
    assert inp.job_type == "RESCHEDULABLE"
    assert _job_of(rec_api, h, a.run_id)["earliest_start"] == "2031-03-01T22:00:00Z"  # margin start
    # latest start = latest_finish - p50 (template's expected runtime: 1800 s) = the margin's end
    assert inp.latest_finish == datetime(2031, 3, 2, 4, 0, tzinfo=UTC) + timedelta(seconds=1800)
    runs = rec_api.get(f"/v1/runs?recurring_job_id={rj['id']}", headers=h).json()["items"]
    assert {r["run_id"] for r in runs} == {a.run_id, c.run_id}
    assert all(r["recurring_job_id"] == rj["id"] for r in runs)
    # a firing processed after its margin ended is recorded, not started
    with Database(rec_settings).session() as s:
        late = create_firing_run(
            s, rec_settings, rj["id"], fire + timedelta(days=2), now=fire + timedelta(days=3)
        )
    assert late.run_input is None and "EXPIRED" in late.skipped
    r = rec_api.get(f"/v1/runs/{late.run_id}", headers=h).json()
    assert r["status"] == "EXPIRED" and "after its margin ended" in r["status_reason"]


def test_late_firing_is_caught_up_within_the_catchup_window_else_recorded(rec_api, rec_settings):
    """A firing handled after its margin ended (worker down): within catchup_window of its fire time it
    makes a run that must start at once; beyond it an EXPIRED record whose reason names the margin and the
    window."""
    h, tpl = setup_template(rec_api)
    rj = rec_api.post(
        "/v1/recurring-jobs",
        json=body(tpl, margin_before="PT0S", margin_after="PT30M", catchup_window="PT2H"),
        headers=h,
    ).json()
    fire = datetime(2031, 3, 1, 1, 0, tzinfo=UTC)  # nominal 01:00 GMT, margin until 01:30
    db = Database(rec_settings)
    try:
        with db.session() as s:  # inside the margin: the ordinary window
            on_time = create_firing_run(s, rec_settings, rj["id"], fire, now=fire + timedelta(minutes=20))
        with db.session() as s:  # 90 min late: margin over, catch-up window (2 h) not
            caught = create_firing_run(
                s, rec_settings, rj["id"], fire + timedelta(days=1), now=fire + timedelta(days=1, minutes=90)
            )
        with db.session() as s:  # 3 h late: beyond both
            lost = create_firing_run(
                s, rec_settings, rj["id"], fire + timedelta(days=2), now=fire + timedelta(days=2, hours=3)
            )
    finally:
        db.dispose()
    assert on_time.run_input is not None
    assert _job_of(rec_api, h, on_time.run_id)["earliest_start"] == "2031-03-01T01:00:00Z"
    assert caught.created and caught.run_input is not None and "caught up" in caught.details
    job = _job_of(rec_api, h, caught.run_id)
    handled = fire + timedelta(days=1, minutes=90)
    assert job["earliest_start"] == handled.isoformat().replace("+00:00", "Z")
    # latest start (latest_finish - p50 1800 s) = handled + 1 minute: the run starts at once or not at all
    assert caught.run_input.latest_finish == handled + timedelta(minutes=1, seconds=1800)
    assert lost.created and lost.run_input is None and "EXPIRED" in lost.skipped
    r = rec_api.get(f"/v1/runs/{lost.run_id}", headers=h).json()
    assert r["status"] == "EXPIRED" and r["started_at"] is None
    assert "after its margin ended at 2031-03-03 01:30:00Z" in r["status_reason"]
    assert "beyond its catch-up window PT2H (until 2031-03-03 03:00:00Z)" in r["status_reason"]


def test_interval_schedule_fires_when_each_margin_opens(rec_api, rec_settings):
    h, tpl = setup_template(rec_api)
    r = rec_api.post(
        "/v1/recurring-jobs",
        json=body(tpl, cron=None, interval="PT6H", margin_before="PT1H", margin_after="PT30M"),
        headers=h,
    )
    assert r.status_code == 201, r.text
    rj = r.json()
    assert [datetime.fromisoformat(n["nominal_time"]).hour % 6 for n in rj["next"]] == [0] * 5
    d = describe(rec_settings, rj["schedule_id"])
    times = d.info.next_action_times
    assert times and all(t.astimezone(UTC).hour % 6 == 5 and t.minute == 0 for t in times), times


def test_deadline_sets_the_latest_finish(rec_api, rec_settings):
    h, tpl = setup_template(rec_api)
    rj = rec_api.post(
        "/v1/recurring-jobs", json=body(tpl, margin_after="PT1H", deadline="PT8H"), headers=h
    ).json()
    fire = datetime(2031, 6, 1, 21, 0, tzinfo=UTC)  # 22:00 BST -> nominal 01:00 BST = 00:00Z on 2 June
    db = Database(rec_settings)
    try:
        with db.session() as s:
            f = create_firing_run(s, rec_settings, rj["id"], fire, now=fire)
    finally:
        db.dispose()
    assert f.nominal_time == datetime(2031, 6, 2, 0, 0, tzinfo=UTC)
    assert _job_of(rec_api, h, f.run_id)["earliest_start"] == "2031-06-01T21:00:00Z"
    assert f.run_input.latest_finish == datetime(2031, 6, 2, 8, 0, tzinfo=UTC)


def _job_of(api, headers, run_id: str) -> dict:
    run = api.get(f"/v1/runs/{run_id}", headers=headers).json()
    return api.get(f"/v1/jobs/{run['job_id']}", headers=headers).json()
