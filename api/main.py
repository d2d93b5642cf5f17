"""FastAPI app factory: a thin layer that translates the REST contract to the DB, S3 and Temporal."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from api.deps import Services, install_db_errors
from api.errors import problem
from api.metrics import ApiMetrics, MetricsMiddleware
from api.routers import artifacts, clients, fleet_templates, job_templates, jobs, runs, scheduling
from core.db import Database
from core.s3 import ensure_bucket, s3_client
from core.settings import Settings, get_settings
from models.db import Run
from models.domain import RunStatus

log = logging.getLogger("orch.api")

DESCRIPTION = """
Runs clients' batch jobs on their own fleets at the time that best trades grid carbon intensity,
deadline risk and slack. Every `/v1` endpoint needs an `X-API-Key` header (a client key, or the admin
key to manage clients). Errors are RFC 9457 `application/problem+json`.
"""


class UploadLimit:
    """413 for every request body over its limit, declared (Content-Length) or streamed (chunked), counted
    while it streams so it never reaches disk or memory whole. The limit is per path: the artifact upload
    takes ``max_artifact_bytes`` plus 1 MiB of multipart overhead, every other route
    ``max_json_body_bytes``. Whatever the app makes of the aborted body (FastAPI turns a failed body read
    into a 400), the client gets the 413: the app's own answer is dropped once the limit was hit."""

    UPLOAD_PATH = "/v1/artifacts/upload"

    def __init__(self, app: ASGIApp, limit: int, json_limit: int = 1024 * 1024):
        self.app, self.limit, self.json_limit = app, limit, json_limit

    def limit_for(self, path: str) -> int:
        return self.limit + 1024 * 1024 if path == self.UPLOAD_PATH else self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])

        def too_large():
            return problem(413, "Payload too large", f"request body larger than {limit} bytes")

        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large()(scope, receive, send)
            return
        seen = 0
        exceeded = False
        started = False

        async def _receive():
            nonlocal seen, exceeded
            if exceeded:
                raise _TooLarge()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def _send(message):
            nonlocal started
            if exceeded:  # the app answered a body it could not read: the client gets the 413 instead
                return
            started = True
            await send(message)

        try:
            await self.app(scope, _receive, _send)
        except _TooLarge:
            exceeded = True
        if exceeded and not started:
            await too_large()(scope, receive, send)


class _TooLarge(Exception):
    pass


class CatchUnexpected:
    """The outermost handler of errors no exception handler took: a problem+json 500 (logged), and the
    exception stops here. Starlette's ServerErrorMiddleware re-raises it after answering, and uvicorn then
    closes the connection, so a keep-alive client's next request would fail too (issue 21)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def _send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception:  # noqa: BLE001 - the last line of defence; logged with its traceback
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # the answer is half sent: only closing the connection can tell the client
            await problem(
                500,
                "Internal error",
                "an unexpected error occurred; it has been logged",
                instance=scope.get("path"),
            )(scope, receive, send)


class RefuseNul:
    """NUL (U+0000) is never valid in a path or a query string, and PostgreSQL cannot compare or store it:
    refuse it up front (422) instead of failing in the database."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            where = "path" if "\x00" in scope["path"] else None
            if b"%00" in query or b"\x00" in query:
                where = "query"
            if where:
                message = "NUL characters (U+0000) are not allowed"
                await problem(
                    422,
                    "Validation failed",
                    f"{where}: {message}",
                    errors=[{"path": where, "message": message}],
                )(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = services or Services(settings=settings, db=Database(settings), s3=s3_client(settings))
        svc.metrics = metrics
        app.state.services = svc
        try:
            await asyncio.to_thread(ensure_bucket, svc.s3, settings.s3_bucket)
        except Exception as exc:  # noqa: BLE001 - /readyz reports it; the API still serves what it can
            log.warning("S3 bucket check failed: %s", type(exc).__name__)
        yield
        if services is None:
            svc.db.dispose()

    # FastAPIOffline: /docs and /redoc serve Swagger UI and ReDoc from the package, not a CDN, so they work
    # in private networks.
    app = FastAPIOffline(
        title="Carbon-aware batch orchestrator", version="0.1.0", description=DESCRIPTION, lifespan=lifespan
    )
    app.state.metrics = metrics
    errors.install(app)
    install_db_errors(app)
    for r in (clients, artifacts, fleet_templates, job_templates, jobs, runs, scheduling):
        app.include_router(r.router)
    from api.routers import recurring, reports  # issue 13: recurring jobs and the carbon ledger

    app.include_router(recurring.router)  # /v1/recurring-jobs
    app.include_router(reports.router)  # /v1/reports/carbon
    from api.routers import webhooks  # issue 19: webhook endpoints and their deliveries

    app.include_router(webhooks.router)  # /v1/webhooks
    from api.routers import carbon  # issue 18: the forecasts' measured skill

    app.include_router(carbon.router)  # /v1/carbon/skill
    from api.ui import mount_ui  # issue 20: the client dashboard at /ui (static files calling this API)

    mount_ui(app)
    app.add_middleware(RefuseNul)
    app.add_middleware(
        UploadLimit, limit=settings.max_artifact_bytes, json_limit=settings.max_json_body_bytes
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(CatchUnexpected)  # outermost: nothing unexpected reaches uvicorn

    @app.get("/healthz", tags=["ops"], summary="Process is up")
    async def healthz() -> dict:  # on the event loop: answers even when every threadpool worker is busy
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="DB, Temporal and S3 reachable",
        responses={503: {"description": "a dependency is down"}},
    )
    async def readyz(request: Request):
        svc: Services = request.app.state.services
        checks: dict[str, str] = {}

        def db_ok():
            with svc.db.session() as s:
                s.execute(text("SELECT 1"))

        for name, fn in (("db", db_ok), ("s3", lambda: svc.s3.head_bucket(Bucket=settings.s3_bucket))):
            try:
                await asyncio.wait_for(asyncio.to_thread(fn), 5)
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001
                checks[name] = f"error: {type(exc).__name__}"
        try:
            client = await asyncio.wait_for(svc.temporal_client(), 5)
            await asyncio.wait_for(client.service_client.check_health(), 5)
            checks["temporal"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["temporal"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        if not ok:
            return problem(
                503,
                "Not ready",
                ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
                errors=[{"path": k, "message": v} for k, v in checks.items() if v != "ok"],
            )
        return {"status": "ready", "checks": checks}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse, summary="Prometheus metrics")
    def prometheus(request: Request):
        svc: Services = request.app.state.services
        with svc.db.session() as s:
            counts = dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
            saved = s.scalar(
                select(func.sum(Run.carbon_earliest_g - Run.carbon_chosen_g)).where(
                    Run.status == RunStatus.SUCCEEDED, Run.carbon_earliest_g.is_not(None)
                )
            )
        for status in RunStatus:
            metrics.runs.labels(status.value).set(counts.get(status, 0))
        metrics.carbon_saved.set(float(saved or 0.0))
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
