"""Helpers shared by the fleet-driver tests (local, ec2, user-data); their fixtures are in
tests/fleets/conftest.py."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
import zipfile
from collections.abc import Callable

import pytest

from fleets.base import FleetState
from fleets.local import _proc_ticks

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


def wait_final(driver, handle, timeout=20.0):
    """Poll the driver until the attempt leaves PENDING/RUNNING; return its last status."""

    def final():
        st = driver.poll(handle)
        return st if st.state not in (FleetState.PENDING, FleetState.RUNNING) else None

    return wait_until(final, timeout, f"{handle.run_id} to finish")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (per /proc)."""
    return _proc_ticks(pid) is not None
