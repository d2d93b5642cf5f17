"""The apps' logs in the artifact store: one key scheme for every driver, so the API reads them from S3 and
never needs a fleet driver (nor a disk shared with the worker).

Key: ``runs/<client_id>/<run_id>/<attempt>/log`` in ``settings.s3_bucket`` (``fleets.ec2.result_prefix``).
The ``ec2`` driver's instance uploads it itself (user-data, every ``ORCH_EC2_LOG_UPLOAD_INTERVAL_SEC`` and at
the end); the ``local`` driver copies its attempt's log file there while the app runs and when it ends
(``LocalFleetDriver.upload_log``, from every poll). Both record the key in the handle's ``ref["log_key"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from fleets.ec2 import result_prefix

_MISSING = ("NoSuchKey", "404", "InvalidRange", "NotFound")


def log_key(client_id: str, run_id: str, attempt: int) -> str:
    return result_prefix(client_id, run_id, attempt) + "log"


def log_location(fleet: dict[str, Any], client_id: str, default_bucket: str) -> tuple[str, str]:
    """(bucket, key) of the log of the attempt described by a run's ``fleet`` record (a stored handle)."""
    ref = fleet.get("ref") or {}
    bucket = ref.get("result_bucket") or default_bucket
    return bucket, ref.get("log_key") or log_key(client_id, fleet["run_id"], int(fleet["attempt"]))


def read_tail(s3: Any, bucket: str, key: str, tail_bytes: int = 65536) -> str:
    """The last ``tail_bytes`` bytes of the stored log, decoded as UTF-8 ("" before the first upload)."""
    if tail_bytes <= 0:
        return ""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{int(tail_bytes)}")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING:
            return ""
        raise
    return obj["Body"].read()[-tail_bytes:].decode("utf-8", errors="replace")


def upload_file(s3: Any, path: Path, bucket: str, key: str) -> None:
    """Store the whole file at ``key`` (replacing the previous copy; multipart for big logs)."""
    s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "text/plain; charset=utf-8"})
