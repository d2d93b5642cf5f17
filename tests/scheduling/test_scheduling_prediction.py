"""Runtime prediction: recency weighting, calibration of p90, confidence, insufficient history."""

from __future__ import annotations

import numpy as np
import pytest

from scheduling.prediction import predict_runtime, student_t_ppf


def test_student_t_quantiles():
    assert student_t_ppf(0.9, 1) == pytest.approx(3.077684, rel=1e-6)
    assert student_t_ppf(0.9, 5) == pytest.approx(1.475884, rel=1e-6)
    assert student_t_ppf(0.9, 19) == pytest.approx(1.327728, rel=1e-6)
    assert student_t_ppf(0.9, 7.5) == pytest.approx(1.407, abs=2e-3)  # fractional df
    assert student_t_ppf(0.1, 10) == pytest.approx(-student_t_ppf(0.9, 10))
    assert student_t_ppf(0.9, 1e7) == pytest.approx(1.281552, rel=1e-5)


def test_insufficient_history():
    p = predict_runtime([100.0, 120.0], min_samples=3)
    assert not p.available and p.notes == "insufficient history" and p.sample_size == 2
    assert p.p50_sec is None and p.p90_sec is None and p.confidence is None
    assert not predict_runtime([]).available


@pytest.mark.parametrize("seed_base", [0, 10_000])
def test_p90_is_calibrated_on_20_run_lognormal_histories(seed_base):
    """p90 covers 90% +- 5% of the next run, across many seeds and spreads."""
    hits = []
    for seed in range(seed_base, seed_base + 1500):
        rng = np.random.default_rng(seed)
        mu, sigma = rng.uniform(3, 9), rng.uniform(0.05, 1.0)
        runs = np.exp(rng.normal(mu, sigma, 21))
        p = predict_runtime(runs[:20])
        hits.append(runs[20] <= p.p90_sec)
    assert 0.85 <= np.mean(hits) <= 0.95


def test_p50_is_calibrated_too():
    hits = []
    for seed in range(1500):
        rng = np.random.default_rng(seed)
        runs = np.exp(rng.normal(6, 0.4, 21))
        hits.append(runs[20] <= predict_runtime(runs[:20]).p50_sec)
    assert 0.45 <= np.mean(hits) <= 0.55


def test_recent_runs_weigh_more_and_ages_order_them():
    old, new = [1000.0] * 10, [2000.0] * 10
    chrono = predict_runtime(old + new)  # last = newest
    assert chrono.p50_sec > 1414  # above the unweighted geometric mean
    # the same runs given newest-first with ages: same answer
    ages = list(range(20))
    aged = predict_runtime(list(reversed(old + new)), ages_sec=ages)
    assert aged.p50_sec == pytest.approx(chrono.p50_sec)
    flat = predict_runtime(old + new, half_life_runs=None)
    assert flat.p50_sec == pytest.approx(np.sqrt(1000 * 2000))


def test_confidence_rises_with_n_and_falls_with_dispersion():
    rng = np.random.default_rng(3)
    base = np.exp(rng.normal(6, 0.1, 40))
    c3 = predict_runtime(base[:3]).confidence
    c10 = predict_runtime(base[:10]).confidence
    c40 = predict_runtime(base).confidence
    assert 0 <= c3 < c10 < c40 <= 1
    wide = np.exp(rng.normal(6, 0.8, 40))
    assert predict_runtime(wide).confidence < c40
    same = predict_runtime([300.0] * 5)
    assert same.p50_sec == pytest.approx(300) and same.p90_sec == pytest.approx(300)
    assert same.confidence == pytest.approx(5 / 9, rel=0.05)


def test_bad_input():
    with pytest.raises(ValueError):
        predict_runtime([1.0, -2.0, 3.0])
    with pytest.raises(ValueError):
        predict_runtime([1.0, float("nan"), 3.0])
    with pytest.raises(ValueError):
        predict_runtime([1.0, 2.0, 3.0], ages_sec=[1.0])
    assert predict_runtime([0.0, 0.0, 0.0]).p50_sec == pytest.approx(1.0)  # floored at 1 s
