"""SVG preview of a plan: the intensity forecast with its uncertainty over the window, every candidate's total
score below it, and the chosen run shaded and annotated with its expected saving."""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np

from scheduling.carbon import CarbonSeries
from scheduling.scoring import Plan, paired_text, saving_text

__all__ = ["preview_figure", "preview_svg"]

_LOCK = threading.Lock()  # matplotlib's font cache and rcParams are process-global


SeriesArg = CarbonSeries | Mapping[str, CarbonSeries]
# one colour per extra region (the chosen/home region keeps the blue of the one-region chart)
_REGION_COLOURS = ("#dd6b20", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#4a5568", "#e53e3e", "#38b2ac")


def preview_svg(series: SeriesArg, plan: Plan, earliest: datetime, latest: datetime | None) -> bytes:
    """:func:`preview_figure` as SVG bytes; deterministic output for the same input."""
    import matplotlib

    with _LOCK, matplotlib.rc_context({"svg.hashsalt": "orch-preview", "svg.fonttype": "none"}):
        fig = preview_figure(series, plan, earliest, latest)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def preview_figure(series: SeriesArg, plan: Plan, earliest: datetime, latest: datetime | None):
    """The preview chart as a matplotlib Figure, two panels sharing the time axis (UTC):

    - top: intensity (g/kWh) over ``[earliest, latest]`` as steps (no edges down to 0: there is no data
      there), its 1-sigma band when the series carries one, the y-axis scaled to the data (not to 0, so a
      365-400 g/kWh curve shows its dip), the chosen run's p50 span shaded (its p90 tail hatched), the
      baseline start dotted, the window's edges dashed, and the chosen start annotated with its saving;
    - bottom: the total score (the objective the planner minimises; lower is better) of every candidate in
      ``plan.candidates`` at its start time, the chosen one marked.

    With several regions (``series`` a mapping region -> series, the home region first), the top panel
    draws one intensity line per region (the band for the chosen region only) and the bottom panel one
    score line per region.

    Uses the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    def naive(t: datetime) -> float:  # matplotlib date number of the UTC time
        return float(date2num(t.astimezone(UTC).replace(tzinfo=None)))

    by_region = dict(series) if isinstance(series, Mapping) else {}
    if isinstance(series, Mapping):
        series = by_region.get(plan.chosen.region or "", next(iter(by_region.values())))
    multi = len(by_region) > 1
    others_order = [r for r in by_region if r != plan.chosen.region]
    colour_of = {r: _REGION_COLOURS[n % len(_REGION_COLOURS)] for n, r in enumerate(others_order)}
    end = latest or plan.chosen.finish_p90
    margin = max((end - earliest) * 0.03, timedelta(minutes=15))
    lo = max(series.start, earliest - margin)
    hi = min(series.end, max(end, plan.chosen.finish_p90) + margin)
    i0 = max(0, series.index_of(lo))
    i1 = min(len(series), series.index_of(hi) + 1)
    times = np.array([naive(series.start + i * series.step) for i in range(i0, i1 + 1)])
    vals = np.asarray(series.values[i0:i1])
    sg = np.asarray(series.sigma[i0:i1]) if series.sigma is not None else np.zeros_like(vals)
    ch = plan.chosen

    fig = Figure(figsize=(9, 4.8), dpi=100)
    ax, axs = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    if vals.size:
        if series.sigma is not None:  # the forecast's 1-sigma band
            ax.stairs(
                vals + sg,
                times,
                baseline=np.maximum(vals - sg, 0.0),
                fill=True,
                color="#90cdf4",
                alpha=0.35,
                linewidth=0,
                label="forecast +- 1 sigma",
            )
        # baseline=None: only the steps, no vertical edges down to 0 at either end
        label = f"{plan.chosen.region} (chosen) g/kWh" if multi else "intensity (g/kWh)"
        ax.stairs(vals, times, baseline=None, color="#2b6cb0", linewidth=1.4, label=label)
        low, high = float(np.min(vals - sg)), float(np.max(vals + sg))
        others = [(r, s) for r, s in by_region.items() if s is not series]
        for region, other in others:
            j0, j1 = max(0, other.index_of(lo)), min(len(other), other.index_of(hi) + 1)
            ovals = np.asarray(other.values[j0:j1])
            if not ovals.size:
                continue
            ot = np.array([naive(other.start + i * other.step) for i in range(j0, j1 + 1)])
            colour = colour_of.get(region, "#4a5568")
            ax.stairs(ovals, ot, baseline=None, color=colour, linewidth=1.0, label=f"{region} g/kWh")
            low, high = min(low, float(ovals.min())), max(high, float(ovals.max()))
        pad = max((high - low) * 0.12, high * 0.01, 1.0)
        ax.set_ylim(max(low - pad, 0.0), high + pad)
    ax.axvspan(
        naive(ch.start),
        naive(ch.finish_p50),
        color="#38a169",
        alpha=0.45,
        linewidth=0,
        label=f"chosen {ch.start:%Y-%m-%d %H:%M}Z ({ch.emissions_g:,.0f} gCO2e)",
    )
    if ch.finish_p90 > ch.finish_p50:
        ax.axvspan(
            naive(ch.finish_p50),
            naive(ch.finish_p90),
            facecolor="none",
            edgecolor="#38a169",
            hatch="//",
            alpha=0.6,
            linewidth=0,
            label="chosen p50..p90",
        )
    saving = (
        paired_text(ch, plan.decision_rule)
        if ch.paired_days
        else f"expected saving {saving_text(ch.saving_vs_earliest_pct, ch.saving_sigma_pct)}"
    )
    if vals.size:
        y = ax.get_ylim()[1]
        ax.annotate(
            f"start {ch.start:%H:%M}Z: {saving}",
            xy=(naive(ch.start), y),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
            color="#276749",
        )
    for a in (ax, axs):
        if plan.baseline.start != ch.start:
            a.axvline(naive(plan.baseline.start), color="#718096", linestyle=":", linewidth=1)
        a.axvline(naive(earliest), color="#2d3748", linestyle="--", linewidth=1)
        if latest is not None:
            a.axvline(naive(latest), color="#c53030", linestyle="--", linewidth=1)
        a.grid(alpha=0.25)
    ax.plot([], [], color="#2d3748", linestyle="--", linewidth=1, label="earliest_start")
    if latest is not None:
        ax.plot([], [], color="#c53030", linestyle="--", linewidth=1, label="latest_finish")
    if plan.baseline.start != ch.start:
        ax.plot([], [], color="#718096", linestyle=":", linewidth=1, label="baseline start")
    ax.set_ylabel("gCO2e/kWh")
    ax.set_title(
        f"{plan.risk_mode}: {plan.feasible_count} of {plan.total_count} starts feasible; "
        f"expected saving {saving} vs the baseline",
        fontsize=10,
    )
    ax.legend(loc="lower left", fontsize=7, framealpha=0.85)

    regions = list(dict.fromkeys(c.region for c in plan.candidates))
    for cand_region in regions:
        cands = sorted((c for c in plan.candidates if c.region == cand_region), key=lambda c: c.start)
        grey = not multi or cand_region == ch.region
        colour = "#4a5568" if grey else colour_of.get(cand_region or "", "#a0aec0")
        xs = [naive(c.start) for c in cands]
        axs.plot(xs, [c.objective for c in cands], color=colour, linewidth=1, marker=".", markersize=3)
    if plan.candidates:
        axs.plot([naive(ch.start)], [ch.objective], marker="o", color="#38a169", markersize=6)
    axs.set_ylabel("score\n(lower = better)", fontsize=8)
    axs.set_xlabel("UTC")
    axs.xaxis_date()
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
