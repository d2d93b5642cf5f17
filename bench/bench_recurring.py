"""Benchmark: what a recurring job costs the API (calendar validation, next nominal times) and what the carbon
ledger costs per run (SQLite, migrated schema, in a temp dir).

    .venv/bin/python bench/bench_recurring.py [--runs 20000]

Printed: median time of ``build_calendar`` (the full validation of POST /v1/recurring-jobs: parse, zone,
400 nominal times to find the shortest period, the shifted fire expressions) for a few calendars; of 50
next nominal times; and of ``carbon_ledger`` over N runs for each ``group_by``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.calendar import build_calendar  # noqa: E402

CALENDARS = [
    {"cron": "0 1 * * *", "time_zone": "Europe/London", "margin_before": "PT3H", "margin_after": "PT3H"},
    {"cron": "*/5 * * * *", "time_zone": "UTC", "margin_before": "PT0S", "margin_after": "PT2M"},
    {
        "cron": "15,45 9-17 * * 1-5",
        "time_zone": "America/New_York",
        "margin_before": "PT10M",
        "margin_after": "PT5M",
    },
    {"interval": "PT6H", "time_zone": "UTC", "margin_before": "PT1H", "margin_after": "PT1H"},
]


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_calendars(repeat: int) -> None:
    now = datetime.now(UTC)
    print("calendar                                   validate (ms)   next 50 (ms)")
    for c in CALENDARS:
        args = {"cron": None, "interval": None} | c

        def build(args=args):
            return build_calendar(**args, now=now)

        cal = build()
        label = (c.get("cron") or f"every {c['interval']}") + f" {c['time_zone']}"
        nxt = median_ms(lambda cal=cal: cal.nominal_times(now, 50), repeat)
        print(f"{label:42s} {median_ms(build, repeat):10.2f} {nxt:14.2f}")


def bench_ledger(n_runs: int) -> None:
    from core.db import Database
    from core.migrate import upgrade
    from core.settings import Settings
    from models.db import Artifact, Client, Job, JobTemplate, Run
    from services.reports import carbon_ledger

    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'ledger.db'}")
    upgrade(settings)
    db = Database(settings)
    rnd = random.Random(7)
    with db.session() as s:
        s.add(Client(id="cl_bench", name="bench", api_key_hash="h" * 64, api_key_prefix="p"))
        s.flush()
        s.add(
            Artifact(
                id="art_bench", client_id="cl_bench", name="a", version="1", sha256="0" * 64, size_bytes=1,
                entry_point="main.py", s3_bucket="b", s3_key="k",
            )
        )  # fmt: skip
        s.flush()
        s.add(
            JobTemplate(
                id="tpl_bench",
                client_id="cl_bench",
                name="t",
                app_artifact_id="art_bench",
                fleet_template_id="m5.large",
            )
        )
        s.flush()
        s.add(
            Job(
                id="job_bench",
                client_id="cl_bench",
                job_template_id="tpl_bench",
                type="ONE_TIME",
                risk_mode="NEUTRAL",
                request_hash="x",
            )
        )
        s.flush()
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(n_runs):
            s.add(
                Run(
                    id=f"run_{i:08d}", job_id="job_bench", client_id="cl_bench",
                    job_template_id=f"tpl_{i % 7}", fleet_template_id=rnd.choice(["m5.large", "c5.xlarge"]),
                    workflow_id=f"run-{i}", status=rnd.choice(["SUCCEEDED", "FAILED", "CANCELLED"]),
                    started_at=start + timedelta(minutes=rnd.randrange(525600)),
                    runtime_sec=rnd.uniform(60, 7200), carbon_chosen_g=rnd.uniform(1, 500),
                    carbon_earliest_g=rnd.uniform(1, 600),
                    carbon_realised_g=rnd.uniform(1, 500) if rnd.random() < 0.5 else None,
                    recurring_job_id=f"rec_{i % 13}" if i % 3 else None,
                )
            )  # fmt: skip
    end = datetime(2027, 1, 1, tzinfo=UTC)
    print(f"\ncarbon ledger over {n_runs} runs (SQLite)   median of 5 (ms)")
    for group_by in ("template", "recurring_job", "month"):
        with db.session() as s:
            ms = median_ms(lambda g=group_by, s=s: carbon_ledger(s, "cl_bench", start, end, g), 5)
            total = carbon_ledger(s, "cl_bench", start, end, group_by).total
        per_run = ms / max(total.runs, 1) * 1000
        print(f"group_by={group_by:14s} {ms:10.1f}   ({total.runs} runs counted, {per_run:.1f} us/run)")
    db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    bench_calendars(a.repeat)
    bench_ledger(a.runs)


if __name__ == "__main__":
    main()
