"""Session fixtures: the real servers every test layer shares (SeaweedFS, moto, Temporal dev server).

Each server listens on 127.0.0.1 on a free port and is stopped when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.devstack import Server, free_port, start_moto, start_seaweedfs, start_temporal
from core.settings import Settings

S3_ACCESS = "orchtest"
S3_SECRET = "orchtest-secret-key"


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def seaweedfs(session_dir) -> Iterator[Server]:
    server = start_seaweedfs(session_dir / "s3", free_port(), S3_ACCESS, S3_SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_settings(seaweedfs) -> dict[str, str]:
    """ORCH_* values pointing at the session's SeaweedFS."""
    return {
        "s3_endpoint_url": f"http://127.0.0.1:{seaweedfs.ports['s3']}",
        "s3_access_key_id": S3_ACCESS,
        "s3_secret_access_key": S3_SECRET,
        "s3_region": "us-east-1",
    }


@pytest.fixture(scope="session")
def moto_server(session_dir) -> Iterator[Server]:
    server = start_moto(free_port(), session_dir / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server) -> str:
    return f"http://127.0.0.1:{moto_server.ports['http']}"


@pytest.fixture(scope="session")
def temporal_dev_server(session_dir) -> Iterator[Server]:
    server = start_temporal(session_dir / "temporal.db", free_port(), None, session_dir / "temporal.log")
    yield server
    server.stop()


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings for a test: isolated data dir, no env leakage from the developer's shell."""
    for k in list(os.environ):
        if k.startswith("ORCH_"):
            os.environ.pop(k)
    return Settings(data_dir=tmp_path, **overrides)
