"""The artifact-store sweeper runs as a maintenance task, at most once per interval, against SeaweedFS."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from activities.maintenance import MAINTENANCE_TASKS, MaintenanceContext
from core.db import Database
from core.migrate import upgrade
from core.s3 import ensure_bucket, s3_client
from tests.support.common import make_settings


def test_sweep_task_deletes_an_old_orphan_once_per_interval(tmp_path, s3_settings):
    settings = make_settings(
        tmp_path,
        s3_bucket="orch-sweep-task",
        artifact_sweep_grace_sec=0,
        artifact_sweep_interval_sec=3600,
        **s3_settings,
    )
    upgrade(settings)
    s3 = s3_client(settings)
    ensure_bucket(s3, settings.s3_bucket)
    orphan = "cl_x/1.0.0/art_0123456789abcdef0123/app.zip"
    s3.put_object(Bucket=settings.s3_bucket, Key=orphan, Body=b"zip")
    db = Database(settings)
    ctx = MaintenanceContext(settings, db, temporal=None)  # the sweeper needs no Temporal
    task = MAINTENANCE_TASKS["sweep_artifact_store"]
    try:
        state, summary = task(ctx, {})
        assert summary["deleted"] == 1, summary
        assert "Contents" not in s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix="cl_x/")
        s3.put_object(Bucket=settings.s3_bucket, Key=orphan, Body=b"zip")
        _, again = task(ctx, state)  # within the interval: not swept
        assert again == {"examined": 0}
        assert s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix="cl_x/")["KeyCount"] == 1
        long_ago = {"last": (datetime.now(UTC) - timedelta(hours=2)).isoformat()}
        _, later = task(ctx, long_ago)
        assert later["deleted"] == 1
    finally:
        db.dispose()


def test_clean_run_dirs_task_removes_old_finished_attempts(tmp_path):
    settings = make_settings(tmp_path, local_run_retention_hours=1)
    from fleets.local import LocalFleetDriver

    attempt = LocalFleetDriver(settings).runs_dir / "run_old" / "1"  # a temp dir under a closed tmp_path
    attempt.mkdir(parents=True)
    (attempt / "exit_code").write_text("0")
    old = time.time() - 3 * 3600
    for p in (attempt / "exit_code", attempt):
        os.utime(p, (old, old))
    task = MAINTENANCE_TASKS["clean_run_dirs"]
    _, summary = task(MaintenanceContext(settings, db=None, temporal=None), {})
    assert summary == {"removed": 1}
    assert not attempt.exists()
    ec2 = settings.model_copy(update={"fleet_driver": "ec2"})
    assert task(MaintenanceContext(ec2, db=None, temporal=None), {})[1] == {"examined": 0}
