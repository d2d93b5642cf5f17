"""Webhook endpoints of the calling client, their delivery log, redelivery and a test event
(``services.webhooks``). The secret is in the creation answer only; it is never returned again."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response, status

from api.deps import ClientDep, ServicesDep, SessionDep
from api.pagination import CursorQ, LimitQ
from models.api import DeliveryOut, Page, WebhookCreate, WebhookCreated, WebhookOut, WebhookPatch
from models.db import WebhookDelivery, WebhookEndpoint
from services import webhooks
from services.errors import Unavailable

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _out(ep: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=ep.id,
        url=ep.url,
        event_types=list(ep.event_types or []),
        description=ep.description,
        enabled=bool(ep.enabled),
        created_at=ep.created_at,
        updated_at=ep.updated_at,
    )


def _delivery(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut.model_validate(d, from_attributes=True)


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook endpoint; the signing secret is shown once, in this answer",
    responses={409: {"description": "the client already has the most endpoints allowed (20)"}},
)
def create_webhook(body: WebhookCreate, client: ClientDep, session: SessionDep, services: ServicesDep):
    ep, secret = webhooks.create_endpoint(
        session, services.settings, client, body.url, body.event_types, body.description
    )
    session.commit()
    return WebhookCreated(**_out(ep).model_dump(), secret=secret)


@router.get("", response_model=Page[WebhookOut], summary="The client's webhook endpoints (no secrets)")
def list_webhooks(
    client: ClientDep, session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None
) -> Page[WebhookOut]:
    rows, nxt = webhooks.list_endpoints(session, client, limit, cursor)
    return Page[WebhookOut](items=[_out(e) for e in rows], next_cursor=nxt)


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: str, client: ClientDep, session: SessionDep) -> WebhookOut:
    return _out(webhooks.get_endpoint(session, client, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Change url, event types, description")
def patch_webhook(
    webhook_id: str, body: WebhookPatch, client: ClientDep, session: SessionDep, services: ServicesDep
) -> WebhookOut:
    ep = webhooks.update_endpoint(
        session, services.settings, client, webhook_id, body.model_dump(exclude_unset=True)
    )
    session.commit()
    return _out(ep)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete the endpoint and its delivery log",
)
def delete_webhook(webhook_id: str, client: ClientDep, session: SessionDep) -> Response:
    webhooks.delete_endpoint(session, client, webhook_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryOut],
    summary="Delivery log, newest first: event id and type, attempts, last status code or error, times",
)
def list_deliveries(
    webhook_id: str, client: ClientDep, session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None
) -> Page[DeliveryOut]:
    rows, nxt = webhooks.list_deliveries(session, client, webhook_id, limit, cursor)
    return Page[DeliveryOut](items=[_delivery(d) for d in rows], next_cursor=nxt)


async def _start(services, d: WebhookDelivery) -> None:
    """Start its delivery workflow; 503 if Temporal fails (the delivery stays pending: the maintenance
    loop's redrive task starts it within minutes, or redeliver it)."""
    item = webhooks.ToStart(d.id, d.endpoint_id, d.run_id, d.redeliveries)
    temporal = await services.temporal_client()
    try:
        await webhooks.start_deliveries(temporal, services.settings, [item])
    except Exception as exc:  # noqa: BLE001 - any RPC failure: nothing was sent
        raise Unavailable("could not start the delivery (Temporal); it stays pending, retry later") from exc


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Deliver the same event again (same event id and body, a fresh signature)",
    responses={503: {"description": "Temporal is unreachable: the delivery stays pending; retry"}},
)
async def redeliver(
    webhook_id: str, delivery_id: str, client: ClientDep, session: SessionDep, services: ServicesDep
) -> DeliveryOut:
    def store() -> WebhookDelivery:
        d = webhooks.prepare_redelivery(session, client, webhook_id, delivery_id)
        session.commit()
        return d

    d = await anyio.to_thread.run_sync(store)
    await _start(services, d)
    return _delivery(d)


@router.post(
    "/{webhook_id}/test",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a webhook.test event to this endpoint (see its delivery log for the outcome)",
    responses={503: {"description": "Temporal is unreachable: the event stays pending; redeliver it"}},
)
async def send_test(
    webhook_id: str, client: ClientDep, session: SessionDep, services: ServicesDep
) -> DeliveryOut:
    def store() -> WebhookDelivery:
        d = webhooks.prepare_test_event(session, client, webhook_id)
        session.commit()
        return d

    d = await anyio.to_thread.run_sync(store)
    await _start(services, d)
    return _delivery(d)
