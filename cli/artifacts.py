"""``orch artifacts upload|list|get``: app zips over the REST API (``ORCH_URL``, ``ORCH_API_KEY``; exit
codes as in cli/client.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.client import Api, JsonOpt, _dump, _when, out

artifacts_app = typer.Typer(
    help="App artifacts: zips with run.sh or main.py at their root", no_args_is_help=True
)


def _table(items: list[dict]) -> Table:
    t = Table(title=f"{len(items)} artifact(s)")
    for col in ("id", "name", "version", "entry", "size", "sha256", "created"):
        t.add_column(col, overflow="fold")
    for a in items:
        t.add_row(
            a["artifact_id"],
            a["name"],
            a["version"],
            a["entry_point"],
            f"{a['size_bytes']:,} B",
            a["sha256"],
            _when(a["created_at"]),
        )
    return t


@artifacts_app.command("upload")
def upload(
    file: Path = typer.Argument(..., help="The app zip", exists=True, dir_okay=False, readable=True),
    version: str = typer.Option(..., "--version", "-v", help="e.g. 1.0.0 (name + version is unique)"),
    name: str = typer.Option(None, "--name", help="Artifact name (default: the file's name)"),
    as_json: bool = JsonOpt,
) -> None:
    """Upload an app zip; prints its artifact id (for orch templates create --artifact)."""
    with file.open("rb") as fh:
        a = Api().json(
            "POST",
            "/v1/artifacts/upload",
            data={"version": version},
            files={"file": (name or file.name, fh, "application/zip")},
        )
    if as_json:
        return _dump(a)
    out.print(f"artifact [bold]{a['artifact_id']}[/] ({a['name']} {a['version']}, {a['entry_point']})")
    out.print(f"  {a['s3_uri']}  sha256 {a['sha256']}")


@artifacts_app.command("list")
def list_(limit: int = typer.Option(50, help="How many, newest first"), as_json: bool = JsonOpt) -> None:
    """Your artifacts, newest first."""
    page = Api().json("GET", "/v1/artifacts", params={"limit": limit})
    if as_json:
        return _dump(page)
    out.print(_table(page["items"]))


@artifacts_app.command("get")
def get(artifact_id: str, as_json: bool = JsonOpt) -> None:
    """One artifact."""
    a = Api().json("GET", f"/v1/artifacts/{artifact_id}")
    if as_json:
        return _dump(a)
    out.print(_table([a]))
