"""Errors and their one mapping to RFC 9457 ``application/problem+json``.

Two families, one answer shape: ``services.errors.ServiceError`` (raised by the application layer and by
routers alike: 400, 404, 409, 422, 503; mapped by ``SERVICE_ERRORS``) and ``ApiError`` for what only exists
at the HTTP edge (401, 403, 413, 429: the class carries its status and headers)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceError,
    Unavailable,
    Unprocessable,
    field_error,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "Unauthorized",
    "Unprocessable",
    "field_error",
    "install",
    "problem",
]

log = logging.getLogger("orch.api")
PROBLEM = "application/problem+json"


class ApiError(Exception):
    status = 400
    title = "Bad request"
    type_ = "about:blank"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers


class Unauthorized(ApiError):
    status, title = 401, "Unauthorized"


class Forbidden(ApiError):
    status, title = 403, "Forbidden"


class PayloadTooLarge(ApiError):
    status, title = 413, "Payload too large"


# The application layer's errors, under the names the routers use (the same classes, not copies).
ServiceUnavailable = Unavailable
SERVICE_ERRORS: dict[type[ServiceError], tuple[int, str]] = {
    BadRequest: (400, "Bad request"),
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflict"),
    Unprocessable: (422, "Unprocessable content"),
    Unavailable: (503, "Service unavailable"),
}


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list | None = None,
    headers: dict | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _json_body_content_type_problem(request: Request, exc: RequestValidationError) -> str | None:
    """A JSON endpoint got a body declared as something else (curl -d sends form encoding): FastAPI then
    validates the raw bytes and says "Input should be a valid dictionary", which does not say what to fix."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    if not any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
        return None
    got = f"got '{media}'" if media else "no Content-Type header was sent"
    return f"the request body must be JSON: send the header 'Content-Type: application/json' ({got})"


def _loc_to_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return "/".join(parts) if parts else "body"


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; validation errors list each field in `errors`.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_ERROR_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    503: "Service unavailable",
}
# Errors an operation answers beyond the generic ones that document_problems() derives from its shape.
DOMAIN_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/artifacts/upload"): (409,),
    ("post", "/v1/job-templates"): (409,),
    ("post", "/v1/jobs"): (409, 503),
    ("put", "/v1/clients/{client_id}/aws"): (409,),
    ("post", "/v1/runs/{run_id}/cancel"): (409, 503),
    ("post", "/v1/runs/{run_id}/rerun"): (409, 503),
    ("post", "/v1/schedules/preview"): (409,),
    ("post", "/v1/recurring-jobs"): (409,),
    ("get", "/v1/runs/{run_id}/logs"): (503,),
}


def _names_a_record(doc: dict, op: dict) -> bool:
    """A path parameter, a required query parameter or a required body field that is an id: may be a 404."""
    params = op.get("parameters", [])
    if any(
        p["in"] == "path" or (p["in"] == "query" and p.get("required") and p["name"].endswith("_id"))
        for p in params
    ):
        return True
    for media in (op.get("requestBody") or {}).get("content", {}).values():
        schema = media.get("schema", {})
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        if any(name.endswith("_id") for name in schema.get("required", [])):
            return True
    return False


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the API really answers on errors: every 4xx/5xx is
    ``application/problem+json`` (not FastAPI's default ``HTTPValidationError``), and each ``/v1``
    operation lists the errors it can give: 401/403 (API key), 422 (validation), 404 (it names a record),
    400 (unparseable body), 422 also for a cursor no page returned, 413 (body size), 415 (JSON body sent as
    another media type), plus DOMAIN_ERRORS (409, 503)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = generate()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        ref = {"$ref": "#/components/schemas/Problem"}
        for path, item in doc.get("paths", {}).items():
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                statuses = {int(s) for s in op["responses"] if s.isdigit() and int(s) >= 400}
                if path.startswith("/v1"):
                    params, body = op.get("parameters", []), op.get("requestBody")
                    statuses |= {401, 403}
                    if params or body:
                        statuses.add(422)
                    if _names_a_record(doc, op):
                        statuses.add(404)
                    if body:  # 400: a body that is not UTF-8 JSON or not parseable multipart
                        statuses |= {400, 413}
                        if "application/json" in body.get("content", {}):
                            statuses.add(415)  # a JSON body sent with another Content-Type
                    statuses |= set(DOMAIN_ERRORS.get((method, path), ()))
                for status in sorted(statuses):
                    response = op["responses"].setdefault(str(status), {})
                    if not response.get("description") or status == 422:
                        response["description"] = _ERROR_TITLES.get(status, "Error")
                    response["content"] = {PROBLEM: {"schema": ref}}
        text = str(doc["paths"])
        for name in ("HTTPValidationError", "ValidationError"):
            if f"/{name}'" not in text and f'/{name}"' not in text:
                schemas.pop(name, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    document_problems(app)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers, request.url.path)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        status, title = next(
            (SERVICE_ERRORS[c] for c in type(exc).__mro__ if c in SERVICE_ERRORS), (400, "Bad request")
        )
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return problem(status, title, exc.detail, exc.errors, headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        wrong_type = _json_body_content_type_problem(request, exc)
        if wrong_type:
            return problem(415, "Unsupported media type", wrong_type, instance=request.url.path)
        errors = []
        for e in exc.errors():
            msg = e.get("msg", "invalid")
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            errors.append(field_error(_loc_to_path(tuple(e.get("loc", ()))), msg))
        detail = "; ".join(f"{x['path']}: {x['message']}" for x in errors[:5]) or "invalid request"
        return problem(422, "Validation failed", detail, errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return problem(
            exc.status_code,
            _ERROR_TITLES.get(exc.status_code, "Error"),
            detail,
            headers=getattr(exc, "headers", None),
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "Internal error",
            "an unexpected error occurred; it has been logged",
            instance=request.url.path,
        )
