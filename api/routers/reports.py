"""The carbon ledger per client: ``GET /v1/reports/carbon`` as JSON, CSV (``Accept: text/csv`` or
``?format=csv``) or an SVG chart (``?format=svg``), and ``GET /v1/reports/carbon/runs`` (or
``?per_run=true``): every run it counts, with the methodology per run. See services/reports.py for what is
counted and how it adds up exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from api.charts import chart_gate
from api.deps import ClientDep, ServicesDep, SessionDep
from api.errors import Unprocessable, field_error
from models.recurring import GroupBy, LedgerOut, LedgerRow, LedgerRunOut, LedgerRunsOut
from services.reports import (
    SCOPE,
    SIGNAL,
    Ledger,
    carbon_ledger,
    ledger_csv,
    ledger_svg,
    methodology,
    run_dict,
    runs_csv,
)

router = APIRouter(prefix="/v1/reports", tags=["reports"])
MAX_SPAN = timedelta(days=3660)
FromQ = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=40,
        description="ISO 8601 time with offset: runs started at or after it (default: to - 365 days)",
        json_schema_extra={"format": "date-time"},
    ),
]
ToQ = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO 8601 time with offset: runs started before it (default: now)",
        json_schema_extra={"format": "date-time"},
    ),
]


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


def _period(from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    end = _time(to, "to") if to is not None else datetime.now(UTC)
    start = _time(from_, "from") if from_ is not None else end - timedelta(days=365)
    if start >= end:
        raise Unprocessable("from must be before to", [field_error("from", "must be before to")])
    if end - start > MAX_SPAN:
        raise Unprocessable("the period is longer than 10 years", [field_error("from", "period too long")])
    return start, end


def _csv(text: str, name: str) -> Response:
    return Response(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'}
    )


def _runs_out(client_id: str, ledger: Ledger) -> LedgerRunsOut:
    assert ledger.start is not None and ledger.end is not None
    return LedgerRunsOut(
        client_id=client_id,
        **{"from": ledger.start},
        to=ledger.end,
        runs=[LedgerRunOut(**run_dict(ledger, f)) for f in ledger.runs],
        methodology=methodology(),
    )


@router.get(
    "/carbon",
    # with per_run=true the JSON is GET /v1/reports/carbon/runs's
    response_model=LedgerOut | LedgerRunsOut,
    response_model_by_alias=True,
    responses={
        200: {"content": {"text/csv": {}, "image/svg+xml": {}}},
        429: {"description": "format=svg: this client has enough charts rendering; retry after Retry-After"},
        503: {"description": "format=svg: the API has enough charts rendering; retry after Retry-After"},
    },
    summary="Carbon ledger: runs, energy, emissions at the chosen and baseline starts, the saving",
)
def carbon_report(
    request: Request,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    from_: FromQ = None,
    to: ToQ = None,
    group_by: GroupBy = GroupBy.month,
    format: Annotated[
        Literal["json", "csv", "svg"] | None,
        Query(description="csv: the rows (or, with per_run, the runs); svg: baseline vs chosen per row"),
    ] = None,
    per_run: Annotated[
        bool, Query(description="Every run counted, with its methodology (as GET /v1/reports/carbon/runs)")
    ] = False,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    start, end = _period(from_, to)
    fmt = format or ("csv" if accept and "text/csv" in accept else "json")
    settings = services.settings
    if fmt == "svg":
        with chart_gate(request).slot(client.id):
            ledger = carbon_ledger(
                session,
                client.id,
                start,
                end,
                group_by.value,
                settings.carbon_provider,
                settings.carbon_actuals_days,
            )
            return Response(ledger_svg(ledger), media_type="image/svg+xml")
    ledger = carbon_ledger(
        session, client.id, start, end, group_by.value, settings.carbon_provider, settings.carbon_actuals_days
    )
    if per_run:  # the same answer as GET /v1/reports/carbon/runs
        if fmt == "csv":
            return _csv(runs_csv(ledger), "carbon-runs")
        return _runs_out(client.id, ledger)
    if fmt == "csv":
        return _csv(ledger_csv(ledger), f"carbon-{group_by.value}")

    def row(t) -> LedgerRow:
        return LedgerRow(**t.as_dict(), display=t.display(ledger.unit))

    return LedgerOut(
        client_id=client.id,
        **{"from": start},
        to=end,
        group_by=group_by,
        rows=[row(r) for r in ledger.rows],
        total=row(ledger.total),
        notes=ledger.notes,
        period=ledger.period,
        unit=ledger.unit,
        signal=SIGNAL,
        scope=SCOPE,
        methodology=methodology(),
        actuals_reason=ledger.actuals_reason,
    )


@router.get(
    "/carbon/runs",
    response_model=LedgerRunsOut,
    response_model_by_alias=True,
    responses={200: {"content": {"text/csv": {}}}},
    summary="Every run the carbon ledger counts, with its figures and the methodology they rest on",
)
def carbon_report_runs(
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    from_: FromQ = None,
    to: ToQ = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv: one line per run")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
):
    start, end = _period(from_, to)
    fmt = format or ("csv" if accept and "text/csv" in accept else "json")
    s = services.settings
    ledger = carbon_ledger(session, client.id, start, end, "month", s.carbon_provider, s.carbon_actuals_days)
    if fmt == "csv":
        return _csv(runs_csv(ledger), "carbon-runs")
    return _runs_out(client.id, ledger)
