"""Helpers and fixtures shared by the fleet-driver tests (local, ec2, user-data).

Import the fixtures into a test module by name (``from tests.fleet_fixtures import s3, fleet_bucket``).
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
import zipfile
from collections.abc import Callable

import pytest

from core.s3 import ensure_bucket, s3_client
from core.settings import Settings
from fleets.base import LaunchSpec

FLEET_BUCKET = "fleet-tests"


def make_app_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex[:20]


def wait_until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``cond`` until it returns something truthy (returned); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def s3(s3_settings):
    """A boto3 S3 client on the session's SeaweedFS, with the fleet-test bucket created."""
    client = s3_client(Settings(**s3_settings))
    ensure_bucket(client, FLEET_BUCKET)
    return client


@pytest.fixture
def upload_app(s3) -> Callable[..., LaunchSpec]:
    """Upload an app zip; return a LaunchSpec for it (``sha_override`` fakes a tampered artifact)."""

    def _upload(files: dict[str, str | bytes], *, args: dict | None = None, run_id: str | None = None,
                attempt: int = 1, sha_override: str | None = None, **spec_kw) -> LaunchSpec:
        data = make_app_zip(files)
        run_id = run_id or new_run_id()
        key = f"client_test/apps/{run_id}/app.zip"
        s3.put_object(Bucket=FLEET_BUCKET, Key=key, Body=data)
        return LaunchSpec(run_id=run_id, attempt=attempt, client_id="client_test",
                          artifact_bucket=FLEET_BUCKET, artifact_key=key,
                          artifact_sha256=sha_override or sha256(data), args=args or {},
                          data_uri="s3://data/in/", **spec_kw)

    return _upload


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy orchestrator AWS credentials for moto; no developer profile or config leaks in."""
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from core.aws import clear_credential_cache

    clear_credential_cache()
    yield
    clear_credential_cache()
