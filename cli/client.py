"""``orch jobs|runs|preview``: the client CLI for people who submit jobs, over the REST API.

Configuration comes from the environment: ``ORCH_URL`` (default ``http://127.0.0.1:8000``) and
``ORCH_API_KEY`` (a client key). Every command prints a rich table for people, or the API's JSON with
``--json`` for scripts.

Exit codes scripts can rely on:

- 0: done (``runs watch``: the run SUCCEEDED)
- 1: the run ended but not SUCCEEDED (FAILED, CANCELLED, EXPIRED, TIMED_OUT)
- 2: bad usage (unknown option, unreadable file, bad time)
- 3: the API refused the request (4xx; its problem detail is printed)
- 4: the API is unreachable or failed (5xx)
- 124: ``--timeout`` passed before the run finished
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import webbrowser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli import fmt
from cli.fmt import Col, fitted_table, parse_duration, read_json_object
from models.domain import TERMINAL_STATUSES, RunStatus

OK, RUN_UNSUCCESSFUL, USAGE, REFUSED, UNAVAILABLE, TIMEOUT = 0, 1, 2, 3, 4, 124

jobs_app = typer.Typer(help="Submit and read jobs", no_args_is_help=True)
runs_app = typer.Typer(help="List, follow and cancel runs", no_args_is_help=True)

out = Console()
err = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print the API's JSON instead of a table")
WideOpt = typer.Option(
    False, "--wide", help="Every column, however wide (by default columns are left out to fit the terminal)"
)


# ---------- plumbing ----------
class Api:
    """A thin httpx client for ORCH_URL with the key from ORCH_API_KEY (or the first of ``key_vars`` that
    is set); errors become exit codes, and every error names the URL it called."""

    def __init__(self, key_vars: tuple[str, ...] = ("ORCH_API_KEY",), what: str = "your client API key"):
        self.base = os.environ.get("ORCH_URL", "http://127.0.0.1:8000").rstrip("/")
        self.key_var = next((v for v in key_vars if os.environ.get(v)), "")
        if not self.key_var:
            err.print(
                f"[red]set {' or '.join(key_vars)} to {what}[/red] (and ORCH_URL if the API is not at "
                f"{self.base}); `make dev` prints the export lines"
            )
            raise typer.Exit(USAGE)
        self.http = httpx.Client(
            base_url=self.base, headers={"X-API-Key": os.environ[self.key_var]}, timeout=30
        )

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            err.print(escape(unreachable_text(f"{self.base}{path}", exc)), style="red", soft_wrap=True)
            raise typer.Exit(UNAVAILABLE) from exc
        if r.status_code >= 400:
            err.print(escape(refusal_text(method, r, self.key_var)), style="red", soft_wrap=True)
            raise typer.Exit(REFUSED if r.status_code < 500 else UNAVAILABLE)
        return r

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()


def unreachable_text(url: str, exc: Exception) -> str:
    """A connection error that names the URL and where it came from."""
    return f"cannot reach the API at {url} (ORCH_URL): {type(exc).__name__}: {exc}"


def refusal_text(method: str, r: httpx.Response, key_var: str = "ORCH_API_KEY") -> str:
    """An error answer with the URL called, e.g. ``401 unknown API key from http://127.0.0.1:8200/v1/jobs
    (ORCH_URL; key from ORCH_API_KEY)``."""
    if r.status_code in (401, 403):
        return f"{r.status_code} {_problem(r)} from {r.request.url} (ORCH_URL; key from {key_var})"
    return f"{method} {r.request.url}: {r.status_code} {_problem(r)}"


def _problem(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500]
    detail = str(body.get("detail") or body.get("title") or "")
    # a validation problem's detail already lists its first fields: print each message once
    fields = [
        f for e in body.get("errors") or [] if (f := f"{e.get('path')}: {e.get('message')}") not in detail
    ]
    return "; ".join([detail, *fields]) if fields else detail


def _dump(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _when(text: str | None) -> str:
    """An ISO timestamp shown to a person: UTC, to the second."""
    if not text:
        return "-"
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_time(text: str, now: datetime | None = None, option: str = "time") -> datetime:
    """``now``, ``+2h`` (from now), or an ISO 8601 time with an offset; see ``cli.fmt.parse_time``."""
    return fmt.parse_time(text, option, now)


def _kv(items: list[str], what: str) -> dict[str, Any]:
    """``key=value`` pairs; values that parse as JSON numbers/booleans keep their type."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {item!r} must look like key=value")
        try:
            parsed = json.loads(value)
            result[key] = parsed if isinstance(parsed, int | float | bool) else value
        except ValueError:
            result[key] = value
    return result


def _status_style(status: str) -> str:
    return {
        "SUCCEEDED": "green",
        "FAILED": "red",
        "TIMED_OUT": "red",
        "EXPIRED": "yellow",
        "CANCELLED": "yellow",
        "CANCELLING": "yellow",
    }.get(status, "cyan")


def _saving(run: dict) -> str:
    pct = (run.get("carbon") or {}).get("saved_pct")
    return "-" if pct is None else f"{pct:.1f} %"


RUN_COLS = (
    Col("run", keep=100, ident=True),
    Col("status", keep=100),
    Col("template", keep=70, ident=True),
    Col("region", keep=90),
    Col("planned start", keep=80),
    Col("started", keep=30),
    Col("finished", keep=40),
    Col("exit", keep=20),
    Col("saving", keep=50),
)


def _run_table(runs: list[dict], wide: bool = False) -> None:
    """Runs as a table; ids always whole (columns are left out to fit the terminal, ``--wide`` shows all)."""
    rows = []
    for r in runs:
        st = r["status"]
        rows.append(
            (
                r["run_id"],
                f"[{_status_style(st)}]{st}[/]",
                r["job_template_id"],
                r.get("region") or "-",
                _when(r.get("planned_start")),
                _when(r.get("started_at")),
                _when(r.get("finished_at")),
                "-" if r.get("exit_code") is None else str(r["exit_code"]),
                _saving(r),
            )
        )
    fitted_table(out, RUN_COLS, rows, wide=wide)


def _run_detail(r: dict) -> Table:
    t = Table(show_header=False, box=None)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    st, reason = r["status"], r.get("status_reason")
    rows = [
        ("run", r["run_id"]),
        ("status", f"[{_status_style(st)}]{st}[/]" + (f"  ({escape(reason)})" if reason else "")),
        ("job", r["job_id"]),
        ("template", f"{r['job_template_id']} on {r['fleet_template_id']}"),
        ("region", r.get("region") or "- (not planned yet)"),
        ("workflow", r["workflow_id"]),
        ("created", _when(r.get("created_at"))),
        ("planned start", _when(r.get("planned_start"))),
        ("started", _when(r.get("started_at"))),
        ("finished", _when(r.get("finished_at"))),
        ("attempts", str(r.get("attempts", 0))),
        ("capacity", r.get("capacity") or "-"),
        ("exit code", "-" if r.get("exit_code") is None else str(r["exit_code"])),
        ("saving", _saving(r)),
    ]
    rationale = (r.get("plan") or {}).get("rationale")
    if rationale:
        rows.append(("why", escape(rationale)))
    for k, v in rows:
        t.add_row(k, v)
    return t


def _run_exit(status: str) -> int:
    return OK if status == RunStatus.SUCCEEDED else RUN_UNSUCCESSFUL


def _state_line(r: dict) -> str:
    """One line of ``--watch`` output for a run's state (after the timestamp)."""
    st = r["status"]
    parts = [r["run_id"], st]
    if r.get("status_reason"):
        parts.append(f"({r['status_reason']})")
    if r.get("region"):
        parts.append(f"region {r['region']}")
    if st in TERMINAL_STATUSES:
        if r.get("exit_code") is not None:
            parts.append(f"exit {r['exit_code']}")
        if _saving(r) != "-":
            parts.append(f"saving {_saving(r)}")
    elif r.get("started_at"):
        parts.append(f"started {_when(r['started_at'])}")
    elif r.get("planned_start"):
        parts.append(f"planned start {_when(r['planned_start'])}")
    return "  ".join(parts)


def _watch(api: Api, run_id: str, timeout: float | None, interval: float, as_json: bool) -> int:
    """Follow a run through its states until it finishes, one timestamped line per change (on stderr with
    ``--json``, whose stdout is the final run); the exit code tells how it ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    stream = sys.stderr if as_json else sys.stdout
    run = api.json("GET", f"/v1/runs/{run_id}")
    seen = [run["status"]]
    last = _state_line(run)
    fmt.stamped(stream, last, style=_status_style(run["status"]))
    while run["status"] not in TERMINAL_STATUSES:
        if deadline is not None and time.monotonic() >= deadline:
            fmt.stamped(
                sys.stderr, f"run {run_id} is still {run['status']} after {timeout:g} s", style="yellow"
            )
            return TIMEOUT
        time.sleep(interval)
        run = api.json("GET", f"/v1/runs/{run_id}")
        if run["status"] != seen[-1]:
            seen.append(run["status"])
        line = _state_line(run)
        if line != last:
            fmt.stamped(stream, line, style=_status_style(run["status"]))
            last = line
    if as_json:
        _dump(run)
    else:
        fmt.stamped(stream, " -> ".join(seen))
    return _run_exit(run["status"])


def _seconds(text: str, option: str) -> float:
    """A duration option that also takes plain seconds (``--timeout 3600``, ``--interval 0.5``)."""
    return parse_duration(text, option, bare_seconds=True).total_seconds()


def _timeout_seconds(text: str | None, option: str = "--timeout") -> float | None:
    return None if text is None else _seconds(text, option)


# ---------- jobs ----------
@jobs_app.command("submit")
def jobs_submit(
    template: str = typer.Option(None, "--template", "-t", help="Job template id"),
    type_: str = typer.Option(None, "--type", help="ONE_TIME or RESCHEDULABLE (default: ONE_TIME with --at)"),
    at: str = typer.Option(None, "--at", help="ONE_TIME: when (now, +2h or ISO time)"),
    earliest: str = typer.Option(None, "--earliest", help="RESCHEDULABLE: earliest start (default now)"),
    latest: str = typer.Option(None, "--latest", help="RESCHEDULABLE: latest finish (ISO time or +24h)"),
    within: str = typer.Option(
        None, "--within", help=f"latest finish, as a duration after --earliest ({fmt.DURATION_HELP})"
    ),
    risk_mode: str = typer.Option(None, "--risk-mode", help="CONSERVATIVE, NEUTRAL or AGGRESSIVE"),
    weight: list[str] = typer.Option([], "--weight", help="carbon=0.5 (repeatable: carbon, risk, slack)"),
    arg: list[str] = typer.Option([], "--arg", help="Override an app argument: key=value (repeatable)"),
    file: Path = typer.Option(None, "--file", "-f", help="A JSON job request; flags override its fields"),
    idempotency_key: str = typer.Option(None, "--idempotency-key", help="Same key + same body = same job"),
    watch: bool = typer.Option(False, "--watch", help="Follow the run to its end (exit code as runs watch)"),
    as_json: bool = JsonOpt,
) -> None:
    """Submit a job: ONE_TIME at a time, or RESCHEDULABLE anywhere in a window."""
    body: dict[str, Any] = read_json_object(file, "a job request") if file else {}
    if template:
        body["job_template_id"] = template
    if "job_template_id" not in body:
        raise typer.BadParameter("give --template (or job_template_id in --file)")
    now = datetime.now(UTC)
    if type_:
        body["type"] = type_.upper()
    elif "type" not in body:
        body["type"] = "ONE_TIME" if at else "RESCHEDULABLE"
    if body["type"] == "ONE_TIME":
        if at or "intended_time" not in body:
            body["intended_time"] = parse_time(at or "now", now, "--at").isoformat()
    else:
        start = parse_time(earliest, now, "--earliest") if earliest else None
        if start or "earliest_start" not in body:
            body["earliest_start"] = (start or now).isoformat()
        begin = datetime.fromisoformat(body["earliest_start"])
        if latest:
            body["latest_finish"] = parse_time(latest, now, "--latest").isoformat()
        elif within:
            body["latest_finish"] = (begin + parse_duration(within, "--within")).isoformat()
        elif "latest_finish" not in body:
            raise typer.BadParameter("a RESCHEDULABLE job needs --latest or --within")
    if risk_mode:
        body["risk_mode"] = risk_mode.upper()
    if weight:
        body["weights"] = {**body.get("weights", {}), **_kv(weight, "--weight")}
    if arg:
        body["args"] = {**(body.get("args") or {}), **_kv(arg, "--arg")}
    api = Api()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = api.json("POST", "/v1/jobs", json=body, headers=headers)
    if as_json and not watch:
        _dump(created)
    elif not as_json:
        out.print(f"job [bold]{created['job_id']}[/]  run [bold]{created['run_id']}[/]  {created['status']}")
        out.print(f"follow it: orch runs watch {created['run_id']}")
    if watch:
        raise typer.Exit(_watch(api, created["run_id"], None, 1.0, as_json))


@jobs_app.command("get")
def jobs_get(job_id: str, as_json: bool = JsonOpt) -> None:
    """One job and its runs."""
    job = Api().json("GET", f"/v1/jobs/{job_id}")
    if as_json:
        return _dump(job)
    t = Table(show_header=False, box=None)
    keys = ("id", "job_template_id", "type", "intended_time", "earliest_start", "latest_finish", "risk_mode")
    for k in keys:
        v = job.get(k)
        t.add_row(k, _when(v) if k.endswith(("_time", "_start", "_finish")) else str(v))
    t.add_row("runs", ", ".join(job["run_ids"]))
    out.print(t)


@jobs_app.command("list")
def jobs_list(
    limit: int = typer.Option(20, help="How many, newest first"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Your jobs, newest first."""
    page = Api().json("GET", "/v1/jobs", params={"limit": limit})
    if as_json:
        return _dump(page)
    rows = []
    for j in page["items"]:
        when = (
            _when(j["intended_time"])
            if j["type"] == "ONE_TIME"
            else f"{_when(j['earliest_start'])} .. {_when(j['latest_finish'])}"
        )
        rows.append((j["id"], j["type"], j["job_template_id"], when, "\n".join(j["run_ids"])))
    cols = (
        Col("job", keep=100, ident=True),
        Col("type", keep=50),
        Col("template", keep=60, ident=True),
        Col("window / time", keep=40),
        Col("runs", keep=100, ident=True),
    )
    fitted_table(out, cols, rows, wide=wide)


# ---------- runs ----------
@runs_app.command("list")
def runs_list(
    status: str = typer.Option(None, help="Only runs in this status (e.g. RUNNING)"),
    template: str = typer.Option(None, "--template", "-t", help="Only runs of this job template"),
    job: str = typer.Option(None, help="Only runs of this job"),
    limit: int = typer.Option(20, help="How many, newest first"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Your runs, newest first (with --wide every column, however wide the lines)."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status.upper()
    if template:
        params["job_template_id"] = template
    if job:
        params["job_id"] = job
    page = Api().json("GET", "/v1/runs", params=params)
    if as_json:
        return _dump(page)
    _run_table(page["items"], wide)


@runs_app.command("get")
def runs_get(run_id: str, as_json: bool = JsonOpt) -> None:
    """One run: status, plan, times, exit code, carbon."""
    run = Api().json("GET", f"/v1/runs/{run_id}")
    if as_json:
        return _dump(run)
    out.print(_run_detail(run))


def _shown(line: str) -> str:
    """What a terminal shows of a log line: the text after its last carriage return (progress output)."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


@runs_app.command("logs")
def runs_logs(
    run_id: str,
    follow: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help="Print new output until the run finishes, each line with a UTC timestamp",
    ),
    interval: str = typer.Option(
        "1s", metavar="DURATION", help="Time between polls with --follow: 2s, PT2S or seconds"
    ),
) -> None:
    """The app's log (latest attempt). With --follow each line starts with the UTC time it was read."""
    every = _seconds(interval, "--interval")
    api = Api()
    printed = 0
    partial = ""  # --follow: the end of the text after its last newline, printed once the line is complete
    while True:
        run = api.json("GET", f"/v1/runs/{run_id}")
        r = api.http.get(f"/v1/runs/{run_id}/logs")
        if r.status_code == 200:
            text = r.json()["text"]
            # the API serves a tail; print what is new since the last poll
            if len(text) >= printed:
                new, printed = text[printed:], len(text)
                if follow:
                    *lines, partial = (partial + new).split("\n")
                    for line in lines:
                        sys.stdout.write(f"{fmt.stamp()}  {_shown(line)}\n")
                else:
                    sys.stdout.write(new)
                sys.stdout.flush()
        elif r.status_code != 404 or not follow:
            err.print(escape(refusal_text("GET", r, api.key_var)), style="red", soft_wrap=True)
            raise typer.Exit(REFUSED if r.status_code < 500 else UNAVAILABLE)
        if not follow or run["status"] in TERMINAL_STATUSES:
            if partial:
                sys.stdout.write(f"{fmt.stamp()}  {_shown(partial)}\n")
            raise typer.Exit(_run_exit(run["status"]) if follow else OK)
        time.sleep(every)


@runs_app.command("cancel")
def runs_cancel(
    run_id: str, reason: str = typer.Option(None, help="Why (kept in status_reason)"), as_json: bool = JsonOpt
) -> None:
    """Cancel a run (best effort: it ends CANCELLED; the fleet is always terminated)."""
    run = Api().json("POST", f"/v1/runs/{run_id}/cancel", json={"reason": reason} if reason else None)
    if as_json:
        return _dump(run)
    out.print(f"run {run_id}: {run['status']}")


@runs_app.command("watch")
def runs_watch(
    run_id: str,
    timeout: str = typer.Option(
        None, metavar="DURATION", help="Give up after this long (exit 124): 90s, 10m, PT1H or seconds"
    ),
    interval: str = typer.Option("1s", metavar="DURATION", help="Time between polls: 2s, PT2S or seconds"),
    as_json: bool = JsonOpt,
) -> None:
    """Follow a run through its states; exit 0 if it SUCCEEDED, 1 if it ended otherwise."""
    seconds = _timeout_seconds(timeout)
    every = _seconds(interval, "--interval")
    raise typer.Exit(_watch(Api(), run_id, seconds, every, as_json))


# ---------- preview ----------
PREVIEW_COLS = (
    Col("start", keep=100),
    Col("region", keep=95),
    Col("p50 finish", keep=40),
    Col("p90 finish", keep=30),
    Col("gCO2e", keep=60, justify="right"),
    Col("saving", keep=90, justify="right"),
    Col("carbon", keep=20, justify="right"),
    Col("risk", keep=20, justify="right"),
    Col("slack", keep=20, justify="right"),
    Col("objective", keep=25, justify="right"),
)


def preview(
    template: str = typer.Option(..., "--template", "-t", help="Job template id"),
    earliest: str = typer.Option("now", "--earliest", help="Earliest start (now, +2h or ISO time)"),
    latest: str = typer.Option(None, "--latest", help="Latest finish (ISO time or +24h)"),
    within: str = typer.Option(
        "24h", "--within", help=f"Latest finish as a duration from --earliest ({fmt.DURATION_HELP})"
    ),
    risk_mode: str = typer.Option("NEUTRAL", "--risk-mode"),
    fleet: str = typer.Option(None, "--fleet", help="Instance type; default: the template's"),
    top: int = typer.Option(5, "--top", min=1, max=100, help="Best candidates to show (1-100)"),
    chart: Path = typer.Option(None, "--chart", help="Write the SVG chart to this file"),
    open_chart: bool = typer.Option(False, "--open", help="Open the chart in a browser"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Where (region) and when would a job in this window start, and why."""
    now = datetime.now(UTC)
    start = parse_time(earliest, now, "--earliest")
    finish = parse_time(latest, now, "--latest") if latest else start + parse_duration(within, "--within")
    body: dict[str, Any] = {
        "job_template_id": template,
        "earliest_start": start.isoformat(),
        "latest_finish": finish.isoformat(),
        "risk_mode": risk_mode.upper(),
    }
    if fleet:
        body["fleet_template_id"] = fleet
    api = Api()
    if chart or open_chart:
        svg = api.request("POST", "/v1/schedules/preview", params={"format": "svg"}, json=body).text
        path = chart or Path(tempfile.mkstemp(suffix=".svg", prefix="orch-preview-")[1])
        path.write_text(svg)
        err.print(f"chart written to {path}")
        if open_chart:
            webbrowser.open(path.resolve().as_uri())
    data = api.json("POST", "/v1/schedules/preview", params={"top": top}, json=body)
    if as_json:
        return _dump(data)
    chosen = data["chosen"]
    rows = []
    for c in data["candidates"][:top]:
        mark = (
            " *"
            if (c["proposed_start"], c.get("region")) == (chosen["proposed_start"], chosen.get("region"))
            else ""
        )
        s = c["scores"]
        rows.append(
            (
                _when(c["proposed_start"]) + mark,
                c.get("region") or "-",
                _when(c["estimated_finish_p50"]),
                _when(c["estimated_finish_p90"]),
                f"{c['estimated_gco2e']:.1f}",
                f"{c['saving_vs_earliest_pct']:.1f} %",
                f"{s['carbon']:.3f}",
                f"{s['risk']:.3f}",
                f"{s['slack']:.3f}",
                f"{c['objective']:.3f}",
            )
        )
    shown = len(rows)
    title = f"best {shown} of {data['feasible_count']} feasible starts"
    fitted_table(out, PREVIEW_COLS, rows, title=title, wide=wide)
    where = f" in {chosen['region']}" if chosen.get("region") else ""
    home = f", home region {data['home_region']}" if data.get("home_region") else ""
    out.print(f"chosen: [bold]{_when(chosen['proposed_start'])}[/]{where} ({data['capacity']}{home})")
    out.print(escape(data["rationale"]))
