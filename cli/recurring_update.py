"""``orch recurring update``: change a recurring job, e.g. switch it to another template (``PATCH
/v1/recurring-jobs/{id}``; its Temporal Schedule is rewritten). ``ORCH_URL``, ``ORCH_API_KEY``; exit codes as
in cli/client.py."""

from __future__ import annotations

from typing import Any

import typer

from cli.client import Api, JsonOpt, _dump, _kv, out
from cli.fmt import DURATION_HELP, iso_duration


def recurring_update(
    recurring_id: str,
    template: str = typer.Option(None, "--template", "-t", help="Switch to this job template (not retired)"),
    cron: str = typer.Option(None, help="New 5-field cron"),
    every: str = typer.Option(None, "--every", help=f"New interval instead of a cron ({DURATION_HELP})"),
    tz: str = typer.Option(None, "--tz", help="IANA time zone of the cron"),
    before: str = typer.Option(None, "--before", help=f"Margin before each nominal time ({DURATION_HELP})"),
    after: str = typer.Option(None, "--after", help=f"Margin after each nominal time ({DURATION_HELP})"),
    risk_mode: str = typer.Option(None, "--risk-mode", help="CONSERVATIVE, NEUTRAL or AGGRESSIVE"),
    arg: list[str] = typer.Option([], "--arg", help="Replace the args: key=value (repeatable)"),
    as_json: bool = JsonOpt,
) -> None:
    """Change a recurring job; later firings use the new settings (runs already made keep theirs)."""
    body: dict[str, Any] = {
        k: v
        for k, v in {
            "job_template_id": template,
            "cron": cron,
            "interval": None if every is None else iso_duration(every, "--every"),
            "time_zone": tz,
            "margin_before": None if before is None else iso_duration(before, "--before"),
            "margin_after": None if after is None else iso_duration(after, "--after"),
            "risk_mode": risk_mode.upper() if risk_mode else None,
        }.items()
        if v is not None
    }
    if arg:
        body["args"] = _kv(arg, "--arg")
    if not body:
        raise typer.BadParameter("nothing to change: give --template, --cron, --every, --before, ...")
    r = Api().json("PATCH", f"/v1/recurring-jobs/{recurring_id}", json=body)
    if as_json:
        return _dump(r)
    out.print(f"recurring job [bold]{r['id']}[/]: {r.get('summary') or r['status']}")
    return None
