"""`make dev`'s entry point (`python -m cli dev`) in a subprocess: it comes up, serves the seed's calls,
and stops every child cleanly on SIGINT (Ctrl-C). A second start reuses the data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cli.devstack import free_ports, port_open, wait_for
from tests.zips import make_zip


def _start(data: Path, ports: dict[str, int], admin: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        {
            "ORCH_DATA_DIR": str(data),
            "ORCH_API_PORT": str(ports["api"]),
            "ORCH_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
            "ORCH_TEMPORAL_UI_PORT": str(ports["ui"]),
            "ORCH_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
            "ORCH_SEAWEED_MASTER_PORT": str(ports["master"]),
            "ORCH_SEAWEED_VOLUME_PORT": str(ports["volume"]),
            "ORCH_SEAWEED_FILER_PORT": str(ports["filer"]),
        }
    )
    if admin:
        env["ORCH_ADMIN_API_KEY"] = admin
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _ready(base: str) -> bool:
    return httpx.get(f"{base}/readyz", timeout=5).status_code == 200


def _stop(proc: subprocess.Popen, ports: dict[str, int]) -> str:
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    for name, port in ports.items():
        assert not port_open(port), f"{name} port {port} still open after shutdown"
    return out


def test_dev_stack_end_to_end(tmp_path):
    names = ["api", "temporal", "ui", "s3", "master", "volume", "filer"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    base = f"http://127.0.0.1:{ports['api']}"
    proc = _start(tmp_path, ports, admin=None)
    try:
        wait_for(lambda: proc.poll() is None and _ready(base), 120, "the dev stack's /readyz")
        admin = (tmp_path / "admin_api_key").read_text().strip()
        assert oct((tmp_path / "admin_api_key").stat().st_mode & 0o777) == "0o600"
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post("/v1/clients", json={"name": "acme"}, headers={"X-API-Key": admin})
            assert r.status_code == 201, r.text
            cid, key = r.json()["id"], {"X-API-Key": r.json()["api_key"]}
            r = http.put(
                f"/v1/clients/{cid}/aws",
                headers=key,
                json={
                    "role_arn": "arn:aws:iam::123456789012:role/client",
                    "external_id": "ext-dev-stack",
                    "region_default": "us-east-1",
                    "session_name_template": "orch-{client_id}",
                },
            )
            assert r.status_code == 200, r.text
            r = http.post(
                "/v1/artifacts/upload",
                headers=key,
                data={"version": "1.0.0"},
                files={"file": ("app.zip", make_zip(), "application/zip")},
            )
            assert r.status_code == 201, r.text
            r = http.post(
                "/v1/job-templates",
                headers=key,
                json={
                    "name": "daily-etl",
                    "app_artifact_id": r.json()["artifact_id"],
                    "default_args": {"arg1": "value"},
                    "data_uri": "s3://bucket/data",
                    "fleet_template_id": "m5.4xlarge",
                },
            )
            assert r.status_code == 201, r.text
            assert port_open(ports["ui"]), "Temporal Web UI is not listening"
        demo = subprocess.run(
            [sys.executable, "-m", "cli", "demo", "--api", base, "--admin-key", admin, "--timeout", "120"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert '"status": "SUCCEEDED"' in demo.stdout and "word count: 15000" in demo.stdout
    finally:
        if proc.poll() is None:
            out = _stop(proc, ports)
            assert "Admin key" in out and "stopped." in out

    # a second start reuses the data (same admin key file, the client still exists)
    proc = _start(tmp_path, ports, admin=None)
    try:
        wait_for(lambda: proc.poll() is None and _ready(base), 120, "the second start's /readyz")
        got = httpx.get(f"{base}/v1/clients/{cid}", headers={"X-API-Key": admin}, timeout=10)
        assert got.status_code == 200 and got.json()["name"] == "acme"
    finally:
        if proc.poll() is None:
            _stop(proc, ports)


def test_dev_stack_uses_admin_key_from_env(tmp_path):
    names = ["api", "temporal", "ui", "s3", "master", "volume", "filer"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    base = f"http://127.0.0.1:{ports['api']}"
    admin = "orch_admin_from_env_" + "z" * 32
    proc = _start(tmp_path, ports, admin=admin)
    try:
        wait_for(lambda: proc.poll() is None and _ready(base), 120, "the dev stack's /readyz")
        r = httpx.post(f"{base}/v1/clients", json={"name": "x"}, headers={"X-API-Key": admin}, timeout=10)
        assert r.status_code == 201
        assert not (tmp_path / "admin_api_key").exists()
    finally:
        if proc.poll() is None:
            _stop(proc, ports)
