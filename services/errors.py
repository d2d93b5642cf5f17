"""Domain errors of the application layer, free of any web type.

Services raise these; ``api/errors.py`` maps each class once to an RFC 9457 problem+json answer (status
and title), and the API re-exports them under the same names (``api.errors.NotFound`` is
``services.errors.NotFound``), so a router and a service raise the very same exception. Errors that only
exist at the HTTP edge (401, 403, 413, 429) stay ``api.errors.ApiError`` subclasses.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class. ``detail`` is fit for the caller; ``errors`` lists ``{path, message}`` per field;
    ``retry_after`` (seconds) says when a retry may succeed."""

    def __init__(
        self, detail: str, errors: list[dict[str, Any]] | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after


class BadRequest(ServiceError):
    """The request cannot be read (e.g. a cursor that no page ever returned)."""


class NotFound(ServiceError):
    """No such record, or not the caller's (another tenant's ids look exactly like missing ones)."""


class Conflict(ServiceError):
    """The request contradicts the current state (a finished run, a reused Idempotency-Key, a name taken)."""


class Unprocessable(ServiceError):
    """Well-formed but not acceptable (a past date, an infeasible window, an unknown fleet template)."""


class Unavailable(ServiceError):
    """A dependency (Temporal, S3, the database) cannot be reached or is busy; nothing was changed."""


def field_error(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}
