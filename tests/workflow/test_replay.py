"""Replay every recorded history in tests/histories/ against the current workflow code (JobRunWorkflow, and
MaintenanceWorkflow for ``maintenance_*``; an open history replays up to its last event).

A change that would break running workflows (non-determinism) fails here. Histories are recorded from the
end-to-end runs with ``RECORD_HISTORIES=1 make test`` (see README, "Changing the workflow").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.job_run import JobRunWorkflow
from workflows.maintenance import MaintenanceWorkflow
from workflows.recurring import RecurringFiringWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def test_histories_are_kept():
    assert len(HISTORIES) >= 4, "record histories with RECORD_HISTORIES=1 (see README)"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path):
    history = WorkflowHistory.from_json(f"run-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=[JobRunWorkflow, MaintenanceWorkflow, RecurringFiringWorkflow, WebhookDeliveryWorkflow],
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(history)


async def test_run_input_of_a_history_recorded_before_the_trim_decodes():
    """Older histories' RunInput carries fields the workflow no longer reads: ignored, not refused."""
    from models.workflow import RunInput

    path = Path(__file__).resolve().parents[1] / "histories" / "one_time_succeeded.json"
    history = WorkflowHistory.from_json("run-one_time_succeeded", path.read_text())
    payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert b'"client_id"' in payloads[0].data  # recorded with the fields since removed
    [inp] = await pydantic_data_converter.decode([payloads[0]], [RunInput])
    assert inp.run_id.startswith("run_") and inp.job_type == "ONE_TIME"
    assert "client_id" not in inp.model_dump()
