"""The fallback chain: which source serves a region, caching, splicing, and the notes for the rationale.

Sources per region (``ORCH_CARBON_PROVIDER``):

- ``auto`` (default): every configured keyed provider that maps the region (Electricity Maps, WattTime,
  Carbon Aware SDK, in that order), then the keyless public forecasts that cover it (GB Carbon Intensity API,
  Energy-Charts), then ``embedded``.
- any provider name: that provider, then ``embedded``. ``embedded`` alone: only it.

Each live provider's response (forecast and recent actuals) is cached per (provider, target) for
``ORCH_CARBON_CACHE_TTL_SEC`` (in the DB when a session is given, else in memory); a failure is cached for
60 s so an outage does not make every plan wait on a timeout. A failing or non-covering source is skipped
and the first notes say why ("energy-charts unavailable (timed out): using embedded").

Splicing: inside the live data the series is the provider's (actuals where measured, sigma 0; forecast
with a per-provider relative sigma growing with lead time). Beyond the live horizon the series continues
with a *level-matched profile of the same signal*, with a wider sigma (``ORCH_CARBON_SPLICE_SIGMA_PCT``):

- average signal with >= 24 h of live data (actuals and/or forecast): the seasonal forecaster's daily
  profile + decaying anomaly fitted on that live data (so its level is the live level);
- average signal with less: the embedded 2023 climatology scaled so its mean over the last (up to 24) live
  hours equals the live mean there;
- marginal signal (never continued by an average climatology): its own daily profile if it spans >= 24 h,
  scaled to its last 24 h, else its last level held flat.

So a 550 g/kWh live forecast is never continued by a 179 g/kWh climatology: a level jump at the seam cannot
decide the plan.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from carbon.base import REGISTRY, CarbonProviderError, LiveData, NotCovered, describe_error
from carbon.cache import CarbonCache, DbCarbonCache, MemoryTTLCache, decode_live, encode_live
from carbon.csvfile import load_csv
from carbon.embedded import MIN_RECENT, embedded_series, has_hourly_data, recent_series
from core.settings import Settings, get_settings
from scheduling.carbon import CarbonSeries, ceil_time, floor_time, zone_for_region

__all__ = ["DEFAULT_CACHE", "PROVIDERS", "CarbonService", "SeriesSource", "get_series", "get_series_info"]

log = logging.getLogger(__name__)

DEFAULT_CACHE = MemoryTTLCache()
FAILURE_TTL_SEC = 60
OFFLINE_WARNING_INTERVAL_SEC = 300.0  # one "source failed" warning per source per this long, per process
_USER_AGENT = "carbon-orchestrator/0.1 (+scheduling)"
_DAY = timedelta(hours=24)


@dataclass(frozen=True)
class SeriesSource:
    """Which source served a series, for the plan's audit record (issue 18) and the forecast's measured
    skill: ``provider`` its ``ORCH_CARBON_PROVIDER`` name (``embedded``, ``csv`` or a live provider),
    ``zone`` the provider's key for the region (a grid zone), ``live`` True for a live provider's forecast,
    ``issued_at`` the time its forecast was fetched (lead times count from it; None when not live),
    ``live_until`` where the provider's own data end (the series is spliced beyond), ``fallback`` why each
    source before it was skipped."""

    provider: str
    zone: str | None
    signal: str
    live: bool = False
    issued_at: datetime | None = None
    live_until: datetime | None = None
    fallback: tuple[str, ...] = ()


def providers() -> tuple[str, ...]:
    return ("auto", "embedded", "csv", *REGISTRY)


PROVIDERS = providers()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


_offline_lock = threading.Lock()
_offline_seen: dict[str, tuple[float, int]] = {}  # source -> (when it was last warned about, failures since)


def _warn_offline(name: str, region: str, why: str) -> None:
    """Log a failed source as a WARNING at most once per ``OFFLINE_WARNING_INTERVAL_SEC`` per source (an
    outage would otherwise log one per plan, preview and request); the failures in between go to DEBUG and
    are counted in the next warning."""
    now = time.monotonic()
    with _offline_lock:
        prev = _offline_seen.get(name)
        quiet = prev[1] if prev else 0
        loud = prev is None or now - prev[0] >= OFFLINE_WARNING_INTERVAL_SEC
        _offline_seen[name] = (now, 0) if loud or prev is None else (prev[0], quiet + 1)
    if loud:
        more = f" ({quiet} more failures since the last warning)" if quiet else ""
        log.warning(
            "carbon source %s failed for %s: %s%s; next warning for %s in %.0f s at the earliest",
            name,
            region,
            why,
            more,
            name,
            OFFLINE_WARNING_INTERVAL_SEC,
        )
    else:
        log.debug("carbon source %s failed for %s: %s", name, region, why)


class CarbonService:
    """Carbon series for (region, range) from the configured sources. ``settings``: a ``Settings`` (the
    only configuration); ``cache``: any ``get``/``put`` cache; ``http``: an ``httpx.Client`` to reuse;
    ``now``: the time decisions are made at (default: the wall clock)."""

    def __init__(
        self,
        settings: Settings | None = None,
        cache: CarbonCache | None = None,
        http: httpx.Client | None = None,
        now: datetime | None = None,
    ) -> None:
        self.settings: Settings = settings if settings is not None else get_settings()
        self.cache: CarbonCache = cache if cache is not None else DEFAULT_CACHE
        self.http = http
        self._now = now

    def now(self) -> datetime:
        return self._now or datetime.now(UTC)

    # ------------------------------------------------------------------ which sources
    def chain(self, region: str, provider: str | None = None) -> list[str]:
        """Names of the sources tried for ``region``, in order (always ending with ``embedded``)."""
        p = (provider or self.settings.carbon_provider or "auto").strip().lower()
        if p not in providers():
            raise ValueError(f"unknown carbon provider {p!r}; use one of {', '.join(providers())}")
        if p == "embedded":
            return ["embedded"]
        if p != "auto":
            return [p, "embedded"]
        names: list[str] = []
        for keyed in (True, False):
            for name, cls in REGISTRY.items():
                prov = cls(self.settings)
                if (
                    cls.keyed == keyed
                    and prov.configured()
                    and getattr(prov, "auto_target", prov.target)(region)
                ):
                    names.append(name)
        return [*names, "embedded"]

    # ------------------------------------------------------------------ the series
    def get_series(
        self,
        region: str,
        start: datetime,
        end: datetime,
        step: timedelta = timedelta(minutes=15),
        provider: str | None = None,
    ) -> tuple[CarbonSeries, list[str]]:
        """Intensity (g/kWh, with sigma where known) on a UTC grid of ``step`` (aligned to multiples of
        ``step``) covering ``[start, end)``, and notes for the rationale (fallback reasons first).
        ValueError for an unknown provider, or an unknown region with ``embedded`` alone;
        :class:`CarbonProviderError` when every source failed and the region has no embedded data."""
        series, notes, _ = self.get_series_info(region, start, end, step, provider)
        return series, notes

    def get_series_info(
        self,
        region: str,
        start: datetime,
        end: datetime,
        step: timedelta = timedelta(minutes=15),
        provider: str | None = None,
    ) -> tuple[CarbonSeries, list[str], SeriesSource]:
        """:meth:`get_series` and which source served it (:class:`SeriesSource`)."""
        if end <= start:
            raise ValueError("end must be after start")
        g0, g1 = floor_time(start, step), ceil_time(end, step)
        names = self.chain(region, provider)
        reasons: list[str] = []
        if names == ["embedded"] and (provider or self.settings.carbon_provider or "auto") == "auto":
            reasons.append(f"auto: no keyed provider configured and no keyless public forecast for {region}")
        for i, name in enumerate(names):
            nxt = names[i + 1] if i + 1 < len(names) else None
            if name == "embedded":
                try:
                    series, note = embedded_series(region, g0, g1, step)
                except ValueError as e:
                    if len(names) == 1:
                        raise
                    raise CarbonProviderError(
                        "; ".join(reasons) + f"; and {region!r} has no embedded data"
                    ) from e
                zone = zone_for_region(region.strip().lower())
                src = SeriesSource("embedded", zone, series.signal, fallback=tuple(reasons))
                return series, [*reasons, note], src
            try:
                if name == "csv":
                    series, note = self._csv(region, g0, g1, step)
                    src = SeriesSource("csv", None, series.signal, fallback=tuple(reasons))
                else:
                    series, note, live, target = self._live(name, region, g0, g1, step)
                    src = SeriesSource(
                        name,
                        target,
                        series.signal,
                        live=True,
                        issued_at=live.fetched_at,
                        live_until=max(p.end for p in (live.forecast, live.actuals) if p is not None),
                        fallback=tuple(reasons),
                    )
                return series, [*reasons, note], src
            except (CarbonProviderError, ValueError) as e:
                why = describe_error(e)
                using = "the embedded data" if nxt == "embedded" else nxt
                reasons.append(f"{name} unavailable ({why}): using {using}")
                _warn_offline(name, region, why)
        raise CarbonProviderError("; ".join(reasons))  # pragma: no cover - embedded ends every chain

    def forecast(self, region: str, start: datetime, end: datetime) -> CarbonSeries:
        """The ``CarbonProvider``-style call: just the series."""
        return self.get_series(region, start, end)[0]

    # ------------------------------------------------------------------ sources
    def _csv(self, region: str, g0: datetime, g1: datetime, step: timedelta) -> tuple[CarbonSeries, str]:
        s = self.settings
        path = s.carbon_csv_path
        if not path:
            raise NotCovered("carbon_csv_path is not configured")
        try:
            data = _load_csv_cached(str(path), s.carbon_csv_tz, int(s.carbon_csv_max_gap_min))
        except OSError as e:
            raise NotCovered(f"cannot read {Path(path).name}: {e.strerror or type(e).__name__}") from None
        label = f"csv {Path(path).name}"
        if data.covers(g0, g1):
            return data.regrid(g0, g1, step), f"{label}: intensity from the file"
        stale = g0 - data.end
        if stale > timedelta(days=max(1, int(s.carbon_actuals_days))) or g1 <= data.start:
            raise NotCovered(
                f"carbon CSV covers [{_iso(data.start)}, {_iso(data.end)}), not [{_iso(g0)}, {_iso(g1)}), "
                "nor recent days before it"
            )
        live = LiveData(label, data.end, forecast=None, actuals=data)
        return self._assemble(live, None, region, g0, g1, step, label)

    def _live(
        self, name: str, region: str, g0: datetime, g1: datetime, step: timedelta
    ) -> tuple[CarbonSeries, str, LiveData, str]:
        prov = REGISTRY[name](self.settings)
        target = prov.target(region)
        live = self._fetch_cached(prov, target)
        series, note = self._assemble(live, prov.relative_sigma, region, g0, g1, step, f"{name} for {target}")
        credit = getattr(prov, "attribution", "")
        return series, f"{note}; data: {credit}" if credit else note, live, target

    def _fetch_cached(self, prov: Any, target: str) -> LiveData:
        key = f"carbon:v2:{prov.name}:{target}"
        raw = self.cache.get(key)
        if raw is not None:
            if raw.startswith(b"ERR:"):
                raise CarbonProviderError(raw[4:].decode(errors="replace") + " (cached failure)")
            return decode_live(raw)
        try:
            if self.http is not None:
                live = prov.fetch(self.http, target, self.now())
            else:
                with httpx.Client(
                    timeout=float(self.settings.carbon_http_timeout_sec),
                    headers={"User-Agent": _USER_AGENT},
                ) as http:
                    live = prov.fetch(http, target, self.now())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            msg = describe_error(e)
            self.cache.put(key, b"ERR:" + msg.encode(), FAILURE_TTL_SEC)
            raise CarbonProviderError(msg) from e
        self.cache.put(key, encode_live(live), int(self.settings.carbon_cache_ttl_sec))
        return live

    # ------------------------------------------------------------------ splicing
    def _assemble(
        self,
        live: LiveData,
        rel_sigma: Any,
        region: str,
        g0: datetime,
        g1: datetime,
        step: timedelta,
        label: str,
    ) -> tuple[CarbonSeries, str]:
        n = (g1 - g0) // step
        splice_rel = float(self.settings.carbon_splice_sigma_pct) / 100.0
        vals, sig = np.full(n, np.nan), np.full(n, np.nan)
        pieces = [p for p in (live.forecast, live.actuals) if p is not None]  # actuals written last: they win
        if not pieces:
            raise CarbonProviderError(f"{label}: no data")
        signal = pieces[0].signal
        h0 = min(p.start for p in pieces)
        h1 = max(p.end for p in pieces)
        hist_n = max(1, (ceil_time(h1, step) - floor_time(h0, step)) // step)
        hist_start = floor_time(h0, step)
        hist = np.full(hist_n, np.nan)

        def put(piece: CarbonSeries, is_actual: bool, into: np.ndarray, sig_into: np.ndarray | None, o):
            m = into.size
            a = max(0, -((o - piece.start) // step))  # ceil((piece.start - o) / step)
            b = min(m, (piece.end - o) // step)
            if b <= a:
                return
            part = piece.regrid(o + a * step, o + b * step, step)
            into[a:b] = part.values
            if sig_into is not None:
                if is_actual or rel_sigma is None:
                    sig_into[a:b] = 0.0 if is_actual else part.values * splice_rel
                else:
                    lead = np.array(
                        [(t + step / 2 - live.fetched_at) / timedelta(hours=1) for t in part.times()]
                    )
                    sig_into[a:b] = part.values * rel_sigma(lead)

        for piece in pieces:
            is_act = piece is live.actuals
            put(piece, is_act, vals, sig, g0)
            put(piece, is_act, hist, None, hist_start)
        known = ~np.isnan(vals)
        covered = int(known.sum())
        span = f"{label} covers {_iso(h0)}..{_iso(h1)} ({covered / n:.0%} of the window)"
        if known.all():
            return CarbonSeries(g0, step, vals, sigma=sig, signal=signal), f"{label} (covers the window)"
        hk = ~np.isnan(hist)
        if not hk.any():
            raise CarbonProviderError(f"{label}: no usable values")
        idx = np.arange(hist_n)
        hist = np.interp(idx, idx[hk], hist[hk])
        history = CarbonSeries(hist_start, step, hist, signal=signal)
        # --- the profile that continues the live data
        first = int(np.argmax(known)) if known.any() else n
        last = int(n - 1 - np.argmax(known[::-1])) if known.any() else -1
        prof, how = self._profile(history, region, g0, g1, step, splice_rel)
        out_v, out_s = vals.copy(), sig.copy()
        after = np.arange(n) > last if known.any() else np.arange(n) >= 0
        if known.any():
            before = np.arange(n) < first
            interior = ~known & ~before & ~after
        else:
            t_idx = np.array([g0 + i * step < history.start for i in range(n)])
            before, after, interior = t_idx, ~t_idx, np.zeros(n, bool)
        prof_sigma = prof.sigma if prof.sigma is not None else prof.values * splice_rel
        out_v[after], out_s[after] = prof.values[after], prof_sigma[after]
        if before.any():  # before the live data (a past interval)
            out_v[before], out_s[before] = prof.values[before], prof_sigma[before]
        if interior.any():
            ii = np.arange(n)
            out_v[interior] = np.interp(ii[interior], ii[known], vals[known])
            out_s[interior] = out_v[interior] * splice_rel
        seam_sigma = np.where(np.isnan(out_s), out_v * splice_rel, out_s)
        note = f"{span}; beyond it {how}, with a wider uncertainty (+-{splice_rel:.0%})"
        return CarbonSeries(g0, step, out_v, sigma=seam_sigma, signal=signal), note

    def _profile(
        self, history: CarbonSeries, region: str, g0: datetime, g1: datetime, step: timedelta, rel: float
    ) -> tuple[CarbonSeries, str]:
        """A level-matched continuation over the whole window [g0, g1) (see the module docstring)."""
        n = (g1 - g0) // step
        span = history.end - history.start
        hours = span / timedelta(hours=1)
        times_after = history.end
        if history.signal == "average" and span >= MIN_RECENT and g1 > times_after:
            a = max(floor_time(times_after, timedelta(hours=1)), g0)
            rec = recent_series(history, a, g1, step, rel)
            vals = np.empty(n)
            k0 = (a - g0) // step
            vals[k0:] = rec.values[: n - k0]
            if k0 > 0:  # inside or before the history: the history itself (or its first value)
                inside = history.regrid(max(g0, history.start), a, step) if a > history.start else None
                vals[:k0] = history.values[0]
                if inside is not None:
                    off = (max(g0, history.start) - g0) // step
                    vals[off : off + len(inside)] = inside.values
            how = (
                f"the daily profile + decaying anomaly of the last {hours:.0f} h of live data (seasonal "
                "forecaster, same signal)"
            )
            return CarbonSeries(g0, step, vals, sigma=vals * rel, signal="average"), how
        lvl_lo = max(history.start, history.end - _DAY)
        live_level = float(history.regrid(lvl_lo, history.end, step).values.mean())
        if history.signal == "average" and has_hourly_data(region):
            c0 = min(g0, floor_time(lvl_lo, step))
            clim, _ = embedded_series(region, c0, max(g1, history.end), step)
            clim_level = float(
                clim.regrid(floor_time(lvl_lo, step), ceil_time(history.end, step), step).values.mean()
            )
            k = live_level / clim_level if clim_level > 0 else 1.0
            part = clim.regrid(g0, g1, step)
            vals = part.values * k
            how = f"the 2023 climatology scaled x{k:.2f} to the live level (same average signal)"
            return CarbonSeries(g0, step, vals, sigma=vals * rel, signal="average"), how
        if span >= _DAY and (_DAY % step) == timedelta(0):
            per_day = _DAY // step
            h = history.values
            slot0 = ((history.start - g0) // step) % per_day
            sums, cnt = np.zeros(per_day), np.zeros(per_day)
            slots = (slot0 + np.arange(h.size)) % per_day
            np.add.at(sums, slots, h)
            np.add.at(cnt, slots, 1)
            daily = sums / np.maximum(cnt, 1)
            k = live_level / float(daily.mean()) if daily.mean() > 0 else 1.0
            vals = daily[np.arange(n) % per_day] * k
            how = f"its own daily profile ({history.signal} signal) at its last 24 h level"
            return CarbonSeries(g0, step, vals, sigma=vals * rel, signal=history.signal), how
        vals = np.full(n, live_level)
        how = f"its last level ({live_level:.0f} g/kWh, {history.signal} signal) held flat"
        return CarbonSeries(g0, step, vals, sigma=vals * rel, signal=history.signal), how


_CSV_CACHE: dict[tuple, tuple[float, CarbonSeries]] = {}


def _load_csv_cached(path: str, tz: str | None, max_gap_min: int) -> CarbonSeries:
    mtime = os.stat(path).st_mtime
    key = (path, tz, max_gap_min)
    hit = _CSV_CACHE.get(key)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    out = load_csv(path, tz=tz, max_gap=timedelta(minutes=max_gap_min))
    for w in out.warnings:
        log.warning("carbon CSV %s: %s", Path(path).name, w)
    _CSV_CACHE[key] = (mtime, out.series)
    return out.series


def get_series(
    region: str,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=15),
    *,
    settings: Settings | None = None,
    provider: str | None = None,
    cache: CarbonCache | None = None,
    session: Any = None,
    http: httpx.Client | None = None,
    now: datetime | None = None,
) -> tuple[CarbonSeries, list[str]]:
    """Carbon intensity (g/kWh, UTC grid of ``step``) for an AWS region over ``[start, end)``, plus notes
    for the rationale. ``session``: cache provider responses in the DB (else ``cache``, else in memory)."""
    if cache is None and session is not None:
        cache = DbCarbonCache(session)
    return CarbonService(settings, cache, http, now).get_series(region, start, end, step, provider)


def get_series_info(
    region: str,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=15),
    *,
    settings: Settings | None = None,
    provider: str | None = None,
    session: Any = None,
    now: datetime | None = None,
) -> tuple[CarbonSeries, list[str], SeriesSource]:
    """:func:`get_series` and which source served the series (:class:`SeriesSource`)."""
    cache = DbCarbonCache(session) if session is not None else None
    return CarbonService(settings, cache, None, now).get_series_info(region, start, end, step, provider)
