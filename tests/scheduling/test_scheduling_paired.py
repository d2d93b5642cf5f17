"""The paired, empirical decision rule for history-based forecasts (scheduling.paired, issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.backtest import BacktestConfig, out_of_sample_forecaster
from scheduling.carbon import CarbonSeries, embedded_history
from scheduling.paired import (
    CYCLE_DAYS,
    PairedHistory,
    PairedSkill,
    allowed,
    paired_figures,
    skill_table,
)
from scheduling.scoring import RiskMode, Weights, plan_schedule, saving_text

H = timedelta(hours=1)
DAY = timedelta(days=1)
H0 = datetime(2023, 1, 1, tzinfo=UTC)
CARBON = Weights(carbon=1.0, risk=0.0, slack=0.0)


def _history(seed: int, skill: PairedSkill) -> PairedHistory:
    """A year of hourly intensity with a daily shape, a weekly rhythm and day-to-day noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(CYCLE_DAYS * 24 + 24)
    shape = 1.0 + 0.3 * np.sin(2 * np.pi * (hours % 24) / 24 + rng.uniform(0, 6))
    noise = np.exp(rng.normal(0.0, 0.15, hours.size))
    return PairedHistory(H0, 300.0 * shape * noise, skill)


def _plan(hist: PairedHistory, when: datetime, window_h: int, job_min: int, base_q: int):
    E, L = when, when + window_h * H + job_min * timedelta(minutes=1)
    first = E.replace(minute=0)
    days = hist.paired_days(E, E, window_h * 3600.0 + job_min * 60.0)
    vals = hist.forecast_values(first, window_h + 3, days, E).mean(axis=0)
    series = CarbonSeries(first, H, vals).with_paired(hist)
    return plan_schedule(
        earliest=E,
        latest=L,
        p50_sec=job_min * 60.0,
        p90_sec=job_min * 60.0,
        series=series,
        power_kw=1.0,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=CARBON,
        baseline=E + base_q * timedelta(minutes=15),
    )


skills = st.builds(
    PairedSkill,
    allowed=st.booleans(),
    min_mean_saving_pct=st.floats(0, 5),
    min_share_saved=st.floats(0, 1),
    days=st.integers(1, 40),
    min_t=st.floats(0, 4),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    skill=skills,
    day=st.integers(0, 400),
    hour=st.integers(0, 23),
    window_h=st.integers(1, 16),
    job_min=st.sampled_from([15, 30, 60, 150]),
    base_q=st.integers(0, 3),
)
def test_the_baseline_is_always_allowed_and_moves_pass_the_thresholds(
    seed, skill, day, hour, window_h, job_min, base_q
):
    hist = _history(seed, skill)
    when = datetime(2025, 1, 1, tzinfo=UTC) + day * DAY + hour * H
    p = _plan(hist, when, window_h, job_min, base_q)
    assert p.decision_rule["rule"] == "paired"
    b = p.baseline
    assert b.paired_days == p.decision_rule["paired_days"] > 0
    assert b.paired_days_saved == 0 and b.paired_mean_saving_pct == pytest.approx(0.0, abs=1e-9)
    if not skill.allowed:
        assert p.chosen.start == b.start
    c = p.chosen
    if c.start != b.start:  # a move passed every threshold, on the figures it reports
        assert c.paired_mean_saving_pct >= skill.min_mean_saving_pct - 1e-9
        assert c.paired_days_saved >= skill.min_share_saved * c.paired_days - 1e-9
    assert "-0%" not in p.rationale and "-0.0%" not in p.rationale


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_days=st.integers(1, 40),
    skill=skills,
    loss=st.floats(1e-6, 2.0),
)
def test_a_day_on_which_a_start_lost_never_makes_the_rule_more_eager(seed, n_days, skill, loss):
    rng = np.random.default_rng(seed)
    n_starts, b = 8, 3
    integ = 100.0 * np.exp(rng.normal(0.0, rng.uniform(0.01, 0.5), (n_days, n_starts)))
    before = allowed(*paired_figures(integ[:, b], integ), n_days, skill)
    # one more day on which every start other than the baseline emitted more than the baseline
    extra = np.full((1, n_starts), 100.0) * (1.0 + loss * rng.uniform(0.001, 1.0, n_starts))
    extra[0, b] = 100.0
    more = np.vstack([integ, extra])
    after = allowed(*paired_figures(more[:, b], more), n_days + 1, skill)
    assert not np.any(after & ~before)


def test_the_figures_are_what_the_paired_days_say():
    """Recomputed independently: the nearest days by hand, the integrals with CarbonSeries.integral."""
    skill = PairedSkill(days=29, min_mean_saving_pct=0.0, min_share_saved=0.0)
    hist = _history(7, skill)
    E = datetime(2026, 3, 9, 17, 10, tzinfo=UTC)
    p = _plan(hist, E, 16, 45, 2)
    base_t = p.baseline.start
    cyc = CarbonSeries(H0, H, np.tile(np.asarray(hist.hourly)[: CYCLE_DAYS * 24], 2))
    d0 = int(((base_t - H0) / DAY) // 1) % CYCLE_DAYS
    order = sorted(range(CYCLE_DAYS), key=lambda d: (min(abs(d - d0), CYCLE_DAYS - abs(d - d0)), d > d0))
    days = order[:29]
    day_start = base_t.replace(hour=0, minute=0)  # the plan's times, relative to the baseline's day
    run = timedelta(minutes=45)
    judged = [c for c in p.candidates if c.paired_days]  # starts that could not beat the baseline: no figures
    assert p.baseline in judged or p.baseline.paired_days == 29
    assert p.chosen.paired_days == 29
    for c in [*judged, p.baseline]:
        savings = []
        for d in days:
            origin = H0 + d * DAY + (CYCLE_DAYS * DAY if d < 2 else timedelta(0))
            tb, tc = origin + (base_t - day_start), origin + (c.start - day_start)
            ib = cyc.integral(tb, tb + run)
            ic = cyc.integral(tc, tc + run)
            savings.append((ib - ic) / ib * 100.0)
        assert c.paired_days == 29
        assert c.paired_days_saved == sum(x > 1e-9 for x in savings)
        assert c.paired_mean_saving_pct == pytest.approx(float(np.mean(savings)), abs=1e-6)
        if c.start != p.baseline.start and c is p.chosen:
            assert f"saved on {c.paired_days_saved} of 29 comparable days" in p.rationale


@given(pct=st.floats(-200, 200), sigma=st.floats(0, 300), nd=st.sampled_from([0, 1]))
def test_preview_text_flags_wide_uncertainty_and_never_says_minus_zero(pct, sigma, nd):
    text = saving_text(pct, sigma, nd)
    assert not text.startswith("-0%") and not text.startswith("-0.0%") and "+- -" not in text
    if round(sigma, nd) > round(abs(pct), nd):
        assert "uncertain" in text


def test_zones_without_skill_keep_the_baseline_and_say_why():
    table = skill_table()
    assert table["thresholds"]["days"] >= 1 and "leave-one-month-out" in table["method"]
    off = [z for z, row in table["zones"].items() if not row["allowed"]]
    for zone in off:
        from scheduling.paired import paired_history

        hist = paired_history(zone)
        assert not hist.skill.allowed and hist.skill.reason
        moved_elsewhere = 0
        for day in range(0, 364, 7):  # nights over a year: never moved, and the reason is given
            p = _plan(hist, datetime(2025, 1, 1, 17, tzinfo=UTC) + day * DAY, 16, 30, 32)
            assert p.chosen.start == p.baseline.start
            if p.skill_gated:
                moved_elsewhere += 1
                assert f"history-based shifting is off for zone {zone}" in p.rationale
                assert hist.skill.reason in p.rationale
        assert moved_elsewhere > 0  # the climatology did see better starts


def test_out_of_sample_forecast_ignores_the_month_it_judges():
    """Garbage in the judged month must not change what a decision in that month sees."""
    actual = embedded_history("DE")
    cfg = BacktestConfig(p50_sec=1800, p90_sec=1800, window_hours=8, forecast="embedded")
    vals = np.asarray(actual.values).copy()
    june = (datetime(2023, 6, 1, tzinfo=UTC) - H0) // H, (datetime(2023, 7, 1, tzinfo=UTC) - H0) // H
    vals[june[0] : june[1]] *= 7.0
    spoiled = CarbonSeries(actual.start, actual.step, vals)
    nominal = datetime(2023, 6, 15, 1, tzinfo=UTC)
    E, L = cfg.window(nominal)
    for with_paired in (False, True):
        a = out_of_sample_forecaster(actual, "DE", cfg, with_paired)(E, E, L)
        b = out_of_sample_forecaster(spoiled, "DE", cfg, with_paired)(E, E, L)
        assert np.array_equal(a.values, b.values) and np.array_equal(a.sigma, b.sigma)
        p_a = plan_schedule(
            earliest=E, latest=L, p50_sec=1800, p90_sec=1800, series=a, power_kw=1,
            risk_mode=RiskMode.CONSERVATIVE, weights=CARBON, baseline=nominal,
        )  # fmt: skip
        p_b = plan_schedule(
            earliest=E, latest=L, p50_sec=1800, p90_sec=1800, series=b, power_kw=1,
            risk_mode=RiskMode.CONSERVATIVE, weights=CARBON, baseline=nominal,
        )  # fmt: skip
        assert p_a.chosen.start == p_b.chosen.start
        assert [c.paired_days_saved for c in p_a.candidates] == [c.paired_days_saved for c in p_b.candidates]


def test_a_season_switched_off_keeps_the_baseline_only_in_that_month_and_band():
    """``seasons_off`` (month, 6-hour band): a night in that month stays put and says why; the same night a
    month later, and the same month at midday, are judged by the rule as before."""
    rule = PairedSkill(days=29, min_mean_saving_pct=0.0, min_share_saved=0.0)
    why = "in March at 22-04 h UTC the paired rule has no track record"
    off = PairedSkill(days=29, min_mean_saving_pct=0.0, min_share_saved=0.0, seasons_off=((3, 1, why),))
    assert off.at(datetime(2025, 3, 10, 23, tzinfo=UTC)).allowed is False  # 23 h is in the 22-04 band
    assert off.at(datetime(2025, 3, 10, 23, tzinfo=UTC)).reason == why
    assert off.at(datetime(2025, 3, 10, 4, tzinfo=UTC)).allowed  # the next band
    assert off.at(datetime(2025, 4, 10, 1, tzinfo=UTC)) is off  # the next month
    with pytest.raises(ValueError, match="seasons_off"):
        PairedSkill(seasons_off=((13, 1, "x"),))
    base = _history(7, rule)
    hist = PairedHistory(base.start, base.hourly, off)
    moved = {"off": 0, "on": 0}
    for day in range(0, 28, 3):
        when = datetime(2025, 3, 1, 20, tzinfo=UTC) + day * DAY
        p_rule = _plan(base, when, 8, 30, 16)  # baseline 00:00 UTC, in March's switched-off night band
        p_off = _plan(hist, when, 8, 30, 16)
        assert p_off.chosen.start == p_off.baseline.start
        assert p_off.decision_rule["allowed"] is False and p_off.decision_rule["reason"] == why
        if p_rule.chosen.start != p_rule.baseline.start:
            moved["off"] += 1
            assert why in p_off.rationale
        p_april = _plan(hist, when + 31 * DAY, 8, 30, 16)
        assert p_april.chosen.start == _plan(base, when + 31 * DAY, 8, 30, 16).chosen.start
        moved["on"] += p_april.chosen.start != p_april.baseline.start
    assert moved["off"] > 0 and moved["on"] > 0  # the rule would have moved in both months


def test_the_shipped_seasons_off_are_judged_from_neighbouring_months():
    table = skill_table()
    for zone, row in table["zones"].items():
        for o in row.get("seasons_off", []):
            assert 1 <= o["month"] <= 12 and o["hour"] in (1, 7, 13, 19)
            assert "no track record" in o["reason"] and "needed 0.2" in o["reason"]
        from scheduling.paired import paired_skill

        sk = paired_skill(zone)
        assert len(sk.seasons_off) == len(row.get("seasons_off", []))
    for m in range(1, 13):  # a fold judges only its own month, from the others
        for row in table["folds"][str(m)]["zones"].values():
            assert all(o["month"] == m for o in row.get("seasons_off", []))
