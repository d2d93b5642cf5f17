"""Webhooks (issue 19): per-client endpoints, signed event payloads, the delivery log (application layer).

An event is stored, one delivery row per subscribed endpoint, in the same transaction as the run change that
caused it (``record_run_events``, called by the run activities), so no event is lost when a worker dies;
each delivery is then carried out by its own ``WebhookDeliveryWorkflow`` (retries with exponential backoff),
so a slow or failing endpoint never slows a run. Every delivery of an event carries the same event id.

Signature: ``Orch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``, a fresh ``t`` at
each attempt; receivers refuse a ``t`` older than :data:`REPLAY_WINDOW_SEC`.

URLs: https only, to public addresses; ``http://127.0.0.1`` (or ``[::1]``) only when the setting
``ORCH_WEBHOOK_ALLOW_HTTP_LOOPBACK`` allows it (on in dev and tests). Checked when stored and again at each
delivery after resolving the name, and the request goes to the address that was checked (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.secretbox import secret_box
from core.settings import Settings
from models.db import Client, Job, Run, WebhookDelivery, WebhookEndpoint, new_id, utcnow
from models.workflow import (
    TERMINAL_EVENT_TYPES,
    TEST_EVENT_TYPE,
    DeliveryInput,
    DeliveryQueueInput,
    RunEvent,
    delivery_workflow_id,
    event_id_for,
)
from services.access import owned
from services.errors import Conflict, NotFound, Unprocessable, field_error
from services.pagination import paginate

log = logging.getLogger("orch.webhooks")

REPLAY_WINDOW_SEC = 300  # receivers refuse a signature timestamp older (or further ahead) than this
SIGNATURE_HEADER = "Orch-Signature"
MAX_ENDPOINTS_PER_CLIENT = 20
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_LOOPBACK_HOSTS = {"127.0.0.1", "::1"}


# ---------------------------------------------------------------- URLs
class UrlRefused(ValueError):
    """The URL (or the address its name resolves to) may not receive webhooks."""


def _ip_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> str | None:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip in _METADATA:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback and str(ip) in _LOOPBACK_HOSTS else f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_private or not ip.is_global:
        return f"{ip} is a private or reserved address"
    return None


def check_url(url: str, allow_http_loopback: bool) -> None:
    """Raises UrlRefused naming why: not https (http only to 127.0.0.1/[::1] with the setting), user info,
    a private, loopback, link-local or metadata address literal, a local-only name."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from exc
    host = (parts.hostname or "").lower()
    if not host:
        raise UrlRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not allowed (the signature authenticates us)")
    if parts.fragment:
        raise UrlRefused("a fragment (#...) is not allowed")
    loopback_ok = allow_http_loopback and host in _LOOPBACK_HOSTS
    if parts.scheme == "http":
        if not loopback_ok:
            hint = "" if allow_http_loopback else " (ORCH_WEBHOOK_ALLOW_HTTP_LOOPBACK is off)"
            raise UrlRefused(f"https is required; http is only allowed to 127.0.0.1 or [::1]{hint}")
    elif parts.scheme != "https":
        raise UrlRefused("the scheme must be https")
    if port == 0:
        raise UrlRefused("port 0 is not allowed")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".localdomain")):
            raise UrlRefused(f"{host} is a local-only name") from None
        if "." not in host:
            raise UrlRefused(f"{host} is not a fully qualified domain name") from None
        return
    why = _ip_refusal(ip, allow_http_loopback)
    if why:
        raise UrlRefused(why)


@dataclass
class Target:
    """Where a delivery really goes: the checked address, with the name for Host and TLS (SNI)."""

    url: str  # the URL with its host replaced by the checked address
    host_header: str
    sni_hostname: str | None


def resolve_target(url: str, allow_http_loopback: bool) -> Target:
    """Check the URL, resolve its name and check every address it resolves to (a name that points to a
    private address, e.g. by DNS rebinding, is refused); the request then goes to the first checked address.
    Raises UrlRefused, or OSError when the name does not resolve (retried)."""
    check_url(url, allow_http_loopback)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ips = [ipaddress.ip_address(host)]
        literal = True
    except ValueError:
        literal = False
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ips = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not ips:
        raise OSError(f"{host} resolves to no address")
    for ip in ips:
        why = _ip_refusal(ip, allow_http_loopback)
        if why:
            raise UrlRefused(f"{host} resolves to a refused address: {why}")
    netloc_host = f"[{ips[0]}]" if ips[0].version == 6 else str(ips[0])
    netloc = netloc_host + (f":{parts.port}" if parts.port else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host_header=host_header,
        sni_hostname=None if literal or parts.scheme != "https" else host,
    )


# ---------------------------------------------------------------- signatures
def sign(secret: str, timestamp: int, body: str) -> str:
    """hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with the endpoint's secret."""
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def signature_header(secret: str, body: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, body)}"


def verify(secret: str, header: str, body: str, now: float | None = None) -> bool:
    """What a receiver does (README "Webhooks"): the timestamp within the replay window, a v1 that matches."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > REPLAY_WINDOW_SEC:
        return False
    return hmac.compare_digest(sign(secret, t, body), fields.get("v1", ""))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# ---------------------------------------------------------------- endpoints (REST)
def _url_errors(settings: Settings, url: str) -> None:
    try:
        check_url(url, settings.webhook_loopback_allowed)
    except UrlRefused as exc:
        raise Unprocessable(f"url: {exc}", [field_error("url", str(exc))]) from exc


def create_endpoint(
    session: Session,
    settings: Settings,
    client: Client,
    url: str,
    event_types: Sequence[str],
    description: str | None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint with a fresh secret, stored encrypted (core/secretbox.py), and that secret in clear
    (the caller shows it once). Unprocessable for a refused URL; Conflict past MAX_ENDPOINTS_PER_CLIENT."""
    _url_errors(settings, url)
    count = len(
        session.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.client_id == client.id)).all()
    )
    if count >= MAX_ENDPOINTS_PER_CLIENT:
        raise Conflict(f"a client may have at most {MAX_ENDPOINTS_PER_CLIENT} webhook endpoints")
    now = utcnow()
    secret = new_secret()
    ep = WebhookEndpoint(
        id=new_id("whk"),
        client_id=client.id,
        url=url,
        event_types=list(dict.fromkeys(event_types)),
        description=description,
        secret=secret_box(settings).seal(secret),
        enabled=1,
        created_at=now,
        updated_at=now,
    )
    session.add(ep)
    session.flush()
    log.info("webhook endpoint %s created for client %s", ep.id, client.id)
    return ep, secret


def list_endpoints(
    session: Session, client: Client, limit: int, cursor: str | None
) -> tuple[list[WebhookEndpoint], str | None]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.client_id == client.id)
    return paginate(session, stmt, WebhookEndpoint, limit, cursor)


def get_endpoint(session: Session, client: Client, endpoint_id: str) -> WebhookEndpoint:
    return owned(session, WebhookEndpoint, endpoint_id, client, "webhook endpoint")


def update_endpoint(
    session: Session, settings: Settings, client: Client, endpoint_id: str, changes: dict[str, Any]
) -> WebhookEndpoint:
    """PATCH: url, event_types, description, enabled (the secret never changes here)."""
    ep = get_endpoint(session, client, endpoint_id)
    if changes.get("url") is not None:
        _url_errors(settings, changes["url"])
        ep.url = changes["url"]
    if changes.get("event_types") is not None:
        ep.event_types = list(dict.fromkeys(changes["event_types"]))
    if "description" in changes:
        ep.description = changes["description"]
    if changes.get("enabled") is not None:
        ep.enabled = 1 if changes["enabled"] else 0
    ep.updated_at = utcnow()
    return ep


def delete_endpoint(session: Session, client: Client, endpoint_id: str) -> None:
    """The endpoint and its delivery log; deliveries in flight find it gone and stop."""
    ep = get_endpoint(session, client, endpoint_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id))
    session.delete(ep)


def list_deliveries(
    session: Session, client: Client, endpoint_id: str, limit: int, cursor: str | None
) -> tuple[list[WebhookDelivery], str | None]:
    ep = get_endpoint(session, client, endpoint_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id)
    return paginate(session, stmt, WebhookDelivery, limit, cursor)


def get_delivery(session: Session, client: Client, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    ep = get_endpoint(session, client, endpoint_id)
    d = session.get(WebhookDelivery, delivery_id)
    if d is None or d.endpoint_id != ep.id:
        raise NotFound(f"delivery {delivery_id} not found")
    return d


def prepare_redelivery(
    session: Session, client: Client, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """The same event (same id and body) again: back to pending, a new delivery workflow (the caller starts
    it after the commit)."""
    d = get_delivery(session, client, endpoint_id, delivery_id)
    d.status = "pending"
    d.redeliveries += 1
    return d


def prepare_test_event(session: Session, client: Client, endpoint_id: str) -> WebhookDelivery:
    """A ``webhook.test`` event for this endpoint (whatever its event types), delivered like any other."""
    ep = get_endpoint(session, client, endpoint_id)
    event_id = "evt_" + secrets.token_hex(12)
    now = utcnow()
    body = _body(
        event_id,
        TEST_EVENT_TYPE,
        client.id,
        now,
        {"endpoint_id": ep.id, "message": "a test event from the orchestrator"},
    )
    d = WebhookDelivery(
        id=new_id("dlv"),
        endpoint_id=ep.id,
        client_id=client.id,
        event_id=event_id,
        event_type=TEST_EVENT_TYPE,
        body=body,
        status="pending",
        attempts=0,
        redeliveries=0,
        created_at=now,
    )
    session.add(d)
    session.flush()
    return d


# ---------------------------------------------------------------- events of runs
def _body(event_id: str, event_type: str, client_id: str, created: datetime, data: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "client_id": client_id,
            "data": data,
        },
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def run_event_data(session: Session, run: Run, event: RunEvent) -> dict[str, Any]:
    """What every run event carries: the run's identity and state, then the event's own fields."""
    job = session.get(Job, run.job_id)
    return {
        "run_id": run.id,
        "job_id": run.job_id,
        "job_template_id": run.job_template_id,
        "recurring_job_id": run.recurring_job_id,
        "status": run.status,
        "status_reason": run.status_reason,
        "attempt": event.attempt,
        "exit_code": run.exit_code,
        "planned_start": _iso(run.planned_start),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "latest_finish": _iso(job.latest_finish) if job is not None else None,
        "region": run.region,
        **event.data,
    }


def record_run_events(session: Session, run: Run, events: Sequence[RunEvent]) -> list[str]:
    """One pending delivery per (subscribed, enabled endpoint of the run's client, event), idempotent by
    (endpoint, event id); called in the transaction of the change. Returns the ids of the deliveries of
    these events that are still pending (new or left by an earlier try), for the caller to start."""
    if not events:
        return []
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.client_id == run.client_id, WebhookEndpoint.enabled == 1
        )
    ).all()
    if not endpoints:
        return []
    ids = [e.event_id for e in events]
    existing = {
        (d.endpoint_id, d.event_id): d
        for d in session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.client_id == run.client_id, WebhookDelivery.event_id.in_(ids)
            )
        )
    }
    pending: list[str] = []
    now = utcnow()
    for event in events:
        body = None
        for ep in endpoints:
            if event.type not in (ep.event_types or []):
                continue
            d = existing.get((ep.id, event.event_id))
            if d is None:
                if body is None:
                    body = _body(
                        event.event_id, event.type, run.client_id, now, run_event_data(session, run, event)
                    )
                d = WebhookDelivery(
                    id=new_id("dlv"),
                    endpoint_id=ep.id,
                    client_id=run.client_id,
                    event_id=event.event_id,
                    event_type=event.type,
                    run_id=run.id,
                    body=body,
                    status="pending",
                    attempts=0,
                    redeliveries=0,
                    created_at=now,
                )
                session.add(d)
            if d.status == "pending":
                pending.append(d.id)
    session.flush()
    return pending


def record_final_event(session: Session, run: Run) -> list[str]:
    """The run's final event when the run was closed outside its workflow (a cancel before it had one, the
    reconciler): the same event id the workflow would use, so it is never sent twice."""
    event_type = TERMINAL_EVENT_TYPES.get(str(run.status))
    if event_type is None:
        return []
    event = RunEvent(event_id=event_id_for(run.id, event_type, 0), type=event_type, attempt=run.attempts)
    return record_run_events(session, run, [event])


def stale_pending(session: Session, older_than: datetime, limit: int) -> list[str]:
    """Deliveries still pending, never attempted, older than ``older_than``: their workflow may never have
    started (Temporal down when the event was stored, a run closed by the reconciler). Oldest first."""
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == 0,
                WebhookDelivery.created_at < older_than,
            )
            .order_by(WebhookDelivery.created_at)
            .limit(limit)
        )
    )


def delivery_input(settings: Settings, delivery_id: str, redelivery: int = 0) -> DeliveryInput:
    return DeliveryInput(
        delivery_id=delivery_id,
        redelivery=redelivery,
        initial_interval_sec=settings.webhook_retry_initial_sec,
        backoff_coefficient=settings.webhook_retry_backoff,
        max_interval_sec=settings.webhook_retry_max_interval_sec,
        max_attempts=settings.webhook_max_attempts,
        timeout_sec=settings.webhook_timeout_sec,
    )


@dataclass
class ToStart:
    delivery_id: str
    endpoint_id: str
    run_id: str | None
    redelivery: int


async def start_deliveries(temporal: Any, settings: Settings, items: Sequence[ToStart]) -> None:
    """Signal-with-start the delivery workflow of each item, in order: a run's events for one endpoint go to
    one workflow, which delivers them in that order. A repeated signal (a retried activity) is ignored."""
    for it in items:
        await temporal.start_workflow(
            "WebhookDeliveryWorkflow",
            DeliveryQueueInput(),
            id=delivery_workflow_id(it.endpoint_id, it.run_id, it.delivery_id, it.redelivery),
            task_queue=settings.temporal_task_queue,
            start_signal="enqueue",
            start_signal_args=[delivery_input(settings, it.delivery_id, it.redelivery)],
            static_summary=f"webhook deliveries to {it.endpoint_id}"
            + (f" for {it.run_id}" if it.run_id else ""),
        )


def to_start(session: Session, delivery_ids: Sequence[str]) -> list[ToStart]:
    """The given deliveries, in the given order, for :func:`start_deliveries`."""
    if not delivery_ids:
        return []
    rows = {
        d.id: d for d in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)))
    }
    return [
        ToStart(d.id, d.endpoint_id, d.run_id, int(d.redeliveries))
        for d in (rows.get(i) for i in delivery_ids)
        if d is not None
    ]


# ---------------------------------------------------------------- one delivery attempt
@dataclass
class Prepared:
    """What one delivery attempt sends (read in a short transaction, sent outside it)."""

    delivery_id: str
    event_id: str
    event_type: str
    url: str
    secret: str
    body: str
    attempt: int


def prepare_attempt(session: Session, settings: Settings, delivery_id: str) -> Prepared | None:
    """None when there is nothing to send: the delivery or its endpoint is gone or disabled, or it was
    delivered already (a duplicate workflow). The endpoint's secret is decrypted here, for this attempt only
    (SecretUnavailable when the deployment's key cannot open it)."""
    d = session.get(WebhookDelivery, delivery_id)
    if d is None or d.status == "delivered":
        return None
    ep = session.get(WebhookEndpoint, d.endpoint_id)
    if ep is None or not ep.enabled:
        d.status, d.last_error = "failed", "the endpoint was deleted or disabled"
        return None
    secret = secret_box(settings).open(ep.secret)
    return Prepared(d.id, d.event_id, d.event_type, ep.url, secret, d.body, d.attempts + 1)


def record_attempt(
    session: Session, delivery_id: str, status_code: int | None, error: str | None, delivered: bool
) -> None:
    d = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if d is None:
        return
    now = utcnow()
    d.attempts += 1
    d.last_status_code, d.last_error, d.last_attempt_at = status_code, error, now
    if delivered:
        d.status, d.delivered_at = "delivered", now


def mark_failed(session: Session, delivery_id: str, error: str) -> None:
    d = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if d is not None and d.status == "pending":
        d.status = "failed"
        d.last_error = d.last_error or error


def send(prepared: Prepared, settings: Settings, timeout_sec: float) -> tuple[int | None, str | None]:
    """POST the signed body to the checked address; (status code, error). Never follows redirects.
    Raises UrlRefused for an address that may not be used."""
    import httpx

    target = resolve_target(prepared.url, settings.webhook_loopback_allowed)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "orch-webhooks/1",
        "Host": target.host_header,
        SIGNATURE_HEADER: signature_header(prepared.secret, prepared.body),
        "Orch-Event-Id": prepared.event_id,
        "Orch-Event-Type": prepared.event_type,
        "Orch-Delivery-Id": prepared.delivery_id,
        "Orch-Delivery-Attempt": str(prepared.attempt),
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    try:
        with httpx.Client(timeout=timeout_sec, follow_redirects=False, trust_env=False) as http:
            resp = http.post(
                target.url, content=prepared.body.encode(), headers=headers, extensions=extensions
            )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return resp.status_code, None
    return resp.status_code, f"HTTP {resp.status_code}"
