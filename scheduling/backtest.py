"""Replay job submissions against an actual carbon series: what would the policy have saved?

For each submission at nominal time ``T``:

- Window: ``--window-hours H`` lets the job start anywhere in ``[T - H, T + H]`` (``latest_finish`` =
  ``T + H + p90``, so a start at ``T + H`` still finishes by its p90); the baseline starts at ``T``.
  Or ``--deadline-hours D``: start at or after ``T``, finish by ``T + D``; the baseline starts at ``T``.
- Forecast given to the planner: ``perfect`` (the actual series), ``embedded`` (whatever the injected
  ``forecaster(decided_at, earliest, latest)`` returns: ``orch backtest`` passes the product's own embedded
  provider from the ``carbon`` package), ``seasonal`` (the product's
  :class:`~scheduling.forecast.SeasonalForecaster`, fed only with the actual series *before* the window
  opens), ``naive`` (mean of the same hour over the previous 28 days, the benchmark baseline), or
  ``noisy:<sigma>`` (actual x (1 + sigma x N(0, 1)), seeded, clipped at 0).
- The same :func:`~scheduling.scoring.plan_schedule` picks the start. Its emissions, the baseline's and the
  oracle's (the start with the least *actual* emissions among the starts the risk mode allows, on the
  same grid) are all measured on the actual series over the p50 runtime, in gCO2e at ``power_kw``.
- A deadline miss is a chosen start whose actual runtime ends after ``latest_finish``; the runtime is p50
  when p50 == p90, else drawn (seeded) from the lognormal through p50/p90.

Submissions whose window (or, for seasonal/naive, 24 h of history before it) is not inside the series
are skipped and counted. The planner applies ``config.policy`` (default: the product's skill gate, with
the nominal time as its baseline; for ``perfect``, which has full skill, no gate, so it reaches the
oracle); the oracle is ungated.
Default weights are carbon-only, so that ``perfect`` reaches the oracle
exactly; pass the product's weights to see what slack and risk preferences cost in carbon.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np

from scheduling.carbon import CarbonSeries, parse_timestamp
from scheduling.forecast import NaiveForecaster, SeasonalForecaster
from scheduling.paired import months_of_cycle
from scheduling.scoring import (
    UNGATED,
    InfeasibleWindow,
    Policy,
    RegionOption,
    RiskMode,
    Weights,
    lognormal_sigma,
    plan_regions,
)

__all__ = [
    "OUT_OF_SAMPLE_VARIANTS",
    "BacktestConfig",
    "BacktestResult",
    "OutOfSampleResult",
    "SubmissionResult",
    "daily_submissions",
    "parse_forecast_mode",
    "parse_submissions",
    "out_of_sample_forecaster",
    "run_backtest",
    "run_out_of_sample",
    "run_region_backtest",
]

CARBON_ONLY = Weights(carbon=1.0, risk=0.0, slack=0.0)


def parse_forecast_mode(text: str) -> tuple[str, float]:
    """``perfect`` | ``embedded`` | ``seasonal`` | ``naive`` | ``noisy:<relative sigma>`` -> (mode, sigma)."""
    t = text.strip().lower()
    if t in ("perfect", "embedded", "seasonal", "naive"):
        return t, 0.0
    if t.startswith("noisy:"):
        try:
            sigma = float(t.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad forecast {text!r}: noisy:<sigma> needs a number, e.g. noisy:0.1") from None
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError("noisy sigma must be >= 0")
        return "noisy", sigma
    raise ValueError(f"unknown forecast {text!r}: use perfect, embedded, seasonal, naive or noisy:<sigma>")


@dataclass(frozen=True)
class BacktestConfig:
    """Job and policy of a backtest. Runtimes in seconds, windows in hours, ``power_kw`` in kW."""

    p50_sec: float
    p90_sec: float
    window_hours: float | None = None
    deadline_hours: float | None = None
    risk_mode: RiskMode = RiskMode.CONSERVATIVE
    weights: Weights = CARBON_ONLY
    forecast: str = "perfect"
    step: timedelta = timedelta(minutes=15)
    power_kw: float = 1.0
    seed: int = 0
    warmup_days: float = 0.0
    policy: Policy | None = None  # the planner's skill gate; None: Policy() (product), UNGATED for perfect

    def __post_init__(self) -> None:
        if not (self.p50_sec > 0 and self.p90_sec >= self.p50_sec):
            raise ValueError(f"need 0 < p50 <= p90, got p50={self.p50_sec} s, p90={self.p90_sec} s")
        if (self.window_hours is None) == (self.deadline_hours is None):
            raise ValueError("give exactly one of window_hours and deadline_hours")
        if self.window_hours is not None and self.window_hours < 0:
            raise ValueError("window_hours must be >= 0")
        if self.deadline_hours is not None and self.deadline_hours <= 0:
            raise ValueError("deadline_hours must be > 0")
        parse_forecast_mode(self.forecast)

    def window(self, nominal: datetime) -> tuple[datetime, datetime]:
        """(earliest_start, latest_finish) for a submission at ``nominal``."""
        if self.window_hours is not None:
            h = timedelta(hours=self.window_hours)
            return nominal - h, nominal + h + timedelta(seconds=self.p90_sec)
        return nominal, nominal + timedelta(hours=float(self.deadline_hours or 0))


@dataclass(frozen=True)
class SubmissionResult:
    nominal: datetime
    chosen_start: datetime
    oracle_start: datetime
    baseline_g: float
    chosen_g: float
    oracle_g: float
    runtime_sec: float
    missed: bool
    kept_baseline: bool = False  # chosen start == the nominal (baseline) start
    no_skill: bool | None = None  # the planner said it kept the baseline for lack of forecast skill
    chosen_region: str | None = None  # with several regions: where it ran


@dataclass(frozen=True)
class BacktestResult:
    """Totals in gCO2e; percentages are savings against the baseline; ``share_of_oracle`` is a fraction
    (1.0 = all of the oracle's saving; None when the oracle saves nothing)."""

    submissions: int
    skipped: int
    baseline_g: float
    chosen_g: float
    oracle_g: float
    savings_pct: float
    oracle_savings_pct: float
    share_of_oracle: float | None
    deadline_misses: int
    config: BacktestConfig
    results: list[SubmissionResult] = field(default_factory=list)

    @property
    def stayed_at_baseline(self) -> int:
        """Submissions whose chosen start was the baseline (nominal) start."""
        return sum(r.kept_baseline for r in self.results)

    @property
    def no_skill(self) -> int | None:
        """Submissions the planner kept at its baseline for lack of forecast skill (None: it does not say)."""
        flags = [r.no_skill for r in self.results if r.no_skill is not None]
        return sum(flags) if flags else None

    def to_dict(self, details: bool = False) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {
            "submissions": self.submissions,
            "skipped": self.skipped,
            "baseline_g": round(self.baseline_g, 3),
            "chosen_g": round(self.chosen_g, 3),
            "oracle_g": round(self.oracle_g, 3),
            "savings_pct": round(self.savings_pct, 3),
            "oracle_savings_pct": round(self.oracle_savings_pct, 3),
            "share_of_oracle": None if self.share_of_oracle is None else round(self.share_of_oracle, 4),
            "deadline_misses": self.deadline_misses,
            "stayed_at_baseline": self.stayed_at_baseline,
            "no_skill": self.no_skill,
            "forecast": c.forecast,
            "risk_mode": str(c.risk_mode),
            "weights": c.weights.to_dict(),
            "p50_sec": c.p50_sec,
            "p90_sec": c.p90_sec,
            "window_hours": c.window_hours,
            "deadline_hours": c.deadline_hours,
            "power_kw": c.power_kw,
        }
        if details:
            out["results"] = [
                {
                    "nominal": _iso(r.nominal),
                    "chosen_start": _iso(r.chosen_start),
                    "oracle_start": _iso(r.oracle_start),
                    "baseline_g": r.baseline_g,
                    "chosen_g": r.chosen_g,
                    "oracle_g": r.oracle_g,
                    "runtime_sec": r.runtime_sec,
                    "missed": r.missed,
                    "kept_baseline": r.kept_baseline,
                    **({"chosen_region": r.chosen_region} if r.chosen_region else {}),
                }
                for r in self.results
            ]
        return out


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_submissions(text: str) -> list[datetime]:
    """One timestamp per line (first CSV column; naive = UTC); blank lines, ``#`` comments and a header
    line are ignored. ValueError names the first bad line."""
    out: list[datetime] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cell = line.split(",", 1)[0].strip()
        try:
            out.append(parse_timestamp(cell))
        except ValueError:
            if not out and lineno == 1:
                continue  # header
            raise ValueError(f"submissions line {lineno}: unrecognised timestamp {cell!r}") from None
    if not out:
        raise ValueError("no submission times found")
    return sorted(out)


def daily_submissions(series: CarbonSeries, at: time | str) -> list[datetime]:
    """Every day's ``at`` (UTC ``HH:MM``) from the series' first day to its last."""
    if isinstance(at, str):
        try:
            hh, mm = at.strip().split(":")
            at = time(int(hh), int(mm))
        except ValueError:
            raise ValueError(f"--daily-at must be HH:MM (UTC), got {at!r}") from None
    day = series.start.date()
    last = series.end.date()
    out = []
    while day <= last:
        out.append(datetime.combine(day, at, tzinfo=UTC))
        day += timedelta(days=1)
    return out


def _emissions(actual: CarbonSeries, start: datetime, dur: timedelta, power_kw: float) -> float:
    return power_kw * actual.integral(start, start + dur)


Forecaster = Callable[[datetime, datetime, datetime], CarbonSeries]
SCOPES = ("time", "region", "both")


def run_backtest(
    actual: CarbonSeries,
    submissions: Sequence[datetime],
    config: BacktestConfig,
    forecaster: Forecaster | None = None,
) -> BacktestResult:
    """Replay every submission (see the module docstring); pure and deterministic for a given seed.

    ``forecaster(decided_at, earliest, latest)``: the series the product would plan with, for ``embedded``."""
    return _replay({"": actual}, submissions, config, {"": forecaster} if forecaster else {}, "time")


def run_region_backtest(
    actuals: Mapping[str, CarbonSeries],
    submissions: Sequence[datetime],
    config: BacktestConfig,
    forecasters: Mapping[str, Forecaster] | None = None,
) -> dict[str, BacktestResult]:
    """The same replay over several regions (the first is home: the baseline runs there at the nominal
    time), three ways: ``time`` (shift the start within the window, home region only), ``region`` (start at
    the nominal time, in whichever region; the planner's own joint choice with a fixed start) and ``both``
    (:func:`~scheduling.scoring.plan_regions` over the window and every region). Each is scored on the
    chosen region's actual series; the oracle of each scope is its ungated carbon-only choice on the actual
    series. Submissions are skipped in all three unless every region's series covers them."""
    if not actuals:
        raise ValueError("give at least one region")
    return {scope: _replay(actuals, submissions, config, dict(forecasters or {}), scope) for scope in SCOPES}


def _forecast(
    mode: str,
    sigma: float,
    actual: CarbonSeries,
    forecaster: Forecaster | None,
    nominal: datetime,
    E: datetime,
    L: datetime,
    rng: np.random.Generator,
) -> CarbonSeries | None:
    """The series the planner sees for one region and submission (None: not enough history: skip)."""
    if mode == "perfect":
        return actual.with_sigma(0.0)  # known exactly
    if mode == "embedded":
        assert forecaster is not None
        return forecaster(min(E, nominal), E, L)
    if mode == "noisy":
        sl = actual.slice(E, L)
        noise = 1.0 + sigma * rng.standard_normal(len(sl))
        return CarbonSeries(sl.start, sl.step, np.maximum(sl.values * noise, 0.0))
    cut = actual.start + ((E - actual.start) // actual.step) * actual.step
    if cut - actual.start < timedelta(hours=24):
        return None
    history = actual.slice(actual.start, cut)
    model = SeasonalForecaster() if mode == "seasonal" else NaiveForecaster()
    return model.forecast(history, E, L, actual.step)


def _replay(
    actuals: Mapping[str, CarbonSeries],
    submissions: Sequence[datetime],
    config: BacktestConfig,
    forecasters: Mapping[str, Forecaster | None],
    scope: str,
) -> BacktestResult:
    mode, sigma = parse_forecast_mode(config.forecast)
    if mode == "embedded" and any(forecasters.get(r) is None for r in actuals):
        raise ValueError("forecast 'embedded' needs the product's provider: use orch backtest --region R")
    rng = np.random.default_rng(config.seed)
    home = next(iter(actuals))
    in_scope = [home] if scope == "time" else list(actuals)
    dur = timedelta(seconds=config.p50_sec)
    warm_until = min(a.start for a in actuals.values()) + timedelta(days=config.warmup_days)
    log_sigma = lognormal_sigma(config.p50_sec, config.p90_sec)
    results: list[SubmissionResult] = []
    skipped = 0
    for nominal in submissions:
        E, L = config.window(nominal)
        if warm_until > E or not all(a.covers(E, L) for a in actuals.values()):
            skipped += 1
            continue
        fcs = [_forecast(mode, sigma, actuals[r], forecasters.get(r), nominal, E, L, rng) for r in in_scope]
        if any(fc is None for fc in fcs):
            skipped += 1
            continue
        fixed = scope == "region"
        start = nominal if fixed else E
        common: dict[str, Any] = dict(
            earliest=start,
            latest=L,
            p50_sec=config.p50_sec,
            p90_sec=config.p90_sec,
            risk_mode=config.risk_mode,
            step=config.step,
            top_k=1,
            fixed_start=fixed,
        )
        try:
            plan = plan_regions(
                options=[
                    RegionOption(r or None, fc, config.power_kw)
                    for r, fc in zip(in_scope, fcs, strict=True)
                    if fc
                ],
                weights=config.weights,
                policy=config.policy or (UNGATED if mode == "perfect" else Policy()),
                baseline=nominal,  # "not moving" is the nominal time, also inside a +-H window
                **common,
            )
            oracle = plan_regions(
                options=[RegionOption(r or None, actuals[r], config.power_kw) for r in in_scope],
                weights=CARBON_ONLY,
                policy=UNGATED,  # the oracle takes any real saving
                **common,
            )
        except InfeasibleWindow:
            skipped += 1
            continue
        chosen = plan.chosen.start
        chosen_region = plan.chosen.region or ""
        oracle_region = oracle.chosen.region or ""
        base_start = nominal
        runtime = config.p50_sec
        if log_sigma > 0:
            runtime = float(math.exp(math.log(config.p50_sec) + log_sigma * rng.standard_normal()))
        results.append(
            SubmissionResult(
                nominal=nominal,
                chosen_start=chosen,
                oracle_start=oracle.chosen.start,
                baseline_g=_emissions(actuals[home], base_start, dur, config.power_kw),
                chosen_g=_emissions(actuals[chosen_region], chosen, dur, config.power_kw),
                oracle_g=_emissions(actuals[oracle_region], oracle.chosen.start, dur, config.power_kw),
                runtime_sec=runtime,
                missed=chosen + timedelta(seconds=runtime) > L,
                kept_baseline=chosen == base_start and chosen_region == home,
                no_skill=plan.skill_gated,  # a better start existed; the forecast's skill did not back it
                chosen_region=chosen_region or None,
            )
        )
    base = float(sum(r.baseline_g for r in results))
    chosen_g = float(sum(r.chosen_g for r in results))
    oracle_g = float(sum(r.oracle_g for r in results))
    oracle_saving = base - oracle_g
    return BacktestResult(
        submissions=len(results),
        skipped=skipped,
        baseline_g=base,
        chosen_g=chosen_g,
        oracle_g=oracle_g,
        savings_pct=(base - chosen_g) / base * 100.0 if base > 0 else 0.0,
        oracle_savings_pct=oracle_saving / base * 100.0 if base > 0 else 0.0,
        share_of_oracle=(base - chosen_g) / oracle_saving if oracle_saving > 1e-9 * max(base, 1.0) else None,
        deadline_misses=sum(r.missed for r in results),
        config=config,
        results=results,
    )


# --------------------------------------------------------------------------- out of sample (paired rule)

OUT_OF_SAMPLE_VARIANTS = ("old gate", "paired rule", "ungated")


@dataclass(frozen=True)
class OutOfSampleResult:
    """One zone's leave-one-month-out replay: a :class:`BacktestResult` per variant
    (:data:`OUT_OF_SAMPLE_VARIANTS`), all planned with the same out-of-sample climatology."""

    zone: str
    results: dict[str, BacktestResult]

    def month_shares(self, variant: str) -> dict[int, float | None]:
        """Share of the oracle's saving per calendar month of the nominal time (None: no oracle saving)."""
        out: dict[int, list[float]] = {}
        for r in self.results[variant].results:
            acc = out.setdefault(r.nominal.month, [0.0, 0.0])
            acc[0] += r.baseline_g - r.chosen_g
            acc[1] += r.baseline_g - r.oracle_g
        return {m: (s / o if o > 1e-9 else None) for m, (s, o) in sorted(out.items())}


def out_of_sample_forecaster(
    actual: CarbonSeries, zone: str, config: BacktestConfig, with_paired: bool
) -> Forecaster:
    """The forecast a decision would get without the month being judged: for a window ``[E, L]``, the mean
    (and spread x the climatology's inflation, for the forecast gate) of the ``N`` history days nearest the
    nominal time whose runs touch no hour of the calendar months the window touches; with ``with_paired``
    it carries that history and the rule fitted without the nominal's month
    (``paired_skill.json``'s fold), so the planner applies the paired rule."""
    from scheduling.forecast import CLIMATOLOGY_SIGMA_INFLATION, hourly_history
    from scheduling.paired import PairedHistory, paired_skill

    h0, y = hourly_history(actual)
    cycle_month = months_of_cycle(h0)
    cache: dict[tuple[frozenset[int], int], PairedHistory] = {}
    hour = timedelta(hours=1)
    need = config.p90_sec if config.risk_mode is RiskMode.CONSERVATIVE else config.p50_sec
    step_sec = config.step.total_seconds()

    def forecast(decided_at: datetime, E: datetime, L: datetime) -> CarbonSeries:
        nominal = E + timedelta(hours=config.window_hours or 0.0)
        months = frozenset({E.month, L.month, nominal.month})
        key = (months, nominal.month)
        hist = cache.get(key)
        if hist is None:
            masked = np.flatnonzero(np.isin(cycle_month, sorted(months)))
            hist = cache[key] = PairedHistory(h0, y, paired_skill(zone, nominal.month), masked_days=masked)
        window = (L - E).total_seconds()
        n_feas = int((window - need + 1e-6) // step_sec) + 1
        span = (n_feas - 1) * step_sec + config.p50_sec
        days = hist.paired_days(nominal, E, span)
        first = E.replace(minute=0, second=0, microsecond=0)
        n = math.ceil((L + config.step - first) / hour) + 1
        vals = hist.forecast_values(first, n, days, nominal)
        mean = vals.mean(axis=0)
        sigma = np.sqrt(((vals - mean) ** 2).mean(axis=0)) * CLIMATOLOGY_SIGMA_INFLATION
        series = CarbonSeries(first, hour, mean, sigma)
        return series.with_paired(hist) if with_paired else series

    return forecast


def run_out_of_sample(
    actual: CarbonSeries, zone: str, submissions: Sequence[datetime], config: BacktestConfig
) -> OutOfSampleResult:
    """Replay ``submissions`` on ``actual`` (a year of hourly data, e.g. the shipped 2023 series of
    ``zone``) leaving each month out: the decision for a nominal time in month m plans with history and
    rule thresholds fitted without month m (and without any other month its window touches). Three
    variants share that forecast: the forecast gate (``Policy()`` on its sigma), the paired rule, and
    ungated (the climatology's own best start)."""
    out: dict[str, BacktestResult] = {}
    for variant in OUT_OF_SAMPLE_VARIANTS:
        fc = out_of_sample_forecaster(actual, zone, config, with_paired=variant == "paired rule")
        cfg = replace(config, forecast="embedded", policy=UNGATED if variant == "ungated" else Policy())
        out[variant] = run_backtest(actual, submissions, cfg, fc)
    return OutOfSampleResult(zone, out)
