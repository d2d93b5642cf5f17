"""Carbon-intensity series: one regular UTC grid of g/kWh values, timestamp parsing, the shipped tables.

A :class:`CarbonSeries` is a step function: ``values[i]`` is the mean intensity (gCO2e/kWh) over
``[start + i*step, start + (i+1)*step)``. Integrals, slices and resampling all preserve that meaning, so the
energy-weighted emissions of a job never depend on the grid it is read on. It may carry ``sigma`` (1-sigma
forecast error per point) and says which ``signal`` it is (average or marginal).

No I/O here beyond reading the package's own data (``scheduling/data``: region tables and the 2023 hourly
series). Every provider, including ``embedded`` (which turns those series into a forecast) and the user's
CSV files, lives in the ``carbon`` package and returns this type.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any, cast

import numpy as np

__all__ = [
    "CarbonSeries",
    "ccf_average_factor",
    "ccf_factor",
    "embedded_history",
    "embedded_zones",
    "parse_timestamp",
    "regions",
    "series_from_points",
    "zone_for_region",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _as_utc(t: datetime, name: str = "time") -> datetime:
    if t.tzinfo is None or t.tzinfo.utcoffset(t) is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {t.isoformat()}")
    return t.astimezone(UTC)


def floor_time(t: datetime, step: timedelta) -> datetime:
    """Largest multiple of ``step`` since the Unix epoch that is <= ``t`` (UTC)."""
    t = _as_utc(t)
    return _EPOCH + ((t - _EPOCH) // step) * step


def ceil_time(t: datetime, step: timedelta) -> datetime:
    """Smallest multiple of ``step`` since the Unix epoch that is >= ``t`` (UTC)."""
    f = floor_time(t, step)
    return f if f == _as_utc(t) else f + step


@dataclass(frozen=True, eq=False)
class CarbonSeries:
    """Regular UTC series of grid carbon intensity.

    ``start``: tz-aware UTC datetime of the first interval; ``step``: interval length;
    ``values``: 1-D float64 array in gCO2e/kWh, ``values[i]`` holding over
    ``[start + i*step, start + (i+1)*step)``.
    The array is stored read-only; slices share memory with their parent.

    ``sigma``: optional 1-sigma forecast error per interval (g/kWh, same length as ``values``, >= 0), the
    uncertainty of ``values[i]`` as a forecast of the interval's mean intensity. None = unknown (actuals, or a
    provider that gives none): the planner then applies a documented default relative uncertainty.
    Every transform below carries it along (resampling averages it with the same time weights, i.e. errors
    within one output interval are treated as fully correlated).
    ``signal``: ``"average"`` (grid-average / LCA intensity) or ``"marginal"``.
    ``paired``: for a forecast built from a past series (the ``embedded`` climatology), that history as a
    :class:`~scheduling.paired.PairedHistory`: the planner then judges moves by same-day paired savings in
    it (README "How a start is chosen"). Slices and regrids keep it; a series combined with live data does
    not.
    """

    start: datetime
    step: timedelta
    values: np.ndarray
    sigma: np.ndarray | None = None
    signal: str = "average"
    paired: Any = (
        None  # a scheduling.paired.PairedHistory (not imported: scheduling.paired reads this module)
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_utc(self.start, "series start"))
        if not isinstance(self.step, timedelta) or self.step <= timedelta(0):
            raise ValueError(f"series step must be a positive timedelta, got {self.step!r}")
        v = self.values
        if not (isinstance(v, np.ndarray) and v.dtype == np.float64 and not v.flags.writeable):
            v = np.array(v, dtype=np.float64)
            v.setflags(write=False)
        if v.ndim != 1 or v.size == 0:
            raise ValueError("series values must be a non-empty 1-D array")
        object.__setattr__(self, "values", v)
        sg = self.sigma
        if sg is not None:
            if not (isinstance(sg, np.ndarray) and sg.dtype == np.float64 and not sg.flags.writeable):
                sg = np.array(sg, dtype=np.float64)
                sg.setflags(write=False)
            if sg.shape != v.shape:
                raise ValueError(f"sigma has shape {sg.shape}, values {v.shape}: they must match")
            if not np.all(np.isfinite(sg)) or np.any(sg < 0):
                raise ValueError("sigma must be finite and >= 0 g/kWh")
            object.__setattr__(self, "sigma", sg)
        if self.signal not in ("average", "marginal"):
            raise ValueError(f"signal must be 'average' or 'marginal', got {self.signal!r}")

    def _like(self, start: datetime, step: timedelta, values: np.ndarray, sigma: np.ndarray | None):
        """A series with this one's signal (and ``sigma`` if this one has one)."""
        return CarbonSeries(
            start, step, values, sigma if self.sigma is not None else None, self.signal, self.paired
        )

    def with_sigma(self, sigma: np.ndarray | float | None) -> CarbonSeries:
        """The same series with ``sigma`` (an array, or one g/kWh value for every interval, or None)."""
        arr: np.ndarray | None
        if sigma is None or np.ndim(sigma) > 0:
            arr = cast("np.ndarray | None", sigma)
        else:
            arr = np.full(len(self), float(cast(float, sigma)))
        return CarbonSeries(self.start, self.step, self.values, arr, self.signal, self.paired)

    def with_paired(self, paired: Any) -> CarbonSeries:
        """The same series, judged by same-day paired savings in ``paired`` (None: by its sigma)."""
        return CarbonSeries(self.start, self.step, self.values, self.sigma, self.signal, paired)

    def _avg(self, arr: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Time-weighted means of a per-interval array ``arr`` between offsets ``edges`` (seconds)."""
        dt = self.step_sec
        n = len(self)
        p = np.empty(n + 1)
        p[0] = 0.0
        np.cumsum(arr, out=p[1:])
        p[1:] *= dt
        t = np.clip(edges, 0.0, n * dt)
        idx = np.minimum((t // dt).astype(np.int64), n - 1)
        c = p[idx] + (t - idx * dt) * arr[idx]
        return np.diff(c) / np.diff(edges)

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return int(self.values.size)

    def __repr__(self) -> str:
        return (
            f"CarbonSeries(start={self.start.isoformat()}, step={self.step}, n={len(self)}, "
            f"mean={float(self.values.mean()):.1f} g/kWh)"
        )

    @property
    def end(self) -> datetime:
        """End of the last interval (exclusive), UTC."""
        return self.start + self.step * len(self)

    @property
    def step_sec(self) -> float:
        return self.step.total_seconds()

    def times(self) -> list[datetime]:
        """Start of every interval, tz-aware UTC."""
        return [self.start + i * self.step for i in range(len(self))]

    def covers(self, start: datetime, end: datetime) -> bool:
        """True if ``[start, end]`` lies inside ``[self.start, self.end]``."""
        return self.start <= _as_utc(start) and _as_utc(end) <= self.end

    def index_of(self, t: datetime) -> int:
        """Index of the interval containing ``t`` (may be out of range)."""
        return (_as_utc(t) - self.start) // self.step

    def value_at(self, t: datetime) -> float:
        """Intensity (g/kWh) in force at ``t``; ValueError outside the series."""
        i = self.index_of(t)
        if not 0 <= i < len(self):
            raise ValueError(f"{t.isoformat()} is outside the series [{self.start}, {self.end})")
        return float(self.values[i])

    # ------------------------------------------------------------ transforms
    def slice(self, start: datetime, end: datetime) -> CarbonSeries:
        """The grid intervals that overlap ``[start, end)`` (start floored, end ceiled to this grid).

        Shares memory with ``self``. ValueError if the range is empty or not covered by the series.
        """
        start, end = _as_utc(start, "slice start"), _as_utc(end, "slice end")
        if end <= start:
            raise ValueError(f"empty slice [{start.isoformat()}, {end.isoformat()})")
        if not self.covers(start, end):
            raise ValueError(
                f"series [{self.start.isoformat()}, {self.end.isoformat()}) does not cover "
                f"[{start.isoformat()}, {end.isoformat()})"
            )
        i0 = (start - self.start) // self.step
        i1 = -((self.start - end) // self.step)  # ceil
        sg = None if self.sigma is None else self.sigma[i0:i1]
        return self._like(self.start + i0 * self.step, self.step, self.values[i0:i1], sg)

    def resample(self, step: timedelta) -> CarbonSeries:
        """Same intensity on a grid of ``step`` starting at ``self.start``, preserving integrals.

        Finer steps repeat each value (the intensity is a step function); coarser steps average it,
        weighted by time. The last partial interval of a coarser grid is dropped.
        """
        if step <= timedelta(0):
            raise ValueError("resample step must be positive")
        if step == self.step:
            return self
        dt = self.step
        sg = self.sigma
        if dt % step == timedelta(0):
            k = dt // step
            return self._like(
                self.start, step, np.repeat(self.values, k), None if sg is None else np.repeat(sg, k)
            )
        n_new = (dt * len(self)) // step
        if n_new < 1:
            raise ValueError(f"series of {dt * len(self)} is shorter than one step of {step}")
        if step % dt == timedelta(0):
            k = step // dt
            return self._like(
                self.start,
                step,
                self.values[: n_new * k].reshape(n_new, k).mean(axis=1),
                None if sg is None else sg[: n_new * k].reshape(n_new, k).mean(axis=1),
            )
        edges = np.arange(n_new + 1, dtype=np.float64) * step.total_seconds()
        cum = self.cumulative(edges)
        return self._like(
            self.start,
            step,
            np.diff(cum) / step.total_seconds(),
            None if sg is None else self._avg(sg, edges),
        )

    def regrid(self, start: datetime, end: datetime, step: timedelta) -> CarbonSeries:
        """Time-weighted mean intensity on the grid ``start + k*step`` covering ``[start, end)``.

        ``n = ceil((end - start) / step)`` intervals; the series must cover ``[start, start + n*step]``.
        Preserves integrals, like :meth:`resample`, for any alignment.
        """
        start, end = _as_utc(start, "regrid start"), _as_utc(end, "regrid end")
        if step <= timedelta(0) or end <= start:
            raise ValueError("regrid needs a positive step and end > start")
        n = -((start - end) // step)
        stop = start + n * step
        if not self.covers(start, stop):
            raise ValueError(
                f"series [{self.start.isoformat()}, {self.end.isoformat()}) does not cover "
                f"[{start.isoformat()}, {stop.isoformat()})"
            )
        sg = self.sigma
        if step == self.step and (start - self.start) % step == timedelta(0):
            i0 = (start - self.start) // step
            return self._like(start, step, self.values[i0 : i0 + n], None if sg is None else sg[i0 : i0 + n])
        off = (start - self.start).total_seconds()
        edges = off + np.arange(n + 1, dtype=np.float64) * step.total_seconds()
        return self._like(
            start,
            step,
            np.diff(self.cumulative(edges)) / step.total_seconds(),
            None if sg is None else self._avg(sg, edges),
        )

    def shift(self, delta: timedelta) -> CarbonSeries:
        """The same values (and sigma), ``delta`` later."""
        return self._like(self.start + delta, self.step, self.values, self.sigma)

    # ------------------------------------------------------------- integrals
    def prefix(self) -> np.ndarray:
        """``P[i]`` = integral of intensity over the first ``i`` intervals, in g/kWh x seconds."""
        p = np.empty(len(self) + 1)
        p[0] = 0.0
        np.cumsum(self.values, out=p[1:])
        p[1:] *= self.step_sec
        return p

    def cumulative(self, offsets_sec: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
        """Integral of intensity from ``start`` to ``start + offsets_sec`` (g/kWh x s), vectorised.

        Offsets are clipped to ``[0, duration]``.
        """
        dt = self.step_sec
        n = len(self)
        p = self.prefix() if prefix is None else prefix
        t = np.clip(np.asarray(offsets_sec, dtype=np.float64), 0.0, n * dt)
        idx = np.minimum((t // dt).astype(np.int64), n - 1)
        return p[idx] + (t - idx * dt) * self.values[idx]

    def integral(self, start: datetime, end: datetime) -> float:
        """Integral of intensity over ``[start, end]`` in g/kWh x hours (= gCO2e per kW of load)."""
        if not self.covers(start, end):
            raise ValueError(
                f"series [{self.start.isoformat()}, {self.end.isoformat()}) does not cover "
                f"[{_as_utc(start).isoformat()}, {_as_utc(end).isoformat()}]"
            )
        a = (_as_utc(start) - self.start).total_seconds()
        b = (_as_utc(end) - self.start).total_seconds()
        c = self.cumulative(np.array([a, b]))
        return float(c[1] - c[0]) / 3600.0


# --------------------------------------------------------------------------- parsing

_DATE_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")


def parse_timestamp(text: str) -> datetime:
    """Parse one timestamp to tz-aware UTC.

    Accepts ISO 8601 (``2023-01-01T00:00:00Z``, ``2023-01-01 00:00``, with or without offset),
    ``DD/MM/YYYY HH:MM[:SS]`` (day first, as in the GB Electricity Maps export) and Unix epoch seconds.
    Naive times are UTC.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    t: datetime | None
    try:
        t = datetime.fromisoformat(s[:-1] + "+00:00" if s[-1] in "zZ" else s)
    except ValueError:
        t = None
        if "/" in s:
            for fmt in _DATE_FORMATS:
                try:
                    t = datetime.strptime(s, fmt)
                    break
                except ValueError:
                    continue
        if t is None:
            try:
                epoch = float(s)
            except ValueError:
                raise ValueError(f"unrecognised timestamp {text!r}") from None
            if not math.isfinite(epoch):
                raise ValueError(f"unrecognised timestamp {text!r}") from None
            return _EPOCH + timedelta(seconds=epoch)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def series_from_points(
    times: Sequence[datetime],
    values: Sequence[float],
    step: timedelta | None = None,
) -> CarbonSeries:
    """Regular series from irregular, unsorted, possibly duplicated points (g/kWh, UTC).

    - ``step``: the grid; by default the most common spacing between consecutive distinct timestamps.
    - Timestamps are snapped to the nearest grid slot counted from the earliest one; points that land in
      the same slot (duplicates) are averaged.
    - Empty slots (gaps, or NaN values) are filled by linear interpolation between the neighbouring points.
    """
    if len(times) != len(values):
        raise ValueError("times and values differ in length")
    if len(times) < 2:
        raise ValueError(f"a series needs at least 2 points, got {len(times)}")
    t = np.array([(_as_utc(x) - _EPOCH).total_seconds() for x in times], dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if np.any(np.isinf(v)):
        raise ValueError("intensity values must be finite")
    if np.any(v < 0):
        raise ValueError(f"intensity values must be >= 0 g/kWh, got {float(np.nanmin(v))}")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    t0 = t[0]
    if step is None:
        d = np.diff(np.unique(t))
        if d.size == 0:
            raise ValueError("all timestamps are identical: cannot infer a step")
        vals, counts = np.unique(np.round(d, 3), return_counts=True)
        step_sec = float(vals[np.argmax(counts)])
        step = timedelta(seconds=step_sec)
    step_sec = step.total_seconds()
    if step_sec <= 0:
        raise ValueError("step must be positive")
    slot = np.rint((t - t0) / step_sec).astype(np.int64)
    n = int(slot[-1]) + 1
    if n > 50_000_000:
        raise ValueError(f"series would need {n} slots of {step}: check the timestamps")
    ok = ~np.isnan(v)
    sums = np.bincount(slot[ok], weights=v[ok], minlength=n)
    counts = np.bincount(slot[ok], minlength=n)
    filled = counts > 0
    if filled.sum() < 1:
        raise ValueError("no numeric intensity values")
    out = np.empty(n)
    out[filled] = sums[filled] / counts[filled]
    if not filled.all():
        idx = np.arange(n)
        out[~filled] = np.interp(idx[~filled], idx[filled], out[filled])
    return CarbonSeries(_EPOCH + timedelta(seconds=t0), step, out)


# --------------------------------------------------------------------------- embedded data


def _data_bytes(name: str) -> bytes:
    raw = resources.files("scheduling.data").joinpath(name).read_bytes()
    return gzip.decompress(raw) if name.endswith(".gz") else raw


@lru_cache(maxsize=1)
def _region_tables() -> tuple[dict[str, str], dict[str, float]]:
    zones = {
        r["aws_region"].strip(): r["electricitymaps_zone"].strip()
        for r in csv.DictReader(io.StringIO(_data_bytes("aws-region-zones.csv").decode()))
    }
    factors = {
        r["region"].strip(): float(r["g_co2e_per_kwh"])
        for r in csv.DictReader(io.StringIO(_data_bytes("aws-region-factors-ccf.csv").decode()))
    }
    return zones, factors


def regions() -> list[str]:
    """AWS regions the embedded provider knows (hourly series or a CCF factor), sorted."""
    zones, factors = _region_tables()
    return sorted(set(zones) | set(factors))


def zone_for_region(region: str) -> str | None:
    """Electricity Maps zone whose series stands for an AWS region, or None."""
    return _region_tables()[0].get(region.strip().lower())


def ccf_factor(region: str) -> float | None:
    """Cloud Carbon Footprint annual grid factor for an AWS region (gCO2e/kWh), or None."""
    return _region_tables()[1].get(region.strip().lower())


def ccf_average_factor() -> float:
    """The mean of the packaged CCF region factors (gCO2e/kWh): Cloud Carbon Footprint's own figure for an
    AWS region it has no factor for (its ``UNKNOWN`` region is "the average of the above regions")."""
    factors = _region_tables()[1]
    return round(sum(factors.values()) / len(factors), 1)


def embedded_zones() -> list[str]:
    """Zones with a packaged 2023 hourly series."""
    return list(_embedded_zones())


@lru_cache(maxsize=1)
def _embedded_zones() -> tuple[str, ...]:
    """The package's data files do not change while it runs: listed once (every plan asks)."""
    names = (p.name for p in resources.files("scheduling.data").iterdir())
    return tuple(
        sorted(n.removeprefix("em2023_").removesuffix(".csv.gz") for n in names if n.startswith("em2023_"))
    )


@lru_cache(maxsize=16)
def embedded_history(zone: str) -> CarbonSeries:
    """The packaged 2023 hourly LCA series (gCO2e/kWh, UTC) of an Electricity Maps zone."""
    if zone not in embedded_zones():
        raise ValueError(f"no embedded series for zone {zone!r}; have {embedded_zones()}")
    return _packaged_series(_data_bytes(f"em2023_{zone}.csv.gz"))


def _packaged_series(raw: bytes) -> CarbonSeries:
    """The shipped ``timestamp,g_per_kwh`` files (UTC ISO timestamps, hourly, complete)."""
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))[1:]
    times = [parse_timestamp(r[0]) for r in rows if r]
    values = [float(r[1]) for r in rows if r]
    return series_from_points(times, values, step=timedelta(hours=1))
