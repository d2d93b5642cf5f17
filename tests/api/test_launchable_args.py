"""Issue 21 item 11: args that could never be given to the app are refused at submit with a 422 naming the
field (lone surrogates; more bytes than the OS passes to a program: 128 KiB per argument or variable), for
templates, jobs (the template's default_args merged with the job's) and recurring jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.support.api import count, is_problem, setup_template, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

MAX_ARG_STRLEN = 128 * 1024  # Linux: longest argument or environment string

JOB = {"type": "ONE_TIME", "intended_time": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
RECURRING = {
    "cron": "0 1 * * *",
    "time_zone": "Europe/London",
    "margin_before": "PT3H",
    "margin_after": "PT3H",
}


def _big(n: int, prefix: str = "a") -> dict[str, str]:
    """n args of 4096 characters: each alone is allowed; 32 of them no longer fit in ORCH_ARGS."""
    return {f"{prefix}{i}": "x" * 4096 for i in range(n)}


def _post(api, path: str, body: dict, headers: dict):
    """JSON as a client may write it, lone surrogates escaped (``"\\ud800"``; httpx's encoder refuses)."""
    return api.post(path, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


def _paths(r) -> list[str]:
    return [e["path"] for e in is_problem(r, 422)["errors"]]


def test_lone_surrogates_in_args_are_refused_with_the_field(no_worker_api, api_settings):
    from models.db import Job

    api = no_worker_api
    _, h, tpl = setup_template(api)
    for args in ({"x": "a\ud800b"}, {"x": "\udfff"}):
        r = _post(api, "/v1/jobs", {"job_template_id": tpl, **JOB, "args": args}, h)
        assert _paths(r) == ["args"], r.text
        assert "surrogate" in r.json()["detail"]
    art = upload(api, h, make_zip(), version="2.0.0").json()["artifact_id"]
    r = _post(api, "/v1/job-templates", template_body(art, default_args={"y": "\ud83d"}), h)
    assert _paths(r) == ["default_args"], r.text
    r = _post(api, "/v1/job-templates", template_body(art, name="\udc00"), h)
    assert _paths(r) == ["name"], r.text  # any text field, not only args
    # a whole pair is a real character and fine
    r = _post(api, "/v1/jobs", {"job_template_id": tpl, **JOB, "args": {"x": "\U0001f600"}}, h)
    assert r.status_code == 201, r.text
    assert count(api_settings, Job, job_template_id=tpl) == 1


def test_args_beyond_the_os_limit_are_refused_at_submit(no_worker_api, api_settings):
    from models.db import Job

    api = no_worker_api
    _, h, tpl = setup_template(api, default_args=_big(20, "d"))
    # the job's own args too big for one environment variable
    r = _post(api, "/v1/jobs", {"job_template_id": tpl, **JOB, "args": _big(40)}, h)
    assert _paths(r) == ["args"], r.text
    assert "ORCH_ARGS" in r.json()["detail"] and str(MAX_ARG_STRLEN) in r.json()["detail"]
    # each part fits, the merge with the template's 20 does not
    r = _post(api, "/v1/jobs", {"job_template_id": tpl, **JOB, "args": _big(15)}, h)
    assert _paths(r) == ["args"], r.text
    assert "default_args" in r.json()["detail"]
    assert count(api_settings, Job, job_template_id=tpl) == 0
    r = _post(api, "/v1/jobs", {"job_template_id": tpl, **JOB, "args": _big(5)}, h)
    assert r.status_code == 201, r.text  # 25 x 4 KiB: launchable
    # a non-ASCII character takes 6 bytes in ORCH_ARGS (\\uXXXX): 6 x 4096 of them are 144 KiB
    r = _post(api, "/v1/jobs", {"job_template_id": tpl, **JOB, "args": {"é": 1}}, h)
    assert _paths(r) == ["args"]  # (a key must be ASCII anyway)
    _, h2 = new_client(api, "other")
    art = upload(api, h2, make_zip()).json()["artifact_id"]
    body = template_body(art, default_args={f"u{i}": "é" * 4096 for i in range(6)})
    r = _post(api, "/v1/job-templates", body, h2)
    assert _paths(r) == ["default_args"], r.text


def test_recurring_jobs_refuse_unlaunchable_args(no_worker_api):
    api = no_worker_api
    _, h, tpl = setup_template(api, default_args=_big(20, "d"))
    r = _post(api, "/v1/recurring-jobs", {"job_template_id": tpl, **RECURRING, "args": _big(15)}, h)
    assert _paths(r) == ["args"], r.text
    r = _post(api, "/v1/recurring-jobs", {"job_template_id": tpl, **RECURRING, "args": {"x": "\ud800"}}, h)
    assert _paths(r) == ["args"], r.text
