"""Temporal activities of WebhookDeliveryWorkflow: one signed POST per attempt (``services.webhooks``)."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.db import Database
from core.secretbox import SecretUnavailable
from core.settings import Settings
from models.workflow import ERR_WEBHOOK_REFUSED, DeliverRequest, DeliveryFailed
from services import webhooks

log = logging.getLogger("orch.webhooks")


class WebhookActivities:
    def __init__(self, settings: Settings, db: Database):
        self.settings, self.db = settings, db

    @activity.defn
    async def deliver_webhook(self, req: DeliverRequest) -> str:
        """One attempt; raises (retried with backoff by the workflow's policy) unless the endpoint answered
        2xx. The attempt, its status code or error and the time are recorded in the delivery log."""
        return await asyncio.to_thread(self._deliver, req)

    def _deliver(self, req: DeliverRequest) -> str:
        try:
            with self.db.session() as s:
                prepared = webhooks.prepare_attempt(s, self.settings, req.delivery_id)
        except SecretUnavailable as exc:  # no retry can help until the key is put back
            with self.db.session() as s:
                webhooks.record_attempt(s, req.delivery_id, None, str(exc), False)
            raise ApplicationError(str(exc), type=ERR_WEBHOOK_REFUSED, non_retryable=True) from exc
        if prepared is None:
            return "skipped"
        try:
            code, error = webhooks.send(prepared, self.settings, req.timeout_sec)
        except webhooks.UrlRefused as exc:
            with self.db.session() as s:
                webhooks.record_attempt(s, req.delivery_id, None, f"refused: {exc}", False)
            raise ApplicationError(str(exc), type=ERR_WEBHOOK_REFUSED, non_retryable=True) from exc
        except OSError as exc:  # the name does not resolve (now): retried
            code, error = None, f"{type(exc).__name__}: {exc}"[:500]
        with self.db.session() as s:
            webhooks.record_attempt(s, req.delivery_id, code, error, error is None)
        # the event type and ids only: never the URL's secrets or the body
        log.info(
            "webhook delivery %s (%s %s) attempt %s: %s",
            prepared.delivery_id,
            prepared.event_type,
            prepared.event_id,
            prepared.attempt,
            code if error is None else error,
        )
        if error is not None:
            raise ApplicationError(f"delivery attempt failed: {error}")
        return "delivered"

    @activity.defn
    async def fail_delivery(self, req: DeliveryFailed) -> None:
        """After the last attempt: the delivery is ``failed`` (redeliver it through the API)."""
        await asyncio.to_thread(self._fail, req)

    def _fail(self, req: DeliveryFailed) -> None:
        with self.db.session() as s:
            webhooks.mark_failed(s, req.delivery_id, req.error)

    def all(self) -> list:
        return [self.deliver_webhook, self.fail_delivery]
