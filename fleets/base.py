"""The one interface every fleet driver implements (local processes, EC2 Fleet).

Drivers are synchronous and idempotent: ``launch`` for a (run_id, attempt) that already exists
re-attaches to it and never starts the app twice; ``terminate`` on a finished or unknown handle is a no-op.
Activities call them from threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class FleetState(StrEnum):
    PENDING = "PENDING"        # launched, app not started yet (instance booting)
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"    # exit code 0
    FAILED = "FAILED"          # non-zero exit code or bootstrap failure
    INTERRUPTED = "INTERRUPTED"  # spot interruption: relaunch may help
    TERMINATED = "TERMINATED"  # stopped by us (cancel / timeout) or vanished


@dataclass
class AwsAccess:
    """What is needed to act in the client's account (ec2 driver only)."""

    role_arn: str
    external_id: str
    session_name: str
    region: str
    subnet_ids: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    instance_profile_arn: str | None = None


@dataclass
class LaunchSpec:
    run_id: str
    attempt: int
    client_id: str
    artifact_bucket: str
    artifact_key: str
    artifact_sha256: str
    args: dict[str, Any]
    data_uri: str | None
    instance_type: str = "m5.large"
    capacity: str = "on-demand"  # "on-demand" | "spot"
    count: int = 1
    ami_id: str | None = None
    aws: AwsAccess | None = None


@dataclass
class FleetHandle:
    """Serializable reference to a launched attempt (stored in the DB and in workflow history)."""

    driver: str
    run_id: str
    attempt: int
    ref: dict[str, Any] = field(default_factory=dict)  # driver-specific: run dir, fleet id, instance ids...


@dataclass
class FleetStatus:
    state: FleetState
    exit_code: int | None = None
    reason: str | None = None
    instance_ids: list[str] = field(default_factory=list)


class FleetDriver(Protocol):
    name: str

    def launch(self, spec: LaunchSpec) -> FleetHandle: ...

    def poll(self, handle: FleetHandle) -> FleetStatus: ...

    def terminate(self, handle: FleetHandle) -> FleetStatus: ...

    def logs(self, handle: FleetHandle, tail_bytes: int = 65536) -> str: ...
