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
