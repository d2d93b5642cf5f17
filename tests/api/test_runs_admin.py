"""Runs API on the real app + DB (SQLite and PostgreSQL), Temporal unreachable (the ``api`` fixture):
the admin key reads any run, a suspended client's own key is refused, and a PENDING run (no workflow yet)
can always be cancelled."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import Run
from tests.support.api import engine_for, insert_job_and_run, is_problem, setup_template
from tests.support.common import ADMIN_KEY

ADMIN = {"X-API-Key": ADMIN_KEY}


def db_run(api_settings, run_id: str) -> Run:
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            return s.scalar(select(Run).where(Run.id == run_id))
    finally:
        eng.dispose()


def test_admin_reads_every_tenants_runs(api, api_settings):
    cid_a, h_a, tpl_a = setup_template(api)
    cid_b, h_b, tpl_b = setup_template(api)
    _, run_a = insert_job_and_run(api_settings, cid_a, tpl_a)
    _, run_b = insert_job_and_run(api_settings, cid_b, tpl_b)

    listed = api.get(f"/v1/runs?client_id={cid_b}&limit=100", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert [r["run_id"] for r in listed.json()["items"]] == [run_b]
    everyone = {r["run_id"] for r in api.get("/v1/runs?limit=100", headers=ADMIN).json()["items"]}
    assert {run_a, run_b} <= everyone
    assert api.get(f"/v1/runs/{run_a}", headers=ADMIN).json()["run_id"] == run_a
    # a client still sees only its own, even when it names another client
    own = api.get(f"/v1/runs?client_id={cid_b}", headers=h_a).json()["items"]
    assert own == []
    is_problem(api.get(f"/v1/runs/{run_b}", headers=h_a), 404)
    is_problem(api.get("/v1/runs/run_nope", headers=ADMIN), 404)
    body = is_problem(api.get(f"/v1/runs/{run_a}/logs", headers=ADMIN), 404)
    assert "no logs yet" in body["detail"]

    # suspended: the client's own key is refused, the admin still reads its runs
    assert api.patch(f"/v1/clients/{cid_a}", json={"status": "suspended"}, headers=ADMIN).status_code == 200
    is_problem(api.get(f"/v1/runs/{run_a}", headers=h_a), 403)
    is_problem(api.post(f"/v1/runs/{run_a}/cancel", headers=h_a), 403)
    assert api.get(f"/v1/runs/{run_a}", headers=ADMIN).json()["status"] == "SCHEDULED"


def test_cancel_pending_run_without_workflow_is_cancelled_directly(api, api_settings):
    """The API died between committing the rows and starting the workflow (and Temporal is down now):
    the cancel still works, recorded in the DB; a second cancel is a 409."""
    cid, h, tpl = setup_template(api)
    _, run_id = insert_job_and_run(api_settings, cid, tpl, status="PENDING")
    r = api.post(f"/v1/runs/{run_id}/cancel", headers=h, json={"reason": "not needed"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "CANCELLED" and r.json()["status_reason"] == "not needed"
    row = db_run(api_settings, run_id)
    assert row.status == "CANCELLED" and row.finished_at is not None
    body = is_problem(api.post(f"/v1/runs/{run_id}/cancel", headers=h), 409)
    assert "CANCELLED" in body["detail"]


def test_admin_cancels_pending_run_of_a_suspended_client(api, api_settings):
    cid, h, tpl = setup_template(api)
    _, run_id = insert_job_and_run(api_settings, cid, tpl, status="PENDING")
    assert api.patch(f"/v1/clients/{cid}", json={"status": "suspended"}, headers=ADMIN).status_code == 200
    r = api.post(f"/v1/runs/{run_id}/cancel", headers=ADMIN)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "CANCELLED" and r.json()["status_reason"] == "cancelled by the admin"


def test_cancel_of_a_started_run_needs_temporal(api, api_settings):
    """A SCHEDULED run has a workflow that must hear the cancel: with Temporal down it is a 503 and the
    run is left as it was (the client retries)."""
    cid, h, tpl = setup_template(api)
    _, run_id = insert_job_and_run(api_settings, cid, tpl, status="SCHEDULED")
    is_problem(api.post(f"/v1/runs/{run_id}/cancel", headers=h), 503)
    assert db_run(api_settings, run_id).status == "SCHEDULED"
