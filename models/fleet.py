"""The one fleet-handle type: what a driver returns for a launched attempt and what it reports about it.

Plain dataclasses: drivers build them positionally, activities and the workflow pass them as Temporal
payloads (the pydantic data converter encodes a dataclass as its JSON object; the JSON shapes are those of
the former ``FleetRef``/``FleetResult`` models, so recorded histories still decode), and the run row stores a
handle as JSON. ``fleets.base`` re-exports them for the drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FleetState(StrEnum):
    PENDING = "PENDING"  # launched, app not started yet (instance booting)
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"  # exit code 0
    FAILED = "FAILED"  # non-zero exit code or bootstrap failure
    INTERRUPTED = "INTERRUPTED"  # spot interruption: relaunch may help
    TERMINATED = "TERMINATED"  # stopped by us (cancel / timeout) or vanished


DONE_STATES: frozenset[FleetState] = frozenset(
    {FleetState.SUCCEEDED, FleetState.FAILED, FleetState.INTERRUPTED, FleetState.TERMINATED}
)


@dataclass
class AwsAccess:
    """What is needed to act in the client's account (ec2 driver only)."""

    role_arn: str
    external_id: str | None
    session_name: str
    region: str
    subnet_ids: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    instance_profile_arn: str | None = None


@dataclass
class FleetHandle:
    """Serializable reference to a launched attempt (stored in the DB and in workflow history)."""

    driver: str
    run_id: str
    attempt: int
    ref: dict[str, Any] = field(default_factory=dict)  # driver-specific: run dir, fleet id, instance ids...

    def as_json(self) -> dict[str, Any]:
        """The handle as the run row stores it."""
        return {"driver": self.driver, "run_id": self.run_id, "attempt": self.attempt, "ref": dict(self.ref)}


@dataclass
class FleetStatus:
    state: FleetState
    exit_code: int | None = None
    reason: str | None = None
    instance_ids: list[str] = field(default_factory=list)
