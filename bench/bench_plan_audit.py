"""What a plan's audit record (issue 18, ``services/plan_audit.py``) costs: its compressed size and the time
to build and compress it, for windows of 1, 7 and 31 days over 1 and 3 regions (embedded data, 15-min grid).

    .venv/bin/python bench/bench_plan_audit.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import Settings  # noqa: E402
from scheduling.scoring import Weights  # noqa: E402
from services.plan_audit import _bounded  # noqa: E402
from services.planning import RECORD_CANDIDATES, PlanInputs, _plan, audit_record  # noqa: E402

REGIONS = ["eu-central-1", "eu-west-3", "eu-west-2"]


def main() -> None:
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()), carbon_provider="embedded")
    tpl = SimpleNamespace(id="t", region=REGIONS[0], regions=None, data_region=None)
    client = SimpleNamespace(region_default=REGIONS[0], allowed_regions=REGIONS)
    run = SimpleNamespace(id="run_bench", fleet_template_id="m5.large")
    runtime = (3600.0, 5400.0, ["expected_runtime_sec"])
    print(f"{'window':>7}{'regions':>9}{'KiB':>7}{'ms':>8}")
    for days in (1, 7, 31):
        for n in (1, 3):
            e = datetime(2027, 3, 1, tzinfo=UTC)
            job = SimpleNamespace(latest_finish=e + timedelta(days=days), type="RESCHEDULABLE",
                                  risk_mode="NEUTRAL", weights={})  # fmt: skip
            inputs = PlanInputs()
            plan, _, _ = _plan(
                None, settings, tpl, client, "m5.large", e, job.latest_finish, "NEUTRAL", Weights(), False,
                runtime=runtime, regions=REGIONS[:n], inputs=inputs, top_k=RECORD_CANDIDATES,
            )  # fmt: skip
            reps = 5
            t = time.perf_counter()
            for _ in range(reps):
                raw = _bounded(audit_record(plan, inputs, job, run, tpl, client, e, None, runtime, {}, None))
            ms = (time.perf_counter() - t) / reps * 1000
            print(f"{days:>6}d{n:>9}{len(raw) / 1024:>7.0f}{ms:>8.1f}")


if __name__ == "__main__":
    main()
