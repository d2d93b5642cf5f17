"""Choosing the region (issue 14), the API side, on SQLite and PostgreSQL: the client's allowed regions and
per-region launch settings, template and job region lists, every validation rule as a 422 naming its field,
backward compatible answers for clients that never opted in, the run's recorded region in the run views and
the ledger's ``group_by=region``. Also the pure rules of ``services.regions`` (candidate sets, home region,
launch settings per region)."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.db import Database
from models.api import JobCreate
from models.db import Client, Job, JobTemplate, Run
from services.jobs import request_hash
from services.regions import (
    NoCandidateRegion,
    candidate_regions,
    home_region,
    launch_settings,
)
from tests.support.api import AWS_BODY, is_problem, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

HOME = "eu-central-1"
PARIS = "eu-west-3"
EU_AWS = AWS_BODY | {"region_default": HOME}


# ---------------------------------------------------------------- pure rules
def _client(**kw) -> Client:
    return Client(id="cl_x", region_default=kw.pop("region_default", HOME), **kw)


def _template(**kw) -> JobTemplate:
    return JobTemplate(id="tpl_x", **kw)


def test_without_opt_in_the_only_candidate_is_the_home_region():
    c = _client()
    assert home_region(_template(), c) == HOME
    assert candidate_regions(c, _template(), None) == [HOME]
    # a template pinned to its own region keeps running there, as before issue 14
    assert candidate_regions(c, _template(region="eu-west-1"), None) == ["eu-west-1"]
    assert home_region(_template(), None) == "us-east-1"


def test_candidates_are_the_intersection_home_first_in_client_order():
    c = _client(allowed_regions=["eu-north-1", PARIS, HOME, "eu-west-1"])
    assert candidate_regions(c, _template(), None) == [HOME, "eu-north-1", PARIS, "eu-west-1"]
    t = _template(regions=["eu-west-1", PARIS])
    assert candidate_regions(c, t, None) == [PARIS, "eu-west-1"]  # home not allowed by the template
    assert candidate_regions(c, t, ["eu-west-1"]) == ["eu-west-1"]
    assert candidate_regions(c, _template(), [PARIS, HOME]) == [HOME, PARIS]


def test_data_region_keeps_the_run_there_unless_the_job_lists_regions():
    c = _client(allowed_regions=[HOME, PARIS])
    t = _template(data_region=PARIS)
    assert candidate_regions(c, t, None) == [PARIS]
    assert candidate_regions(c, t, [HOME, PARIS]) == [HOME, PARIS]


def test_no_candidate_left_is_a_clear_value_error():
    c = _client(allowed_regions=[HOME])  # e.g. the client dropped Paris after the template was made
    with pytest.raises(NoCandidateRegion, match="no region is allowed"):
        candidate_regions(c, _template(regions=[PARIS]), None)
    with pytest.raises(ValueError, match="data_region eu-west-3"):
        candidate_regions(c, _template(data_region=PARIS), None)


def test_launch_settings_per_region_with_home_fallback():
    c = _client(
        allowed_regions=[HOME, PARIS, "eu-west-1"],
        subnet_ids=["subnet-0123456789abcdef0"],
        security_group_ids=["sg-0123456789abcdef0"],
        instance_profile_arn="arn:aws:iam::123456789012:instance-profile/top",
        region_settings={PARIS: {"subnet_ids": ["subnet-0aaaaaaaaaaaaaaaa"], "security_group_ids": []}},
    )
    assert launch_settings(c, HOME, HOME)["subnet_ids"] == ["subnet-0123456789abcdef0"]
    paris = launch_settings(c, PARIS, HOME)
    assert paris["subnet_ids"] == ["subnet-0aaaaaaaaaaaaaaaa"] and paris["security_group_ids"] == []
    assert paris["instance_profile_arn"].endswith("/top")  # IAM is global: the top-level profile
    other = launch_settings(c, "eu-west-1", HOME)  # no settings: the region's default VPC
    assert other["subnet_ids"] == [] and other["security_group_ids"] == []


def test_a_body_without_regions_hashes_as_before():
    """Idempotency keys stored before issue 14 still match a retry of the same body."""
    body = JobCreate(job_template_id="tpl_x", type="ONE_TIME", intended_time=datetime(2030, 1, 1, tzinfo=UTC))
    old = body.model_dump(mode="json")
    old.pop("regions")
    assert request_hash(body) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    with_regions = body.model_copy(update={"regions": [HOME]})
    assert request_hash(with_regions) != request_hash(body)


# ---------------------------------------------------------------- API
def _paths(r) -> list[str]:
    return [e["path"] for e in is_problem(r, 422).get("errors") or []]


def _eu_client(api, allowed=(HOME, PARIS), **aws) -> tuple[str, dict, str]:
    cid, h = new_client(api, "regions")
    body = EU_AWS | ({"allowed_regions": list(allowed)} if allowed is not None else {}) | aws
    r = api.put(f"/v1/clients/{cid}/aws", json=body, headers=h)
    assert r.status_code == 200, r.text
    art = upload(api, h, make_zip()).json()["artifact_id"]
    return cid, h, art


def test_aws_settings_round_trip_and_backward_compatible_answer(api):
    cid, h = new_client(api)
    plain = api.put(f"/v1/clients/{cid}/aws", json=AWS_BODY, headers=h)
    assert plain.status_code == 200, plain.text
    assert plain.json()["allowed_regions"] is None and plain.json()["region_settings"] is None
    body = EU_AWS | {
        "allowed_regions": [HOME, PARIS],
        "region_settings": {
            PARIS: {
                "subnet_ids": ["subnet-0123456789abcdef0"],
                "security_group_ids": ["sg-0123456789abcdef0"],
                "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/paris",
            }
        },
    }
    r = api.put(f"/v1/clients/{cid}/aws", json=body, headers=h)
    assert r.status_code == 200, r.text
    got = api.get(f"/v1/clients/{cid}/aws", headers=h).json()
    assert got["allowed_regions"] == [HOME, PARIS]
    assert got["region_settings"][PARIS]["subnet_ids"] == ["subnet-0123456789abcdef0"]
    assert got["region_settings"][PARIS]["instance_profile_arn"].endswith("/paris")
    # PUT replaces the settings: without the fields, nothing moves any more
    assert api.put(f"/v1/clients/{cid}/aws", json=EU_AWS, headers=h).json()["allowed_regions"] is None


@pytest.mark.parametrize(
    "over, path",
    [
        ({"allowed_regions": [HOME, "eu-wset-3"]}, "allowed_regions/1"),  # unknown region
        ({"allowed_regions": [HOME, "eu-west-33"]}, "allowed_regions/1"),  # well-formed, unknown
        ({"allowed_regions": [HOME, "cn-north-1"]}, "allowed_regions/1"),  # role is in partition aws
        ({"allowed_regions": []}, "allowed_regions"),  # empty list
        ({"allowed_regions": [HOME, PARIS, HOME]}, "allowed_regions/2"),  # duplicate
        ({"allowed_regions": [PARIS]}, "allowed_regions"),  # must include region_default
        ({"region_settings": {PARIS: {}}}, f"region_settings/{PARIS}"),  # not allowed (default: home)
        (
            {"allowed_regions": [HOME], "region_settings": {PARIS: {"subnet_ids": []}}},
            f"region_settings/{PARIS}",
        ),
        (
            {"region_settings": {HOME: {"subnet_ids": ["subnet-nothex"]}}},
            f"region_settings/{HOME}/subnet_ids/0",
        ),
        (
            {"region_settings": {HOME: {"security_group_ids": ["sg-12"]}}},
            f"region_settings/{HOME}/security_group_ids/0",
        ),
        (
            {"region_settings": {HOME: {"instance_profile_arn": "arn:aws:iam::1:role/x"}}},
            f"region_settings/{HOME}/instance_profile_arn",
        ),
        ({"region_settings": {HOME: {"vpc": "x"}}}, f"region_settings/{HOME}/vpc"),  # unknown field
    ],
)
def test_aws_region_validation(api, over, path):
    cid, h = new_client(api)
    assert path in _paths(api.put(f"/v1/clients/{cid}/aws", json=EU_AWS | over, headers=h))
    assert api.get(f"/v1/clients/{cid}/aws", headers=h).status_code == 404  # nothing stored


def test_template_regions_round_trip(api):
    _, h, art = _eu_client(api)
    r = api.post(
        "/v1/job-templates",
        json=template_body(art, name="paris", regions=[PARIS, HOME], data_region=PARIS),
        headers=h,
    )
    assert r.status_code == 201, r.text
    got = api.get(f"/v1/job-templates/{r.json()['id']}", headers=h).json()
    assert got["regions"] == [PARIS, HOME] and got["data_region"] == PARIS
    old = api.post("/v1/job-templates", json=template_body(art, name="plain"), headers=h).json()
    assert old["regions"] is None and old["data_region"] is None and old["region"] is None


@pytest.mark.parametrize(
    "over, path",
    [
        ({"regions": ["eu-west-1"]}, "regions/0"),  # outside the client's allowed regions
        ({"regions": ["eu-wset-3"]}, "regions/0"),  # unknown region
        ({"regions": []}, "regions"),  # empty list
        ({"regions": [PARIS, PARIS]}, "regions/1"),  # duplicate
        ({"data_region": "eu-west-1"}, "data_region"),  # data region not allowed
        ({"data_region": "eu-wset-1"}, "data_region"),  # unknown
        ({"regions": [HOME], "data_region": PARIS}, "data_region"),  # not among the template's regions
        ({"region": "eu-west-1"}, "region"),  # the template's home must be allowed once the client opted in
    ],
)
def test_template_region_validation(api, over, path):
    _, h, art = _eu_client(api)
    assert path in _paths(api.post("/v1/job-templates", json=template_body(art, **over), headers=h))


def test_template_regions_without_client_opt_in(api):
    """A client without allowed_regions may only name its home region (nothing moves)."""
    _, h, art = _eu_client(api, allowed=None)
    assert "regions/0" in _paths(
        api.post("/v1/job-templates", json=template_body(art, regions=[PARIS]), headers=h)
    )
    ok = api.post("/v1/job-templates", json=template_body(art, name="home", regions=[HOME]), headers=h)
    assert ok.status_code == 201, ok.text
    pinned = api.post(  # a template with its own region: that is its home, as before issue 14
        "/v1/job-templates", json=template_body(art, name="pin", region=PARIS, data_region=PARIS), headers=h
    )
    assert pinned.status_code == 201, pinned.text


def _job(tpl: str, **over) -> dict:
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {"job_template_id": tpl, "type": "ONE_TIME", "intended_time": when} | over


def test_job_regions_validation_and_storage(no_worker_api, api_settings):
    api = no_worker_api
    _, h, art = _eu_client(api, allowed=(HOME, PARIS, "eu-north-1"))
    narrow = api.post(
        "/v1/job-templates", json=template_body(art, name="narrow", regions=[HOME, PARIS]), headers=h
    ).json()["id"]
    wide = api.post("/v1/job-templates", json=template_body(art, name="wide"), headers=h).json()["id"]
    # outside the template's regions / the client's / unknown / empty / duplicate
    assert "regions/0" in _paths(api.post("/v1/jobs", json=_job(narrow, regions=["eu-north-1"]), headers=h))
    assert "regions/0" in _paths(api.post("/v1/jobs", json=_job(wide, regions=["eu-west-1"]), headers=h))
    assert "regions/1" in _paths(api.post("/v1/jobs", json=_job(wide, regions=[HOME, "xx-yy-1"]), headers=h))
    assert "regions" in _paths(api.post("/v1/jobs", json=_job(wide, regions=[]), headers=h))
    assert "regions/1" in _paths(api.post("/v1/jobs", json=_job(wide, regions=[PARIS, PARIS]), headers=h))
    ok = api.post("/v1/jobs", json=_job(narrow, regions=[PARIS]), headers=h)
    assert ok.status_code == 201, ok.text
    job = api.get(f"/v1/jobs/{ok.json()['job_id']}", headers=h).json()
    assert job["regions"] == [PARIS]
    plain = api.post("/v1/jobs", json=_job(wide), headers=h)
    assert plain.status_code == 201, plain.text
    assert api.get(f"/v1/jobs/{plain.json()['job_id']}", headers=h).json()["regions"] is None
    db = Database(api_settings)
    with db.session() as s:
        assert s.get_one(Job, ok.json()["job_id"]).regions == [PARIS]
    db.dispose()


def test_preview_request_accepts_regions(no_worker_api):
    """The field exists and is checked for shape (its planning is the planner's part)."""
    api = no_worker_api
    _, h, art = _eu_client(api)
    tpl = api.post("/v1/job-templates", json=template_body(art), headers=h).json()["id"]
    now = datetime.now(UTC)
    body = {
        "job_template_id": tpl,
        "earliest_start": now.isoformat(),
        "latest_finish": (now + timedelta(hours=12)).isoformat(),
    }
    assert "regions" in _paths(api.post("/v1/schedules/preview", json=body | {"regions": []}, headers=h))
    assert api.post("/v1/schedules/preview", json=body | {"regions": [PARIS]}, headers=h).status_code == 200


def _ran_runs(api_settings, cid: str, tpl: str, specs: list[tuple[str | None, float, float]]) -> list[str]:
    """SUCCEEDED runs written straight to the DB: (region, chosen g, baseline g) each."""
    db = Database(api_settings)
    ids = []
    start = datetime(2026, 5, 1, tzinfo=UTC)
    with db.session() as s:
        job = Job(
            id="job_" + secrets.token_hex(8), client_id=cid, job_template_id=tpl, type="ONE_TIME",
            risk_mode="NEUTRAL", request_hash="x",
        )  # fmt: skip
        s.add(job)
        s.flush()
        for i, (region, chosen, base) in enumerate(specs):
            rid = "run_" + secrets.token_hex(8)
            s.add(
                Run(
                    id=rid, job_id=job.id, client_id=cid, job_template_id=tpl, fleet_template_id="m5.large",
                    workflow_id=rid, status="SUCCEEDED", started_at=start + timedelta(hours=i),
                    finished_at=start + timedelta(hours=i, minutes=30), runtime_sec=1800.0,
                    carbon_chosen_g=chosen, carbon_earliest_g=base, region=region,
                    plan={"region": region} if region else None,
                )
            )  # fmt: skip
            ids.append(rid)
    db.dispose()
    return ids


def test_run_views_show_the_region_and_the_ledger_groups_by_it(api, api_settings):
    cid, h, art = _eu_client(api)
    tpl = api.post("/v1/job-templates", json=template_body(art), headers=h).json()["id"]
    paris, home, old = _ran_runs(
        api_settings, cid, tpl, [(PARIS, 10.0, 80.0), (HOME, 70.0, 80.0), (None, 50.0, 50.0)]
    )
    assert api.get(f"/v1/runs/{paris}", headers=h).json()["region"] == PARIS
    assert api.get(f"/v1/runs/{old}", headers=h).json()["region"] is None
    listed = {r["run_id"]: r["region"] for r in api.get("/v1/runs", headers=h).json()["items"]}
    assert listed == {paris: PARIS, home: HOME, old: None}
    q = "from=2026-04-01T00:00:00Z&to=2026-06-01T00:00:00Z"
    ledger = api.get(f"/v1/reports/carbon?{q}&group_by=region", headers=h)
    assert ledger.status_code == 200, ledger.text
    rows = {r["key"]: r for r in ledger.json()["rows"]}
    assert set(rows) == {"", HOME, PARIS}
    assert rows[PARIS]["saving_g"] == 70.0 and rows[HOME]["saving_g"] == 10.0 and rows[""]["saving_g"] == 0
    assert rows[""]["label"] == "region not recorded"
    assert ledger.json()["total"]["saving_g"] == 80.0
    csv_text = api.get(f"/v1/reports/carbon?{q}&group_by=region", headers=h | {"Accept": "text/csv"}).text
    assert f"\n{PARIS},{PARIS},1," in csv_text


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def test_verify_reports_instance_types_not_offered_per_region(api_settings, moto_endpoint, monkeypatch):
    """moto lists p4d.24xlarge in eu-central-1 but not in eu-west-3 (as AWS does)."""
    from core.aws import clear_credential_cache

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    clear_credential_cache()
    settings = api_settings.model_copy(update={"aws_endpoint_url": moto_endpoint})
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        cid, h, art = _eu_client(api)
        for name, itype in (("gpu", "p4d.24xlarge"), ("cpu", "m5.large")):
            r = api.post(
                "/v1/job-templates", json=template_body(art, name=name, fleet_template_id=itype), headers=h
            )
            assert r.status_code == 201, r.text
        out = api.post(f"/v1/clients/{cid}/aws/verify", headers=h)
        assert out.status_code == 200, out.text
        body = out.json()
        assert body["ok"] is True
        by_region = {r["region"]: r for r in body["regions"]}
        assert list(by_region) == [HOME, PARIS]
        assert by_region[HOME]["ok"] is True and by_region[HOME]["not_offered"] == []
        assert by_region[PARIS]["ok"] is False and by_region[PARIS]["not_offered"] == ["p4d.24xlarge"]
        # a client that never opted in: its home region only
        cid2, h2, _ = _eu_client(api, allowed=None)
        plain = api.post(f"/v1/clients/{cid2}/aws/verify", headers=h2).json()
        assert [r["region"] for r in plain["regions"]] == [HOME] and plain["regions"][0]["ok"] is True
    clear_credential_cache()


def test_offerings_report_errors_per_region_and_never_raise(tmp_path, monkeypatch):
    from core.aws import clear_credential_cache, instance_type_offerings
    from models.fleet import AwsAccess
    from tests.support.common import make_settings

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    clear_credential_cache()
    access = AwsAccess(
        role_arn=AWS_BODY["role_arn"], external_id="ext-x1", session_name="orch-x", region=HOME
    )
    out = instance_type_offerings(
        access, make_settings(tmp_path, aws_endpoint_url="http://127.0.0.1:9"), [HOME, PARIS], ["m5.large"]
    )
    assert [(r["region"], r["ok"]) for r in out] == [(HOME, False), (PARIS, False)]
    assert all(r["error_code"] == "EndpointConnectionError" and r["hint"] for r in out)


def test_a_job_with_no_region_left_is_refused(no_worker_api):
    """The client removed a region its templates still list: new jobs get a 422 naming the lists."""
    api = no_worker_api
    cid, h, art = _eu_client(api)
    paris_only = api.post(
        "/v1/job-templates", json=template_body(art, name="p", regions=[PARIS]), headers=h
    ).json()["id"]
    data_paris = api.post(
        "/v1/job-templates", json=template_body(art, name="d", data_region=PARIS), headers=h
    ).json()["id"]
    assert api.post("/v1/jobs", json=_job(paris_only), headers=h).status_code == 201
    r = api.put(f"/v1/clients/{cid}/aws", json=EU_AWS | {"allowed_regions": [HOME]}, headers=h)
    assert r.status_code == 200, r.text
    refused = is_problem(api.post("/v1/jobs", json=_job(paris_only), headers=h), 422)
    assert refused["errors"][0]["path"] == "regions" and "no region is allowed" in refused["detail"]
    assert "data_region" in is_problem(api.post("/v1/jobs", json=_job(data_paris), headers=h), 422)["detail"]
    # the job may still move the data-bound template's runs home by listing regions itself
    assert api.post("/v1/jobs", json=_job(data_paris, regions=[HOME]), headers=h).status_code == 201
