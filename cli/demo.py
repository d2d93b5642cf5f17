"""``orch demo``: a newcomer's first five minutes against a running ``make dev``.

Creates a client, uploads a bundled sample app, creates a template, previews a RESCHEDULABLE job over the
next 24 hours (what a flexible job would save), then submits one whose window starts now, follows it to
SUCCEEDED and says where to look in the Temporal Web UI.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import typer

SAMPLE_MAIN = '''\
"""Sample app: counts words of a generated text; prints its args and the orchestrator's environment."""
import json, os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
print("run", os.environ.get("ORCH_RUN_ID"), "data", os.environ.get("ORCH_DATA_URI"), "args", json.dumps(args))
words = ("carbon aware batch " * int(args.get("repeat", "1000"))).split()
for i in range(3):
    print(f"step {i + 1}/3 ...", flush=True)
    time.sleep(float(args.get("step_seconds", "1")))
print("word count:", len(words))
'''

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT"}


def sample_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("main.py", SAMPLE_MAIN)
    return buf.getvalue()


def _check(r: httpx.Response, what: str) -> dict:
    if r.status_code >= 400:
        detail = r.json().get("detail") if r.headers.get("content-type", "").endswith("json") else r.text
        raise typer.BadParameter(f"{what} failed ({r.status_code}): {detail}")
    return r.json()


def demo(
    api: str = typer.Option("http://127.0.0.1:8000", help="API base URL"),
    admin_key: str = typer.Option(None, envvar="ORCH_ADMIN_API_KEY", help="Default: .data/admin_api_key"),
    ui: str = typer.Option("http://127.0.0.1:8233", help="Temporal Web UI base URL"),
    region: str = typer.Option("eu-west-2", help="AWS region whose grid the job runs on"),
    timeout: float = typer.Option(300, help="Seconds to wait for the run to finish"),
) -> None:
    """Walk through the product end to end against a running `make dev`."""
    if not admin_key:
        path = Path(".data/admin_api_key")
        if not path.exists():
            raise typer.BadParameter("no admin key: start `make dev` first or set ORCH_ADMIN_API_KEY")
        admin_key = path.read_text().strip()
    http = httpx.Client(base_url=api, timeout=30)
    say = typer.echo

    client = _check(
        http.post("/v1/clients", json={"name": f"demo-{int(time.time())}"}, headers={"X-API-Key": admin_key}),
        "creating a client",
    )
    h = {"X-API-Key": client["api_key"]}
    say(f"1. client {client['id']} created (its API key is shown once; only a hash is stored)")
    art = _check(
        http.post(
            "/v1/artifacts/upload",
            headers=h,
            data={"version": "1.0.0"},
            files={"file": ("wordcount.zip", sample_zip(), "application/zip")},
        ),
        "upload",
    )
    say(f"2. sample app uploaded: {art['s3_uri']} (sha256 {art['sha256'][:12]}...)")
    tpl = _check(
        http.post(
            "/v1/job-templates",
            headers=h,
            json={
                "name": "wordcount",
                "app_artifact_id": art["artifact_id"],
                "default_args": {"repeat": 5000},
                "data_uri": "s3://demo-bucket/input",
                "fleet_template_id": "m5.xlarge",
                "expected_runtime_sec": 60,
                "region": region,
            },
        ),
        "creating a template",
    )
    say(f"3. job template {tpl['id']} (m5.xlarge in {region})")

    now = datetime.now(UTC)
    preview = _check(
        http.post(
            "/v1/schedules/preview",
            headers=h,
            json={
                "job_template_id": tpl["id"],
                "earliest_start": now.isoformat(),
                "latest_finish": (now + timedelta(hours=24)).isoformat(),
                "risk_mode": "NEUTRAL",
            },
        ),
        "preview",
    )
    chosen = preview["chosen"]
    say("4. preview: this job may run anywhere in the next 24 hours; where is the grid cleanest?")
    say(
        f"   chosen start {chosen['proposed_start']}: {chosen['estimated_gco2e']:.3g} gCO2e, "
        f"{chosen['saving_vs_earliest_pct']:.1f}% less than starting now"
    )
    say(f"   {preview['rationale']}")

    job = _check(
        http.post(
            "/v1/jobs",
            headers=h,
            json={
                "job_template_id": tpl["id"],
                "type": "RESCHEDULABLE",
                "earliest_start": now.isoformat(),
                "latest_finish": (now + timedelta(minutes=5)).isoformat(),
                "risk_mode": "NEUTRAL",
                "args": {"step_seconds": 1},
            },
        ),
        "submitting",
    )
    say("5. for the demo, a window that starts now and closes in 5 minutes, so it runs right away:")
    say(f"   submitted job {job['job_id']}: run {job['run_id']}, workflow {job['workflow_id']}")
    say(f"   Temporal Web UI: {ui}/namespaces/default/workflows/{job['workflow_id']}")

    last, deadline, run = None, time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        run = _check(http.get(f"/v1/runs/{job['run_id']}", headers=h), "reading the run")
        if run["status"] != last:
            extra = f" (planned start {run['planned_start']})" if run["status"] == "SCHEDULED" else ""
            say(f"   {datetime.now(UTC):%H:%M:%S} {run['status']}{extra}")
            last = run["status"]
        if run["status"] in TERMINAL:
            break
        time.sleep(0.5)  # polling interval of a progress display
    if run.get("status") != "SUCCEEDED":
        raise typer.Exit(f"run ended {run.get('status')}: {run.get('status_reason')}") from None
    logs = _check(http.get(f"/v1/runs/{job['run_id']}/logs", headers=h), "reading logs")["text"]
    say("6. the app's log:")
    for line in logs.strip().splitlines()[-5:]:
        say(f"   | {line}")
    c = run["carbon"]
    say(
        f"7. done in {run['runtime_sec']:.1f} s; estimated {c['realised_gco2e']:.2f} gCO2e while it ran."
    )
    if c.get("saved_pct") is not None:
        say(f"   The chosen start saved {c['saved_pct']:.1f}% against starting at earliest_start.")
    say(json.dumps({"run_id": job["run_id"], "status": run["status"], "carbon": c}))
