"""Load test: submit N RESCHEDULABLE jobs through the REST API and watch them all reach SCHEDULED.

Starts its own stack on 127.0.0.1 (free ports): the Temporal dev server and SeaweedFS (cli/devstack.py),
a fresh SQLite file (or a fresh schema on the machine's PostgreSQL with ``--db postgresql``), the API
(uvicorn) and one worker as subprocesses. Creates a client, an artifact and a template, then submits the jobs
with bounded concurrency (httpx async). Each job's window starts in one day, so every run plans and then
sleeps durably. Reports accepted/s, p50/p99 submit latency, errors, the time until every accepted run is
SCHEDULED, and the worker's RSS while the runs sleep; then tears the stack down.

    .venv/bin/python bench/load_jobs.py --jobs 1000 [--concurrency 32] [--db sqlite|postgresql] [--keep]

Prints a JSON summary on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.devstack import Server, free_port, port_open, spawn, start_seaweedfs, start_temporal, wait_for  # noqa: E402
from core.settings import Settings  # noqa: E402

S3_ACCESS, S3_SECRET = "orchbench", "orchbench-" + secrets.token_hex(8)
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
APP = "import sys\nprint('hello from the load test', sys.argv[1:])\n"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_bytes(pid: int, with_children: bool = True) -> int:
    """Resident set size of ``pid`` (and its descendants) from /proc, in bytes."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            if with_children:
                for t in Path(f"/proc/{p}/task").iterdir():
                    kids = (t / "children").read_text().split()
                    todo += [int(k) for k in kids]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far (from /proc), in seconds."""
    total, todo, seen = 0.0, [pid], set()
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(k) for k in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def app_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("main.py", APP)
    return buf.getvalue()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-load-"))
        self.servers: list[Server] = []
        self.pg_schema: str | None = None
        self.admin = "orch_admin_bench_" + secrets.token_urlsafe(24)

    # ---------------------------------------------------------------- stack
    def database_url(self) -> str:
        if self.args.db == "sqlite":
            return f"sqlite:///{self.tmp / 'orchestrator.db'}"
        import psycopg

        self.pg_schema = f"load_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.pg_schema}")
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{self.pg_schema}"

    def start_servers(self, task_queue: str, bucket: str) -> dict[str, str]:
        """SeaweedFS, the Temporal dev server and a fresh DB; returns the environment for the product's
        processes (their settings as ORCH_* variables)."""
        from core.migrate import upgrade

        s3_port, temporal_port = free_port(), free_port()
        log(f"work dir {self.tmp}")
        self.servers.append(start_seaweedfs(self.tmp / "s3", s3_port, S3_ACCESS, S3_SECRET))
        self.servers.append(
            start_temporal(self.tmp / "temporal.db", temporal_port, None, self.tmp / "temporal.log")
        )
        self.settings = Settings(
            data_dir=self.tmp,
            database_url=self.database_url(),
            admin_api_key=self.admin,
            api_port=free_port(),
            temporal_address=f"127.0.0.1:{temporal_port}",
            temporal_task_queue=task_queue,
            s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
            s3_access_key_id=S3_ACCESS,
            s3_secret_access_key=S3_SECRET,
            s3_bucket=bucket,
        )
        upgrade(self.settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        for name, value in self.settings.model_dump().items():
            if value is not None:
                env[f"ORCH_{name.upper()}"] = (
                    json.dumps(value) if isinstance(value, dict | list) else str(value)
                )
        return env

    def start(self) -> None:
        env = self.start_servers("load", "orch-load")
        self.worker = self._spawn("worker", env)
        wait_for(
            lambda: "worker started" in self.worker.log_path.read_text() or not self.worker.alive(),
            60,
            "the worker",
        )
        self.api = self._spawn("api", env)
        wait_for(lambda: port_open(self.settings.api_port) or not self.api.alive(), 60, "the API")
        for s in (self.worker, self.api):
            if not s.alive():
                raise RuntimeError(f"{s.name} exited:\n{s.log_tail()}")
        self.base = f"http://127.0.0.1:{self.settings.api_port}"
        wait_for(lambda: httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200, 60, "/readyz")
        log(f"stack up: API {self.base}, Temporal {self.settings.temporal_address}, DB {self.args.db}")

    def _spawn(self, name: str, env: dict[str, str]) -> Server:
        server = spawn(name, [sys.executable, "-m", "cli", name], self.tmp / f"{name}.log", env, cwd=ROOT)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()
        if self.pg_schema:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.pg_schema} CASCADE")
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------- workload
    def setup_tenant(self) -> tuple[dict[str, str], str]:
        with httpx.Client(base_url=self.base, timeout=60) as c:
            r = c.post("/v1/clients", json={"name": "load"}, headers={"X-API-Key": self.admin})
            r.raise_for_status()
            h = {"X-API-Key": r.json()["api_key"]}
            art = c.post(
                "/v1/artifacts/upload",
                headers=h,
                files={"file": ("app.zip", app_zip(), "application/zip")},
                data={"version": "1.0.0"},
            )
            art.raise_for_status()
            tpl = c.post(
                "/v1/job-templates",
                headers=h,
                json={
                    "name": "load",
                    "app_artifact_id": art.json()["artifact_id"],
                    "fleet_template_id": "m5.large",
                    "expected_runtime_sec": 600,
                },
            )
            tpl.raise_for_status()
            return h, tpl.json()["id"]

    async def submit_all(self, headers: dict[str, str], template_id: str) -> dict:
        n, conc = self.args.jobs, self.args.concurrency
        sem = asyncio.Semaphore(conc)
        latencies: list[float] = []
        errors: dict[str, int] = {}
        run_ids: list[str] = []
        now = datetime.now(UTC)
        body = {
            "job_template_id": template_id,
            "type": "RESCHEDULABLE",
            "risk_mode": "NEUTRAL",
            "earliest_start": (now + timedelta(days=1)).isoformat(),
            "latest_finish": (now + timedelta(days=2)).isoformat(),
        }
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)

        async with httpx.AsyncClient(base_url=self.base, timeout=120, limits=limits) as client:

            async def one(i: int) -> None:
                async with sem:
                    t0 = time.perf_counter()
                    try:
                        r = await client.post(
                            "/v1/jobs", json=body, headers=headers | {"Idempotency-Key": f"load-{i}"}
                        )
                    except httpx.HTTPError as exc:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        return
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code == 201:
                        run_ids.append(r.json()["run_id"])
                    else:
                        key = f"HTTP {r.status_code}"
                        errors[key] = errors.get(key, 0) + 1
                        if errors[key] <= 3:
                            log(f"job {i}: {r.status_code} {r.text[:300]}")

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.perf_counter() - t0
        return {
            "submitted": n,
            "accepted": len(run_ids),
            "errors": errors,
            "submit_wall_s": round(wall, 2),
            "accepted_per_s": round(len(run_ids) / wall, 1),
            "latency_ms": {
                "p50": round(1000 * percentile(latencies, 0.5), 1),
                "p90": round(1000 * percentile(latencies, 0.9), 1),
                "p99": round(1000 * percentile(latencies, 0.99), 1),
                "max": round(1000 * max(latencies), 1) if latencies else None,
                "mean": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
            },
            "_run_ids": run_ids,
        }

    def status_counts(self) -> dict[str, int]:
        from sqlalchemy import create_engine, func, select

        from core.db import normalise_url
        from models.db import Run

        if not hasattr(self, "_engine"):
            self._engine = create_engine(normalise_url(self.settings.db_url))
        with self._engine.connect() as c:
            return dict(c.execute(select(Run.status, func.count()).group_by(Run.status)).all())

    def scheduled_via_api(self, headers: dict[str, str]) -> int:
        """Count SCHEDULED runs through the API's pagination (the user's view, cross-checks the DB count)."""
        n, cursor = 0, None
        with httpx.Client(base_url=self.base, timeout=60) as c:
            while True:
                params = {"status": "SCHEDULED", "limit": 500} | ({"cursor": cursor} if cursor else {})
                page = c.get("/v1/runs", params=params, headers=headers).json()
                n += len(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    return n

    def run(self) -> dict:
        self.load_before = os.getloadavg()[0]  # other work on the machine skews the figures
        self.start()
        headers, template_id = self.setup_tenant()
        idle_rss = rss_bytes(self.worker.proc.pid)
        procs = {"api": self.api, "worker": self.worker, "temporal": self.servers[1]}
        cpu0 = {k: cpu_seconds(v.proc.pid) for k, v in procs.items()}
        log(f"submitting {self.args.jobs} jobs, {self.args.concurrency} in flight ...")
        t_submit = time.monotonic()
        result = asyncio.run(self.submit_all(headers, template_id))
        run_ids = result.pop("_run_ids")
        log(
            f"accepted {result['accepted']} in {result['submit_wall_s']} s ({result['accepted_per_s']}/s), "
            f"errors {result['errors']}"
        )
        cpu1 = {k: cpu_seconds(v.proc.pid) for k, v in procs.items()}

        accepted = len(run_ids)
        deadline = time.monotonic() + self.args.timeout
        counts: dict[str, int] = {}
        peak_rss = 0
        while time.monotonic() < deadline:
            counts = self.status_counts()
            peak_rss = max(peak_rss, rss_bytes(self.worker.proc.pid))
            if counts.get("SCHEDULED", 0) >= accepted:
                break
            time.sleep(0.25)
        t_all = time.monotonic() - t_submit
        cpu2 = {k: cpu_seconds(v.proc.pid) for k, v in procs.items()}
        scheduled = counts.get("SCHEDULED", 0)
        log(
            f"SCHEDULED {scheduled}/{accepted} after {t_all:.1f} s from the first submission; counts {counts}"
        )

        # memory while the runs sleep: sample for a few seconds after they all reached SCHEDULED
        samples = []
        for _ in range(int(self.args.rss_window / 0.5)):
            samples.append(rss_bytes(self.worker.proc.pid))
            time.sleep(0.5)
        via_api = self.scheduled_via_api(headers)
        mib = 1024 * 1024
        summary = {
            "jobs": self.args.jobs,
            "concurrency": self.args.concurrency,
            "db": self.args.db,
            **result,
            "all_scheduled": scheduled >= accepted == self.args.jobs,
            "scheduled": scheduled,
            "scheduled_via_api": via_api,
            "status_counts": counts,
            "time_to_all_scheduled_s": round(t_all, 2) if scheduled >= accepted else None,
            "schedule_lag_after_last_submit_s": round(t_all - result["submit_wall_s"], 2)
            if scheduled >= accepted
            else None,
            "worker_rss_mib": {
                "idle_before": round(idle_rss / mib, 1),
                "sleeping_runs": round(statistics.median(samples) / mib, 1) if samples else None,
                "peak_while_planning": round(peak_rss / mib, 1),
            },
            "cpu_s_during_submit": {k: round(cpu1[k] - cpu0[k], 1) for k in procs},
            "cpu_s_after_submit_until_scheduled": {k: round(cpu2[k] - cpu1[k], 1) for k in procs},
            "api_rss_mib": round(rss_bytes(self.api.proc.pid) / mib, 1),
            "temporal_rss_mib": round(rss_bytes(self.servers[1].proc.pid) / mib, 1),
            "api_alive": self.api.alive(),
            "worker_alive": self.worker.alive(),
            "host": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "loadavg_1m_before": round(self.load_before, 2),
            },
        }
        if self.args.keep:
            summary["work_dir"] = str(self.tmp)
        return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--timeout", type=float, default=600, help="max seconds to wait for all runs to be SCHEDULED"
    )
    p.add_argument(
        "--rss-window", type=float, default=5, help="seconds of worker RSS sampling while runs sleep"
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, DBs) for inspection")
    args = p.parse_args()
    bench = Bench(args)
    try:
        summary = bench.run()
    finally:
        bench.stop()
    print(json.dumps(summary, indent=2))
    return 0 if summary["all_scheduled"] and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
