"""``orch backtest``: replay submissions against a carbon series through the product's own planner.

Example::

    orch backtest --carbon-csv grid.csv --daily-at 01:00 --job-minutes 30 --window-hours 8 \
        --forecast perfect --json

prints one JSON object: ``submissions, skipped, baseline_g, chosen_g, oracle_g, savings_pct,
oracle_savings_pct, share_of_oracle (fraction: 1.0 = the oracle's whole saving), deadline_misses`` plus the
settings used. Without ``--json`` a short table. See ``scheduling/backtest.py`` for the exact model.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from scheduling.backtest import BacktestConfig, daily_submissions, parse_submissions, run_backtest
from scheduling.carbon import (
    CarbonSeries,
    embedded_history,
    embedded_zones,
    load_csv_series,
    regions,
    zone_for_region,
)
from scheduling.scoring import RiskMode, Weights

__all__ = ["backtest"]


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def _load_series(carbon_csv: Path | None, region: str | None) -> tuple[CarbonSeries, str]:
    if (carbon_csv is None) == (region is None):
        raise _fail("give exactly one of --carbon-csv FILE and --region REGION")
    if carbon_csv is not None:
        try:
            return load_csv_series(carbon_csv), str(carbon_csv)
        except OSError as e:
            raise _fail(f"cannot read {carbon_csv}: {e.strerror or e}") from None
        except ValueError as e:
            raise _fail(f"{carbon_csv}: {e}") from None
    assert region is not None
    zone = zone_for_region(region)
    if zone is None or zone not in embedded_zones():
        with_data = [r for r in regions() if zone_for_region(r) in embedded_zones()]
        raise _fail(
            f"region {region!r} has no embedded hourly series (at most a flat factor: nothing to shift); "
            f"regions with data: {', '.join(with_data)}"
        )
    return embedded_history(zone), f"embedded {zone} 2023 (Electricity Maps, ODbL)"


def backtest(
    carbon_csv: Annotated[
        Path | None, typer.Option("--carbon-csv", help="CSV `timestamp, g/kWh` with a header (naive = UTC)")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="AWS region of the embedded 2023 data, e.g. eu-west-2")
    ] = None,
    daily_at: Annotated[
        str | None, typer.Option("--daily-at", help="submit every day at HH:MM UTC (nominal start)")
    ] = None,
    submissions_file: Annotated[
        Path | None, typer.Option("--submissions-file", help="one nominal start time per line")
    ] = None,
    job_minutes: Annotated[
        float | None, typer.Option("--job-minutes", help="fixed runtime (p50 = p90), minutes")
    ] = None,
    p50_minutes: Annotated[
        float | None, typer.Option("--p50-minutes", help="median runtime, minutes")
    ] = None,
    p90_minutes: Annotated[float | None, typer.Option("--p90-minutes", help="p90 runtime, minutes")] = None,
    window_hours: Annotated[
        float | None,
        typer.Option("--window-hours", help="start anywhere from H h before to H h after the nominal time"),
    ] = None,
    deadline_hours: Annotated[
        float | None, typer.Option("--deadline-hours", help="instead: start after nominal, finish within D h")
    ] = None,
    risk_mode: Annotated[RiskMode, typer.Option("--risk-mode", case_sensitive=False)] = RiskMode.CONSERVATIVE,
    weights: Annotated[
        str,
        typer.Option("--weights", help="carbon=..,risk=..,slack=.. (default carbon-only: the oracle's goal)"),
    ] = "carbon=1,risk=0,slack=0",
    forecast: Annotated[
        str, typer.Option("--forecast", help="perfect | seasonal | naive | noisy:<relative sigma>")
    ] = "perfect",
    step_minutes: Annotated[float, typer.Option("--step-minutes", help="candidate start grid")] = 15.0,
    power_kw: Annotated[float, typer.Option("--power-kw", help="fleet power incl. PUE, kW")] = 1.0,
    warmup_days: Annotated[
        float, typer.Option("--warmup-days", help="skip submissions in the series' first N days")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="seed for noisy forecasts and runtime draws")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    details: Annotated[bool, typer.Option("--details", help="with --json: every submission too")] = False,
) -> None:
    """Replay job submissions against a carbon series: baseline vs chosen vs oracle emissions."""
    series, source = _load_series(carbon_csv, region)

    if job_minutes is not None:
        if p50_minutes is not None or p90_minutes is not None:
            raise _fail("give --job-minutes or --p50-minutes/--p90-minutes, not both")
        p50 = p90 = job_minutes
    elif p50_minutes is not None:
        p50, p90 = p50_minutes, p90_minutes if p90_minutes is not None else p50_minutes
    else:
        raise _fail("give the job length: --job-minutes M, or --p50-minutes M [--p90-minutes M]")
    if window_hours is None and deadline_hours is None:
        raise _fail("give the flexibility: --window-hours H or --deadline-hours D")
    if step_minutes <= 0:
        raise _fail("--step-minutes must be > 0")

    try:
        w = Weights.parse(weights)
        config = BacktestConfig(
            p50_sec=p50 * 60.0,
            p90_sec=p90 * 60.0,
            window_hours=window_hours,
            deadline_hours=deadline_hours,
            risk_mode=risk_mode,
            weights=w,
            forecast=forecast,
            step=timedelta(minutes=step_minutes),
            power_kw=power_kw,
            seed=seed,
            warmup_days=warmup_days,
        )
    except ValueError as e:
        raise _fail(str(e)) from None

    if (daily_at is None) == (submissions_file is None):
        raise _fail("give exactly one submission pattern: --daily-at HH:MM or --submissions-file FILE")
    try:
        if daily_at is not None:
            subs = daily_submissions(series, daily_at)
        else:
            assert submissions_file is not None
            subs = parse_submissions(submissions_file.read_text(encoding="utf-8"))
    except OSError as e:
        raise _fail(f"cannot read {submissions_file}: {e.strerror or e}") from None
    except ValueError as e:
        raise _fail(str(e)) from None

    result = run_backtest(series, subs, config)
    if json_output:
        out = result.to_dict(details=details)
        out["source"] = source
        typer.echo(json.dumps(out))
        return
    share = "n/a" if result.share_of_oracle is None else f"{result.share_of_oracle * 100:.1f}%"
    rows = [
        ("source", source),
        ("forecast / risk mode", f"{config.forecast} / {config.risk_mode}"),
        ("weights", weights),
        ("runtime p50 / p90", f"{p50:g} / {p90:g} min"),
        ("submissions (skipped)", f"{result.submissions} ({result.skipped})"),
        ("baseline gCO2e", f"{result.baseline_g:,.1f}"),
        ("chosen gCO2e", f"{result.chosen_g:,.1f}  ({result.savings_pct:.1f}% saved)"),
        ("oracle gCO2e", f"{result.oracle_g:,.1f}  ({result.oracle_savings_pct:.1f}% saved)"),
        ("share of oracle's saving", share),
        ("deadline misses", str(result.deadline_misses)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    _app = typer.Typer(add_completion=False)
    _app.command()(backtest)
    _app()
