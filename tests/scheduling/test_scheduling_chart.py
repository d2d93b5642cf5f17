"""SVG preview chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carbon.embedded import embedded_series
from scheduling.chart import preview_svg
from scheduling.scoring import RiskMode, Weights, plan_schedule


def test_preview_svg_is_a_deterministic_svg():
    e = datetime(2026, 3, 10, 6, tzinfo=UTC)
    latest = e + timedelta(hours=30)
    series, note = embedded_series("eu-west-2", e, latest)
    plan = plan_schedule(
        earliest=e,
        latest=latest,
        p50_sec=2 * 3600,
        p90_sec=3 * 3600,
        series=series,
        power_kw=0.3,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        notes=[note],
    )
    svg = preview_svg(series, plan, e, latest)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert b"latest_finish" in svg and b"chosen" in svg
    assert b"expected saving" in svg and b"1 sigma" in svg  # the embedded climatology carries sigma
    assert preview_svg(series, plan, e, latest) == svg


def test_preview_without_deadline():
    e = datetime(2026, 3, 10, 6, tzinfo=UTC)
    series, _ = embedded_series("eu-north-1", e, e + timedelta(hours=2))
    plan = plan_schedule(
        earliest=e,
        latest=None,
        p50_sec=3600,
        p90_sec=5400,
        series=series,
        power_kw=0.3,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=Weights(),
        fixed_start=True,
    )
    assert b"<svg" in preview_svg(series, plan, e, None)


def test_chart_scales_to_the_data_draws_every_score_and_no_fake_zero():
    import numpy as np

    from scheduling.carbon import CarbonSeries
    from scheduling.chart import preview_figure

    e = datetime(2026, 3, 10, 0, tzinfo=UTC)
    hours = np.arange(24)
    values = 385 - 20 * np.exp(-((hours - 13) ** 2) / 6.0)  # 365-385 g/kWh with a dip at 13:00
    series = CarbonSeries(e, timedelta(hours=1), values, sigma=np.full(24, 2.0))
    latest = e + timedelta(hours=20)
    plan = plan_schedule(
        earliest=e,
        latest=latest,
        p50_sec=3600,
        p90_sec=3600,
        series=series,
        power_kw=1.0,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(carbon=1, risk=0, slack=0),
        top_k=1000,
    )
    fig = preview_figure(series, plan, e, latest)
    top, scores = fig.axes
    low, high = top.get_ylim()
    assert 300 < low < 365 and 385 < high < 420, (low, high)  # not from 0: the dip is visible
    steps = [a for a in top.patches if type(a).__name__ == "StepPatch"]
    assert any(a.get_data().baseline is None for a in steps)  # the curve has no edges down to 0
    line = max(scores.get_lines(), key=lambda ln: len(ln.get_xdata()))
    assert len(line.get_xdata()) == len(plan.candidates) == plan.feasible_count
    assert any("expected saving" in t.get_text() for t in top.texts)  # the chosen start is annotated
    assert abs(plan.chosen.start.hour - 13) <= 1


def test_several_regions_draw_one_line_each():
    from scheduling.scoring import RegionOption, plan_regions

    e = datetime(2026, 3, 10, 6, tzinfo=UTC)
    latest = e + timedelta(hours=30)
    regions = ("eu-central-1", "eu-west-3", "eu-west-2")
    series = {r: embedded_series(r, e, latest)[0] for r in regions}
    plan = plan_regions(
        earliest=e,
        latest=latest,
        p50_sec=2 * 3600,
        p90_sec=3 * 3600,
        options=[RegionOption(r, s, 0.3) for r, s in series.items()],
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        top_k=10_000,
    )
    svg = preview_svg(series, plan, e, latest)
    assert f"{plan.chosen.region} (chosen) g/kWh".encode() in svg
    for r in regions:
        if r != plan.chosen.region:
            assert f"{r} g/kWh".encode() in svg
    assert preview_svg(series, plan, e, latest) == svg
