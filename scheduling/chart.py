"""SVG preview of a plan: intensity over the window, the top candidates and the chosen run shaded."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from scheduling.carbon import CarbonSeries
from scheduling.scoring import Plan

__all__ = ["preview_svg"]

_LOCK = threading.Lock()  # matplotlib's font cache and rcParams are process-global


def preview_svg(series: CarbonSeries, plan: Plan, earliest: datetime, latest: datetime | None) -> bytes:
    """SVG chart (bytes) of intensity (g/kWh) over ``[earliest, latest]`` (UTC) with the candidates
    shaded lightly, the chosen run's p50 span shaded strongly (its p90 tail hatched) and the window edges
    marked. Uses the non-interactive Agg backend; deterministic output for the same input."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    def naive(t: datetime) -> float:  # matplotlib date number of the UTC time
        return float(date2num(t.astimezone(UTC).replace(tzinfo=None)))

    end = latest or plan.chosen.finish_p90
    margin = max((end - earliest) * 0.03, timedelta(minutes=15))
    lo = max(series.start, earliest - margin)
    hi = min(series.end, max(end, plan.chosen.finish_p90) + margin)
    i0 = max(0, series.index_of(lo))
    i1 = min(len(series), series.index_of(hi) + 1)
    times = np.array([naive(series.start + i * series.step) for i in range(i0, i1 + 1)])
    vals = np.asarray(series.values[i0:i1])

    with _LOCK, matplotlib.rc_context({"svg.hashsalt": "orch-preview", "svg.fonttype": "none"}):
        fig = Figure(figsize=(9, 3.6), dpi=100)
        ax = fig.add_subplot()
        if vals.size:
            if series.sigma is not None:  # the forecast's 1-sigma band
                sg = np.asarray(series.sigma[i0:i1])
                ax.stairs(
                    vals + sg,
                    times,
                    baseline=np.maximum(vals - sg, 0.0),
                    fill=True,
                    color="#90cdf4",
                    alpha=0.35,
                    linewidth=0,
                    label="+- 1 sigma",
                )
            ax.stairs(vals, times, color="#2b6cb0", linewidth=1.4, label="intensity (g/kWh)")
        for c in plan.candidates[1:]:
            ax.axvspan(naive(c.start), naive(c.finish_p50), color="#a0aec0", alpha=0.18, linewidth=0)
        ch = plan.chosen
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
        if plan.baseline.start != ch.start:
            ax.axvline(naive(plan.baseline.start), color="#718096", linestyle=":", linewidth=1)
        ax.axvline(naive(earliest), color="#2d3748", linestyle="--", linewidth=1, label="earliest_start")
        if latest is not None:
            ax.axvline(naive(latest), color="#c53030", linestyle="--", linewidth=1, label="latest_finish")
        ax.set_ylabel("gCO2e/kWh")
        ax.set_xlabel("UTC")
        ax.set_ylim(bottom=0)
        ax.xaxis_date()
        ax.set_title(
            f"{plan.risk_mode}: {plan.feasible_count} of {plan.total_count} starts feasible; "
            f"expected saving {ch.saving_vs_earliest_pct:.0f}% +- {ch.saving_sigma_pct:.0f}% vs the baseline",
            fontsize=10,
        )
        ax.legend(loc="lower left", fontsize=7, framealpha=0.85)
        ax.grid(alpha=0.25)
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()
