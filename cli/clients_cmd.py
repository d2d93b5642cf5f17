"""``orch clients create|list|get|rotate-key|suspend|reactivate``: tenants over the REST API, with the admin
key (``ORCH_ADMIN_API_KEY``, else ``ORCH_API_KEY``; ``ORCH_URL``; exit codes as in cli/client.py). A client
key may read itself and rotate its own key."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.client import Api, JsonOpt, WideOpt, _dump, _when, out
from cli.fmt import Col, fitted_table

clients_app = typer.Typer(help="Clients (tenants) and their API keys (admin key)", no_args_is_help=True)

ADMIN_KEYS = ("ORCH_ADMIN_API_KEY", "ORCH_API_KEY")


def _api() -> Api:
    return Api(ADMIN_KEYS, "the admin key (make dev prints it; .data/admin_api_key)")


def _show_key(c: dict, key_only: bool, as_json: bool, what: str) -> None:
    if as_json:
        return _dump(c)
    if key_only:
        typer.echo(c["api_key"])
        return None
    out.print(f"client [bold]{c['id']}[/] ({c['name']}, {c['status']}) {what}; its API key (shown once):")
    typer.echo(c["api_key"])
    return None


KeyOnly = typer.Option(False, "--key-only", help="Print only the raw key (for export ORCH_API_KEY=$(...))")


@clients_app.command("create")
def create(name: str, key_only: bool = KeyOnly, as_json: bool = JsonOpt) -> None:
    """Create a client; its API key is printed once (only a hash is stored)."""
    _show_key(_api().json("POST", "/v1/clients", json={"name": name}), key_only, as_json, "created")


@clients_app.command("list")
def list_(
    limit: int = typer.Option(50, help="How many"), wide: bool = WideOpt, as_json: bool = JsonOpt
) -> None:
    """Every client (admin key), or the caller itself (client key)."""
    page = _api().json("GET", "/v1/clients", params={"limit": limit})
    if as_json:
        return _dump(page)
    rows = []
    for c in page["items"]:
        rows.append(
            (
                c["id"],
                c["name"],
                c["status"],
                c["api_key_prefix"],
                "yes" if c["aws_configured"] else "no",
                _when(c["created_at"]),
                _when(c.get("key_rotated_at")),
            )
        )
    cols = (
        Col("id", keep=100, ident=True), Col("name", keep=90), Col("status", keep=80),
        Col("key prefix", keep=60), Col("AWS", keep=50), Col("created", keep=30), Col("key rotated", keep=20),
    )  # fmt: skip
    fitted_table(out, cols, rows, title=f"{len(page['items'])} client(s)", wide=wide)


@clients_app.command("get")
def get(client_id: str, as_json: bool = JsonOpt) -> None:
    """One client."""
    c = _api().json("GET", f"/v1/clients/{client_id}")
    if as_json:
        return _dump(c)
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k in ("id", "name", "status", "api_key_prefix", "aws_configured"):
        t.add_row(k, str(c[k]))
    t.add_row("created", _when(c["created_at"]))
    t.add_row("key rotated", _when(c.get("key_rotated_at")))
    out.print(t)


@clients_app.command("rotate-key")
def rotate_key(client_id: str, key_only: bool = KeyOnly, as_json: bool = JsonOpt) -> None:
    """Replace the client's API key (the old one stops working); the new key is printed once."""
    _show_key(_api().json("POST", f"/v1/clients/{client_id}/rotate-key"), key_only, as_json, "has a new key")


def _set_status(client_id: str, status: str, as_json: bool) -> None:
    c = _api().json("PATCH", f"/v1/clients/{client_id}", json={"status": status})
    if as_json:
        return _dump(c)
    out.print(f"client [bold]{c['id']}[/] ({c['name']}) is {c['status']}")
    return None


@clients_app.command("suspend")
def suspend(client_id: str, as_json: bool = JsonOpt) -> None:
    """Suspend a client (admin key): its key gets 403 and its runs never launch."""
    _set_status(client_id, "suspended", as_json)


@clients_app.command("reactivate")
def reactivate(client_id: str, as_json: bool = JsonOpt) -> None:
    """Make a suspended client active again (admin key)."""
    _set_status(client_id, "active", as_json)
