"""``orch webhooks list|create|get|update|delete|test|deliveries|redeliver``: per-client webhook endpoints
over the REST API (``/v1/webhooks``; ``ORCH_URL``, ``ORCH_API_KEY``; exit codes as in cli/client.py). The
signing secret is printed once, by ``create``."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from cli.client import Api, JsonOpt, WideOpt, _dump, _when, out
from cli.fmt import Col, fitted_table

webhooks_app = typer.Typer(
    help="Webhook endpoints: where run events are POSTed, signed", no_args_is_help=True
)


def _events(e: Any) -> str:
    return ", ".join(e) if isinstance(e, list) else str(e or "-")


def _table(items: list[dict], wide: bool = False) -> None:
    rows = []
    for w in items:
        rows.append(
            (
                w["id"],
                w.get("url", "-"),
                _events(w.get("event_types")),
                "enabled" if w.get("enabled", True) else "disabled",
                escape(w.get("description") or "-"),
                _when(w.get("created_at")),
            )
        )
    cols = (
        Col("id", keep=100, ident=True), Col("url", keep=90), Col("events", keep=60), Col("status", keep=80),
        Col("description", keep=30), Col("created", keep=20),
    )  # fmt: skip
    fitted_table(out, cols, rows, title=f"{len(items)} webhook(s)", wide=wide)


def _items(page: Any) -> list[dict]:
    return page["items"] if isinstance(page, dict) and "items" in page else list(page)


@webhooks_app.command("list")
def list_(wide: bool = WideOpt, as_json: bool = JsonOpt) -> None:
    """Your webhook endpoints."""
    page = Api().json("GET", "/v1/webhooks")
    if as_json:
        return _dump(page)
    _table(_items(page), wide)


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
    _table([w])


@webhooks_app.command("update")
def update(
    webhook_id: str,
    url: str = typer.Option(None, "--url"),
    event: list[str] = typer.Option([], "--event", "-e", help="Replace the event types (repeatable)"),
    description: str = typer.Option(None, "--description"),
    enabled: bool = typer.Option(
        None, "--enable/--disable", help="Disabled: no new deliveries (its events are not recorded)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Change an endpoint's URL, event types or description, or enable/disable it."""
    body: dict[str, Any] = {}
    if url:
        body["url"] = url
    if event:
        body["event_types"] = event
    if description is not None:
        body["description"] = description
    if enabled is not None:
        body["enabled"] = enabled
    if not body:
        raise typer.BadParameter(
            "nothing to change: give --url, --event, --description or --enable/--disable"
        )
    w = Api().json("PATCH", f"/v1/webhooks/{webhook_id}", json=body)
    if as_json:
        return _dump(w)
    _table([w])
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
    """Send a webhook.test event to the endpoint now (its outcome: ``orch webhooks deliveries``)."""
    d = Api().json("POST", f"/v1/webhooks/{webhook_id}/test")
    if as_json:
        return _dump(d)
    out.print(f"test event {d['event_id']} queued for webhook {webhook_id} (delivery {d['id']})")
    return None


@webhooks_app.command("redeliver")
def redeliver(webhook_id: str, delivery_id: str, as_json: bool = JsonOpt) -> None:
    """Deliver an event again: the same event id and body, a fresh signature."""
    d = Api().json("POST", f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    if as_json:
        return _dump(d)
    out.print(f"event {d['event_id']} queued again for webhook {webhook_id} (delivery {d['id']})")
    return None


@webhooks_app.command("deliveries")
def deliveries(
    webhook_id: str,
    limit: int = typer.Option(50, help="How many, newest first"),
    wide: bool = WideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The delivery log of an endpoint: each event, attempt, answer and when."""
    page = Api().json("GET", f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": limit})
    if as_json:
        return _dump(page)
    items = _items(page)
    rows = []
    for d in items:
        rows.append(
            (
                str(d["id"]),
                str(d["event_id"]),
                str(d["event_type"]),
                str(d["status"]),
                str(d["attempts"]),
                escape(str(d.get("last_status_code") or d.get("last_error") or "-")),
                _when(d.get("delivered_at") or d.get("created_at")),
            )
        )
    cols = (
        Col("id", keep=100, ident=True), Col("event", keep=40, ident=True), Col("type", keep=80),
        Col("status", keep=90), Col("attempts", keep=50), Col("answer", keep=60), Col("when", keep=70),
    )  # fmt: skip
    fitted_table(out, cols, rows, title=f"{len(items)} deliveries", wide=wide)
    return None
