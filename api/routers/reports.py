"""The carbon ledger per client: ``GET /v1/reports/carbon`` as JSON, CSV (``Accept: text/csv``) or an SVG
chart (``?format=svg``). See services/reports.py for what is counted and how it adds up exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response

from api.deps import ClientDep, SessionDep
from api.errors import Unprocessable, field_error
from models.recurring import GroupBy, LedgerOut, LedgerRow
from services.reports import carbon_ledger, ledger_csv, ledger_svg

router = APIRouter(prefix="/v1/reports", tags=["reports"])
MAX_SPAN = timedelta(days=3660)


def _time(text: str, name: str) -> datetime:
    """An ISO 8601 time with a UTC offset (a bare number is not a time here)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        msg = "must be an ISO 8601 time with a UTC offset, e.g. 2026-01-01T00:00:00Z"
        raise Unprocessable(f"{name}: {msg}", [field_error(name, msg)])
    return value


@router.get(
    "/carbon",
    response_model=LedgerOut,
    response_model_by_alias=True,
    responses={200: {"content": {"text/csv": {}, "image/svg+xml": {}}}},
    summary="Carbon ledger: runs, energy, emissions at the chosen and baseline starts, the saving",
)
def carbon_report(
    client: ClientDep,
    session: SessionDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description="ISO 8601 time with offset: runs started at or after it (default: to - 365 days)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            max_length=40,
            description="ISO 8601 time with offset: runs started before it (default: now)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    group_by: GroupBy = GroupBy.month,
    format: Annotated[
        Literal["json", "csv", "svg"] | None, Query(description="svg: baseline vs chosen per month")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    end = _time(to, "to") if to is not None else datetime.now(UTC)
    start = _time(from_, "from") if from_ is not None else end - timedelta(days=365)
    if start >= end:
        raise Unprocessable("from must be before to", [field_error("from", "must be before to")])
    if end - start > MAX_SPAN:
        raise Unprocessable("the period is longer than 10 years", [field_error("from", "period too long")])
    fmt = format or ("csv" if accept and "text/csv" in accept else "json")
    if fmt == "svg":
        return Response(ledger_svg(session, client.id, start, end), media_type="image/svg+xml")
    ledger = carbon_ledger(session, client.id, start, end, group_by.value)
    if fmt == "csv":
        return Response(
            ledger_csv(ledger),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="carbon-{group_by.value}.csv"'},
        )
    return LedgerOut(
        client_id=client.id,
        **{"from": start},
        to=end,
        group_by=group_by,
        rows=[LedgerRow(**r.as_dict()) for r in ledger.rows],
        total=LedgerRow(**ledger.total.as_dict()),
        notes=ledger.notes,
    )
