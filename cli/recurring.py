"""``orch recurring create|list|get|pause|resume|trigger|delete`` and ``orch report carbon``: recurring jobs
and the carbon ledger over the REST API (``ORCH_URL``, ``ORCH_API_KEY``; exit codes as in cli/client.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.client import Api, JsonOpt, WideOpt, _dump, _kv, _when, out
from cli.fmt import DURATION_HELP, Col, fitted_table, iso_duration
from scheduling.scoring import doc_saving_text

recurring_app = typer.Typer(
    help="Recurring jobs: a cron or interval with a carbon margin", no_args_is_help=True
)
report_app = typer.Typer(help="Reports: the carbon ledger", no_args_is_help=True)


REC_COLS = (
    Col("id", keep=100, ident=True),
    Col("name", keep=30),
    Col("status", keep=100),
    Col("calendar", keep=90),
    Col("margin", keep=60),
    Col("template", keep=70, ident=True),
    Col("overlap", keep=10),
    Col("next nominal", keep=50),
)


def _table(items: list[dict], wide: bool = False) -> None:
    rows = []
    for r in items:
        cal = f"{r['cron']} ({r['time_zone']})" if r.get("cron") else f"every {r['interval']}"
        nxt = r.get("next") or []
        rows.append(
            (
                r["id"],
                escape(r.get("name") or "-"),
                r["status"],
                escape(cal),
                f"-{r['margin_before']} / +{r['margin_after']}",
                r["job_template_id"],
                r["overlap"],
                _when(nxt[0]["nominal_time"]) if nxt else "-",
            )
        )
    fitted_table(out, REC_COLS, rows, title=f"{len(items)} recurring job(s)", wide=wide)


def _detail(r: dict) -> Table:
    t = Table(show_header=False, title=r["summary"])
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    t.add_row("id", r["id"])
    t.add_row("status", r["status"] + (f" ({r['status_reason']})" if r.get("status_reason") else ""))
    t.add_row("schedule", r["schedule_id"])
    sch = r.get("schedule") or {}
    if sch:
        t.add_row(
            "Temporal",
            "unreachable"
            if not sch.get("reachable")
            else f"firings {sch.get('actions_taken')}, skipped for overlap {sch.get('overlap_skipped')}, "
            f"missed (catch-up) {sch.get('missed_catchup')}",
        )
    for n in r.get("next") or []:
        t.add_row(
            "next",
            f"{_when(n['nominal_time'])}  margin {_when(n['margin_start'])} .. {_when(n['margin_end'])}",
        )
    p = r.get("next_preview")
    if p:
        c = p["chosen"]
        t.add_row(
            "next start",
            f"{_when(c['proposed_start'])}{' in ' + c['region'] if c.get('region') else ''} "
            f"({doc_saving_text(c)})",
        )
        t.add_row("why", p["rationale"])
    return t


@recurring_app.command("create")
def create(
    template: str = typer.Option(..., "--template", "-t", help="Job template id"),
    cron: str = typer.Option(None, help="5-field cron in --tz's wall clock, e.g. '0 1 * * *'"),
    every: str = typer.Option(None, "--every", help=f"Instead of --cron: an interval ({DURATION_HELP})"),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone of the cron"),
    before: str = typer.Option("0s", "--before", help=f"Margin before each nominal time ({DURATION_HELP})"),
    after: str = typer.Option("0s", "--after", help=f"Margin after each nominal time ({DURATION_HELP})"),
    deadline: str = typer.Option(
        None, help=f"Finish within this long after the nominal time ({DURATION_HELP})"
    ),
    risk_mode: str = typer.Option("NEUTRAL", "--risk-mode"),
    overlap: str = typer.Option("skip", help="skip | buffer_one | allow_all"),
    catchup: str = typer.Option("1h", "--catchup", help=f"Catch-up window after downtime ({DURATION_HELP})"),
    name: str = typer.Option(None, help="A name for people"),
    arg: list[str] = typer.Option([], "--arg", help="key=value, repeatable"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a recurring job (one Temporal Schedule)."""
    body: dict[str, Any] = {
        "job_template_id": template,
        "time_zone": tz,
        "margin_before": iso_duration(before, "--before"),
        "margin_after": iso_duration(after, "--after"),
        "risk_mode": risk_mode.upper(),
        "overlap": overlap,
        "catchup_window": iso_duration(catchup, "--catchup"),
    }
    if every is not None:
        body["interval"] = iso_duration(every, "--every")
    if deadline is not None:
        body["deadline"] = iso_duration(deadline, "--deadline")
    for k, v in (("cron", cron), ("name", name)):
        if v is not None:
            body[k] = v
    if arg:
        body["args"] = _kv(arg, "--arg")
    r = Api().json("POST", "/v1/recurring-jobs", json=body)
    if as_json:
        return _dump(r)
    out.print(_detail(r))


@recurring_app.command("list")
def list_(
    status: str = typer.Option(None, help="active | paused | deleted"),
    template: str = typer.Option(None, "--template", "-t"),
    limit: int = typer.Option(50),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Your recurring jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if template:
        params["job_template_id"] = template
    page = Api().json("GET", "/v1/recurring-jobs", params=params)
    if as_json:
        return _dump(page)
    _table(page["items"], wide)


@recurring_app.command("get")
def get(recurring_id: str, as_json: bool = JsonOpt) -> None:
    """One recurring job: next nominal times, the next start's preview, what Temporal says."""
    r = Api().json("GET", f"/v1/recurring-jobs/{recurring_id}")
    if as_json:
        return _dump(r)
    out.print(_detail(r))


@recurring_app.command("pause")
def pause(recurring_id: str, note: str = typer.Option(None, help="Why (shown in the Web UI)")) -> None:
    """No new firings until resumed."""
    r = Api().json("POST", f"/v1/recurring-jobs/{recurring_id}/pause", json={"note": note} if note else None)
    out.print(f"{r['id']}: {r['status']}")


@recurring_app.command("resume")
def resume(recurring_id: str) -> None:
    """Firings start again."""
    r = Api().json("POST", f"/v1/recurring-jobs/{recurring_id}/resume")
    out.print(f"{r['id']}: {r['status']}")


@recurring_app.command("trigger")
def trigger(recurring_id: str) -> None:
    """One firing now (its margin starts now)."""
    r = Api().json("POST", f"/v1/recurring-jobs/{recurring_id}/trigger")
    out.print(r["detail"])


@recurring_app.command("delete")
def delete(
    recurring_id: str,
    cancel_runs: bool = typer.Option(False, "--cancel-runs", help="Also cancel its unfinished runs"),
) -> None:
    """Delete the Schedule; past runs stay readable."""
    r = Api().json(
        "DELETE", f"/v1/recurring-jobs/{recurring_id}", params={"cancel_runs": str(cancel_runs).lower()}
    )
    out.print(f"{r['id']}: {r['status']}")


@report_app.command("carbon")
def carbon(
    since: str = typer.Option(None, "--from", help="ISO time with offset (default: a year ago)"),
    until: str = typer.Option(None, "--to", help="ISO time with offset (default: now)"),
    group_by: str = typer.Option("month", "--group-by", help="template | recurring_job | month | region"),
    csv_file: Path = typer.Option(None, "--csv", help="Also write the CSV here"),
    chart: Path = typer.Option(None, "--chart", help="Write the SVG chart (baseline vs chosen per month)"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The carbon ledger: runs, energy, emissions at the chosen and baseline starts, the saving."""
    params: dict[str, Any] = {"group_by": group_by}
    if since:
        params["from"] = since
    if until:
        params["to"] = until
    api = Api()
    data = api.json("GET", "/v1/reports/carbon", params=params)
    if csv_file:
        csv_file.write_text(
            api.request("GET", "/v1/reports/carbon", params=params, headers={"Accept": "text/csv"}).text
        )
    if chart:
        chart.write_text(api.request("GET", "/v1/reports/carbon", params=params | {"format": "svg"}).text)
    if as_json:
        return _dump(data)
    unit = data.get("unit", "g")
    period = data.get("period") or f"{_when(data['from'])} .. {_when(data['to'])}"
    rows = []
    for r in [*data["rows"], data["total"]]:
        d = r.get("display") or {}
        outcomes = r.get("runs_by_outcome") or {}
        other = ", ".join(f"{n} {k.lower()}" for k, n in outcomes.items() if k != "SUCCEEDED")
        bold = "[bold]{}[/]" if r is data["total"] else "{}"
        cells = (
            escape(r["label"]),
            f"{r['runs']}" + (f" ({other})" if other else ""),
            d.get("energy", f"{r['energy_kwh']:.3f}").removesuffix(" kWh"),
            d.get("emissions_baseline", f"{r['emissions_baseline_g']:.1f} g"),
            d.get("emissions_chosen", f"{r['emissions_chosen_g']:.1f} g"),
            d.get("saving", f"{r['saving_g']:.1f} g"),
            d.get("saving_pct", ""),
            f"{r['runs_with_actuals']} of {r['runs']}",
        )
        rows.append(tuple(bold.format(c) for c in cells))
    cols = (
        Col("group", keep=100), Col("runs", keep=90, justify="right"), Col("kWh", keep=40, justify="right"),
        Col("baseline", keep=60, justify="right"), Col("chosen", keep=70, justify="right"),
        Col("saved", keep=80, justify="right"), Col("saved %", keep=95, justify="right"),
        Col("on actuals", keep=50, justify="right"),
    )  # fmt: skip
    title = f"carbon ledger {period} by {group_by.replace('_', ' ')} (CO2e in {unit})"
    fitted_table(out, cols, rows, title=title, wide=wide)
    if data.get("signal"):
        out.print(f"signal: {data['signal']}")
    for n in data.get("notes") or []:
        out.print(f"[yellow]{n}[/yellow]")
