"""``orch backtest``: replay submissions against a carbon series through the product's own planner.

Example::

    orch backtest --carbon-csv grid.csv --daily-at 01:00 --job-minutes 30 --window-hours 8 \
        --forecast perfect --json

prints one JSON object: ``submissions, skipped, baseline_g, chosen_g, oracle_g, savings_pct,
oracle_savings_pct, share_of_oracle (fraction: 1.0 = the oracle's whole saving), deadline_misses,
stayed_at_baseline, no_skill`` plus the settings used. Without ``--json`` a short table. See
``scheduling/backtest.py`` for the exact model.

Where as well as when (the first ``--region`` is home; the baseline runs there at the nominal time)::

    orch backtest --region eu-central-1 --region eu-west-3 --daily-at 01:00 --job-minutes 60 \
        --window-hours 8 --forecast embedded

prints the saving from choosing the time alone, the region alone, and both (``--json``: one object per
scope under ``time``, ``region``, ``both``).

What the product really does::

    orch backtest --forecast embedded --region eu-central-1 --carbon-csv actual-2024.csv --tz UTC ...

decides every submission with the product's ``embedded`` provider for that region, through the same code a
run uses (``carbon.get_series`` at the submission's decision time, then ``plan_schedule``), and scores the
choices against the CSV's actual series. ``embedded`` is what ``auto`` (the default) uses for regions
without a live source, and what every region falls back to.

Out of sample on the shipped data (the paired rule's acceptance, BENCHMARKS.md)::

    orch backtest --forecast embedded --out-of-sample --daily-at 01:00 --job-minutes 30 --window-hours 8

leaves each month of 2023 out (history and paired-rule thresholds fitted without it) and prints per zone
the share of the oracle kept by the old forecast gate, the paired rule and the ungated climatology.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from scheduling.backtest import (
    BacktestConfig,
    daily_submissions,
    parse_forecast_mode,
    parse_submissions,
    run_backtest,
    run_out_of_sample,
    run_region_backtest,
)
from scheduling.carbon import CarbonSeries, embedded_history, embedded_zones, regions, zone_for_region
from scheduling.scoring import RiskMode, Weights

__all__ = ["backtest"]


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def _load_series(
    carbon_csv: Path | None, region: str | None, tz: str | None = None, product: bool = False
) -> tuple[CarbonSeries, str]:
    if product:
        if region is None:
            raise _fail("--forecast embedded decides with the product's provider for a region: give --region")
    elif (carbon_csv is None) == (region is None):
        raise _fail("give exactly one of --carbon-csv FILE and --region REGION")
    if carbon_csv is not None:
        from carbon.csvfile import load_csv

        try:
            loaded = load_csv(carbon_csv, tz=tz)
        except OSError as e:
            raise _fail(f"cannot read {carbon_csv}: {e.strerror or e}") from None
        except ValueError as e:
            raise _fail(f"{carbon_csv}: {e}") from None
        for w in loaded.warnings:
            typer.echo(f"warning: {carbon_csv}: {w}", err=True)
        return loaded.series, str(carbon_csv)
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
        Path | None,
        typer.Option("--carbon-csv", help="actual series: CSV `timestamp, g/kWh` with a header row"),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="time zone of CSV timestamps without an offset (else they are refused)"),
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region",
            help="AWS region, e.g. eu-west-2: its embedded 2023 data as the actuals (without --carbon-csv), "
            "and the region whose provider decides with --forecast embedded. Repeat it to compare "
            "choosing the time, the region and both (the first is home)",
        ),
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
        str,
        typer.Option(
            "--forecast",
            help="perfect | embedded (the product's provider for --region) | seasonal | naive | "
            "noisy:<relative sigma>",
        ),
    ] = "perfect",
    step_minutes: Annotated[float, typer.Option("--step-minutes", help="candidate start grid")] = 15.0,
    power_kw: Annotated[float, typer.Option("--power-kw", help="fleet power incl. PUE, kW")] = 1.0,
    warmup_days: Annotated[
        float, typer.Option("--warmup-days", help="skip submissions in the series' first N days")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="seed for noisy forecasts and runtime draws")] = 0,
    out_of_sample: Annotated[
        bool,
        typer.Option(
            "--out-of-sample",
            help="with --forecast embedded: leave each month of the shipped 2023 series out (its decisions "
            "use history and paired-rule thresholds fitted without it) and print, per zone, the share of the "
            "oracle kept by the old forecast gate, the paired rule and the ungated climatology; without "
            "--region: every zone with hourly data",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    details: Annotated[bool, typer.Option("--details", help="with --json: every submission too")] = False,
) -> None:
    """Replay job submissions against a carbon series: baseline vs chosen vs oracle emissions."""
    try:
        mode, _ = parse_forecast_mode(forecast)
    except ValueError as e:
        raise _fail(str(e)) from None
    product = mode == "embedded"
    region_list = list(dict.fromkeys(r.strip().lower() for r in region or []))
    if out_of_sample:
        if not product or carbon_csv is not None:
            raise _fail(
                "--out-of-sample replays the shipped 2023 series with --forecast embedded: drop --carbon-csv"
            )
        if not region_list:
            by_zone: dict[str, str] = {}
            for r in regions():
                z = zone_for_region(r)
                if z in embedded_zones() and z not in by_zone:
                    by_zone[z] = r
            region_list = [by_zone[z] for z in sorted(by_zone)]
    if len(region_list) > 1 and carbon_csv is not None:
        raise _fail("several --region values compare the embedded 2023 series: drop --carbon-csv")
    series, source = _load_series(carbon_csv, region_list[0] if region_list else None, tz, product)
    others = {r: _load_series(None, r, tz, product)[0] for r in region_list[1:]}

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

    if out_of_sample:
        _print_out_of_sample(region_list, subs, config, json_output)
        return
    forecasters = {}
    if product:
        for r in region_list:
            forecasters[r] = _product_forecaster(r, config.step)
            try:
                forecasters[r](series.start, series.start, series.start + config.step)
            except ValueError as e:
                raise _fail(str(e)) from None
        source += f"; decisions: the product's embedded provider for {', '.join(region_list)}"
    if others:
        _compare_regions({region_list[0]: series, **others}, subs, config, forecasters, json_output, details)
        return
    result = run_backtest(series, subs, config, forecasters.get(region_list[0]) if product else None)
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
        ("stayed at the baseline", _stayed(result)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k.ljust(width)}  {v}")


def _compare_regions(actuals, subs, config, forecasters, json_output: bool, details: bool) -> None:
    """Several regions: the saving from choosing the time alone, the region alone, and both."""
    results = run_region_backtest(actuals, subs, config, forecasters or None)
    regions = list(actuals)
    if json_output:
        out: dict = {scope: r.to_dict(details=details) for scope, r in results.items()}
        out["regions"] = regions
        out["home_region"] = regions[0]
        out["source"] = f"embedded 2023 series of {', '.join(regions)} (Electricity Maps, ODbL)"
        typer.echo(json.dumps(out))
        return
    typer.echo(f"home {regions[0]}; also allowed: {', '.join(regions[1:])}; forecast {config.forecast}")
    header = ("choose", "submissions", "baseline gCO2e", "chosen gCO2e", "saved", "oracle saved", "misses")
    rows = [
        (
            {"time": "time alone", "region": "region alone", "both": "time and region"}[scope],
            str(r.submissions),
            f"{r.baseline_g:,.1f}",
            f"{r.chosen_g:,.1f}",
            f"{r.savings_pct:.1f}%",
            f"{r.oracle_savings_pct:.1f}%",
            str(r.deadline_misses),
        )
        for scope, r in results.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    where: dict[str, int] = {}
    for sub in results["both"].results:
        where[sub.chosen_region or regions[0]] = where.get(sub.chosen_region or regions[0], 0) + 1
    typer.echo("time and region ran in: " + ", ".join(f"{r} {n}" for r, n in sorted(where.items())))


def _print_out_of_sample(region_list: list[str], subs, config: BacktestConfig, json_output: bool) -> None:
    """Per zone: the share of the oracle kept by each variant, the paired rule's worst month, its moves."""
    rows: list[dict[str, Any]] = []
    for r in region_list:
        zone = zone_for_region(r)
        if zone is None or zone not in embedded_zones():
            raise _fail(f"region {r!r} has no embedded hourly series")
        oos = run_out_of_sample(embedded_history(zone), zone, subs, config)
        months = oos.month_shares("paired rule")
        worst = min((v for v in months.values() if v is not None), default=None)
        paired = oos.results["paired rule"]
        rows.append(
            {
                "region": r,
                "zone": zone,
                "submissions": paired.submissions,
                "oracle_savings_pct": round(paired.oracle_savings_pct, 3),
                **{
                    f"share_{k.replace(' ', '_')}": None
                    if v.share_of_oracle is None
                    else round(v.share_of_oracle, 4)
                    for k, v in oos.results.items()
                },
                "paired_rule_worst_month": None if worst is None else round(worst, 4),
                "paired_rule_month_shares": {
                    str(m): None if v is None else round(v, 4) for m, v in months.items()
                },
                "paired_rule_moves": paired.submissions - paired.stayed_at_baseline,
            }
        )
    if json_output:
        typer.echo(json.dumps({"out_of_sample": "leave one month out", "zones": rows}))
        return

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{float(v):.2f}"

    typer.echo(
        f"leave one month out on the shipped 2023 series; {config.p50_sec / 60:g}-min job, "
        f"{config.weights.to_dict()} weights; share of the oracle's saving"
    )
    header = ("zone", "region", "n", "oracle %", "old gate", "paired rule", "ungated", "worst month", "moves")
    table = [
        (
            x["zone"],
            x["region"],
            str(x["submissions"]),
            f"{x['oracle_savings_pct']:.1f}",
            f(x["share_old_gate"]),
            f(x["share_paired_rule"]),
            f(x["share_ungated"]),
            f(x["paired_rule_worst_month"]),
            str(x["paired_rule_moves"]),
        )
        for x in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def _stayed(result) -> str:
    n = max(result.submissions, 1)
    out = f"{result.stayed_at_baseline} ({result.stayed_at_baseline / n:.0%})"
    if result.no_skill is not None:
        out += f", {result.no_skill} for lack of forecast skill"
    return out


def _product_forecaster(region: str, step: timedelta):
    """The series a run in ``region`` would be planned with by the ``embedded`` provider, decided at the
    submission's time (``carbon.get_series``: the product's own code path and settings)."""
    from carbon import CarbonService, MemoryTTLCache
    from core.settings import Settings

    settings = Settings(carbon_provider="embedded")
    cache = MemoryTTLCache()

    def forecast(decided_at, earliest, latest) -> CarbonSeries:
        svc = CarbonService(settings, cache=cache, now=decided_at)
        series, _ = svc.get_series(region, earliest, latest + step, step)
        return series

    return forecast


if __name__ == "__main__":
    _app = typer.Typer(add_completion=False)
    _app.command()(backtest)
    _app()
