"""Security properties of the API, on the real app (real DB, real SeaweedFS; Temporal unreachable):
keys (never stored raw, rotation, constant-time compare, suspension), tenant isolation on every route
that takes an id (enumerated from the app, so a new route is covered automatically), hostile uploads,
and secrets never showing up in logs or error bodies. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from core.s3 import s3_client
from core.security import hash_key
from models.db import Artifact, Run, new_id, utcnow
from tests.support.api import (
    AWS_BODY,
    engine_for,
    insert_job_and_run,
    insert_recurring_row,
    insert_webhook_and_delivery,
    is_problem,
    upload,
)
from tests.support.common import ADMIN_KEY, S3_SECRET, new_client
from tests.support.zips import make_zip


# ---------------------------------------------------------------- helpers
def artifact_count(api_settings, client_id: str) -> int:
    eng = engine_for(api_settings)
    try:
        with eng.connect() as c:
            return c.execute(
                select(func.count()).select_from(Artifact).where(Artifact.client_id == client_id)
            ).scalar_one()
    finally:
        eng.dispose()


def bucket_keys(api_settings, prefix: str) -> list[str]:
    resp = s3_client(api_settings).list_objects_v2(Bucket=api_settings.s3_bucket, Prefix=prefix)
    return [o["Key"] for o in resp.get("Contents", [])]


def assert_nothing_stored(api_settings, client_id: str) -> None:
    assert artifact_count(api_settings, client_id) == 0
    assert bucket_keys(api_settings, f"{client_id}/") == []


def run_status(api_settings, run_id: str) -> str:
    eng = engine_for(api_settings)
    try:
        with eng.connect() as c:
            return c.execute(select(Run.status).where(Run.id == run_id)).scalar_one()
    finally:
        eng.dispose()


@dataclass
class Tenant:
    id: str
    headers: dict[str, str]
    artifact: str = ""
    template: str = ""
    job: str = ""
    run: str = ""
    ids: dict[str, str] = field(default_factory=dict)


def make_tenant(api, api_settings, name: str, idempotency_key: str | None = None) -> Tenant:
    cid, h = new_client(api, name)
    t = Tenant(cid, h)
    r = upload(api, h, make_zip())
    assert r.status_code == 201, r.text
    t.artifact = r.json()["artifact_id"]
    r = api.post(
        "/v1/job-templates",
        headers=h,
        json={
            "name": f"tpl-{name}",
            "app_artifact_id": t.artifact,
            "fleet_template_id": "m5.large",
            "expected_runtime_sec": 600,
        },
    )
    assert r.status_code == 201, r.text
    t.template = r.json()["id"]
    run_dir = api_settings.data_dir / "runs" / "nowhere"
    t.job, t.run = insert_job_and_run(
        api_settings,
        cid,
        t.template,
        idempotency_key=idempotency_key,
        fleet={"driver": "local", "run_id": "x", "attempt": 1, "ref": {"dir": str(run_dir)}},
    )
    assert api.put(f"/v1/clients/{cid}/aws", headers=h, json=AWS_BODY).status_code == 200
    t.ids = {
        "client_id": cid,
        "artifact_id": t.artifact,
        "template_id": t.template,
        "job_id": t.job,
        "run_id": t.run,
        "recurring_id": insert_recurring_row(api_settings, cid, t.template),
    }
    t.ids["webhook_id"], t.ids["delivery_id"] = insert_webhook_and_delivery(api, api_settings, h, cid)
    return t


# Path parameters that name tenant-owned records, and those that name the shared catalog.
SHARED_PARAMS = {"fleet_template_id"}
# Valid bodies, so a route answers about the id rather than about a malformed body.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/clients/{client_id}/aws"): {
        "json": AWS_BODY | {"role_arn": "arn:aws:iam::210987654321:role/x"}
    },
    ("PATCH", "/v1/clients/{client_id}"): {"json": {"status": "suspended"}},
    ("POST", "/v1/runs/{run_id}/cancel"): {"json": {"reason": "tenant B tries"}},
    ("PATCH", "/v1/recurring-jobs/{recurring_id}"): {"json": {"name": "stolen"}},
    ("POST", "/v1/recurring-jobs/{recurring_id}/pause"): {"json": {"note": "tenant B tries"}},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"json": {"description": "tenant B tries"}},
    ("PATCH", "/v1/job-templates/{template_id}"): {"json": {"expected_runtime_sec": 1234}},
    ("POST", "/v1/runs/{run_id}/rerun"): {"json": {}},
}
# Routes only the admin may call: a client gets 403 for every id (its own, another's, a missing one).
ADMIN_ONLY = {("PATCH", "/v1/clients/{client_id}")}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    path_params: tuple[str, ...]
    has_body: bool


def v1_operations(app) -> list[Op]:
    """Every ``/v1`` operation of the app, read from its OpenAPI document (generated from ``app.routes``,
    so a route added tomorrow is in this list without anyone touching the tests)."""
    ops = []
    for path, item in app.openapi()["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                params = tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "path")
                ops.append(Op(method.upper(), path, params, "requestBody" in op))
    return ops


def fill(op: Op, ids: dict[str, str]) -> str:
    path = op.path
    for name in op.path_params:
        path = path.replace("{" + name + "}", ids.get(name, "m5.large" if name in SHARED_PARAMS else "x"))
    return path


def call(api, op: Op, path: str, headers: dict[str, str]):
    return api.request(op.method, path, headers=headers, **BODIES.get((op.method, op.path), {}))


@pytest.fixture(scope="module")
def tenants(api, api_settings):
    a = make_tenant(api, api_settings, "tenant-a", idempotency_key="shared-idem-key")
    b = make_tenant(api, api_settings, "tenant-b")
    return a, b


@pytest.fixture(autouse=True)
def _no_real_aws(api_settings, monkeypatch):
    """``POST .../aws/verify`` must never reach real AWS from a test: point STS at a closed port."""
    monkeypatch.setattr(api_settings, "aws_endpoint_url", "http://127.0.0.1:1")


# ---------------------------------------------------------------- keys
def _db_dump(api_settings) -> str:
    """Every value of every table, as one string."""
    eng = engine_for(api_settings)
    try:
        parts = []
        with eng.connect() as c:
            for table in inspect(eng).get_table_names():
                for row in c.execute(text(f'SELECT * FROM "{table}"')):
                    parts += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
        return "\n".join(parts)
    finally:
        eng.dispose()


def test_keys_are_never_stored_raw(api, admin, api_settings):
    cid, h = new_client(api, "rawkey")
    first = h["X-API-Key"]
    r = api.post(f"/v1/clients/{cid}/rotate-key", headers=h)
    assert r.status_code == 200
    second = r.json()["api_key"]
    r = api.post(f"/v1/clients/{cid}/rotate-key", headers=admin)  # the admin may rotate too
    assert r.status_code == 200
    third = r.json()["api_key"]
    dump = _db_dump(api_settings)
    assert hash_key(third) in dump  # the scan does see the clients table
    for raw in (first, second, third, ADMIN_KEY):
        assert raw not in dump
        secret_part = raw[12:]  # beyond the displayed prefix: no 16-char slice of it is stored anywhere
        for i in range(len(secret_part) - 15):
            assert secret_part[i : i + 16] not in dump, "a slice of a raw key is stored"
    # and the public view never carries a key or its hash
    body = api.get(f"/v1/clients/{cid}", headers={"X-API-Key": third}).json()
    assert "api_key" not in body and hash_key(third) not in json.dumps(body)
    assert len(third) >= 43 and third.startswith("orch_")  # >= 32 random bytes


def test_rotation_invalidates_the_old_key_everywhere(api, admin):
    cid, h = new_client(api, "rotate")
    old = h["X-API-Key"]
    new = api.post(f"/v1/clients/{cid}/rotate-key", headers=h).json()["api_key"]
    for path in (f"/v1/clients/{cid}", "/v1/artifacts", "/v1/job-templates", "/v1/jobs", "/v1/runs"):
        body = is_problem(api.get(path, headers={"X-API-Key": old}), 401)
        assert old not in json.dumps(body)
        assert api.get(path, headers={"X-API-Key": new}).status_code == 200
    is_problem(api.post(f"/v1/clients/{cid}/rotate-key", headers={"X-API-Key": old}), 401)
    # rotating by the admin invalidates the client's current key as well
    newest = api.post(f"/v1/clients/{cid}/rotate-key", headers=admin).json()["api_key"]
    is_problem(api.get("/v1/artifacts", headers={"X-API-Key": new}), 401)
    assert api.get("/v1/artifacts", headers={"X-API-Key": newest}).status_code == 200


def test_keys_are_compared_with_hmac_compare_digest(api, admin, monkeypatch):
    """Timing safety is asserted on the code path (timing measurements are flaky): every accepted key,
    admin or client, went through ``hmac.compare_digest``, and nothing else decided."""
    cid, h = new_client(api, "timing")
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert api.get("/v1/clients", headers=admin).status_code == 200
    assert any(ADMIN_KEY.encode() in (a, b) or ADMIN_KEY in (a, b) for a, b in calls), calls

    calls.clear()
    assert api.get("/v1/artifacts", headers=h).status_code == 200
    digest = hash_key(h["X-API-Key"])
    assert any(digest in (a, b) for a, b in calls), "client key not compared with compare_digest"

    # if compare_digest says no, the key is refused even though the lookup by hash found the client
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    is_problem(api.get("/v1/artifacts", headers=h), 401)
    is_problem(api.get("/v1/clients", headers=admin), 401)


def test_suspended_client_is_refused_on_every_endpoint(api, admin, api_settings):
    t = make_tenant(api, api_settings, "suspended")
    assert api.patch(f"/v1/clients/{t.id}", json={"status": "suspended"}, headers=admin).status_code == 200
    ops = v1_operations(api.app)
    assert len(ops) >= 20, ops
    for op in ops:
        r = api.request(op.method, fill(op, t.ids), headers=t.headers)
        assert r.status_code == 403, (op, r.status_code, r.text)
        assert "suspended" in is_problem(r)["detail"], (op, r.text)
    assert run_status(api_settings, t.run) == "SCHEDULED"  # the refused cancel changed nothing
    assert api.patch(f"/v1/clients/{t.id}", json={"status": "active"}, headers=admin).status_code == 200
    assert api.get(f"/v1/runs/{t.run}", headers=t.headers).status_code == 200


# ---------------------------------------------------------------- tenant isolation
def test_every_id_route_refuses_another_tenants_ids_with_404(api, api_settings, tenants):
    a, b = tenants
    missing = {k: new_id(v.split("_")[0]) for k, v in a.ids.items()}
    ops = [op for op in v1_operations(api.app) if op.path_params]
    assert len(ops) >= 10, ops
    unknown = {p for op in ops for p in op.path_params} - set(a.ids) - SHARED_PARAMS
    assert not unknown, f"map these path parameters to a tenant's ids in make_tenant(): {unknown}"
    no_body = [(op.method, op.path) for op in ops if op.has_body and (op.method, op.path) not in BODIES]
    assert not no_body, f"give these operations a valid body in BODIES: {no_body}"

    checked = []
    for op in ops:
        if set(op.path_params) <= SHARED_PARAMS:  # the shared catalog: same answer for everyone
            ra, rb = (call(api, op, fill(op, {}), t.headers) for t in (a, b))
            assert ra.status_code == rb.status_code == 200, (op, ra.text, rb.text)
            continue
        theirs = call(api, op, fill(op, a.ids), b.headers)
        nowhere = call(api, op, fill(op, missing), b.headers)
        expected = 403 if (op.method, op.path) in ADMIN_ONLY else 404
        body = is_problem(theirs, expected)
        other = is_problem(nowhere, expected)
        # indistinguishable from an id that does not exist (no existence leak through status or text)
        assert _unid(body, a.ids) == _unid(other, missing), (op, body, other)
        checked.append(op)
    assert {("GET", "/v1/runs/{run_id}"), ("POST", "/v1/runs/{run_id}/cancel")} <= {
        (o.method, o.path) for o in checked
    }
    # B's attempts changed nothing of A's: key (rotate), AWS settings (PUT), run (cancel), status (PATCH)
    me = api.get(f"/v1/clients/{a.id}", headers=a.headers)
    assert me.status_code == 200 and me.json()["status"] == "active"
    assert api.get(f"/v1/clients/{a.id}/aws", headers=a.headers).json()["role_arn"] == AWS_BODY["role_arn"]
    assert run_status(api_settings, a.run) == "SCHEDULED"

    # positive control: the owner is not told 404 for the same requests, so the ids were real
    for op in sorted(checked, key=lambda o: o.method == "DELETE"):  # a DELETE last: it really deletes
        if (op.method, op.path) in ADMIN_ONLY:
            continue
        mine = call(api, op, fill(op, a.ids), a.headers)
        assert mine.status_code != 404, (op, mine.text)
        if op.path.endswith("/rotate-key"):
            a.headers = {"X-API-Key": mine.json()["api_key"]}


def _unid(body: dict, ids: dict[str, str]) -> str:
    s = json.dumps(body, sort_keys=True)
    for v in ids.values():
        s = s.replace(v, "<id>")
    return s


def test_ids_in_bodies_and_queries_are_isolated_too(api, api_settings, tenants):
    a, b = tenants
    hb = b.headers
    now = utcnow()
    window = {"earliest_start": now.isoformat(), "latest_finish": (now + timedelta(days=2)).isoformat()}
    # another tenant's artifact in a template, template in a job / preview / prediction: 404
    is_problem(
        api.post(
            "/v1/job-templates",
            headers=hb,
            json={"name": "steal", "app_artifact_id": a.artifact, "fleet_template_id": "m5.large"},
        ),
        404,
    )
    is_problem(
        api.post(
            "/v1/jobs",
            headers=hb,
            json={"job_template_id": a.template, "type": "ONE_TIME", "intended_time": now.isoformat()},
        ),
        404,
    )
    is_problem(
        api.post("/v1/schedules/preview", headers=hb, json={"job_template_id": a.template, **window}), 404
    )
    is_problem(api.get(f"/v1/predictions/runtime?job_template_id={a.template}", headers=hb), 404)
    # filters by another tenant's ids find nothing
    for q in (
        f"/v1/runs?job_template_id={a.template}",
        f"/v1/runs?job_id={a.job}",
        f"/v1/jobs?job_template_id={a.template}",
        "/v1/runs",
        "/v1/jobs",
        "/v1/artifacts",
        "/v1/job-templates",
    ):
        items = api.get(q, headers=hb).json()["items"]
        assert all(a.id not in json.dumps(i) and a.template not in json.dumps(i) for i in items), q
        assert not any(i.get("id") in (a.job, a.template) or i.get("run_id") == a.run for i in items), q
    listed = api.get("/v1/clients", headers=hb).json()["items"]
    assert [c["id"] for c in listed] == [b.id]
    # an Idempotency-Key that A used is no replay of A's job for B (Temporal is down: 503, nothing created)
    r = api.post(
        "/v1/jobs",
        headers=hb | {"Idempotency-Key": "shared-idem-key"},
        json={"job_template_id": b.template, "type": "ONE_TIME", "intended_time": now.isoformat()},
    )
    assert r.status_code == 503 and a.job not in r.text and a.run not in r.text, r.text
    # the admin key is not a tenant: it cannot read a tenant's artifacts or templates; runs it may read (and
    # cancel) to stop the work of any client, e.g. a suspended one (issue 9)
    for path in (f"/v1/artifacts/{a.artifact}", f"/v1/job-templates/{a.template}"):
        is_problem(api.get(path, headers={"X-API-Key": ADMIN_KEY}), 403)
    assert api.get(f"/v1/runs/{a.run}", headers={"X-API-Key": ADMIN_KEY}).json()["run_id"] == a.run


# ---------------------------------------------------------------- uploads
def _zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        for info, data in entries:
            z.writestr(info, data)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _device(name: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFCHR | 0o600) << 16
    return info, b""


MAIN = ("main.py", b"print('hi')\n")


def _incompressible(n: int, seed: int) -> bytes:
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


HOSTILE_ZIPS: dict[str, bytes] = {
    "zip slip ..": _zip_with([MAIN, ("../../evil.sh", b"rm -rf /")]),
    "zip slip nested ..": _zip_with([MAIN, ("lib/../../evil.py", b"x")]),
    "zip slip backslash": _zip_with([MAIN, ("..\\..\\evil.bat", b"x")]),
    "absolute path": _zip_with([MAIN, ("/tmp/evil", b"x")]),
    "windows drive": _zip_with([MAIN, ("C:/evil", b"x")]),
    "symlink entry": _zip_with([MAIN, _symlink("data", "/etc")]),
    "symlink entry point": _zip_with([_symlink("main.py", "/usr/bin/python3")]),
    "device file": _zip_with([MAIN, _device("dev0")]),
    "duplicate names": _zip_with([MAIN, ("main.py", b"print('other')\n")]),
    "ratio bomb": _zip_with([MAIN, ("zeros.bin", b"\0" * (40 * 1024 * 1024))]),
}


@pytest.mark.parametrize("case", list(HOSTILE_ZIPS))
def test_hostile_zips_are_refused_and_leave_nothing(api, api_settings, case):
    cid, h = new_client(api, "hostile")
    body = is_problem(upload(api, h, HOSTILE_ZIPS[case]), 422)
    assert any(e["path"] == "file" for e in body.get("errors", [])), body
    assert_nothing_stored(api_settings, cid)


def test_zip_bomb_total_size_and_entry_count_limits(api, api_settings, monkeypatch):
    cid, h = new_client(api, "bomb")
    # each entry is incompressible (ratio ~1, passes the ratio guard); together they exceed the total
    monkeypatch.setattr(api_settings, "max_unzipped_bytes", 3 * 1024 * 1024)
    big = _zip_with([MAIN] + [(f"part{i}.bin", _incompressible(1024 * 1024, i)) for i in range(4)])
    body = is_problem(upload(api, h, big), 422)
    assert "zip bomb" in body["detail"] or "expands" in body["detail"], body
    # the same archive is fine under the default limit (the guard is about the total, not the entries)
    monkeypatch.setattr(api_settings, "max_unzipped_bytes", 2 * 1024**3)
    assert upload(api, h, big).status_code == 201
    # entry count
    monkeypatch.setattr(api_settings, "max_zip_entries", 20)
    many = _zip_with([MAIN] + [(f"f{i}.txt", b"x") for i in range(25)])
    is_problem(upload(api, h, many, version="2.0.0"), 422)
    # a ratio bomb hidden among normal files
    bomb = _zip_with([MAIN, ("lib/a.py", b"a = 1\n"), ("data/zeros", b"\0" * (20 * 1024 * 1024))])
    is_problem(upload(api, h, bomb, version="3.0.0"), 422)
    assert artifact_count(api_settings, cid) == 1


WRONG_CONTENT = {
    "text named app.zip": {
        "files": {"file": ("app.zip", b"hello, I am text\n" * 100, "application/zip")},
        "data": {"version": "1.0.0"},
    },
    "png named app.zip": {
        "files": {"file": ("app.zip", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "image/png")},
        "data": {"version": "1.0.0"},
    },
    "truncated zip": {
        "files": {"file": ("app.zip", make_zip()[:-30], "application/zip")},
        "data": {"version": "1.0.0"},
    },
    "wrong field name": {
        "files": {"upload": ("app.zip", make_zip(), "application/zip")},
        "data": {"version": "1.0.0"},
    },
    "file sent as a plain field": {"data": {"file": "UEsDBAo=", "version": "1.0.0"}},
    "json instead of multipart": {"json": {"file": "UEsDBAo=", "version": "1.0.0"}},
    "urlencoded": {
        "content": b"file=abc&version=1.0.0",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "multipart without boundary": {"content": make_zip(), "headers": {"content-type": "multipart/form-data"}},
    "multipart garbage": {
        "content": b"--xyz\r\nnot a part\r\n--xyz--",
        "headers": {"content-type": "multipart/form-data; boundary=xyz"},
    },
    "octet stream body": {"content": make_zip(), "headers": {"content-type": "application/zip"}},
    "missing version": {"files": {"file": ("app.zip", make_zip(), "application/zip")}},
    "two files": {
        "files": [
            ("file", ("a.zip", make_zip(), "application/zip")),
            ("file", ("b.zip", make_zip(), "application/zip")),
        ],
        "data": {"version": "1.0.0"},
    },
}


@pytest.mark.parametrize("case", list(WRONG_CONTENT))
def test_wrong_content_types_are_4xx_problems(api, api_settings, case):
    cid, h = new_client(api, "content")
    kwargs = dict(WRONG_CONTENT[case])
    headers = {**h, **kwargs.pop("headers", {})}
    r = api.post("/v1/artifacts/upload", headers=headers, **kwargs)
    if case == "two files":  # one file is taken; either way nothing unsafe and no 5xx
        assert r.status_code in (201, 422), r.text
        return
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    is_problem(r)
    assert_nothing_stored(api_settings, cid)


HUGE = 5 * 1024 * 1024


@pytest.mark.parametrize("case", ["version", "filename", "extra field", "many fields"])
def test_huge_multipart_fields_are_refused(api, api_settings, case):
    cid, h = new_client(api, "huge")
    files: Any = {"file": ("app.zip", make_zip(), "application/zip")}
    data: Any = {"version": "1.0.0"}
    if case == "version":
        data = {"version": "1" * HUGE}
    elif case == "filename":
        files = {"file": ("a" * 70_000 + ".zip", make_zip(), "application/zip")}
    elif case == "extra field":
        data = {"version": "1.0.0", "comment": "x" * HUGE}
    else:
        data = {"version": "1.0.0"} | {f"f{i}": "x" for i in range(5000)}
    r = api.post("/v1/artifacts/upload", headers=h, files=files, data=data)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text[:500])
    is_problem(r)
    assert len(r.content) < 10_000  # the refusal does not echo the field back
    assert_nothing_stored(api_settings, cid)


def test_json_bodies_over_the_limit_are_413(api):
    _, h = new_client(api, "bigjson")
    big = json.dumps(
        {
            "name": "x",
            "app_artifact_id": "a",
            "fleet_template_id": "m5.large",
            "default_args": {"blob": "y" * (2 * 1024 * 1024)},
        }
    )
    r = api.post("/v1/job-templates", headers=h | {"content-type": "application/json"}, content=big)
    is_problem(r, 413)


def test_upload_file_name_cannot_steer_the_s3_key(api, api_settings):
    cid, h = new_client(api, "names")
    r = upload(api, h, make_zip(), name="../../other-client/evil.zip")
    assert r.status_code == 201, r.text
    key = r.json()["s3_uri"].split("/", 3)[3]
    assert key.startswith(f"{cid}/") and ".." not in key and "other-client" not in key
    r = upload(api, h, make_zip(), name="..\\..\\x\\evil.zip", version="2")
    assert r.status_code == 201 and ".." not in r.json()["s3_uri"]


# ---------------------------------------------------------------- secrets in logs and error bodies
@pytest.fixture
def product_logging(caplog):
    """The product's own logging set-up (``core.logs.setup_logging``: JSON lines on stderr, chatty libraries
    at WARNING) at its most verbose level, DEBUG, with caplog listening too. Restored afterwards."""
    from core.logs import setup_logging

    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        {
            name: lg.level
            for name, lg in logging.root.manager.loggerDict.items()
            if isinstance(lg, logging.Logger)
        },
    )
    setup_logging("DEBUG")
    root.addHandler(caplog.handler)
    yield caplog
    root.handlers[:], _, levels = saved
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_no_secret_in_logs_or_error_bodies(api, admin, api_settings, product_logging, capfd):
    caplog = product_logging
    bodies: list[str] = []

    def keep(r):
        if r.status_code >= 400:
            bodies.append(r.text)
            is_problem(r)
        return r

    cid, h = new_client(api, "leaky")
    ext = "ext-secret-" + new_id("x")
    keep(api.put(f"/v1/clients/{cid}/aws", headers=h, json=AWS_BODY | {"external_id": ext}))
    keep(api.post(f"/v1/clients/{cid}/aws/verify", headers=h))  # STS unreachable: an error result, logged
    other, ho = new_client(api, "leaky-other")
    keep(api.put(f"/v1/clients/{other}/aws", headers=ho, json=AWS_BODY | {"external_id": ext}))  # 409
    keep(api.put(f"/v1/clients/{cid}/aws", headers=h, json=AWS_BODY | {"external_id": ext + " bad!"}))  # 422
    old_key = h["X-API-Key"]
    new_key = keep(api.post(f"/v1/clients/{cid}/rotate-key", headers=h)).json()["api_key"]
    hn = {"X-API-Key": new_key}
    keep(api.get("/v1/artifacts", headers=h))  # old key: 401
    keep(api.get("/v1/artifacts", headers={"X-API-Key": ADMIN_KEY + "x"}))  # near-miss admin key: 401
    keep(api.get("/v1/artifacts", headers={"X-API-Key": new_key[:-1]}))  # near-miss client key: 401
    keep(api.get("/v1/clients", headers={"X-API-Key": ("é" * 10).encode("latin-1")}))  # non-ascii: 401
    keep(upload(api, hn, b"not a zip"))
    art = keep(upload(api, hn, make_zip())).json()["artifact_id"]
    tpl = keep(
        api.post(
            "/v1/job-templates",
            headers=hn,
            json={"name": "t", "app_artifact_id": art, "fleet_template_id": "m5.large"},
        )
    )
    tpl_id = tpl.json()["id"]
    now = utcnow().isoformat()
    keep(
        api.post(
            "/v1/jobs", headers=hn, json={"job_template_id": tpl_id, "type": "ONE_TIME", "intended_time": now}
        )
    )  # Temporal down: 503
    keep(
        api.post(
            "/v1/jobs",
            headers=hn,
            json={
                "job_template_id": tpl_id,
                "type": "ONE_TIME",
                "intended_time": now,
                "args": {"bad key!": ext},
            },
        )
    )  # 422
    keep(
        api.post(
            "/v1/jobs",
            headers=hn | {"content-type": "application/json"},
            content=b'{"job_template_id": "' + new_key.encode() + b'", "type": ',
        )
    )  # broken JSON
    keep(api.post(f"/v1/runs/{new_id('run')}/cancel", headers=hn))
    keep(api.patch(f"/v1/clients/{cid}", json={"status": "suspended"}, headers=admin))
    keep(api.get("/v1/artifacts", headers=hn))  # suspended: 403
    keep(api.patch(f"/v1/clients/{cid}", json={"status": "active"}, headers=admin))
    keep(api.get("/readyz"))  # Temporal down: 503 with the failing checks
    metrics = api.get("/metrics").text

    secrets = {
        "old client key": old_key,
        "new client key": new_key,
        "admin key": ADMIN_KEY,
        "external id": ext,
        "S3 secret": S3_SECRET,
        "key hash": hash_key(new_key),
    }
    assert any(b for b in bodies) and len(bodies) >= 10
    err_text = "\n".join(bodies)
    out, err = capfd.readouterr()
    log_text = "\n".join(
        [caplog.text, *(r.getMessage() for r in caplog.records), *(repr(r.__dict__) for r in caplog.records)]
    )
    for what, secret in secrets.items():
        assert secret not in err_text, f"{what} appears in an error body"
        assert secret not in log_text, f"{what} appears in the logs"
        assert secret not in out and secret not in err, f"{what} appears on stdout/stderr"
        assert secret not in metrics, f"{what} appears in /metrics"
    assert re.search(r"unknown API key", err_text)  # the flow really exercised the failures


# ---------------------------------------------------------------- robustness (found by fuzzing)
def test_nul_characters_are_refused_everywhere(api, admin, tenants):
    """PostgreSQL cannot store or compare NUL: it used to be a 500 from the database on every text input."""
    a, _ = tenants
    h = a.headers
    art, tpl = a.artifact, a.template
    cases = [
        ("POST", "/v1/clients", {"json": {"name": "a\u0000b"}, "headers": admin}),
        ("PATCH", f"/v1/clients/{a.id}", {"json": {"name": "a\u0000b"}, "headers": admin}),
        ("GET", "/v1/runs/run_%00x", {"headers": h}),
        ("GET", "/v1/runs?job_id=%00", {"headers": h}),
        ("GET", "/v1/artifacts?name=x%00", {"headers": h}),
        ("GET", f"/v1/predictions/runtime?job_template_id={tpl}%00", {"headers": h}),
        (
            "POST",
            "/v1/job-templates",
            {
                "json": {"name": "t\u0000", "app_artifact_id": art, "fleet_template_id": "m5.large"},
                "headers": h,
            },
        ),
        (
            "POST",
            "/v1/job-templates",
            {
                "json": {
                    "name": "t",
                    "app_artifact_id": art,
                    "fleet_template_id": "m5.large",
                    "default_args": {"a": "x\u0000"},
                },
                "headers": h,
            },
        ),
        (
            "POST",
            "/v1/jobs",
            {
                "json": {
                    "job_template_id": tpl + "\u0000",
                    "type": "ONE_TIME",
                    "intended_time": "2030-01-01T00:00:00Z",
                },
                "headers": h,
            },
        ),
        (
            "POST",
            "/v1/schedules/preview",
            {
                "json": {
                    "job_template_id": tpl,
                    "earliest_start": "2030-01-01T00:00:00Z",
                    "latest_finish": "2030-01-02T00:00:00Z",
                    "fleet_template_id": "m5\u0000",
                },
                "headers": h,
            },
        ),
        (
            "PUT",
            f"/v1/clients/{a.id}/aws",
            {"json": AWS_BODY | {"role_arn": "arn:aws:iam::123456789012:role/\u0000"}, "headers": h},
        ),
        ("POST", f"/v1/runs/{a.run}/cancel", {"json": {"reason": "\u0000"}, "headers": h}),
    ]
    for method, path, kwargs in cases:
        r = api.request(method, path, **kwargs)
        assert r.status_code == 422, (method, path, r.status_code, r.text)
        assert "NUL" in is_problem(r)["detail"]
    assert api.get(f"/v1/clients/{a.id}", headers=admin).json()["name"] == "tenant-a"


def test_a_failing_commit_is_an_error_not_a_2xx(api, admin, monkeypatch):
    """The session commits before the response is sent: a commit that fails is not answered 200."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session as OrmSession

    cid, _ = new_client(api, "commit")
    real = OrmSession.commit

    def failing(self):
        if any(getattr(o, "name", None) == "never-stored" for o in self.dirty):
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        return real(self)

    monkeypatch.setattr(OrmSession, "commit", failing)
    r = api.patch(f"/v1/clients/{cid}", json={"name": "never-stored"}, headers=admin)
    assert r.status_code >= 500, r.text
    is_problem(r)
    monkeypatch.undo()
    assert api.get(f"/v1/clients/{cid}", headers=admin).json()["name"] == "commit"
