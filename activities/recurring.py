"""Activity of RecurringFiringWorkflow: the job + run of one firing, created idempotently."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from temporalio import activity

from core.db import Database
from core.settings import Settings
from models.recurring_workflow import FiringRequest, FiringResult


class RecurringActivities:
    def __init__(self, settings: Settings, db: Database):
        self.settings, self.db = settings, db

    @activity.defn(name="create_firing_run")
    async def create_firing_run(self, req: FiringRequest) -> FiringResult:
        return await asyncio.to_thread(self._create, req)

    def _create(self, req: FiringRequest) -> FiringResult:
        from services.recurring import create_firing_run

        with self.db.session() as s:
            firing = create_firing_run(s, self.settings, req.recurring_job_id, req.fire_time)
        return FiringResult.model_validate(asdict(firing))

    def all(self) -> list:
        return [self.create_firing_run]
