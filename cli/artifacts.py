"""``orch artifacts upload|list|get``: app zips over the REST API (``ORCH_URL``, ``ORCH_API_KEY``; exit
codes as in cli/client.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.client import Api, JsonOpt, WideOpt, _dump, _when, out
from cli.fmt import Col, fitted_table, record_table

artifacts_app = typer.Typer(
    help="App artifacts: zips with run.sh or main.py at their root", no_args_is_help=True
)


ARTIFACT_COLS = (
    Col("id", keep=100, ident=True),
    Col("name", keep=90),
    Col("version", keep=80),
    Col("entry", keep=30),
    Col("size", keep=40, justify="right"),
    Col("sha256", keep=10, ident=True),
    Col("created", keep=50),
)


def _rows(items: list[dict]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for a in items:
        rows.append(
            (
                a["artifact_id"],
                a["name"],
                a["version"],
                a["entry_point"],
                f"{a['size_bytes']:,} B",
                a["sha256"],
                _when(a["created_at"]),
            )
        )
    return rows


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
def list_(
    limit: int = typer.Option(50, help="How many, newest first"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Your artifacts, newest first."""
    page = Api().json("GET", "/v1/artifacts", params={"limit": limit})
    if as_json:
        return _dump(page)
    items = page["items"]
    fitted_table(out, ARTIFACT_COLS, _rows(items), title=f"{len(items)} artifact(s)", wide=wide)


@artifacts_app.command("get")
def get(artifact_id: str, as_json: bool = JsonOpt) -> None:
    """One artifact."""
    a = Api().json("GET", f"/v1/artifacts/{artifact_id}")
    if as_json:
        return _dump(a)
    out.print(record_table(ARTIFACT_COLS, _rows([a])))
