"""The client dashboard at ``/ui``: static files (HTML, one vanilla JS module, CSS), no server-side state.

The browser keeps the client's API key in sessionStorage and calls the REST API itself with ``X-API-Key``;
this module only serves the files, with a strict Content-Security-Policy (no inline script or style, nothing
from another origin) and cache headers that make a browser revalidate them (ETag) after an upgrade. The
routes are left out of the OpenAPI schema: they are not part of the REST contract.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"

# img-src blob: the charts are SVGs fetched with the key and shown as <img src="blob:...">, where any script
# in them cannot run; connect-src 'self': every data call goes to this API.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # revalidate every time (the files carry an ETag): an upgraded API never runs against a stale script
    "Cache-Control": "no-cache",
}
FILES = {"app.js": "text/javascript", "app.css": "text/css"}


class _UiHeaders:
    """Adds the security and cache headers to every response under ``/ui``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                drop = {k.lower().encode() for k in HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, _send)


def _file(request: Request, path: Path, media_type: str) -> Response:
    """The file, or 304 when the browser's copy (If-None-Match) is current."""
    response = FileResponse(path, media_type=media_type, stat_result=os.stat(path))
    etag = response.headers["etag"]
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"etag": etag})
    return response


def _asset(path: Path, media_type: str):
    async def asset(request: Request) -> Response:
        return _file(request, path, media_type)

    return asset


def mount_ui(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui/`` (``/ui`` redirects there) and its two assets."""

    @app.get(PREFIX, include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=308)

    @app.get(PREFIX + "/", include_in_schema=False)
    async def ui_index(request: Request) -> Response:
        return _file(request, STATIC / "index.html", "text/html; charset=utf-8")

    for name, media_type in FILES.items():
        # a closure, not default arguments: FastAPI would read those from the query string
        route = _asset(STATIC / name, media_type)
        app.add_api_route(f"{PREFIX}/{name}", route, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_middleware(_UiHeaders)
