"""A tiny real HTTP server on 127.0.0.1 that plays a carbon-intensity API for the tests.

Routes are set per test: ``server.route(prefix, handler)`` where ``handler(path, query) -> (status, body)``
(``body``: a JSON-able object, or bytes sent as is). :data:`HANG` as the status makes the request wait until
the test ends (bounded), so the client's timeout fires: no sleeps. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HANG = -1
Handler = Callable[[str, dict[str, str]], tuple[int, object]]


class FakeCarbonApi:
    def __init__(self) -> None:
        self.routes: list[tuple[str, Handler]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        fake = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                u = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(u.query).items()}
                fake.requests.append((u.path, query))
                for prefix, handler in reversed(fake.routes):
                    if u.path.startswith(prefix):
                        status, body = handler(u.path, query)
                        break
                else:
                    status, body = 404, {"error": "not found"}
                if status == HANG:
                    fake.release.wait(10)  # bounded: the client times out long before
                    return
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def route(self, prefix: str, handler: Handler | tuple[int, object]) -> None:
        if not callable(handler):
            fixed = handler
            handler = lambda path, query: fixed  # noqa: E731
        self.routes.append((prefix, handler))

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
