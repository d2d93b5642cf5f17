"""Clients, AWS settings, artifacts, fleet templates and job templates against real SeaweedFS and real DBs
(each test runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

import pytest
from sqlalchemy import create_engine, select, text

from core.db import normalise_url
from core.s3 import parse_s3_uri, s3_client
from models.db import Artifact, Client, JobTemplate
from tests.support.api import count, is_problem, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip


def bucket_keys(api_settings, prefix: str) -> list[str]:
    s3 = s3_client(api_settings)
    resp = s3.list_objects_v2(Bucket=api_settings.s3_bucket, Prefix=prefix)
    return [o["Key"] for o in resp.get("Contents", [])]


# ---------------------------------------------------------------- clients and keys
def test_create_client_returns_key_once_and_stores_only_hash(api, admin, api_settings):
    r = api.post("/v1/clients", json={"name": "acme"}, headers=admin)
    assert r.status_code == 201
    body = r.json()
    assert set(body) >= {"id", "api_key", "status"} and body["status"] == "active"
    assert len(body["api_key"]) >= 43  # 32 random bytes, url-safe
    got = api.get(f"/v1/clients/{body['id']}", headers={"X-API-Key": body["api_key"]})
    assert got.status_code == 200 and "api_key" not in got.json()
    eng = create_engine(normalise_url(api_settings.db_url))
    with eng.connect() as c:
        row = c.execute(select(Client.api_key_hash).where(Client.id == body["id"])).scalar_one()
        dump = " ".join(str(v) for v in c.execute(text("SELECT * FROM clients")).fetchall())
    eng.dispose()
    assert row == hashlib.sha256(body["api_key"].encode()).hexdigest()
    assert body["api_key"] not in dump


def test_auth_missing_unknown_and_non_admin(api):
    is_problem(api.get("/v1/artifacts"), 401)
    is_problem(api.get("/v1/artifacts", headers={"X-API-Key": "orch_nope"}), 401)
    _, h = new_client(api)
    is_problem(api.post("/v1/clients", json={"name": "x"}, headers=h), 403)


def test_rotate_key_invalidates_old_key(api):
    cid, h = new_client(api)
    r = api.post(f"/v1/clients/{cid}/rotate-key", headers=h)
    assert r.status_code == 200
    new_key = r.json()["api_key"]
    assert new_key != h["X-API-Key"]
    is_problem(api.get(f"/v1/clients/{cid}", headers=h), 401)
    assert api.get(f"/v1/clients/{cid}", headers={"X-API-Key": new_key}).status_code == 200


def test_suspended_client_is_refused(api, admin):
    cid, h = new_client(api)
    assert api.patch(f"/v1/clients/{cid}", json={"status": "suspended"}, headers=admin).status_code == 200
    is_problem(api.get("/v1/artifacts", headers=h), 403)
    api.patch(f"/v1/clients/{cid}", json={"status": "active"}, headers=admin)
    assert api.get("/v1/artifacts", headers=h).status_code == 200


# ---------------------------------------------------------------- AWS settings
SEED_AWS = {
    "role_arn": "arn:aws:iam::123456789012:role/client",
    "external_id": "ext-acme-1",
    "region_default": "us-east-1",
    "session_name_template": "orch-{client_id}",
}


def test_put_and_get_aws_settings(api):
    cid, h = new_client(api)
    r = api.put(f"/v1/clients/{cid}/aws", json=SEED_AWS | {"external_id": f"ext-{cid}"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["external_id"] == f"ext-{cid}"
    assert api.get(f"/v1/clients/{cid}/aws", headers=h).json()["role_arn"] == SEED_AWS["role_arn"]


def test_external_id_generated_when_omitted_and_unique_across_clients(api):
    a, ha = new_client(api)
    b, hb = new_client(api)
    body = {k: v for k, v in SEED_AWS.items() if k != "external_id"}
    ra = api.put(f"/v1/clients/{a}/aws", json=body, headers=ha)
    assert ra.status_code == 200
    generated = ra.json()["external_id"]
    assert len(generated) >= 32
    rb = api.put(f"/v1/clients/{b}/aws", json=body | {"external_id": generated}, headers=hb)
    is_problem(rb, 409)
    # re-PUT without external_id keeps the generated one
    assert api.put(f"/v1/clients/{a}/aws", json=body, headers=ha).json()["external_id"] == generated


@pytest.mark.parametrize(
    "field,value",
    [
        ("role_arn", "arn:aws:iam::123:role/client"),  # account not 12 digits
        ("role_arn", "arn:aws:iam::123456789012:user/bob"),  # not a role
        ("role_arn", "not-an-arn"),
        ("region_default", "moon-base-1"),
        ("region_default", "US-EAST-1"),
        ("session_name_template", "{client_id}" + "x" * 64),  # renders longer than 64
        ("session_name_template", "orch {client_id}"),  # space not allowed
        ("session_name_template", "orch-{account}"),  # unknown placeholder
        ("external_id", "a"),  # too short
    ],
)
def test_aws_settings_validation(api, field, value, api_settings):
    cid, h = new_client(api)
    body = is_problem(api.put(f"/v1/clients/{cid}/aws", json=SEED_AWS | {field: value}, headers=h), 422)
    assert any(e["path"] == field for e in body["errors"]), body
    assert api.get(f"/v1/clients/{cid}/aws", headers=h).status_code == 404  # nothing stored


def test_aws_settings_of_another_client_is_404(api):
    a, _ = new_client(api)
    _, hb = new_client(api)
    is_problem(api.put(f"/v1/clients/{a}/aws", json=SEED_AWS, headers=hb), 404)
    is_problem(api.get(f"/v1/clients/{a}/aws", headers=hb), 404)
    is_problem(api.get(f"/v1/clients/{a}", headers=hb), 404)


# ---------------------------------------------------------------- artifacts
def test_upload_reads_back_from_seaweedfs(api, api_settings):
    cid, h = new_client(api)
    data = make_zip()
    r = upload(api, h, data)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"artifact_id", "s3_uri", "sha256", "version"}
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["version"] == "1.0.0"
    bucket, key = parse_s3_uri(body["s3_uri"])
    assert bucket == api_settings.s3_bucket and key.startswith(f"{cid}/") and "1.0.0" in key
    obj = s3_client(api_settings).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(obj).hexdigest() == body["sha256"]
    assert api.get(f"/v1/artifacts/{body['artifact_id']}", headers=h).json()["s3_uri"] == body["s3_uri"]
    assert [a["artifact_id"] for a in api.get("/v1/artifacts", headers=h).json()["items"]] == [
        body["artifact_id"]
    ]


def test_same_bytes_again_returns_existing_and_different_bytes_conflict(api, api_settings):
    cid, h = new_client(api)
    data = make_zip()
    first = upload(api, h, data).json()
    again = upload(api, h, data)
    assert again.status_code == 200 and again.json()["artifact_id"] == first["artifact_id"]
    other = make_zip({"main.py": "print('v2')\n"})
    is_problem(upload(api, h, other), 409)
    assert upload(api, h, other, version="1.0.1").status_code == 201  # new version is fine
    assert count(api_settings, Artifact, client_id=cid) == 2
    assert len(bucket_keys(api_settings, f"{cid}/")) == 2


def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("main.py", "print(1)\n")
        z.writestr("zeros.bin", b"\0" * (50 * 1024 * 1024))
    return buf.getvalue()


BAD_UPLOADS = {
    "not a zip": (b"just some text, not a zip archive", "1.0.0"),
    "no entry point": (make_zip({"lib/helper.py": "x=1\n", "README": "hi"}), "1.0.0"),
    "entry point not at root": (make_zip({"app/main.py": "print(1)\n"}), "1.0.0"),
    "zip slip": (make_zip({"main.py": "print(1)\n", "../evil.sh": "rm -rf /"}), "1.0.0"),
    "absolute path": (make_zip({"main.py": "print(1)\n", "/etc/cron.d/evil": "x"}), "1.0.0"),
    "zip bomb": (_bomb(), "1.0.0"),
    "empty version": (make_zip(), "   "),
    "bad version": (make_zip(), "1.0/../../x"),
    "empty file": (b"", "1.0.0"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_refused_and_leave_nothing(api, api_settings, case):
    cid, h = new_client(api)
    data, version = BAD_UPLOADS[case]
    r = upload(api, h, data, version=version)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    is_problem(r, r.status_code)
    assert count(api_settings, Artifact, client_id=cid) == 0
    assert bucket_keys(api_settings, f"{cid}/") == []


def test_upload_over_size_limit_is_413(api, api_settings, monkeypatch):
    cid, h = new_client(api)
    big = make_zip({"main.py": "print(1)\n", "blob.bin": bytes(range(256)) * 4096})
    monkeypatch.setattr(api_settings, "max_artifact_bytes", len(big) - 1)
    r = upload(api, h, big)
    is_problem(r, 413)
    assert count(api_settings, Artifact, client_id=cid) == 0
    assert bucket_keys(api_settings, f"{cid}/") == []


def test_upload_missing_fields_is_422_with_paths(api):
    _, h = new_client(api)
    body = is_problem(api.post("/v1/artifacts/upload", headers=h, data={"version": "1"}), 422)
    assert any(e["path"] == "file" for e in body["errors"])


# ---------------------------------------------------------------- fleet templates
def test_fleet_template_catalog(api):
    _, h = new_client(api)
    t = api.get("/v1/fleet-templates/m5.4xlarge", headers=h)
    assert t.status_code == 200
    body = t.json()
    assert body["vcpu"] == 16 and body["memory_gib"] == 64 and body["watts_50"] > 0
    assert "us-east-1" in body["spot_bins"]
    page = api.get("/v1/fleet-templates?prefix=m5.&limit=5", headers=h).json()
    assert len(page["items"]) == 5 and all(i["id"].startswith("m5.") for i in page["items"])
    nxt = api.get(f"/v1/fleet-templates?prefix=m5.&limit=5&cursor={page['next_cursor']}", headers=h).json()
    assert nxt["items"][0]["id"] > page["items"][-1]["id"]
    is_problem(api.get("/v1/fleet-templates/m5.huge", headers=h), 404)


# ---------------------------------------------------------------- job templates
def test_create_and_read_job_template(api):
    _, h = new_client(api)
    art = upload(api, h, make_zip()).json()["artifact_id"]
    r = api.post("/v1/job-templates", json=template_body(art, expected_runtime_sec=1800), headers=h)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert api.get(f"/v1/job-templates/{tid}", headers=h).json()["default_args"] == {"arg1": "value"}
    assert [t["id"] for t in api.get("/v1/job-templates", headers=h).json()["items"]] == [tid]
    is_problem(api.post("/v1/job-templates", json=template_body(art), headers=h), 409)  # duplicate name


@pytest.mark.parametrize(
    "over,path",
    [
        ({"fleet_template_id": "m5.nonexistent"}, "fleet_template_id"),
        ({"data_uri": "https://example.com/data"}, "data_uri"),
        ({"data_uri": "s3://"}, "data_uri"),
        ({"default_args": {"nested": {"a": 1}}}, "default_args"),
        ({"default_args": {"list": [1, 2]}}, "default_args"),
        ({"default_args": {"bad key!": 1}}, "default_args"),
        ({"name": ""}, "name"),
        ({"expected_runtime_sec": -5}, "expected_runtime_sec"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_job_template_validation(api, api_settings, over, path):
    cid, h = new_client(api)
    art = upload(api, h, make_zip()).json()["artifact_id"]
    body = is_problem(api.post("/v1/job-templates", json=template_body(art, **over), headers=h), 422)
    assert any(e["path"].startswith(path) for e in body["errors"]), body
    assert count(api_settings, JobTemplate, client_id=cid) == 0


# ---------------------------------------------------------------- tenancy
def test_tenant_isolation(api, api_settings):
    a, ha = new_client(api, "a")
    b, hb = new_client(api, "b")
    art = upload(api, ha, make_zip()).json()["artifact_id"]
    tpl = api.post("/v1/job-templates", json=template_body(art), headers=ha).json()["id"]
    for path in (
        f"/v1/artifacts/{art}",
        f"/v1/job-templates/{tpl}",
        f"/v1/clients/{a}",
        f"/v1/clients/{a}/aws",
    ):
        is_problem(api.get(path, headers=hb), 404)
    assert api.get("/v1/artifacts", headers=hb).json()["items"] == []
    assert api.get("/v1/job-templates", headers=hb).json()["items"] == []
    assert [c["id"] for c in api.get("/v1/clients", headers=hb).json()["items"]] == [b]
    # B cannot use A's artifact in a template: same answer as a missing one
    is_problem(api.post("/v1/job-templates", json=template_body(art), headers=hb), 404)
    assert count(api_settings, JobTemplate, client_id=b) == 0


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "method,path,kwargs",
    [
        (
            "post",
            "/v1/job-templates",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("post", "/v1/job-templates", {"json": [1, 2, 3]}),
        ("post", "/v1/jobs", {"json": {"type": "SOMETIMES"}}),
        ("get", "/v1/runs?limit=0", {}),
        ("get", "/v1/runs?cursor=%%%", {}),
        ("get", "/v1/nowhere", {}),
        ("delete", "/v1/artifacts", {}),
    ],
)
def test_bad_requests_are_problem_json_never_500(api, method, path, kwargs):
    _, h = new_client(api)
    headers = {**h, **kwargs.pop("headers", {})}
    r = (
        getattr(api, method)(path, headers=headers, **kwargs)
        if method != "get" and method != "delete"
        else getattr(api, method)(path, headers=headers)
    )
    assert 400 <= r.status_code < 500, r.text
    is_problem(r, r.status_code)
    assert "Traceback" not in r.text


def _forged(ts: object, id_: object) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts, id_]).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        _forged("2026-01-01T00:00:00", "run_x"),  # naive
        _forged("0001-01-01T00:00:00+01:00", "run_x"),  # before year 1 in UTC
        _forged("9999-12-31T23:59:59-01:00", "run_x"),  # after 9999 in UTC
        _forged("0001-01-01T00:00:00+00:00", "run_x"),
        _forged("2026-01-01T00:00:00+00:00", "run_\x00x"),  # NUL
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "run_\\ud800"]').decode(),  # lone surrogate
        _forged(12, "run_x"),
        _forged("2026-01-01T00:00:00+00:00", ["x"]),
        "%%%",
    ],
)
def test_forged_cursors_are_422_naming_the_cursor(api, admin, cursor):
    """Issue 21: every paginated list refuses a cursor no page returned with a 422 naming it, on SQLite
    and PostgreSQL (which cannot store NUL or lone surrogates and overflows on year 1 / 9999)."""
    _, h = new_client(api)
    for path, headers in (
        ("/v1/runs", h),
        ("/v1/jobs", h),
        ("/v1/artifacts", h),
        ("/v1/job-templates", h),
        ("/v1/recurring-jobs", h),
        ("/v1/clients", admin),
        ("/v1/runs", admin),
    ):
        r = api.get(path, params={"cursor": cursor}, headers=headers)
        body = is_problem(r, 422)
        assert [e["path"] for e in body["errors"]] == ["cursor"], (path, body)
