"""The one interface every fleet driver implements (local processes, EC2 Fleet).

Drivers are synchronous and idempotent: ``launch`` for a (run_id, attempt) that already exists
re-attaches to it and never starts the app twice; ``terminate`` on a finished or unknown handle is a no-op.
Activities call them from threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from models.domain import Capacity
from models.fleet import DONE_STATES, AwsAccess, FleetHandle, FleetState, FleetStatus

__all__ = [
    "DONE_STATES",
    "AwsAccess",
    "FleetDriver",
    "FleetHandle",
    "FleetState",
    "FleetStatus",
    "LaunchSpec",
]


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
    capacity: Capacity = Capacity.ON_DEMAND
    count: int = 1
    ami_id: str | None = None
    aws: AwsAccess | None = None


class FleetDriver(Protocol):
    name: str

    def launch(self, spec: LaunchSpec) -> FleetHandle: ...

    def poll(self, handle: FleetHandle) -> FleetStatus: ...

    def terminate(self, handle: FleetHandle) -> FleetStatus: ...

    def logs(self, handle: FleetHandle, tail_bytes: int = 65536) -> str: ...
