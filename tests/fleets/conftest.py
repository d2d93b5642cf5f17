"""Fixtures of the fleet-driver tests: an S3 client and app uploads on the session's SeaweedFS, dummy AWS
credentials for moto, and the ``local`` driver over a scratch dir every uid may traverse."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from core.s3 import ensure_bucket, s3_client
from core.settings import Settings
from fleets.base import FleetHandle, LaunchSpec
from fleets.local import LocalFleetDriver
from tests.support.common import make_settings
from tests.support.fleet import FLEET_BUCKET, make_app_zip, new_run_id, sha256


@pytest.fixture(scope="session")
def s3(s3_settings):
    """A boto3 S3 client on the session's SeaweedFS, with the fleet-test bucket created."""
    client = s3_client(Settings(**s3_settings))
    ensure_bucket(client, FLEET_BUCKET)
    return client


@pytest.fixture
def upload_app(s3) -> Callable[..., LaunchSpec]:
    """Upload an app zip; return a LaunchSpec for it (``sha_override`` fakes a tampered artifact)."""

    def _upload(
        files: dict[str, str | bytes],
        *,
        args: dict | None = None,
        run_id: str | None = None,
        attempt: int = 1,
        sha_override: str | None = None,
        **spec_kw,
    ) -> LaunchSpec:
        data = make_app_zip(files)
        run_id = run_id or new_run_id()
        key = f"client_test/apps/{run_id}/app.zip"
        s3.put_object(Bucket=FLEET_BUCKET, Key=key, Body=data)
        return LaunchSpec(
            run_id=run_id,
            attempt=attempt,
            client_id="client_test",
            artifact_bucket=FLEET_BUCKET,
            artifact_key=key,
            artifact_sha256=sha_override or sha256(data),
            args=args or {},
            data_uri="s3://data/in/",
            **spec_kw,
        )

    return _upload


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy orchestrator AWS credentials for moto; no developer profile or config leaks in."""
    for k in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
    ):
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


# ---------------------------------------------------------------- the local driver
@pytest.fixture
def open_dir():
    """A scratch dir every uid may traverse (pytest's tmp_path is root-only 0700, so an app running under
    its own uid could not reach a data dir inside it); removed at the end."""
    d = Path(tempfile.mkdtemp(prefix="orch-localfleet-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def xchg(open_dir):
    """A world-writable (sticky) dir where the test and its apps exchange files (ready flags, pids)."""
    x = open_dir / "exchange"
    x.mkdir()
    x.chmod(0o1777)
    return x


@pytest.fixture
def settings(open_dir, s3_settings):
    return make_settings(open_dir / "data", cancel_grace_sec=5.0, **s3_settings)


@pytest.fixture
def driver(settings):
    d = LocalFleetDriver(settings)
    yield d
    # never leave a process behind, whatever the test did; but never signal a group the test did not create:
    # an attempt whose records name pytest itself or pytest's own process group (a test that fakes a pid
    # file) is skipped. When the suite runs in an orphaned group (setsid -f, a shell that exited), that
    # group's leader is gone and such a record would look alive: killpg would end the whole run.
    runs = Path(settings.data_dir) / "runs"
    for attempt_dir in runs.glob("[!.]*/*"):
        if _names_this_process(attempt_dir):
            continue
        h = FleetHandle("local", attempt_dir.parent.name, int(attempt_dir.name), {"dir": str(attempt_dir)})
        d.grace_sec = 0.2
        d.terminate(h)


def _names_this_process(attempt_dir: Path) -> bool:
    """Do the attempt's ``launched`` or ``pid`` records name this pytest process or its process group?"""
    own = {os.getpid(), os.getpgrp()}
    for name, keys in (("launched", ("supervisor_pid",)), ("pid", ("pid", "pgid"))):
        try:
            rec = json.loads((attempt_dir / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and any(rec.get(k) in own for k in keys):
            return True
    return False
