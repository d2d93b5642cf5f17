"""Several API and worker processes of the product against ONE database, ONE Temporal server and ONE S3 store:
production's horizontal layout, on 127.0.0.1. Each process gets the same settings except its own API port;
the workers share one data dir (the ``local`` fleet driver keeps each attempt's directory there, so a worker
that takes over a run must see the directory another one launched). Used by tests/e2e/test_horizontal.py."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx

from cli.devstack import Server, find_binary, free_port, port_open, spawn, wait_for
from core.settings import Settings
from tests.support.e2e_stack import settings_env

__all__ = ["MultiStack", "find_binary"]


class MultiStack:
    """N uvicorn APIs and M ``cli worker`` processes sharing ``settings`` (DB, Temporal, S3, data dir)."""

    def __init__(self, settings: Settings, log_dir: Path):
        self.settings, self.log_dir = settings, log_dir
        self.env = settings_env(settings)
        self.apis: list[Server] = []
        self.workers: list[Server] = []

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Server:
        return spawn(name, argv, self.log_dir / f"{name}-{time.monotonic_ns()}.log", env)

    def start_api(self) -> Server:
        port = free_port()
        api = self._spawn(
            f"api{len(self.apis)}",
            [sys.executable, "-m", "cli", "api"],
            self.env | {"ORCH_API_PORT": str(port)},
        )
        api.ports = {"http": port}
        self.apis.append(api)
        return api

    def start_worker(self) -> Server:
        w = self._spawn(f"worker{len(self.workers)}", [sys.executable, "-m", "cli", "worker"], self.env)
        self.workers.append(w)
        return w

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every API answers /healthz and every worker has logged its start (processes start in parallel)."""

        def ready() -> bool:
            for s in self.apis + self.workers:
                assert s.alive(), f"{s.name} exited at start:\n{s.log_tail()}"
            if not all(port_open(a.ports["http"]) for a in self.apis):
                return False
            if not all(httpx.get(f"{self.url(a)}/healthz", timeout=5).status_code == 200 for a in self.apis):
                return False
            return all("worker started" in w.log_path.read_text(errors="replace") for w in self.workers)

        try:
            wait_for(ready, timeout, "the APIs and workers", interval=0.2)
        except TimeoutError:
            tails = "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in self.apis + self.workers)
            raise AssertionError(f"stack not ready in {timeout:.0f}s:\n{tails}") from None

    @staticmethod
    def url(api: Server) -> str:
        return f"http://127.0.0.1:{api.ports['http']}"

    @staticmethod
    def sigkill(server: Server) -> None:
        """SIGKILL the process group (the process and anything it started in its group): no shutdown at all.
        Apps launched by the local driver live in sessions of their own and survive, as on a real host."""
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)

    def stop(self) -> None:
        for s in self.apis + self.workers:
            s.stop()
