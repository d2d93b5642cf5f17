"""``orch webhooks list|create|get|update|delete|test|deliveries``: per-client webhook endpoints over the
REST API (``/v1/webhooks``; ``ORCH_URL``, ``ORCH_API_KEY``; exit codes as in cli/client.py). The signing
secret is printed once, by ``create``."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.client import Api, JsonOpt, _dump, _when, out

webhooks_app = typer.Typer(
    help="Webhook endpoints: where run events are POSTed, signed", no_args_is_help=True
)


def _events(e: Any) -> str:
    return ", ".join(e) if isinstance(e, list) else str(e or "-")


def _table(items: list[dict]) -> Table:
    t = Table(title=f"{len(items)} webhook(s)")
    for col in ("id", "url", "events", "status", "description", "created"):
        t.add_column(col, overflow="fold")
    for w in items:
        t.add_row(
            w["id"],
            w.get("url", "-"),
            _events(w.get("event_types")),
            str(w.get("status") or ("enabled" if w.get("enabled", True) else "disabled")),
            w.get("description") or "-",
            _when(w.get("created_at")),
        )
    return t


def _items(page: Any) -> list[dict]:
    return page["items"] if isinstance(page, dict) and "items" in page else list(page)


@webhooks_app.command("list")
def list_(as_json: bool = JsonOpt) -> None:
    """Your webhook endpoints."""
    page = Api().json("GET", "/v1/webhooks")
    if as_json:
        return _dump(page)
    out.print(_table(_items(page)))


@webhooks_app.command("create")
def create(
    url: str = typer.Option(..., "--url", help="Where events are POSTed (https; http://127.0.0.1 in dev)"),
    event: list[str] = typer.Option(
        [], "--event", "-e", help="An event type to send (repeatable; default all)"
    ),
    description: str = typer.Option(None, "--description", help="What it is for"),
    as_json: bool = JsonOpt,
) -> None:
    """Add an endpoint; its signing secret is printed once."""
    body: dict[str, Any] = {"url": url}
    if event:
        body["event_types"] = event
    if description:
        body["description"] = description
    w = Api().json("POST", "/v1/webhooks", json=body)
    if as_json:
        return _dump(w)
    out.print(f"webhook [bold]{w['id']}[/] -> {w.get('url')} ({_events(w.get('event_types'))})")
    if w.get("secret"):
        out.print("its signing secret (shown once):")
        typer.echo(w["secret"])
    return None


@webhooks_app.command("get")
def get(webhook_id: str, as_json: bool = JsonOpt) -> None:
    """One endpoint."""
    w = Api().json("GET", f"/v1/webhooks/{webhook_id}")
    if as_json:
        return _dump(w)
    out.print(_table([w]))


@webhooks_app.command("update")
def update(
    webhook_id: str,
    url: str = typer.Option(None, "--url"),
    event: list[str] = typer.Option([], "--event", "-e", help="Replace the event types (repeatable)"),
    description: str = typer.Option(None, "--description"),
    as_json: bool = JsonOpt,
) -> None:
    """Change an endpoint's URL, event types or description."""
    body: dict[str, Any] = {}
    if url:
        body["url"] = url
    if event:
        body["event_types"] = event
    if description is not None:
        body["description"] = description
    if not body:
        raise typer.BadParameter("nothing to change: give --url, --event or --description")
    w = Api().json("PATCH", f"/v1/webhooks/{webhook_id}", json=body)
    if as_json:
        return _dump(w)
    out.print(_table([w]))
    return None


@webhooks_app.command("delete")
def delete(webhook_id: str, as_json: bool = JsonOpt) -> None:
    """Remove an endpoint (no more deliveries to it)."""
    r = Api().request("DELETE", f"/v1/webhooks/{webhook_id}")
    if as_json:
        return _dump(r.json() if r.content else {"id": webhook_id, "deleted": True})
    out.print(f"webhook {webhook_id} deleted")
    return None


@webhooks_app.command("test")
def test(webhook_id: str, as_json: bool = JsonOpt) -> None:
    """Send a test event to the endpoint now."""
    r = Api().request("POST", f"/v1/webhooks/{webhook_id}/test")
    body = r.json() if r.content else {}
    if as_json:
        return _dump(body)
    out.print(f"test event sent to webhook {webhook_id}" + (f": {body}" if body else ""))
    return None


@webhooks_app.command("deliveries")
def deliveries(
    webhook_id: str, limit: int = typer.Option(50, help="How many, newest first"), as_json: bool = JsonOpt
) -> None:
    """The delivery log of an endpoint: each event, attempt, answer and when."""
    page = Api().json("GET", f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": limit})
    if as_json:
        return _dump(page)
    items = _items(page)
    t = Table(title=f"{len(items)} deliveries")
    for col in ("id", "event", "type", "status", "attempts", "answer", "when"):
        t.add_column(col, overflow="fold")
    for d in items:
        t.add_row(
            str(d.get("id", "-")),
            str(d.get("event_id", "-")),
            str(d.get("event_type", "-")),
            str(d.get("status", "-")),
            str(d.get("attempts", d.get("attempt", "-"))),
            str(d.get("last_status_code") or d.get("last_error") or "-"),
            _when(d.get("delivered_at") or d.get("created_at")),
        )
    out.print(t)
    return None
