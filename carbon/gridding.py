"""Irregular rows -> regular UTC series, exactly (time-weighted) and with bounded gaps.

Shared by the CSV loader and the live providers. A row at ``t_i`` holds its value until the next row,
unless the spacing to the next row is longer than the file's regular resolutions: then the row lasts one
resolution step and the rest is a *gap*. Rows are turned into segments ``[start, end)``; the grid value of a
cell is the time-weighted mean of the segments overlapping it (so 15-minute rows average exactly into a
30-minute grid and 30-minute rows repeat exactly on a 15-minute one). Empty cells are interpolated linearly
only when the gap they form is at most ``max_gap``; longer gaps split the data into blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from scheduling.carbon import CarbonSeries

__all__ = ["Block", "Gap", "grid_blocks", "points_to_blocks", "row_segments"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Block:
    series: CarbonSeries
    interpolated_cells: int


def _dt(sec: float) -> datetime:
    return _EPOCH + timedelta(seconds=float(sec))


def row_segments(t: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Durations of rows at sorted, distinct epoch seconds ``t`` and the preferred grid step (seconds).

    Regular resolutions are the spacings that repeat back to back; the grid step is the one covering the
    most time (ties: the coarser). Returns (durations, regular_min, step)."""
    if t.size == 1:
        return np.array([3600.0]), 3600.0, 3600.0
    s = np.round(np.diff(t), 3)
    regular = set(s[1:][s[1:] == s[:-1]].tolist()) or {float(s.min())}
    rmin = min(regular)
    d = np.empty(t.size)
    for i in range(t.size):
        prev = s[i - 1] if i > 0 else None
        nxt = s[i] if i < s.size else None
        if nxt is not None and (nxt in regular or nxt <= rmin):
            d[i] = nxt
        elif prev is not None and (prev in regular or prev <= rmin) and (nxt is None or prev < nxt):
            d[i] = prev
        else:
            d[i] = rmin if nxt is None else min(rmin, nxt)
    covered = {b: float(d[d == b].sum()) for b in regular}
    step = max(regular, key=lambda b: (covered[b], b))
    return d, rmin, step


def grid_blocks(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    step_sec: float,
    max_gap_sec: float,
    signal: str = "average",
) -> tuple[list[Block], list[Gap]]:
    """Time-weighted regular blocks from disjoint sorted segments (epoch seconds, g/kWh; NaN = missing).

    Returns the blocks (split at gaps longer than ``max_gap_sec``) and every gap longer than that."""
    ok = ~np.isnan(values)
    s, e, v = starts[ok], ends[ok], values[ok]
    if s.size == 0:
        return [], []
    g0 = np.floor(s[0] / step_sec) * step_sec
    n = int(np.ceil((e[-1] - g0) / step_sec - 1e-9))
    if n > 5_000_000:
        raise ValueError(f"series would need {n} cells of {step_sec:g} s: check the timestamps")
    x = np.empty(2 * s.size)
    x[0::2], x[1::2] = s, e
    area = np.zeros(2 * s.size)
    area[1::2] = v * (e - s)
    cov = np.zeros(2 * s.size)
    cov[1::2] = e - s
    F, C = np.cumsum(area), np.cumsum(cov)
    edges = g0 + np.arange(n + 1) * step_sec
    Ic = np.diff(np.interp(edges, x, F))
    Cc = np.diff(np.interp(edges, x, C))
    known = Cc > 1e-6 * step_sec
    out = np.full(n, np.nan)
    out[known] = Ic[known] / Cc[known]
    blocks: list[Block] = []
    gaps: list[Gap] = []
    idx = np.flatnonzero(known)
    # runs of unknown cells between known ones
    cut_points: list[int] = []
    interp_cells = 0
    if idx.size:
        jumps = np.flatnonzero(np.diff(idx) > 1)
        for j in jumps:
            a, b = int(idx[j]), int(idx[j + 1])  # known cells around the gap
            gap_len = (b - a - 1) * step_sec
            gap_start = edges[a + 1]
            if gap_len > max_gap_sec:
                cut_points.append(b)
                gaps.append(Gap(_dt(gap_start), _dt(edges[b])))
            else:
                out[a + 1 : b] = np.interp(np.arange(a + 1, b), [a, b], [out[a], out[b]])
                interp_cells += b - a - 1
    bounds = [0, *cut_points, n]
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        seg = out[lo:hi]
        kk = np.flatnonzero(~np.isnan(seg))
        if kk.size == 0:
            continue
        seg = seg[kk[0] : kk[-1] + 1]
        blocks.append(
            Block(
                CarbonSeries(_dt(edges[lo + kk[0]]), timedelta(seconds=step_sec), seg, signal=signal),
                interp_cells,
            )
        )
    return blocks, gaps


def points_to_blocks(
    times: list[datetime],
    values: list[float],
    *,
    max_gap: timedelta,
    durations: list[float] | None = None,
    step: timedelta | None = None,
    signal: str = "average",
) -> tuple[list[Block], list[Gap]]:
    """Provider points (any order, duplicates averaged) -> regular blocks; see :func:`grid_blocks`."""
    if not times:
        return [], []
    t = np.array([(x.astimezone(UTC) - _EPOCH).total_seconds() for x in times])
    v = np.array(values, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    dur = None if durations is None else np.asarray(durations, dtype=np.float64)[order]
    ut, inv = np.unique(t, return_inverse=True)
    if ut.size != t.size:  # average duplicates (ignoring NaN)
        ok = ~np.isnan(v)
        sums = np.bincount(inv[ok], weights=v[ok], minlength=ut.size)
        cnt = np.bincount(inv[ok], minlength=ut.size)
        v = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        if dur is not None:
            dur = np.bincount(inv, weights=dur, minlength=ut.size) / np.bincount(inv, minlength=ut.size)
        t = ut
    d, _, auto_step = row_segments(t)
    if dur is not None and np.all(dur > 0):
        d = dur
    step_sec = step.total_seconds() if step is not None else auto_step
    if np.any(v[~np.isnan(v)] < 0) or np.any(np.isinf(v)):
        raise ValueError("intensity values must be finite and >= 0 g/kWh")
    return grid_blocks(t, t + d, v, step_sec, max_gap.total_seconds(), signal)
