"""Bounded chart rendering: SVG charts (the preview's and the carbon report's) cost CPU seconds and hold a
threadpool thread each, so one client asking for many at once must not starve the others.

At most ``chart_renders_per_client`` charts per client and ``chart_renders_total`` in all render at once in
one API process; one more is refused at once, never queued: 429 (this client has enough in flight) or 503
(the process has), both with ``Retry-After``. The slot is taken before the work (planning included) and
the work runs in the threadpool (the routes are plain ``def``), never on the event loop."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

from fastapi import Request

from api.errors import ApiError, ServiceUnavailable

_MAKE = threading.Lock()
RETRY_AFTER_SEC = 2  # a chart renders in well under a second once bounded (scheduling/chart.py)


class TooManyCharts(ApiError):
    status, title = 429, "Too many requests"


class ChartGate:
    """Counts charts in flight per client and in all, under a lock (they run in threadpool threads)."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self._lock = threading.Lock()
        self._by_client: Counter[str] = Counter()
        self.active = 0

    @contextlib.contextmanager
    def slot(self, client_id: str) -> Iterator[None]:
        with self._lock:
            if self._by_client[client_id] >= self.per_client:
                raise TooManyCharts(
                    f"{self._by_client[client_id]} charts of this client are rendering, the limit is "
                    f"{self.per_client}; retry in {RETRY_AFTER_SEC} s",
                    headers={"Retry-After": str(RETRY_AFTER_SEC)},
                )
            if self.active >= self.total:
                raise ServiceUnavailable(
                    f"{self.active} charts are rendering, the limit is {self.total}; "
                    f"retry in {RETRY_AFTER_SEC} s",
                    retry_after=RETRY_AFTER_SEC,
                )
            self._by_client[client_id] += 1
            self.active += 1
        try:
            yield
        finally:
            with self._lock:
                self._by_client[client_id] -= 1
                if self._by_client[client_id] <= 0:
                    del self._by_client[client_id]
                self.active -= 1


def chart_gate(request: Request) -> ChartGate:
    """The app's gate, made on first use from its settings."""
    state = request.app.state
    with _MAKE:
        gate = getattr(state, "chart_gate", None)
        if gate is None:
            settings = state.services.settings
            gate = ChartGate(settings.chart_renders_per_client, settings.chart_renders_total)
            state.chart_gate = gate
    return gate
