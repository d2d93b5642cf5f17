"""``orch demo``: a newcomer's first five minutes against a running ``make dev``.

Creates a client, uploads a bundled sample app, creates a template, previews a RESCHEDULABLE job over the
next 24 hours (what a flexible job would save), then submits one whose window starts now, follows it to
SUCCEEDED and says where to look in the Temporal Web UI.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import typer

from cli.client import REFUSED, UNAVAILABLE, refusal_text, unreachable_text
from cli.fmt import parse_duration
from models.domain import TERMINAL_STATUSES, RunStatus
from scheduling.scoring import doc_saving_text, pct_text, saving_text

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


def sample_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("main.py", SAMPLE_MAIN)
    return buf.getvalue()


def _check(r: httpx.Response, what: str) -> dict:
    """The answer's JSON; an error answer ends the demo with its status, detail and the URL called."""
    if r.status_code >= 400:
        typer.echo(f"{what} failed: {refusal_text(r.request.method, r, 'ORCH_ADMIN_API_KEY')}", err=True)
        raise typer.Exit(REFUSED if r.status_code < 500 else UNAVAILABLE)
    return r.json()


DEMO_REGIONS = ("us-west-1", "eu-west-2", "eu-central-1", "eu-south-2")


def _t(text: str | None) -> str:
    """A time for people: UTC, to the second."""
    return "-" if not text else datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _saving_text(c: dict) -> str:
    """ "12.0% +- 3.0%" (forecast), "6.1% (mean; saved on 26 of 29 comparable days)" (paired rule)."""
    if c.get("paired_days"):
        days = doc_saving_text(c).split(",")[0]
        return f"{pct_text(c.get('paired_mean_saving_pct') or 0.0, 1)} (mean; {days})"
    pct = c.get("expected_saving_pct", c.get("saving_vs_earliest_pct")) or 0.0
    sigma = c.get("saving_sigma_pct")
    return pct_text(pct, 1) if sigma is None else saving_text(pct, sigma, 1)


def demo(
    api: str = typer.Option("http://127.0.0.1:8000", envvar="ORCH_URL", help="API base URL"),
    admin_key: str = typer.Option(None, envvar="ORCH_ADMIN_API_KEY", help="Default: .data/admin_api_key"),
    ui: str = typer.Option("http://127.0.0.1:8233", help="Temporal Web UI base URL"),
    region: str = typer.Option(
        "auto", help="AWS region whose grid the job runs on; auto: the one where shifting pays most now"
    ),
    timeout: str = typer.Option(
        "300", metavar="DURATION", help="How long to wait for the run to finish: 5m, PT5M or seconds"
    ),
) -> None:
    """Walk through the product end to end against a running `make dev`."""
    seconds = parse_duration(timeout, "--timeout", bare_seconds=True).total_seconds()
    if not admin_key:
        path = Path(os.environ.get("ORCH_DATA_DIR") or ".data") / "admin_api_key"
        if not path.exists():
            raise typer.BadParameter("no admin key: start `make dev` first or set ORCH_ADMIN_API_KEY")
        admin_key = path.read_text().strip()
    api = api.rstrip("/")
    try:
        _demo(api, admin_key, ui, region, seconds)
    except httpx.HTTPError as exc:
        typer.echo(unreachable_text(api, exc), err=True)
        raise typer.Exit(UNAVAILABLE) from exc


def _demo(api: str, admin_key: str, ui: str, region: str, timeout: float) -> None:
    http = httpx.Client(base_url=api, timeout=30)
    say = typer.echo

    client = _check(
        http.post("/v1/clients", json={"name": f"demo-{int(time.time())}"}, headers={"X-API-Key": admin_key}),
        "creating a client",
    )
    h = {"X-API-Key": client["api_key"]}
    say(f"1. client {client['id']} created; its API key (shown once, only a hash is stored):")
    say(f"   {client['api_key']}")
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

    now = datetime.now(UTC)
    window = {"earliest_start": now.isoformat(), "latest_finish": (now + timedelta(hours=24)).isoformat()}
    best: tuple[float, dict, dict] | None = None
    for r in DEMO_REGIONS if region == "auto" else (region,):
        tpl = _check(
            http.post(
                "/v1/job-templates",
                headers=h,
                json={
                    "name": f"wordcount-{r}",
                    "app_artifact_id": art["artifact_id"],
                    "default_args": {"repeat": 5000},
                    "data_uri": "s3://demo-bucket/input",
                    "fleet_template_id": "m5.xlarge",
                    "expected_runtime_sec": 3600,
                    "region": r,
                },
            ),
            "creating a template",
        )
        preview = _check(
            http.post(
                "/v1/schedules/preview",
                headers=h,
                json={"job_template_id": tpl["id"], "risk_mode": "NEUTRAL", **window},
            ),
            "preview",
        )
        saving = preview["chosen"].get("expected_saving_pct", preview["chosen"]["saving_vs_earliest_pct"])
        if best is None or saving > best[0]:
            best = (saving, tpl, preview)
    assert best is not None
    _, tpl, preview = best
    region = tpl["region"]
    chosen = preview["chosen"]
    say(f"3. job template {tpl['id']}: a 1-hour job on m5.xlarge in {region}")
    if len(DEMO_REGIONS) > 1 and region in DEMO_REGIONS:
        say(f"   (previewed {', '.join(DEMO_REGIONS)}; {region} is where moving the start pays most today)")
    say("4. preview: this job may run anywhere in the next 24 hours; when is the grid cleanest?")
    say(
        f"   start {_t(chosen['proposed_start'])}: {chosen['estimated_gco2e']:.0f} gCO2e, "
        f"{_saving_text(chosen)} less than starting now ({preview['baseline']['estimated_gco2e']:.0f} gCO2e)"
    )
    say(f"   {preview['rationale']}")

    job = _check(
        http.post(
            "/v1/jobs",
            headers=h,
            json={
                "job_template_id": tpl["id"],
                "type": "ONE_TIME",
                "intended_time": now.isoformat(),
                "risk_mode": "NEUTRAL",
                "args": {"step_seconds": 1},
            },
        ),
        "submitting",
    )
    say("5. so that you see one finish now, a ONE_TIME run of it starts right away:")
    say(f"   job {job['job_id']}, run {job['run_id']}")
    say(f"   Temporal Web UI: {ui}/namespaces/default/workflows/{job['workflow_id']}")

    last, deadline, run = None, time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        run = _check(http.get(f"/v1/runs/{job['run_id']}", headers=h), "reading the run")
        if run["status"] != last:
            extra = (
                f" (planned start {_t(run['planned_start'])})" if run["status"] == RunStatus.SCHEDULED else ""
            )
            say(f"   {datetime.now(UTC):%H:%M:%S} {run['status']}{extra}")
            last = run["status"]
        if run["status"] in TERMINAL_STATUSES:
            break
        time.sleep(0.5)  # polling interval of a progress display
    if run.get("status") != RunStatus.SUCCEEDED:
        typer.echo(f"run ended {run.get('status')}: {run.get('status_reason')}", err=True)
        raise typer.Exit(1)
    logs = _check(http.get(f"/v1/runs/{job['run_id']}/logs", headers=h), "reading logs")["text"]
    say("6. the app's log:")
    for line in logs.strip().splitlines()[-5:]:
        say(f"   | {line}")
    c = run["carbon"]
    say("")
    say(
        f"Summary: run {run['run_id']} {run['status']} in {run['runtime_sec']:.1f} s "
        f"(estimated {c['realised_gco2e']:.2f} gCO2e while it ran)."
    )
    say(
        f"Had the job been free to run within 24 hours in {region}, the planner would start it at "
        f"{_t(chosen['proposed_start'])} and emit {_saving_text(chosen)} less."
    )
    say("")
    say("Next, as this client:")
    say(f"   export ORCH_URL={api} ORCH_API_KEY={client['api_key']}")
    say(f"   orch runs get {run['run_id']}")
    say(f"   orch preview --template {tpl['id']} --within 24h")
    say(f"   orch jobs submit --template {tpl['id']} --within 24h --watch")
    say(f'   curl -s {api}/v1/runs -H "X-API-Key: $ORCH_API_KEY"')
