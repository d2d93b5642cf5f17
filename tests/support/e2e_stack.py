"""The product as processes: API (uvicorn) and worker subprocesses against the real Temporal dev server,
SeaweedFS and a DB, with the local fleet driver. Used by the end-to-end and chaos tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cli.devstack import Server, find_binary, free_port, port_open, spawn, wait_for
from core.settings import Settings
from tests.support.zips import make_zip

HISTORIES = Path(__file__).resolve().parents[1] / "histories"

ADMIN = "orch_admin_e2e_" + "x" * 40

APP_MAIN = """\
import json, os, signal, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
print("ARGS", json.dumps(args, sort_keys=True))
print("ENV", os.environ["ORCH_RUN_ID"], os.environ.get("ORCH_DATA_URI"), os.environ["ORCH_ARGS"])
sys.stdout.flush()
if args.get("count_file"):
    with open(args["count_file"], "a") as f:
        f.write(f"start {os.getpid()}\\n")
if args.get("pid_file"):
    with open(args["pid_file"], "w") as f:
        f.write(str(os.getpid()))
deadline = time.time() + float(args.get("sleep", 0))
while time.time() < deadline:
    time.sleep(0.05)
print("DONE")
sys.exit(int(args.get("exit", 0)))
"""


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"ORCH_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return env


class Stack:
    def __init__(self, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.settings, self.log_dir = settings, log_dir
        self.env = settings_env(settings) | (extra_env or {})
        self.workers: list[Server] = []
        self.api: Server | None = None
        self.base = f"http://127.0.0.1:{settings.api_port}"
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def _spawn(self, name: str, argv: list[str]) -> Server:
        log = self.log_dir / f"{name}-{len(self.workers)}-{time.monotonic_ns()}.log"
        return spawn(name, argv, log, self.env)

    def start_worker(self) -> Server:
        w = self._spawn("worker", [sys.executable, "-m", "cli", "worker"])
        self.workers.append(w)
        wait_for(lambda: "worker started" in w.log_path.read_text() or not w.alive(), 30, "the worker")
        assert w.alive(), w.log_tail()
        return w

    def kill_worker(self, w: Server) -> None:
        os.killpg(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)

    def start_api(self) -> Server:
        self.api = self._spawn("api", [sys.executable, "-m", "cli", "api"])
        wait_for(lambda: port_open(self.settings.api_port) or not self.api.alive(), 30, "the API")
        assert self.api.alive(), self.api.log_tail()
        return self.api

    def stop(self) -> None:
        for s in [*self.workers, *([self.api] if self.api else [])]:
            s.stop()
        self.http.close()

    # ---- REST helpers
    def client(self, name: str = "e2e") -> dict[str, str]:
        r = self.http.post("/v1/clients", json={"name": name}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 201, r.text
        return {"X-API-Key": r.json()["api_key"]}

    def template(self, headers: dict, args: dict[str, Any] | None = None, **over) -> str:
        art = self.http.post(
            "/v1/artifacts/upload",
            headers=headers,
            files={"file": ("app.zip", make_zip({"main.py": APP_MAIN}), "application/zip")},
            data={"version": "1.0.0"},
        )
        assert art.status_code in (200, 201), art.text
        body = {
            "name": f"tpl-{time.monotonic_ns()}",
            "app_artifact_id": art.json()["artifact_id"],
            "default_args": args or {},
            "data_uri": "s3://data-bucket/input",
            "fleet_template_id": "m5.large",
            "expected_runtime_sec": 60,
        } | over
        r = self.http.post("/v1/job-templates", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def submit(self, headers: dict, template_id: str, **body) -> dict:
        from datetime import UTC, datetime

        payload = {
            "job_template_id": template_id,
            "type": "ONE_TIME",
            "intended_time": datetime.now(UTC).isoformat(),
            "risk_mode": "NEUTRAL",
        } | body
        r = self.http.post("/v1/jobs", json=payload, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    def run(self, headers: dict, run_id: str) -> dict:
        r = self.http.get(f"/v1/runs/{run_id}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(self, headers: dict, run_id: str, statuses: set[str] | str, timeout: float = 60) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else statuses
        last: dict = {}

        def reached() -> bool:
            nonlocal last
            last = self.run(headers, run_id)
            return last["status"] in statuses

        try:
            wait_for(reached, timeout, f"run {run_id} to reach {statuses}", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(
                f"run {run_id} is {last.get('status')} ({last.get('status_reason')}), expected {statuses}"
            ) from exc
        return last


def make_stack_settings(tmp: Path, temporal_port: int, s3: dict[str, str], **over) -> Settings:
    from tests.support.common import make_settings

    return make_settings(
        tmp,
        admin_api_key=ADMIN,
        api_port=free_port(),
        temporal_address=f"127.0.0.1:{temporal_port}",
        temporal_task_queue=f"e2e-{time.monotonic_ns()}",
        monitor_poll_sec=0.3,
        cancel_grace_sec=2.0,
        worker_shutdown_grace_sec=2.0,
        s3_bucket="orch-e2e",
        **s3,
        **over,
    )


# ---------------------------------------------------------------- helpers of the tests on a stack
def temporal_cli(stack: Stack, *args: str) -> str:
    out = subprocess.run(
        [find_binary("temporal"), *args, "--address", stack.settings.temporal_address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def record_history(stack: Stack, workflow_id: str, name: str) -> None:
    """Keep the history for replay tests when ORCH_RECORD_HISTORIES=1 (tests/histories/)."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    out = subprocess.run(
        [
            find_binary("temporal"),
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
            "--address",
            stack.settings.temporal_address,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(out.stdout)


def orch(stack: Stack, key: str | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the `orch` CLI against the stack's API with a client key (None: no key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_URL"] = stack.base
    if key:
        env["ORCH_API_KEY"] = key
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
