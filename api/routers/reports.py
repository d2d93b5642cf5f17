"""The carbon ledger per client: ``GET /v1/reports/carbon`` as JSON, CSV (``Accept: text/csv``) or an SVG
chart (``?format=svg``). See services/reports.py for what is counted and how it adds up exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import AwareDatetime

from api.deps import ClientDep, SessionDep
from api.errors import Unprocessable, field_error
from models.recurring import GroupBy, LedgerOut, LedgerRow
from services.reports import carbon_ledger, ledger_csv, ledger_svg

router = APIRouter(prefix="/v1/reports", tags=["reports"])
MAX_SPAN = timedelta(days=3660)


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
        AwareDatetime | None,
        Query(alias="from", description="Runs started at or after (default: to - 365 d)"),
    ] = None,
    to: Annotated[AwareDatetime | None, Query(description="Runs started before (default: now)")] = None,
    group_by: GroupBy = GroupBy.month,
    format: Annotated[
        Literal["json", "csv", "svg"] | None, Query(description="svg: baseline vs chosen per month")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    end = to or datetime.now(UTC)
    start = from_ or end - timedelta(days=365)
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
