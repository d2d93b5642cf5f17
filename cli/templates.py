"""``orch templates create|list|get|update|delete|versions``: job templates over the REST API (``ORCH_URL``,
``ORCH_API_KEY``; exit codes as in cli/client.py). ``update`` makes a new version; ``delete`` retires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.client import Api, JsonOpt, WideOpt, _dump, _kv, _when, out
from cli.fmt import Col, fitted_table, parse_duration, read_json_object

templates_app = typer.Typer(
    help="Job templates: an app, default args, data and a fleet template (versioned)", no_args_is_help=True
)

_FIELDS = (
    ("name", "name"),
    ("app_artifact_id", "artifact"),
    ("fleet_template_id", "fleet"),
    ("default_args", "args"),
    ("data_uri", "data"),
    ("expected_runtime_sec", "expected runtime (s)"),
    ("max_runtime_sec", "max runtime (s)"),
    ("region", "region"),
    ("regions", "regions"),
    ("data_region", "data region"),
)


def _body(
    file: Path | None,
    name: str | None,
    artifact: str | None,
    fleet: str | None,
    arg: list[str],
    data_uri: str | None,
    expected_runtime: int | None,
    max_runtime: int | None,
    region: str | None,
    regions: list[str],
) -> dict[str, Any]:
    body: dict[str, Any] = read_json_object(file, "a job template") if file else {}
    given = {
        "name": name,
        "app_artifact_id": artifact,
        "fleet_template_id": fleet,
        "data_uri": data_uri,
        "expected_runtime_sec": expected_runtime,
        "max_runtime_sec": max_runtime,
        "region": region,
    }
    body.update({k: v for k, v in given.items() if v is not None})
    if arg:
        body["default_args"] = {**(body.get("default_args") or {}), **_kv(arg, "--arg")}
    if regions:
        body["regions"] = regions
    return body


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items()) or "-"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def _detail(t: dict) -> Table:
    tb = Table(show_header=False, box=None)
    tb.add_column(style="bold")
    tb.add_column(overflow="fold")
    tb.add_row("id", t["id"])
    status = t.get("status", "active")
    tb.add_row("status", status + (f" (since {_when(t.get('retired_at'))})" if t.get("retired_at") else ""))
    tb.add_row(
        "version",
        str(t.get("version", 1)) + (f" (made {_when(t['updated_at'])})" if t.get("updated_at") else ""),
    )
    for key, label in _FIELDS:
        tb.add_row(label, _value(t.get(key)))
    tb.add_row("created", _when(t.get("created_at")))
    return tb


def _seconds(text: str | None, option: str) -> int | None:
    """A duration option (``30m``, ``PT1H`` or plain seconds) as whole seconds."""
    return None if text is None else round(parse_duration(text, option, bare_seconds=True).total_seconds())


Opts = dict(
    name=typer.Option(None, "--name", help="Template name (unique per client)"),
    artifact=typer.Option(None, "--artifact", "-a", help="App artifact id (orch artifacts upload)"),
    fleet=typer.Option(None, "--fleet", help="EC2 instance type, e.g. m5.xlarge"),
    arg=typer.Option([], "--arg", help="Default app argument key=value (repeatable)"),
    data_uri=typer.Option(None, "--data-uri", help="s3://bucket/prefix"),
    expected_runtime=typer.Option(
        None, "--expected-runtime", metavar="DURATION", help="Until runs give history: 30m, PT1H or seconds"
    ),
    max_runtime=typer.Option(
        None, "--max-runtime", metavar="DURATION", help="A run past it ends TIMED_OUT: 2h, PT2H or seconds"
    ),
    region=typer.Option(None, "--region", help="Home region"),
    regions=typer.Option([], "--regions", help="Narrow the allowed regions (repeatable)"),
    file=typer.Option(None, "--file", "-f", help="A JSON template body; flags override its fields"),
)


@templates_app.command("create")
def create(
    name: str = Opts["name"],
    artifact: str = Opts["artifact"],
    fleet: str = Opts["fleet"],
    arg: list[str] = Opts["arg"],
    data_uri: str = Opts["data_uri"],
    expected_runtime: str = Opts["expected_runtime"],
    max_runtime: str = Opts["max_runtime"],
    region: str = Opts["region"],
    regions: list[str] = Opts["regions"],
    file: Path = Opts["file"],
    as_json: bool = JsonOpt,
) -> None:
    """Create a job template (version 1)."""
    body = _body(
        file, name, artifact, fleet, arg, data_uri, _seconds(expected_runtime, "--expected-runtime"),
        _seconds(max_runtime, "--max-runtime"), region, regions,
    )  # fmt: skip
    missing = [f for f in ("name", "app_artifact_id", "fleet_template_id") if f not in body]
    if missing:
        raise typer.BadParameter(
            "give --name, --artifact and --fleet (or them in --file); missing: " + ", ".join(missing)
        )
    t = Api().json("POST", "/v1/job-templates", json=body)
    if as_json:
        return _dump(t)
    out.print(f"template [bold]{t['id']}[/] ({t['name']}) version {t['version']}")


@templates_app.command("list")
def list_(
    active: bool = typer.Option(False, "--active", help="Only templates that take new jobs (not retired)"),
    limit: int = typer.Option(50, help="How many, newest first"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Your job templates, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if active:
        params["include_retired"] = "false"
    page = Api().json("GET", "/v1/job-templates", params=params)
    if as_json:
        return _dump(page)
    rows = []
    for x in page["items"]:
        rows.append(
            (
                x["id"],
                x["name"],
                str(x.get("version", 1)),
                x.get("status", "active"),
                x["app_artifact_id"],
                x["fleet_template_id"],
                x.get("region") or "-",
                _when(x["created_at"]),
            )
        )
    cols = (
        Col("id", keep=100, ident=True), Col("name", keep=90), Col("version", keep=60),
        Col("status", keep=80), Col("artifact", keep=30, ident=True), Col("fleet", keep=50),
        Col("region", keep=70), Col("created", keep=20),
    )  # fmt: skip
    fitted_table(out, cols, rows, title=f"{len(page['items'])} template(s)", wide=wide)


@templates_app.command("get")
def get(template_id: str, as_json: bool = JsonOpt) -> None:
    """One template: its current version."""
    t = Api().json("GET", f"/v1/job-templates/{template_id}")
    if as_json:
        return _dump(t)
    out.print(_detail(t))


@templates_app.command("update")
def update(
    template_id: str,
    name: str = Opts["name"],
    artifact: str = Opts["artifact"],
    fleet: str = Opts["fleet"],
    arg: list[str] = Opts["arg"],
    data_uri: str = Opts["data_uri"],
    expected_runtime: str = Opts["expected_runtime"],
    max_runtime: str = Opts["max_runtime"],
    region: str = Opts["region"],
    regions: list[str] = Opts["regions"],
    file: Path = Opts["file"],
    as_json: bool = JsonOpt,
) -> None:
    """Change a template: makes a new version (runs already planned keep theirs). --arg replaces the
    default args as a whole."""
    body = _body(
        file, name, artifact, fleet, arg, data_uri, _seconds(expected_runtime, "--expected-runtime"),
        _seconds(max_runtime, "--max-runtime"), region, regions,
    )  # fmt: skip
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option (or --file)")
    t = Api().json("PATCH", f"/v1/job-templates/{template_id}", json=body)
    if as_json:
        return _dump(t)
    out.print(f"template [bold]{t['id']}[/] ({t['name']}) is now version {t['version']}")


@templates_app.command("delete")
def delete(template_id: str, as_json: bool = JsonOpt) -> None:
    """Retire a template: it stays readable with its runs; new jobs, previews, reruns and recurring jobs are
    refused. Refused while recurring jobs use it (the error names them)."""
    t = Api().json("DELETE", f"/v1/job-templates/{template_id}")
    if as_json:
        return _dump(t)
    out.print(f"template [bold]{t['id']}[/] ({t['name']}) retired at {_when(t.get('retired_at'))}")


@templates_app.command("versions")
def versions(template_id: str, wide: bool = WideOpt, as_json: bool = JsonOpt) -> None:
    """Every version of a template, newest first."""
    vs = Api().json("GET", f"/v1/job-templates/{template_id}/versions")
    if as_json:
        return _dump(vs)
    rows = []
    for v in vs:
        rows.append(
            (
                str(v["version"]),
                _when(v["created_at"]),
                v["name"],
                v["app_artifact_id"],
                v["fleet_template_id"],
                _value(v.get("default_args")),
                _value(v.get("expected_runtime_sec")),
            )
        )
    cols = (
        Col("version", keep=100), Col("made", keep=60), Col("name", keep=50),
        Col("artifact", keep=70, ident=True), Col("fleet", keep=65), Col("args", keep=40),
        Col("expected runtime (s)", keep=45),
    )  # fmt: skip
    fitted_table(out, cols, rows, title=f"{template_id}: {len(vs)} version(s)", wide=wide)
