"""``orch runs rerun``: run again (``POST /v1/runs/{id}/rerun``; ``ORCH_URL``, ``ORCH_API_KEY``; exit codes as
in cli/client.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from cli.client import Api, JsonOpt, _dump, _watch, out, parse_time


def runs_rerun(
    run_id: str,
    at: str = typer.Option(None, "--at", help="ONE_TIME: when (now, +2h or ISO time; default now)"),
    earliest: str = typer.Option(
        None, "--earliest", help="RESCHEDULABLE: the new window's start (default now; its length is kept)"
    ),
    idempotency_key: str = typer.Option(None, "--idempotency-key", help="Same key + same rerun = same job"),
    watch: bool = typer.Option(
        False, "--watch", help="Follow the new run to its end (exit code as runs watch)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Run again: a new job + run with the same template version, args and window shape."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {}
    if at:
        body["intended_time"] = parse_time(at, now, "--at").isoformat()
    if earliest:
        body["earliest_start"] = parse_time(earliest, now, "--earliest").isoformat()
    api = Api()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = api.json("POST", f"/v1/runs/{run_id}/rerun", json=body, headers=headers)
    if as_json and not watch:
        _dump(created)
    elif not as_json:
        out.print(f"job [bold]{created['job_id']}[/]  run [bold]{created['run_id']}[/]  {created['status']}")
        out.print(f"follow it: orch runs watch {created['run_id']}")
    if watch:
        raise typer.Exit(_watch(api, created["run_id"], None, 1.0, as_json))
