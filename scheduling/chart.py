"""Charts: the SVG preview of a plan (the intensity forecast with its uncertainty over the window, every
candidate's total score below it, the chosen run shaded, its saving in the title) and the carbon report's bar
chart, plus the formatting both share (mass units, percentages, one colour per region everywhere).

Both are bounded per request: a series is drawn with at most ``MAX_POINTS`` steps (block means), the score
panel with at most ``MAX_POINTS`` candidates per region (the best per time bucket), at most ``MAX_REGIONS``
regions, and the report with at most ``MAX_BARS`` rows (the largest; the JSON and CSV have every row)."""

from __future__ import annotations

import io
import math
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

import numpy as np

from scheduling.carbon import CarbonSeries
from scheduling.scoring import Plan

__all__ = [
    "LedgerBar",
    "chart_regions",
    "fmt_mass",
    "fmt_pct",
    "ledger_chart_svg",
    "mass_unit",
    "preview_figure",
    "preview_svg",
    "preview_title",
    "region_colour",
    "region_colours",
]

_LOCK = threading.Lock()  # matplotlib's font cache and rcParams are process-global

MAX_POINTS = 400  # steps per series and candidates per region drawn: 800 px wide cannot show more
MAX_REGIONS = 6  # intensity lines per preview chart (the chosen and the home region always among them)
MAX_BARS = 24  # rows per report chart

SeriesArg = CarbonSeries | Mapping[str, CarbonSeries]

# the same colours in every chart: baseline grey, chosen green, and one fixed colour per region
BASELINE_COLOUR = "#8696ab"  # a grey the dotted baseline line shows in too
CHOSEN_COLOUR = "#2f855a"
_PALETTE = (
    "#2b6cb0",
    "#dd6b20",
    "#805ad5",
    "#d53f8c",
    "#319795",
    "#b7791f",
    "#4a5568",
    "#e53e3e",
    "#38a169",
    "#00a3c4",
    "#975a16",
    "#1a202c",
)
_KNOWN_REGIONS = (
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ca-central-1",
    "us-east-2",
    "ap-northeast-1",
    "sa-east-1",
    "ap-southeast-2",
)
_MASS_UNITS = (("t", 1_000_000.0), ("kg", 1000.0), ("g", 1.0))


def region_colour(region: str | None) -> str:
    """The colour of a region's line in every chart (fixed for the common regions, else from its name)."""
    if region in _KNOWN_REGIONS:
        return _PALETTE[_KNOWN_REGIONS.index(region)]
    return _PALETTE[zlib.crc32((region or "").encode()) % len(_PALETTE)]


def region_colours(regions: Sequence[str]) -> dict[str, str]:
    """:func:`region_colour` for each region, except that a region whose colour another one of the same
    chart already has takes the next free one (so one chart never shows two regions alike)."""
    out: dict[str, str] = {}
    for r in sorted(regions, key=lambda r: (r not in _KNOWN_REGIONS, r)):
        colour = region_colour(r)
        start = _PALETTE.index(colour)
        for k in range(len(_PALETTE)):
            candidate = _PALETTE[(start + k) % len(_PALETTE)]
            if candidate not in out.values():
                colour = candidate
                break
        out[r] = colour
    return out


def mass_unit(max_abs_g: float) -> str:
    """g, kg or t: the largest unit in which ``max_abs_g`` grams is at least 1."""
    for unit, grams in _MASS_UNITS:
        if abs(max_abs_g) >= grams:
            return unit
    return "g"


def fmt_mass(grams: float, unit: str) -> str:
    """``grams`` in ``unit`` with 3 significant digits at least (``1.23 kg``, ``845 g``), never ``-0``."""
    value = grams / dict(_MASS_UNITS)[unit]
    mag = abs(value)
    decimals = 0 if mag >= 100 else 1 if mag >= 10 else 2 if mag >= 1 or mag == 0 else 3
    if unit == "g" and mag < 1 and mag != 0:
        decimals = 3
    text = f"{value:,.{decimals}f}"
    if float(text.replace(",", "")) == 0:
        text = text.lstrip("-")
    return f"{text} {unit}"


def fmt_pct(pct: float, decimals: int = 0) -> str:
    """A percentage such as ``12 %``; never ``-0 %``."""
    text = f"{pct:.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return f"{text} %"


def preview_title(
    plan: Plan, what: str | None = None, multi_day: bool = False, region: str | None = None
) -> str:
    """What the chart shows, where, and what it saves: ``daily-etl in eu-west-3: start 03:15Z saves 12 %
    (10-14 %)`` (the range is the expected saving +- 1 sigma, at most 100 %)."""
    ch = plan.chosen
    where = f" in {region or ch.region}" if (region or ch.region) else ""
    when = f"{ch.start:%Y-%m-%d %H:%M}Z" if multi_day else f"{ch.start:%H:%M}Z"
    pct, sigma = ch.saving_vs_earliest_pct, ch.saving_sigma_pct
    lead = f"{what or 'job'}{where}: start {when}"
    if ch.paired_days and ch.start != plan.baseline.start:  # judged by the paired rule: its own figures
        mean = fmt_pct(ch.paired_mean_saving_pct or 0.0, 1)
        days = f"saved on {ch.paired_days_saved} of {ch.paired_days} comparable days"
        return f"{lead} saves {mean} on average ({days})"
    if round(pct) == 0 and round(sigma) == 0:
        return f"{lead}, no saving expected vs the baseline"
    lo, hi = round(pct - sigma), min(round(pct + sigma), 100)  # emissions are never below 0: at most 100 %
    span = f"{lo}-{hi} %" if lo >= 0 else f"{lo} to {hi} %"
    verb = "saves" if round(pct) >= 0 else "costs"
    return f"{lead} {verb} {fmt_pct(abs(pct))} ({span.replace('-0 ', '0 ')})"


def chart_regions(plan: Plan, home: str, limit: int = MAX_REGIONS) -> list[str]:
    """The regions a preview chart draws: the home region, the chosen one, then the others by their best
    candidate's objective, at most ``limit``."""
    best: dict[str, float] = {}
    for c in plan.candidates:
        if c.region is not None:
            best[c.region] = min(best.get(c.region, math.inf), c.objective)
    order = [home, *(r for r in [plan.chosen.region] if r)]
    order += sorted((r for r in plan.regions if r not in order), key=lambda r: best.get(r, math.inf))
    return list(dict.fromkeys(order))[:limit]


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    n = len(values) // factor * factor
    head = values[:n].reshape(-1, factor).mean(axis=1)
    return np.concatenate([head, [values[n:].mean()]]) if n < len(values) else head


def _downsample(series: CarbonSeries, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Values (and sigma) of ``series[i0:i1]`` averaged in blocks so that at most MAX_POINTS remain; the
    block length in steps."""
    vals = np.asarray(series.values[i0:i1], dtype=float)
    sg = np.asarray(series.sigma[i0:i1], dtype=float) if series.sigma is not None else None
    factor = max(1, math.ceil(len(vals) / MAX_POINTS))
    if factor == 1:
        return vals, sg, 1
    return _block_mean(vals, factor), (_block_mean(sg, factor) if sg is not None else None), factor


def preview_svg(
    series: SeriesArg, plan: Plan, earliest: datetime, latest: datetime | None, what: str | None = None
) -> bytes:
    """:func:`preview_figure` as SVG bytes; deterministic output for the same input."""
    import matplotlib

    with _LOCK, matplotlib.rc_context({"svg.hashsalt": "orch-preview", "svg.fonttype": "none"}):
        fig = preview_figure(series, plan, earliest, latest, what)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def preview_figure(
    series: SeriesArg, plan: Plan, earliest: datetime, latest: datetime | None, what: str | None = None
):
    """The preview chart as a matplotlib Figure, 800 px wide, two panels sharing the time axis (UTC):

    - title: what (``what``, the template's name) and where, the chosen start and its expected saving with
      its 1-sigma range (:func:`preview_title`);
    - top: intensity (g/kWh) as steps (no edges down to 0: there is no data there), its 1-sigma band when
      the series carries one, the y-axis scaled to every drawn series (not to 0, so a 365-400 g/kWh curve
      shows its dip, and a flat 8 g/kWh region stays in view), the chosen run's p50 span shaded (its p90
      tail hatched), the baseline start dotted, the window's edges dashed; the x-axis spans the data and
      the chosen run only (no empty half when the window outlasts the forecast);
    - bottom: the total score (the objective the planner minimises; lower is better) of the candidates at
      their start times (the best per time bucket beyond MAX_POINTS), the chosen one marked;
    - the legend below both panels, outside the data.

    Structure for tests and tools (SVG group ids): ``panel-intensity`` and ``panel-score`` (the panels'
    backgrounds), ``intensity-<region>`` / ``band-<region>`` / ``score-<region>`` per series (``series``
    for a series without a region), ``legend``.

    With several regions (``series`` a mapping region -> series, the home region first), one intensity
    line per region in its fixed colour (:func:`region_colour`; the band for the chosen region only), at
    most MAX_REGIONS (the caller picks them with :func:`chart_regions`), and one score line per region.

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
    drawn_regions = list(by_region)[:MAX_REGIONS]
    colours = region_colours(drawn_regions)
    ch = plan.chosen
    end = latest or ch.finish_p90
    margin = max((end - earliest) * 0.03, timedelta(minutes=15))
    lo = max(series.start, earliest - margin)
    hi = min(series.end, max(end, ch.finish_p90) + margin)

    fig = Figure(figsize=(8, 5.2), dpi=100, layout="constrained")
    ax, axs = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    low, high = math.inf, -math.inf
    x_lo, x_hi = naive(ch.start), naive(ch.finish_p90)

    def draw(
        region_series: CarbonSeries, colour: str, label: str, width: float, band: bool, gid: str
    ) -> None:
        nonlocal low, high, x_lo, x_hi
        j0 = max(0, region_series.index_of(lo))
        j1 = min(len(region_series), region_series.index_of(hi) + 1)
        if j1 <= j0:
            return
        vals, sg, factor = _downsample(region_series, j0, j1)
        step = region_series.step * factor
        t0 = region_series.start + j0 * region_series.step
        edges = [t0 + i * step for i in range(len(vals))]
        edges.append(min(t0 + len(vals) * step, region_series.start + j1 * region_series.step))
        times = np.array([naive(t) for t in edges])
        if band and sg is not None:  # the forecast's 1-sigma band
            ax.stairs(
                vals + sg,
                times,
                baseline=np.maximum(vals - sg, 0.0),
                fill=True,
                color=colour,
                alpha=0.18,
                linewidth=0,
                label="forecast +- 1 sigma",
                gid=f"band-{gid}",
            )
            low, high = min(low, float(np.min(vals - sg))), max(high, float(np.max(vals + sg)))
        # baseline=None: only the steps, no vertical edges down to 0 at either end
        ax.stairs(
            vals, times, baseline=None, color=colour, linewidth=width, label=label, gid=f"intensity-{gid}"
        )
        low, high = min(low, float(vals.min())), max(high, float(vals.max()))
        x_lo, x_hi = min(x_lo, float(times[0])), max(x_hi, float(times[-1]))

    if multi:
        for region in drawn_regions:
            s = by_region[region]
            chosen_one = s is series
            label = f"{region} (chosen) g/kWh" if chosen_one else f"{region} g/kWh"
            draw(s, colours[region], label, 1.8 if chosen_one else 1.1, chosen_one, region)
        if len(by_region) > len(drawn_regions):
            ax.plot([], [], " ", label=f"+{len(by_region) - len(drawn_regions)} regions not drawn")
    else:
        only = ch.region or next(iter(by_region), None)
        colour = region_colour(only) if only else _PALETTE[0]
        draw(series, colour, "intensity (g/kWh)", 1.6, True, only or "series")
    if math.isfinite(low):
        pad = max((high - low) * 0.12, high * 0.02, 1.0)
        ax.set_ylim(max(low - pad, 0.0), high + pad)
    chosen_mass = fmt_mass(ch.emissions_g, mass_unit(ch.emissions_g))
    ax.axvspan(
        naive(ch.start),
        naive(ch.finish_p50),
        color=CHOSEN_COLOUR,
        alpha=0.35,
        linewidth=0,
        label=f"chosen {ch.start:%Y-%m-%d %H:%M}Z ({chosen_mass} CO2e)",
    )
    if ch.finish_p90 > ch.finish_p50:
        ax.axvspan(
            naive(ch.finish_p50),
            naive(ch.finish_p90),
            facecolor="none",
            edgecolor=CHOSEN_COLOUR,
            hatch="//",
            alpha=0.6,
            linewidth=0,
            label="chosen p50..p90",
        )
    for a in (ax, axs):
        if plan.baseline.start != ch.start:
            a.axvline(naive(plan.baseline.start), color=BASELINE_COLOUR, linestyle=":", linewidth=1.6)
        a.axvline(naive(earliest), color="#2d3748", linestyle="--", linewidth=1)
        if latest is not None and naive(latest) <= x_hi:
            a.axvline(naive(latest), color="#c53030", linestyle="--", linewidth=1)
        a.grid(alpha=0.25)
    ax.plot([], [], color="#2d3748", linestyle="--", linewidth=1, label="earliest_start")
    if latest is not None:
        beyond = "" if naive(latest) <= x_hi else f" {latest:%Y-%m-%d %H:%M}Z (after the data)"
        ax.plot([], [], color="#c53030", linestyle="--", linewidth=1, label="latest_finish" + beyond)
    if plan.baseline.start != ch.start:
        ax.plot([], [], color=BASELINE_COLOUR, linestyle=":", linewidth=1.6, label="baseline start")
    ax.set_ylabel("gCO2e/kWh")
    multi_day = (end - earliest) > timedelta(hours=24) or ch.start.date() != earliest.date()
    where = ch.region or (next(iter(by_region)) if len(by_region) == 1 else None)
    ax.set_title(preview_title(plan, what, multi_day, where), fontsize=11, loc="left")

    regions = list(dict.fromkeys(c.region for c in plan.candidates))
    for cand_region in regions:
        if multi and cand_region not in drawn_regions:
            continue
        cands = sorted((c for c in plan.candidates if c.region == cand_region), key=lambda c: c.start)
        if len(cands) > MAX_POINTS:  # the best candidate per time bucket
            size = math.ceil(len(cands) / MAX_POINTS)
            cands = [min(cands[i : i + size], key=lambda c: c.objective) for i in range(0, len(cands), size)]
        colour = colours.get(cand_region or "", "#4a5568") if multi else "#4a5568"
        xs = [naive(c.start) for c in cands]
        marker = "." if len(cands) <= 100 else None  # dots only where they can be told apart
        axs.plot(
            xs,
            [c.objective for c in cands],
            color=colour,
            linewidth=1,
            marker=marker,
            markersize=3,
            gid=f"score-{cand_region or 'series'}",
        )
    if plan.candidates:
        axs.plot([naive(ch.start)], [ch.objective], marker="o", color=CHOSEN_COLOUR, markersize=6)
    axs.set_ylabel("score\n(lower = better)", fontsize=8)
    axs.set_xlabel("UTC")
    axs.xaxis_date()
    span = (x_hi - x_lo) or 1.0
    axs.set_xlim(x_lo - span * 0.01, x_hi + span * 0.01)
    for label in axs.get_xticklabels():
        label.set_rotation(20)
        label.set_horizontalalignment("right")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False).set_gid(
        "legend"
    )
    ax.patch.set_gid("panel-intensity")
    axs.patch.set_gid("panel-score")
    return fig


# ---------------------------------------------------------------- the carbon report's chart
@dataclass(frozen=True)
class LedgerBar:
    """One report row: its label, baseline and chosen emissions (g) and the texts the report shows."""

    label: str
    baseline_g: float
    chosen_g: float
    baseline_text: str
    chosen_text: str
    saving_text: str


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= value:
            return m * exp
    return 10 * exp


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    head = f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
    return f"{head}{escape(text)}</text>"


def _wrap(text: str, n: int) -> list[str]:
    """``text`` in lines of at most ``n`` characters, broken at spaces."""
    import textwrap

    return textwrap.wrap(text, n, break_long_words=True) or [""]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def ledger_chart_svg(
    bars: Sequence[LedgerBar], unit: str, title: str, subtitle: str, note: str | None = None
) -> str:
    """The carbon report as an 800 px wide SVG: title and subtitle, the legend above the plot area (outside
    it), baseline (grey) and chosen (green) bars per row on a y-axis from 0 scaled to the largest bar, in
    ``unit`` (g, kg or t), and below it a table of every drawn row with the report's own display strings.

    At most MAX_BARS rows are drawn (the largest baselines, in their order); a line says how many are not.
    Structure for tests and tools: ``g#legend`` (with ``rect#legend-box``), ``rect#plot-area``,
    ``rect.bar`` (``data-series`` baseline|chosen, ``data-label``), ``g#table``."""
    width, left, right = 800, 78, 20
    drawn = list(bars)
    hidden = 0
    if len(drawn) > MAX_BARS:
        keep = sorted(range(len(drawn)), key=lambda i: -max(drawn[i].baseline_g, drawn[i].chosen_g))[
            :MAX_BARS
        ]
        hidden = len(drawn) - MAX_BARS
        drawn = [drawn[i] for i in sorted(keep)]
    scale = dict(_MASS_UNITS)[unit]
    top_value = _nice_max(max([max(b.baseline_g, b.chosen_g, 0.0) for b in drawn] or [0.0]) / scale)
    title_lines, subtitle_lines = _wrap(title, 84), _wrap(subtitle, 120)
    note_lines = _wrap(note, 125) if note else []
    head = 26 + 20 * (len(title_lines) - 1) + 16 * len(subtitle_lines)
    plot_x, plot_y, plot_w, plot_h = left, head + 50, width - left - right, 260
    rotate = len(drawn) > 8
    longest = max((len(_clip(b.label, 18)) for b in drawn), default=0)
    label_band = int(24 + longest * 4.6) if rotate else 26  # rotated -40 degrees: about 4.6 px per char
    table_y = plot_y + plot_h + label_band + 20
    row_h = 17
    height = table_y + row_h * (len(drawn) + 1) + 16 + (18 if hidden else 0) + 14 * len(note_lines)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        '<g id="title">',
        *(_text(16, 26 + 20 * i, line, 15, font_weight="bold") for i, line in enumerate(title_lines)),
        "</g>",
        '<g id="subtitle">',
        *(
            _text(16, 26 + 20 * (len(title_lines) - 1) + 18 + 16 * i, line, 11, fill="#4a5568")
            for i, line in enumerate(subtitle_lines)
        ),
        "</g>",
    ]
    # the legend: a box above the plot area
    lx, ly, lw, lh = plot_x, plot_y - 38, 420, 24
    out += [
        '<g id="legend">',
        f'<rect id="legend-box" x="{lx}" y="{ly}" width="{lw}" height="{lh}" fill="none" stroke="none"/>',
        f'<rect x="{lx + 4}" y="{ly + 7}" width="12" height="12" fill="{BASELINE_COLOUR}"/>',
        _text(lx + 22, ly + 17, "baseline (earliest start, home region)", 11),
        f'<rect x="{lx + 262}" y="{ly + 7}" width="12" height="12" fill="{CHOSEN_COLOUR}"/>',
        _text(lx + 280, ly + 17, "chosen start", 11),
        "</g>",
    ]
    out.append(
        f'<rect id="plot-area" x="{plot_x}" y="{plot_y}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#cbd5e0"/>'
    )
    for k in range(6):  # y-axis: 0 .. top_value in unit
        v = top_value * k / 5
        y = plot_y + plot_h - plot_h * k / 5
        out.append(f'<line x1="{plot_x}" y1="{y:.1f}" x2="{plot_x + plot_w}" y2="{y:.1f}" stroke="#edf2f7"/>')
        out.append(_text(plot_x - 6, y + 4, f"{v:,.6g}", 10, anchor="end", fill="#4a5568"))
    out.append(
        f'<text x="16" y="{plot_y + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 16 {plot_y + plot_h / 2:.1f})">{escape(unit)} CO2e</text>'
    )
    if not drawn:
        out.append(
            _text(plot_x + plot_w / 2, plot_y + plot_h / 2, "no runs in this period", 13, anchor="middle")
        )
    slot = plot_w / max(len(drawn), 1)
    bar_w = min(slot * 0.36, 60)
    for i, b in enumerate(drawn):
        cx = plot_x + slot * (i + 0.5)
        for series, value, colour, dx in (
            ("baseline", b.baseline_g, BASELINE_COLOUR, -bar_w),
            ("chosen", b.chosen_g, CHOSEN_COLOUR, 0.0),
        ):
            h = max(value / scale / top_value * plot_h, 0.0)
            out.append(
                f'<rect class="bar" data-series="{series}" data-label="{escape(b.label)}" x="{cx + dx:.1f}" '
                f'y="{plot_y + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(b.label)} {series}: "
                f"{escape(b.baseline_text if series == 'baseline' else b.chosen_text)}</title></rect>"
            )
        ty = plot_y + plot_h + 16
        if rotate:
            out.append(
                f'<text x="{cx:.1f}" y="{ty:.1f}" font-size="10" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {ty:.1f})">{escape(_clip(b.label, 18))}</text>'
            )
        else:
            out.append(_text(cx, ty, _clip(b.label, max(int(slot / 6.5), 4)), 10, anchor="middle"))
    # the table: every drawn row with the report's display strings
    cols = (("row", 16, "start"), ("baseline", 470, "end"), ("chosen", 590, "end"), ("saving", 784, "end"))
    out.append('<g id="table">')
    for name, x, anchor in cols:
        out.append(_text(x, table_y, name, 11, anchor=anchor, font_weight="bold"))
    for i, b in enumerate(drawn):
        y = table_y + row_h * (i + 1)
        for (_, x, anchor), text in zip(
            cols, (_clip(b.label, 62), b.baseline_text, b.chosen_text, b.saving_text), strict=True
        ):
            out.append(_text(x, y, text, 11, anchor=anchor))
    out.append("</g>")
    y = table_y + row_h * (len(drawn) + 1) + 8
    if hidden:
        out.append(_text(16, y, f"{hidden} smaller row(s) not drawn: the JSON and CSV have every row", 11))
        y += 18
    if note_lines:
        out.append('<g id="note">')
        out += [_text(16, y + 14 * i, line, 10, fill="#975a16") for i, line in enumerate(note_lines)]
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
