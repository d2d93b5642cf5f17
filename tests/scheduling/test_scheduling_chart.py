"""The charts: the SVG preview of a plan and the carbon report's bar chart (structure, not golden images:
titles, legend placement against the plotted data, axis ranges, bounded size, shared formatting)."""

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
    svg = preview_svg({"eu-west-2": series}, plan, e, latest, what="daily-etl")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert b"latest_finish" in svg and b"chosen" in svg
    assert b"daily-etl in eu-west-2: start " in svg  # what and where
    assert b"1 sigma" in svg  # the embedded climatology carries sigma
    assert preview_svg({"eu-west-2": series}, plan, e, latest, what="daily-etl") == svg


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
    title = top.get_title(loc="left")
    assert title.startswith(f"job: start {plan.chosen.start:%H:%M}Z saves "), title  # the saving in the title
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


def _bbox_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_preview_reads_at_a_glance_legend_outside_every_series_visible_800px():
    """Issue 20 item 2: a flat 8 g/kWh region next to 200-550 g/kWh ones stays inside the y-range and
    keeps its own colour; the legend lies outside both panels; the figure is 800 px wide; the x-axis spans
    the data (no empty half); each region has the same colour as in any other chart."""
    import numpy as np

    from scheduling.carbon import CarbonSeries
    from scheduling.chart import preview_figure, region_colour
    from scheduling.scoring import RegionOption, plan_regions

    e = datetime(2026, 3, 10, 0, tzinfo=UTC)
    latest = e + timedelta(hours=30)
    hours = np.arange(40)
    series = {
        "eu-west-3": CarbonSeries(e, timedelta(hours=1), 60 + 20 * np.sin(hours / 4)),
        "eu-north-1": CarbonSeries(e, timedelta(hours=1), np.full(40, 8.0)),
        "eu-central-1": CarbonSeries(e, timedelta(hours=1), 450 + 100 * np.cos(hours / 5)),
    }
    plan = plan_regions(
        earliest=e,
        latest=latest,
        p50_sec=3600,
        p90_sec=5400,
        options=[RegionOption(r, s, 0.3) for r, s in series.items()],
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        top_k=10_000,
    )
    fig = preview_figure(series, plan, e, latest, what="daily-etl")
    assert fig.get_size_inches()[0] * fig.dpi == 800
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    top, scores = fig.axes
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for a in (top, scores):
        assert not _bbox_overlap(legend, a.get_window_extent(renderer)), "the legend covers a panel"
    low, high = top.get_ylim()
    assert low < 8 < high and high >= 550
    flat = [p for p in top.patches if p.get_label().startswith("eu-north-1")]
    assert flat and all(np.allclose(p.get_data().values, 8.0) for p in flat)
    from matplotlib.colors import to_hex

    assert to_hex(flat[0].get_edgecolor()) == region_colour("eu-north-1")
    x0, x1 = scores.get_xlim()
    from matplotlib.dates import date2num

    data_end = float(date2num((e + timedelta(hours=40)).replace(tzinfo=None)))
    assert x1 <= data_end + (x1 - x0) * 0.02  # the axis stops at the data
    assert top.get_title(loc="left").startswith(f"daily-etl in {plan.chosen.region}: start ")
    # the chosen run's emissions in a unit that shows them (a few grams here, not "0 gCO2e")
    from scheduling.chart import fmt_mass, mass_unit

    chosen = [t.get_text() for t in fig.legends[0].get_texts() if t.get_text().startswith("chosen 20")]
    mass = fmt_mass(plan.chosen.emissions_g, mass_unit(plan.chosen.emissions_g))
    assert chosen == [f"chosen {plan.chosen.start:%Y-%m-%d %H:%M}Z ({mass} CO2e)"] and mass != "0 g"


def test_titles_never_say_minus_zero_and_units_scale():
    from dataclasses import replace

    from scheduling.chart import fmt_mass, fmt_pct, mass_unit, preview_title

    assert fmt_pct(-0.3) == "0 %" and fmt_pct(-0.0) == "0 %" and fmt_pct(12.4) == "12 %"
    assert mass_unit(999) == "g" and mass_unit(1500) == "kg" and mass_unit(2.5e6) == "t"
    assert fmt_mass(1234.5, "kg") == "1.23 kg" and fmt_mass(845, "g") == "845 g"
    assert fmt_mass(-0.0004, "kg") == "0.000 kg" and fmt_mass(2.5e6, "t") == "2.50 t"
    e = datetime(2026, 3, 10, 3, 15, tzinfo=UTC)
    series, _ = embedded_series("eu-west-3", e, e + timedelta(hours=6))
    plan = plan_schedule(
        earliest=e,
        latest=e + timedelta(hours=6),
        p50_sec=3600,
        p90_sec=3600,
        series=series,
        power_kw=0.3,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
    )
    tiny = replace(plan, chosen=replace(plan.chosen, saving_vs_earliest_pct=-0.2, saving_sigma_pct=0.1))
    title = preview_title(tiny, "daily-etl", region="eu-west-3")
    assert "-0" not in title and title.startswith("daily-etl in eu-west-3: start 03:15Z")
    some = replace(plan, chosen=replace(plan.chosen, saving_vs_earliest_pct=12.2, saving_sigma_pct=2.0))
    assert preview_title(some, "daily-etl", region="eu-west-3") == (
        f"daily-etl in eu-west-3: start {plan.chosen.start:%H:%M}Z saves 12 % (10-14 %)"
    )
    # a saving cannot pass 100 % (emissions are never below 0): nor can its range
    most = replace(plan, chosen=replace(plan.chosen, saving_vs_earliest_pct=98.4, saving_sigma_pct=39.6))
    assert preview_title(most, "daily-etl", region="eu-west-3").endswith(" saves 98 % (59-100 %)")


def test_a_month_of_many_regions_is_bounded():
    """Issue 21 item 6: 31 days of 5-minute data in 8 regions: at most MAX_REGIONS lines of at most
    MAX_POINTS steps, and the SVG stays small."""
    import numpy as np

    from scheduling.carbon import CarbonSeries
    from scheduling.chart import MAX_POINTS, MAX_REGIONS, chart_regions, preview_figure
    from scheduling.scoring import RegionOption, plan_regions

    e = datetime(2026, 3, 1, tzinfo=UTC)
    latest = e + timedelta(days=31)
    n = 31 * 288 + 12
    regions = ["eu-west-3", "eu-north-1", "eu-central-1", "eu-west-2", "us-east-1", "us-west-2", "eu-west-1"]
    regions.append("ca-central-1")
    rng = np.random.default_rng(3)
    series = {
        r: CarbonSeries(e, timedelta(minutes=5), 100 + 50 * k + rng.normal(0, 5, n))
        for k, r in enumerate(regions)
    }
    plan = plan_regions(
        earliest=e,
        latest=latest,
        p50_sec=3600,
        p90_sec=3600,
        options=[RegionOption(r, s, 0.3) for r, s in series.items()],
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        top_k=1_000_000,
    )
    keep = chart_regions(plan, "eu-west-3")
    assert len(keep) == MAX_REGIONS and keep[0] == "eu-west-3" and plan.chosen.region in keep
    drawn = {r: series[r] for r in keep}
    fig = preview_figure(drawn, plan, e, latest, what="monthly")
    top, scores = fig.axes
    steps = [p for p in top.patches if type(p).__name__ == "StepPatch"]
    assert len(steps) <= MAX_REGIONS + 1 and all(len(p.get_data().values) <= MAX_POINTS for p in steps)
    assert all(len(ln.get_xdata()) <= MAX_POINTS + 1 for ln in scores.get_lines())
    svg = preview_svg(drawn, plan, e, latest, what="monthly")
    assert len(svg) < 1_000_000, len(svg)


def test_report_chart_legend_outside_the_plot_area_and_rows_capped():
    """The report's SVG: the legend box lies outside the plot area (from the SVG's own coordinates), the
    y-axis starts at 0 and holds the largest bar, names are escaped, at most MAX_BARS rows are drawn and a
    line says how many are not."""
    import xml.etree.ElementTree as ET

    from scheduling.chart import MAX_BARS, LedgerBar, ledger_chart_svg

    ns = "{http://www.w3.org/2000/svg}"
    bars = [
        LedgerBar(f"<row {i}> & co", 1000.0 * (i + 1), 800.0 * (i + 1), f"{i + 1} kg", "x", "y")
        for i in range(MAX_BARS + 5)
    ]
    root = ET.fromstring(ledger_chart_svg(bars, "kg", "title", "subtitle", "a note"))

    def box(el):
        return tuple(float(el.get(k)) for k in ("x", "y", "width", "height"))

    plot = box(next(el for el in root.iter(f"{ns}rect") if el.get("id") == "plot-area"))
    legend = box(next(el for el in root.iter(f"{ns}rect") if el.get("id") == "legend-box"))
    assert legend[1] + legend[3] <= plot[1] or legend[1] >= plot[1] + plot[3]  # above or below, not on
    drawn = [el for el in root.iter(f"{ns}rect") if el.get("class") == "bar"]
    assert len(drawn) == 2 * MAX_BARS
    for el in drawn:  # every bar inside the plot area, from its bottom
        x, y, w, h = box(el)
        assert plot[0] <= x and x + w <= plot[0] + plot[2] + 0.1
        assert plot[1] - 0.1 <= y and abs(y + h - (plot[1] + plot[3])) < 0.2
    tallest = max(box(el)[3] for el in drawn)
    assert 0.5 * plot[3] < tallest <= plot[3]  # scaled to the data
    texts = " ".join(el.text or "" for el in root.iter(f"{ns}text"))
    assert "<row 28> & co" in texts and "5 smaller row(s) not drawn" in texts
    assert "<row 0> & co" not in texts  # the smallest rows are the ones left out


def test_no_empty_half_when_the_window_outlasts_the_forecast():
    """A 48-hour window drawn with 12 hours of forecast (rising intensity: the planner starts early): the
    x-axis ends with the data and the chosen run, and the legend says where latest_finish lies instead of
    stretching the axis to it."""
    import numpy as np
    from matplotlib.dates import date2num

    from scheduling.carbon import CarbonSeries
    from scheduling.chart import preview_figure

    e = datetime(2026, 3, 10, 0, tzinfo=UTC)
    full = CarbonSeries(e, timedelta(hours=1), 300 + 10 * np.sin(np.arange(48)) + np.arange(48))
    series = full.slice(e, e + timedelta(hours=12))  # what the chart has: the first 12 hours
    latest = e + timedelta(hours=48)
    plan = plan_schedule(
        earliest=e,
        latest=latest,
        p50_sec=3600,
        p90_sec=3600,
        series=full,
        power_kw=0.3,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        top_k=1000,
    )
    fig = preview_figure({"eu-west-3": series}, plan, e, latest, what="etl")
    top, scores = fig.axes
    x0, x1 = scores.get_xlim()
    data_end = float(date2num((e + timedelta(hours=12)).replace(tzinfo=None)))
    assert (
        x1 <= max(data_end, float(date2num(plan.chosen.finish_p90.replace(tzinfo=None)))) + (x1 - x0) * 0.02
    )
    labels = top.get_legend_handles_labels()[1]
    assert any(lb.startswith("latest_finish 2026-03-12 00:00Z (after the data)") for lb in labels), labels
