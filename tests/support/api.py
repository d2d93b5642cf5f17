"""Helpers of the API tests: problem+json checks, uploads, templates, rows written straight to the DB."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.db import normalise_url
from models.db import Job, Run, new_id, utcnow
from models.workflow import workflow_id_for
from tests.support.common import new_client
from tests.support.zips import make_zip

PROBLEM = "application/problem+json"
AWS_BODY = {
    "role_arn": "arn:aws:iam::123456789012:role/client",
    "region_default": "us-east-1",
    "session_name_template": "orch-{client_id}",
}


def engine_for(api_settings):
    return create_engine(normalise_url(api_settings.db_url))


def is_problem(r, status: int | None = None) -> dict:
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), (r.status_code, r.headers, r.text)
    body = r.json()
    assert body["status"] == r.status_code and body["title"] and "detail" in body, body
    assert "Traceback" not in r.text
    return body


def upload(api, headers, data: bytes, version: str = "1.0.0", name: str = "app.zip"):
    return api.post(
        "/v1/artifacts/upload",
        headers=headers,
        files={"file": (name, data, "application/zip")},
        data={"version": version},
    )


def count(api_settings, model, **where) -> int:
    eng = create_engine(normalise_url(api_settings.db_url))
    try:
        with eng.connect() as c:
            stmt = select(func.count()).select_from(model)
            for k, v in where.items():
                stmt = stmt.where(getattr(model, k) == v)
            return c.execute(stmt).scalar_one()
    finally:
        eng.dispose()


def template_body(artifact_id: str, **over) -> dict:
    return {
        "name": "daily-etl",
        "app_artifact_id": artifact_id,
        "default_args": {"arg1": "value"},
        "data_uri": "s3://bucket/data",
        "fleet_template_id": "m5.4xlarge",
    } | over


def setup_template(api, **over) -> tuple[str, dict, str]:
    cid, h = new_client(api)
    art = upload(api, h, make_zip()).json()["artifact_id"]
    tpl = api.post("/v1/job-templates", json=template_body(art, expected_runtime_sec=1800, **over), headers=h)
    assert tpl.status_code == 201, tpl.text
    return cid, h, tpl.json()["id"]


def insert_job_and_run(
    api_settings,
    client_id: str,
    template_id: str,
    *,
    status: str = "SCHEDULED",
    idempotency_key: str | None = None,
    fleet: dict | None = None,
) -> tuple[str, str]:
    """Job + run rows written straight to the DB, as ``create_job`` commits them, without a workflow (Temporal
    is unreachable in the ``api`` fixture; a PENDING run is one whose API died before starting it)."""
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            job = Job(
                id=new_id("job"),
                client_id=client_id,
                job_template_id=template_id,
                type="ONE_TIME",
                intended_time=utcnow(),
                risk_mode="NEUTRAL",
                weights={"carbon": 0.5, "risk": 0.4, "slack": 0.1},
                args={},
                idempotency_key=idempotency_key,
                request_hash="0" * 64,
            )
            s.add(job)
            s.flush()
            run_id = new_id("run")
            s.add(
                Run(
                    id=run_id,
                    job_id=job.id,
                    client_id=client_id,
                    job_template_id=template_id,
                    fleet_template_id="m5.large",
                    workflow_id=workflow_id_for(run_id),
                    status=status,
                    fleet=fleet,
                    planned_start=None if status == "PENDING" else utcnow(),  # PENDING: not planned yet
                )
            )
            s.commit()
            return job.id, run_id
    finally:
        eng.dispose()


def insert_recurring_row(api_settings, client_id: str, template_id: str) -> str:
    """A recurring job row (issue 13) for the path ids; its Schedule needs Temporal, which is down here."""
    from core.db import Database
    from models.db import RecurringJob

    db = Database(api_settings)
    rid = "rec_" + client_id[-12:]
    with db.session() as s:
        s.add(
            RecurringJob(
                id=rid, client_id=client_id, job_template_id=template_id, cron="0 1 * * *",
                time_zone="Europe/London", margin_before="PT3H", margin_after="PT3H",
                schedule_id=f"recurring-{rid}",
            )
        )  # fmt: skip
    db.dispose()
    return rid


def insert_webhook_and_delivery(
    api, api_settings, headers: dict[str, str], client_id: str
) -> tuple[str, str]:
    """A webhook endpoint of the client (through the API) and one pending delivery of it (in the DB)."""
    from models.db import WebhookDelivery

    r = api.post(
        "/v1/webhooks",
        headers=headers,
        json={"url": "https://hooks.example.com/orch", "event_types": ["run.failed"]},
    )
    assert r.status_code == 201, r.text
    wid, did = r.json()["id"], new_id("dlv")
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s, s.begin():
            s.add(
                WebhookDelivery(
                    id=did,
                    endpoint_id=wid,
                    client_id=client_id,
                    event_id="evt_" + did,
                    event_type="run.failed",
                    body="{}",
                    status="failed",
                    attempts=1,
                    redeliveries=0,
                    created_at=utcnow(),
                )
            )
    finally:
        eng.dispose()
    return wid, did
