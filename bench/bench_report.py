"""Benchmark: the carbon report (GET /v1/reports/carbon) over 10,000 runs on PostgreSQL, as JSON, CSV, SVG
and the per-run CSV, through the real app (in-process ASGI client, real database).

    .venv/bin/python bench/bench_report.py [--runs 10000] [--repeat 5] [--dsn host=127.0.0.1 port=5432 ...]

Seeds N runs of one client (every outcome that counts, a quarter of them on actuals, 7 templates, 13
recurring jobs, 6 regions, over one year) in a throw-away PostgreSQL schema (created, migrated, dropped at
the end), then prints the median wall time of each request over ``--repeat`` calls, and of the service
call alone. Needs PostgreSQL on 127.0.0.1:5432 (db ``test``, user ``postgres``) unless ``--dsn`` says
otherwise.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ADMIN = "orch_admin_bench_" + "k" * 40
REGIONS = ["eu-west-3", "eu-north-1", "eu-central-1", "eu-west-2", "us-east-1", "us-west-2"]


def median_ms(fn, repeat: int) -> float:
    return timed(fn, repeat)[0]


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (ms) over ``repeat`` calls (the CPU time is
    what the report itself costs, less the PostgreSQL server's share, on a machine other work shares)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def seed(settings, client_id: str, n_runs: int, start: datetime) -> None:
    from sqlalchemy import insert

    from core.db import Database
    from models.db import Artifact, Job, JobTemplate, RecurringJob, Run

    db = Database(settings)
    rnd = random.Random(7)
    with db.session() as s:
        s.add(
            Artifact(
                id="art_bench", client_id=client_id, name="a", version="1", sha256="0" * 64, size_bytes=1,
                entry_point="main.py", s3_bucket="b", s3_key="k",
            )
        )  # fmt: skip
        s.flush()
        for t in range(7):
            s.add(
                JobTemplate(
                    id=f"tpl_bench_{t}", client_id=client_id, name=f"etl-{t}", app_artifact_id="art_bench",
                    fleet_template_id="m5.large",
                )
            )  # fmt: skip
        s.flush()
        for k in range(13):
            s.add(
                RecurringJob(
                    id=f"rec_bench_{k}", client_id=client_id, job_template_id=f"tpl_bench_{k % 7}",
                    cron="0 1 * * *", schedule_id=f"sch_bench_{k}",
                )
            )  # fmt: skip
        s.add(
            Job(
                id="job_bench", client_id=client_id, job_template_id="tpl_bench_0", type="ONE_TIME",
                risk_mode="NEUTRAL", request_hash="x",
            )
        )  # fmt: skip
        s.flush()
        rows = []
        for i in range(n_runs):
            started = start + timedelta(minutes=rnd.randrange(525600))
            runtime = rnd.uniform(60, 7200)
            actual = rnd.random() < 0.25
            rows.append(
                {
                    "id": f"run_bench_{i:08d}", "job_id": "job_bench", "client_id": client_id,
                    "job_template_id": f"tpl_bench_{i % 7}",
                    "fleet_template_id": rnd.choice(["m5.large", "c5.xlarge", "m5.4xlarge"]),
                    "workflow_id": f"run-bench-{i}",
                    "status": rnd.choice(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED", "CANCELLED"]),
                    "started_at": started, "finished_at": started + timedelta(seconds=runtime),
                    "runtime_sec": runtime, "carbon_chosen_g": rnd.uniform(1, 500),
                    "carbon_earliest_g": rnd.uniform(1, 600),
                    "carbon_realised_g": rnd.uniform(1, 500) if rnd.random() < 0.5 else None,
                    "carbon_actual_g": rnd.uniform(1, 500) if actual else None,
                    "carbon_actual_baseline_g": rnd.uniform(1, 600) if actual else None,
                    "carbon_actual_source": "csv bench.csv (actuals)" if actual else None,
                    "recurring_job_id": f"rec_bench_{i % 13}" if i % 3 else None,
                    "region": REGIONS[i % len(REGIONS)], "plan": {"p50_sec": 3600.0},
                }
            )  # fmt: skip
        s.execute(insert(Run), rows)
    db.dispose()


def bench_preview_chart(repeat: int) -> None:
    """The preview chart (POST /v1/schedules/preview?format=svg) of issue 21's worst case: a 31-day window on
    the 5-minute grid over 22 regions, every candidate scored (top_k 100,000, as the route asks)."""
    from carbon.embedded import embedded_series, regions
    from scheduling.chart import chart_regions, preview_svg
    from scheduling.scoring import RegionOption, RiskMode, Weights, plan_regions

    e = datetime(2026, 3, 1, tzinfo=UTC)
    latest = e + timedelta(days=31)
    names = [r for r in regions() if not r.startswith(("cn-", "us-gov-"))][:22]
    series = {r: embedded_series(r, e, latest)[0].resample(timedelta(minutes=5)) for r in names}

    def plan():
        return plan_regions(
            earliest=e,
            latest=latest,
            p50_sec=7200,
            p90_sec=10800,
            options=[RegionOption(r, s, 0.3) for r, s in series.items()],
            risk_mode=RiskMode.NEUTRAL,
            weights=Weights(),
            top_k=100_000,
        )

    p = plan()
    drawn = {r: series[r] for r in chart_regions(p, names[0])}
    svg = preview_svg(drawn, p, e, latest, what="monthly-batch")
    plan_ms, plan_cpu = timed(plan, repeat)
    chart_ms, chart_cpu = timed(lambda: preview_svg(drawn, p, e, latest, what="monthly-batch"), repeat)
    print(f"\npreview chart: 31 days, 5-minute grid, {len(names)} regions, {len(p.candidates)} candidates")
    print(f"{'step':52s} {'wall ms':>8s} {'CPU ms':>8s} {'bytes':>9s}")
    print(f"{'plan (every candidate)':52s} {plan_ms:8.1f} {plan_cpu:8.1f}")
    print(f"{f'chart ({len(drawn)} regions drawn)':52s} {chart_ms:8.1f} {chart_cpu:8.1f} {len(svg):9d}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--preview-only", action="store_true", help="only the preview chart (no PostgreSQL)")
    ap.add_argument("--save-svg", default=None, help="also write the report chart (group_by=month) here")
    a = ap.parse_args()
    bench_preview_chart(a.repeat)
    if a.preview_only:
        return

    import psycopg
    from fastapi.testclient import TestClient

    from api.main import create_app
    from core.db import Database
    from core.migrate import upgrade
    from core.settings import Settings
    from services.reports import carbon_ledger, ledger_csv, ledger_svg, runs_csv

    params = dict(kv.split("=", 1) for kv in a.dsn.split())
    url = f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
    url += f"{params.get('port', '5432')}/{params.get('dbname', 'test')}"
    schema = f"bench_report_{secrets.token_hex(4)}"
    with psycopg.connect(a.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
        settings = Settings(
            data_dir=tmp,
            database_url=f"{url}?options=-csearch_path%3D{schema}",
            admin_api_key=ADMIN,
            carbon_provider="embedded",
            temporal_address="127.0.0.1:1",
            chart_renders_per_client=8,
        )
        upgrade(settings)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with TestClient(create_app(settings), raise_server_exceptions=True) as api:
            r = api.post("/v1/clients", json={"name": "bench"}, headers={"X-API-Key": ADMIN})
            client_id, key = r.json()["id"], r.json()["api_key"]
            t = time.perf_counter()
            seed(settings, client_id, a.runs, start)
            print(f"seeded {a.runs} runs in schema {schema} in {time.perf_counter() - t:.1f} s")
            h = {"X-API-Key": key}
            q = {"from": start.isoformat(), "to": (start + timedelta(days=366)).isoformat()}
            print(f"\ncarbon report over {a.runs} runs (PostgreSQL), median of {a.repeat} (ms)")
            print(f"{'request':52s} {'wall ms':>8s} {'CPU ms':>8s} {'bytes':>9s}")
            cases = [
                ("JSON, group_by=month", "/v1/reports/carbon", {"group_by": "month"}),
                ("JSON, group_by=recurring_job", "/v1/reports/carbon", {"group_by": "recurring_job"}),
                ("CSV, group_by=template", "/v1/reports/carbon", {"group_by": "template", "format": "csv"}),
                ("SVG, group_by=month", "/v1/reports/carbon", {"group_by": "month", "format": "svg"}),
                ("SVG, group_by=region", "/v1/reports/carbon", {"group_by": "region", "format": "svg"}),
                ("per-run CSV (/v1/reports/carbon/runs)", "/v1/reports/carbon/runs", {"format": "csv"}),
                ("per-run JSON (/v1/reports/carbon/runs)", "/v1/reports/carbon/runs", {}),
            ]
            for name, path, extra in cases:
                resp = api.get(path, params=q | extra, headers=h)
                assert resp.status_code == 200, resp.text
                ms, cpu = timed(lambda p=path, e=extra: api.get(p, params=q | e, headers=h), a.repeat)
                print(f"{name:52s} {ms:8.1f} {cpu:8.1f} {len(resp.content):9d}")
            counted = api.get("/v1/reports/carbon", params=q, headers=h).json()["total"]["runs"]
            if a.save_svg:
                svg = api.get("/v1/reports/carbon", params=q | {"format": "svg"}, headers=h).text
                Path(a.save_svg).write_text(svg)
            print(f"(runs counted: {counted})")
            db = Database(settings)
            end = start + timedelta(days=366)
            with db.session() as s:
                ledger_ms = median_ms(lambda: carbon_ledger(s, client_id, start, end, "month"), a.repeat)
                ledger = carbon_ledger(s, client_id, start, end, "month")
            print("\nservice calls alone, median (ms)")
            print(f"{'carbon_ledger (query + figures)':52s} {ledger_ms:8.1f}")
            print(f"{'ledger_csv':52s} {median_ms(lambda: ledger_csv(ledger), a.repeat):8.1f}")
            print(f"{'ledger_svg':52s} {median_ms(lambda: ledger_svg(ledger), a.repeat):8.1f}")
            print(f"{'runs_csv':52s} {median_ms(lambda: runs_csv(ledger), a.repeat):8.1f}")
            db.dispose()
    finally:
        with psycopg.connect(a.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
