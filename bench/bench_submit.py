"""Submission throughput: POST /v1/jobs through the API vs bare ``client.start_workflow`` of the same
JobRunWorkflow (same input, same search attributes) on the same Temporal server, in one run.

Starts its own stack on 127.0.0.1 (free ports): the Temporal dev server, SeaweedFS, a fresh SQLite file (or a
fresh schema on the machine's PostgreSQL with ``--db postgresql``) and the API (uvicorn, one process, a
subprocess). No worker polls the task queue, so the workflows start and wait: the figures are the submission
path only. Both sides run ``--concurrency`` requests in flight from this one process (uvloop); the API and
bare batches alternate for ``--rounds`` rounds (so a change in the machine's load hits both) after a warm-up
of each. The API side's HTTP client is a minimal keep-alive HTTP/1.1 client (``--http-client raw``, the
default) or httpx (``--http-client httpx``, what earlier figures used: it costs ~2 ms more CPU per request on
the cores the API and Temporal share). Every request sends the same body (the same window).

    .venv/bin/python bench/bench_submit.py [--jobs 300] [--concurrency 20] [--rounds 2] \
        [--db sqlite|postgresql] [--type RESCHEDULABLE|ONE_TIME] [--http-client raw|httpx]

Prints a JSON summary on stdout: per side submissions/s, p50/p99 latency; the ratio API/bare; `/healthz`
latency during the API rounds; CPU ms per submission of the API, the Temporal dev server and this process
on each side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load_jobs import Bench, cpu_seconds, log, percentile  # noqa: E402

from cli.devstack import port_open, wait_for  # noqa: E402


class KeepAliveHttp:
    """The bench's HTTP client for POST /v1/jobs: HTTP/1.1 over keep-alive connections (one per request in
    flight), a request written in one piece, the answer read by its Content-Length. httpx costs about 2.6 ms
    of CPU per POST on the host that also runs the API and Temporal (more than the Temporal SDK's whole
    start_workflow on the bare side), which would be charged to the API side; this costs a fraction.
    ``--http-client httpx`` keeps the old client for comparison."""

    MAX_IDLE_SEC = 2.0  # a connection idle longer is not reused (uvicorn closes it after 5 s)

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.all: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        now = time.monotonic()
        while self.idle and now - self.idle[-1][2] > self.MAX_IDLE_SEC:  # the server may have closed it
            self.idle.pop()[1].close()
        if self.idle:
            reader, writer, _ = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.all.append(writer)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        fields = dict(
            line.split(":", 1) for line in head.decode("latin-1").lower().split("\r\n")[1:] if ":" in line
        )
        text = await reader.readexactly(int(fields["content-length"]))
        if fields.get("connection", "").strip() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return status, text

    async def aclose(self) -> None:
        for w in self.all:
            w.close()


class SubmitBench(Bench):
    def start(self) -> None:  # the load bench's stack without a worker
        env = self.start_servers("bench-submit-no-worker", "orch-bench")
        self.api = self._spawn("api", env)
        wait_for(lambda: port_open(self.settings.api_port) or not self.api.alive(), 60, "the API")
        if not self.api.alive():
            raise RuntimeError(f"api exited:\n{self.api.log_tail()}")
        self.base = f"http://127.0.0.1:{self.settings.api_port}"
        wait_for(lambda: httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200, 60, "/readyz")
        log(f"stack up: API {self.base}, Temporal {self.settings.temporal_address}, DB {self.args.db}")

    def body(self, template_id: str) -> dict:
        now = datetime.now(UTC)
        if self.args.type == "ONE_TIME":
            return {
                "job_template_id": template_id,
                "type": "ONE_TIME",
                "intended_time": (now + timedelta(hours=6)).isoformat(),
                "risk_mode": "NEUTRAL",
            }
        return {
            "job_template_id": template_id,
            "type": "RESCHEDULABLE",
            "risk_mode": "NEUTRAL",
            "earliest_start": (now + timedelta(days=1)).isoformat(),
            "latest_finish": (now + timedelta(days=2)).isoformat(),
        }

    async def api_batch(self, client, headers, template_id, n) -> tuple[list[float], int]:
        """``client``: a :class:`KeepAliveHttp` or an ``httpx.AsyncClient`` (``--http-client``)."""
        body = self.body(template_id)
        raw = json.dumps(body).encode()
        sem = asyncio.Semaphore(self.args.concurrency)
        lat: list[float] = []
        errors = 0

        async def one() -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                if isinstance(client, KeepAliveHttp):
                    status, text = await client.post("/v1/jobs", raw, headers)
                else:
                    r = await client.post("/v1/jobs", json=body, headers=headers)
                    status, text = r.status_code, r.content
                lat.append(time.perf_counter() - t0)
                if status != 201 or "run_id" not in json.loads(text):
                    errors += 1
                    if errors <= 3:
                        log(f"API answered {status}: {text[:200]!r}")

        await asyncio.gather(*(one() for _ in range(n)))
        return lat, errors

    async def bare_batch(self, temporal, template, n) -> tuple[list[float], int]:
        from models.db import Job, Run, new_id
        from models.workflow import workflow_id_for
        from services.jobs import start_run_workflow

        body = self.body(template.id)
        sem = asyncio.Semaphore(self.args.concurrency)
        lat: list[float] = []

        def parse(key):
            return datetime.fromisoformat(body[key]) if key in body else None

        async def one() -> None:
            job = Job(
                id=new_id("job"),
                client_id=template.client_id,
                job_template_id=template.id,
                type=body["type"],
                intended_time=parse("intended_time"),
                earliest_start=parse("earliest_start"),
                latest_finish=parse("latest_finish"),
                risk_mode=body["risk_mode"],
            )
            rid = new_id("run")
            run = Run(
                id=rid,
                job_id=job.id,
                client_id=template.client_id,
                job_template_id=template.id,
                fleet_template_id=template.fleet_template_id,
                workflow_id=workflow_id_for(rid),
                status="PENDING",
            )
            async with sem:
                t0 = time.perf_counter()
                await start_run_workflow(temporal, self.settings, run, job, template)
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(n)))
        return lat, 0

    def cpu_now(self) -> dict[str, float]:
        return {
            "api": cpu_seconds(self.api.proc.pid),
            "temporal": cpu_seconds(self.servers[1].proc.pid),
            "bench": time.process_time(),
        }

    async def compare(self, headers, template_id) -> dict:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from core.db import normalise_url
        from core.temporal import connect
        from models.db import JobTemplate

        eng = create_engine(normalise_url(self.settings.db_url))
        with Session(eng, expire_on_commit=False) as s:
            template = s.get(JobTemplate, template_id)
        eng.dispose()
        temporal = await connect(self.settings)
        n, conc = self.args.jobs, self.args.concurrency
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        out = {"api": {"lat": [], "wall": 0.0, "errors": 0}, "bare": {"lat": [], "wall": 0.0, "errors": 0}}
        # CPU seconds per side of each process: the API, the Temporal dev server, this bench process (its HTTP
        # client on the API side; the Temporal client on the bare side)
        cpu = {side: {"api": 0.0, "temporal": 0.0, "bench": 0.0} for side in ("api", "bare")}
        import threading

        health: list[float] = []
        polling = threading.Event()
        stop = threading.Event()

        def poll_health() -> None:  # its own thread and connection: /healthz latency while the API is loaded
            with httpx.Client(base_url=self.base, timeout=60) as hc:
                while not stop.is_set():
                    if polling.is_set():
                        t0 = time.perf_counter()
                        hc.get("/healthz").raise_for_status()
                        health.append(time.perf_counter() - t0)
                    stop.wait(0.1)

        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        async with contextlib.AsyncExitStack() as stack:
            if self.args.http_client == "httpx":
                client = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=self.base, timeout=120, limits=limits)
                )
            else:
                client = KeepAliveHttp("127.0.0.1", self.settings.api_port)
                stack.push_async_callback(client.aclose)
            await self.api_batch(client, headers, template_id, conc * 2)  # warm-up
            await self.bare_batch(temporal, template, conc * 2)
            for rnd in range(self.args.rounds):
                for side in ("api", "bare"):
                    c0 = self.cpu_now()
                    t0 = time.perf_counter()
                    if side == "api":
                        polling.set()
                        lat, err = await self.api_batch(client, headers, template_id, n)
                        polling.clear()
                    else:
                        lat, err = await self.bare_batch(temporal, template, n)
                    out[side]["wall"] += time.perf_counter() - t0
                    out[side]["lat"] += lat
                    out[side]["errors"] += err
                    for k, v in self.cpu_now().items():
                        cpu[side][k] += v - c0[k]
                    log(f"round {rnd + 1} {side}: {n / (time.perf_counter() - t0):.1f}/s")
        stop.set()
        poller.join(60)
        summary = {}
        for side, d in out.items():
            count = len(d["lat"])
            summary[side] = {
                "submissions": count,
                "errors": d["errors"],
                "per_s": round(count / d["wall"], 1),
                "p50_ms": round(1000 * percentile(d["lat"], 0.5), 1),
                "p99_ms": round(1000 * percentile(d["lat"], 0.99), 1),
            }
        summary["ratio_api_over_bare"] = round(summary["api"]["per_s"] / summary["bare"]["per_s"], 2)
        summary["healthz_during_api_ms"] = {
            "n": len(health),
            "p50": round(1000 * percentile(health, 0.5), 1),
            "max": round(1000 * max(health), 1) if health else None,
        }
        summary["api_cpu_s_per_submission"] = round(cpu["api"]["api"] / (n * self.args.rounds), 4)
        summary["cpu_ms_per_submission"] = {
            side: {k: round(1000 * v / (n * self.args.rounds), 2) for k, v in d.items()}
            for side, d in cpu.items()
        }
        return summary

    def run(self) -> dict:
        load_before = os.getloadavg()[0]
        self.start()
        headers, template_id = self.setup_tenant()
        # uvloop, as the API runs it: less client overhead on both sides (the HTTP and the Temporal client run
        # in this one event loop)
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(self.compare(headers, template_id))
        return {
            "db": self.args.db,
            "type": self.args.type,
            "concurrency": self.args.concurrency,
            "http_client": self.args.http_client,
            **result,
            "host": {"cpus": os.cpu_count(), "loadavg_1m_before": round(load_before, 2)},
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=300, help="submissions per side per round")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--type", choices=["RESCHEDULABLE", "ONE_TIME"], default="RESCHEDULABLE")
    p.add_argument(
        "--http-client",
        choices=["raw", "httpx"],
        default="raw",
        help="the bench's HTTP client on the API side: a minimal keep-alive HTTP/1.1 client, or httpx",
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, DBs) for inspection")
    args = p.parse_args()
    bench = SubmitBench(args)
    try:
        summary = bench.run()
    finally:
        bench.stop()
    print(json.dumps(summary, indent=2))
    return 0 if not summary["api"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
