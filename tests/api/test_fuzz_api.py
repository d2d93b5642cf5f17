"""Schemathesis over the app's own OpenAPI schema, in-process through ASGI, on the real DB and SeaweedFS
(Temporal unreachable, as in the ``api`` fixture: ``POST /v1/jobs`` and cancels answer a documented
503 problem+json, which is declared acceptable for them and for ``/readyz``).

- every operation is fuzzed (positive and negative data, schemathesis' coverage and examples phases) with
  valid API keys: the admin key for the admin operations, a client key for the rest;
- path ids, the prediction query and bodies (template, job, preview, upload, AWS settings) are real records
  of a client set up first, some of the time, so the deep code paths run and not only the 404s;
- one explicit valid request per operation, so the deep paths run on every run whatever is generated;
- a bounded stateful run along the links schemathesis infers between operations.

Checks: no 5xx; status codes, content types and bodies as documented; invalid data rejected.
Bounded for ``make test`` (seeded, derandomized, a few examples per operation). A longer run:
``FUZZ_EXAMPLES=500 FUZZ_STEPS=20 .venv/bin/python -m pytest -q tests/api/test_fuzz_api.py``
(``make fuzz``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from core.settings import Settings
from tests.support.api import AWS_BODY, insert_job_and_run, insert_recurring_row, insert_webhook_and_delivery
from tests.support.common import ADMIN_KEY, new_client
from tests.support.zips import make_zip

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
FUZZ_STEPS = int(os.environ.get("FUZZ_STEPS", "5"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Temporal is unreachable in these tests: these operations answer 503 problem+json, as documented.
TEMPORAL_OPS = ("GET /readyz", "POST /v1/jobs", "POST /v1/runs/{run_id}/cancel")
# issue 13: recurring jobs' Schedule operations need Temporal too
TEMPORAL_OPS += (
    "POST /v1/recurring-jobs",
    "PATCH /v1/recurring-jobs/{recurring_id}",
    "POST /v1/recurring-jobs/{recurring_id}/pause",
    "POST /v1/recurring-jobs/{recurring_id}/resume",
    "POST /v1/recurring-jobs/{recurring_id}/trigger",
    "DELETE /v1/recurring-jobs/{recurring_id}",
)
# issue 19: a test event and a redelivery start a delivery workflow
TEMPORAL_OPS += (
    "POST /v1/webhooks/{webhook_id}/test",
    "POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
)
TEMPORAL_OPS += ("POST /v1/runs/{run_id}/rerun",)  # issue 19: a rerun starts a workflow
# Operations that need the admin key; everything else is called with the fuzz client's key.
ADMIN_OPS = {"POST /v1/clients", "PATCH /v1/clients/{client_id}", "GET /v1/clients"}
SUPPRESS = [
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
    HealthCheck.function_scoped_fixture,
]


@dataclass
class World:
    """Real records of one client, so generated requests hit them some of the time."""

    client_id: str
    key: str
    ids: dict[str, str] = field(default_factory=dict)
    artifact_zip: bytes = b""
    spare_webhook_id: str = ""

    def valid_bodies(self) -> dict[str, list[Any]]:
        now = datetime.now(UTC)
        window = {
            "earliest_start": (now + timedelta(hours=1)).isoformat(),
            "latest_finish": (now + timedelta(days=1)).isoformat(),
        }
        tpl = self.ids["template_id"]
        return {
            "POST /v1/job-templates": [
                {
                    "name": f"fuzz-{now.timestamp()}",
                    "fleet_template_id": "m5.large",
                    "app_artifact_id": self.ids["artifact_id"],
                }
            ],
            "POST /v1/jobs": [
                {"job_template_id": tpl, "type": "ONE_TIME", "intended_time": now.isoformat()},
                {"job_template_id": tpl, "type": "RESCHEDULABLE", "risk_mode": "CONSERVATIVE", **window},
            ],
            "POST /v1/schedules/preview": [
                {"job_template_id": tpl, "risk_mode": "NEUTRAL"} | window,
                {"job_template_id": tpl, "risk_mode": "AGGRESSIVE", "fleet_template_id": "m5.xlarge"}
                | window,
            ],
            "POST /v1/artifacts/upload": [
                {"file": self.artifact_zip, "version": "1.0.0"},
                {"file": make_zip({"run.sh": "echo hi\n"}), "version": "fuzz-2"},
            ],
            "PUT /v1/clients/{client_id}/aws": [AWS_BODY],
            "POST /v1/clients": [{"name": "fuzz-made"}],
            "PATCH /v1/clients/{client_id}": [{"name": "fuzz-renamed"}],
            "POST /v1/runs/{run_id}/cancel": [{"reason": "fuzz"}],
            "POST /v1/recurring-jobs": [
                {
                    "job_template_id": tpl,
                    "cron": "0 1 * * *",
                    "time_zone": "Europe/London",
                    "margin_before": "PT3H",
                    "margin_after": "PT3H",
                }
            ],  # fmt: skip
            "PATCH /v1/recurring-jobs/{recurring_id}": [{"margin_after": "PT2H"}],
            "POST /v1/webhooks": [{"url": "https://hooks.example.com/fuzz", "event_types": ["run.failed"]}],
            "PATCH /v1/webhooks/{webhook_id}": [{"description": "fuzz", "enabled": True}],
            "PATCH /v1/job-templates/{template_id}": [{"expected_runtime_sec": 1200}],
        }

    def valid_query(self, label: str) -> dict[str, Any] | None:
        return {
            "GET /v1/predictions/runtime": {"job_template_id": self.ids["template_id"]},
            "GET /v1/runs": {"status": "SCHEDULED", "job_template_id": self.ids["template_id"]},
            "GET /v1/jobs": {"job_template_id": self.ids["template_id"]},
            "GET /v1/fleet-templates": {"prefix": "m5.", "limit": 3},
        }.get(label)


@pytest.fixture(scope="module")
def world(api, api_settings) -> World:
    cid, h = new_client(api, "fuzz")
    w = World(cid, h["X-API-Key"], artifact_zip=make_zip())
    art = api.post(
        "/v1/artifacts/upload",
        headers=h,
        data={"version": "1.0.0"},
        files={"file": ("app.zip", w.artifact_zip, "application/zip")},
    )
    assert art.status_code == 201, art.text
    tpl = api.post(
        "/v1/job-templates",
        headers=h,
        json={
            "name": "fuzz-tpl",
            "app_artifact_id": art.json()["artifact_id"],
            "fleet_template_id": "m5.large",
            "expected_runtime_sec": 900,
            "default_args": {"a": 1},
        },
    )
    assert tpl.status_code == 201, tpl.text
    fleet = {
        "driver": "local",
        "run_id": "fuzz",
        "attempt": 1,
        "ref": {"dir": str(api_settings.data_dir / "nowhere")},
    }
    job, run = insert_job_and_run(api_settings, cid, tpl.json()["id"], fleet=fleet)
    _plan(api_settings, run)
    assert api.put(f"/v1/clients/{cid}/aws", headers=h, json=AWS_BODY).status_code == 200
    w.ids = {
        "client_id": cid,
        "artifact_id": art.json()["artifact_id"],
        "template_id": tpl.json()["id"],
        "job_id": job,
        "run_id": run,
        "fleet_template_id": "m5.large",
        "recurring_id": insert_recurring_row(api_settings, cid, tpl.json()["id"]),
    }
    w.ids["webhook_id"], w.ids["delivery_id"] = insert_webhook_and_delivery(api, api_settings, h, cid)
    # DELETE gets an endpoint of its own, so the operations sorted after it still find theirs
    w.spare_webhook_id = insert_webhook_and_delivery(api, api_settings, h, cid)[0]
    return w


def _plan(api_settings, run_id: str) -> None:
    """Plan the run as the plan activity does, so it has a plan and its audit record (issue 18)."""
    from core.db import Database
    from models.db import Client, Job, JobTemplate, Run
    from services.planning import plan_for_run

    db = Database(api_settings)
    with db.session() as s:
        run = s.get_one(Run, run_id)
        job, tpl = s.get_one(Job, run.job_id), s.get_one(JobTemplate, run.job_template_id)
        client = s.get_one(Client, run.client_id)
        res = plan_for_run(s, api_settings, run, job, tpl, client, datetime.now(UTC))
        run.plan = res.doc
    db.dispose()


# ---------------------------------------------------------------- the schema, loaded at collection
# (Not ``schemathesis.pytest.from_fixture``: its lazy loader sets ``request.node._nodeid``, which pytest 9
# no longer has.) The OpenAPI document does not depend on settings, so an app that is never started
# provides it; the calls go to a live app on the real DB and SeaweedFS, started per database by the
# ``fuzz_app`` fixture.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20240601,
        # Keys are set per call (admin or client key, followed across rotations), so schemathesis does
        # not generate (or negate) the X-API-Key header itself; the security tests cover authentication.
        # Unknown query parameters are ignored, as most HTTP APIs do (JSON bodies refuse unknown fields).
        "generation": {
            "max-examples": FUZZ_EXAMPLES,
            "deterministic": True,
            "with-security-parameters": False,
            "allow-extra-parameters": False,
        },
        "phases": {"stateful": {"max-steps": FUZZ_STEPS}},
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "operations": [
            {
                "include-name": list(TEMPORAL_OPS),
                "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
            }
        ],
    }
)
# model_construct: defaults only, no ORCH_* environment read at import time
_schema_app = create_app(Settings.model_construct(data_dir=Path(tempfile.gettempdir()) / "orch-openapi-only"))
schema = schemathesis.openapi.from_dict(_schema_app.openapi(), config=CONFIG)
schema.app = _schema_app  # ASGI transport; every call passes ``app=`` the live app of the fixture
CURRENT: dict[str, Any] = {}  # the world and live app of the database being fuzzed (read at draw time)


def _label(operation) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _from_world(fn):
    """A strategy whose value is built at draw time from the current world's real records."""
    return st.just(None).map(lambda _: fn(CURRENT["world"]))


@schema.hook
def before_generate_path_parameters(context, strategy):
    names = [p.name for p in context.operation.path_parameters]
    if not names or _label(context.operation) == "DELETE /v1/webhooks/{webhook_id}":
        return strategy  # the world's endpoint must outlive the fuzzing (test_a_valid_request_conforms)
    return st.one_of(strategy, _from_world(lambda w: {n: w.ids.get(n, "x") for n in names}))


@schema.hook
def before_generate_query(context, strategy):
    label = _label(context.operation)
    if label not in ("GET /v1/predictions/runtime", "GET /v1/runs", "GET /v1/jobs"):
        return strategy
    return st.one_of(strategy, _from_world(lambda w: w.valid_query(label)))


@schema.hook
def before_generate_body(context, strategy):
    label = _label(context.operation)
    if label not in (
        "POST /v1/job-templates",
        "POST /v1/jobs",
        "POST /v1/schedules/preview",
        "POST /v1/artifacts/upload",
        "PUT /v1/clients/{client_id}/aws",
    ):
        return strategy
    return st.one_of(
        strategy,
        st.integers(0, 1).flatmap(
            lambda i: _from_world(lambda w: w.valid_bodies()[label][i % len(w.valid_bodies()[label])])
        ),
    )


@pytest.fixture(scope="module")
def fuzz_app(api_settings, world):
    from schemathesis.python import asgi

    mp = pytest.MonkeyPatch()
    mp.setattr(api_settings, "aws_endpoint_url", "http://127.0.0.1:1")  # .../aws/verify: never real AWS
    app = create_app(api_settings)
    CURRENT.update(world=world, app=app)
    yield app
    asgi.shutdown_lifespans()
    CURRENT.clear()
    mp.undo()


def _headers(case, world: World) -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY if _label(case.operation) in ADMIN_OPS else world.key}


def _follow(case, response, world: World, api) -> None:
    """Keep the fuzz client usable: follow its key rotations, undo its suspensions."""
    label = _label(case.operation)
    if response.status_code != 200 or not label.startswith("P") or "/v1/clients/" not in label:
        return
    body = response.json()
    if label == "POST /v1/clients/{client_id}/rotate-key" and body.get("id") == world.client_id:
        world.key = body["api_key"]
    if label == "PATCH /v1/clients/{client_id}" and body.get("status") == "suspended":
        api.patch(f"/v1/clients/{body['id']}", json={"status": "active"}, headers={"X-API-Key": ADMIN_KEY})


# ---------------------------------------------------------------- generated requests, every operation
@schema.parametrize()
@settings(deadline=None, derandomize=True, print_blob=True, suppress_health_check=SUPPRESS)
def test_api_conforms_to_its_schema(case, fuzz_app, world, api):
    headers = _headers(case, world)
    response = case.call(headers=headers, app=fuzz_app)
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    finally:
        _follow(case, response, world, api)


# ---------------------------------------------------------------- one valid request per operation
LABELS = sorted(f"{m.upper()} {p}" for p, item in _schema_app.openapi()["paths"].items() for m in item)
EXPECTED = {label: (503,) for label in TEMPORAL_OPS}
# the world's template is used by its recurring job: retiring it is refused, naming the recurring job
EXPECTED["DELETE /v1/job-templates/{template_id}"] = (409,)


@pytest.mark.parametrize("label", LABELS)
def test_a_valid_request_conforms(label, fuzz_app, world, api):
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    kwargs: dict[str, Any] = {}
    if operation.path_parameters:
        kwargs["path_parameters"] = {p.name: world.ids[p.name] for p in operation.path_parameters}
        if label == "DELETE /v1/webhooks/{webhook_id}":
            kwargs["path_parameters"]["webhook_id"] = world.spare_webhook_id
    if (query := world.valid_query(label)) is not None:
        kwargs["query"] = query
    if label in (bodies := world.valid_bodies()):
        kwargs["body"] = bodies[label][0]
        kwargs["media_type"] = "multipart/form-data" if "upload" in path else "application/json"
    case = operation.Case(**kwargs)
    headers = _headers(case, world)
    response = case.call(headers=headers, app=fuzz_app)
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
        ok = EXPECTED.get(label, range(200, 300))
        assert response.status_code in ok, (label, response.status_code, response.text[:500])
    finally:
        _follow(case, response, world, api)


# ---------------------------------------------------------------- stateful: inferred links
def test_stateful_sequences(fuzz_app, world, api):
    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": _headers(case, world), "app": fuzz_app}

        def after_call(self, response, case):
            _follow(case, response, world, api)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, headers=kwargs.get("headers"))

    Workflow.run(
        settings=settings(
            max_examples=max(2, FUZZ_EXAMPLES // 2),
            stateful_step_count=FUZZ_STEPS,
            deadline=None,
            derandomize=True,
            suppress_health_check=SUPPRESS,
        )
    )


def test_fuzz_client_still_works(api, world, fuzz_app):
    """The fuzz run followed rotations and undid suspensions: its client still works afterwards."""
    assert api.get("/v1/artifacts", headers={"X-API-Key": world.key}).status_code == 200
