"""The domain's vocabulary, in one place: run statuses, job types, risk modes, capacity, search attributes.

Used by the API schemas, the workflow, activities, the CLI and tests. Plain ``StrEnum``s and string constants,
so the workflow sandbox can import this module and values serialise as their names.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"  # accepted; the workflow is starting
    SCHEDULED = "SCHEDULED"  # plan chosen; durably sleeping until the start
    LAUNCHING = "LAUNCHING"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"  # a cancel is being carried out
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"  # could no longer start in time
    TIMED_OUT = "TIMED_OUT"  # ran past max_runtime_sec and was stopped


TERMINAL_STATUSES: frozenset[str] = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.EXPIRED, RunStatus.TIMED_OUT}
)


class JobType(StrEnum):
    ONE_TIME = "ONE_TIME"
    RESCHEDULABLE = "RESCHEDULABLE"


class RiskMode(StrEnum):
    CONSERVATIVE = "CONSERVATIVE"
    NEUTRAL = "NEUTRAL"
    AGGRESSIVE = "AGGRESSIVE"


class Capacity(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


# Temporal search attributes (registered by the dev stack; set by the API at start and by the workflow).
SA_CLIENT_ID = "OrchClientId"
SA_JOB_TEMPLATE_ID = "OrchJobTemplateId"
SA_RUN_STATUS = "OrchRunStatus"
SA_PLANNED_START = "OrchPlannedStart"
SEARCH_ATTRIBUTES: dict[str, str] = {
    SA_CLIENT_ID: "Keyword",
    SA_JOB_TEMPLATE_ID: "Keyword",
    SA_RUN_STATUS: "Keyword",
    SA_PLANNED_START: "Datetime",
}
