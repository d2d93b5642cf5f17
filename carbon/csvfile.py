"""A user's ``timestamp, g/kWh`` CSV -> :class:`CarbonSeries`, read strictly.

- Timestamps: ISO 8601 with ``Z`` or an offset, or Unix epoch seconds. A timestamp without an offset
  (``2023-03-26 01:30``, ``26/03/2023 01:30``) is refused, naming the line, unless a time zone is given
  (``tz``: ``--tz`` in the CLI, ``ORCH_CARBON_CSV_TZ`` for the csv provider). With a zone, local times are
  converted with its DST rules: a repeated (ambiguous) local hour is read in file order (first occurrence =
  summer time, second = winter time); a local time that does not exist (inside a spring-forward gap) is an
  error naming the line.
- Rows out of time order are sorted, and rows with the same instant are averaged: both with a warning.
- Mixed resolutions (a file switching from 30- to 15-minute rows) are resampled time-weighted onto one grid
  (the resolution that covers most of the file, ties to the coarser; or ``step``), see ``carbon.gridding``.
- Empty values and missing rows are gaps: interpolated when at most ``max_gap`` long (default 3 h), refused
  (naming the lines around it) when longer.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from carbon.gridding import grid_blocks, row_segments
from scheduling.carbon import CarbonSeries

__all__ = ["CsvSeries", "load_csv", "load_csv_series", "parse_csv_timestamp", "zone"]

log = logging.getLogger(__name__)
DEFAULT_MAX_GAP = timedelta(hours=3)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_FIRST = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")


@dataclass(frozen=True)
class CsvSeries:
    series: CarbonSeries
    warnings: list[str] = field(default_factory=list)
    rows: int = 0


def zone(name: str | None) -> ZoneInfo | None:
    """An IANA zone (``Europe/London``, ``UTC``) or None; ValueError for an unknown name."""
    if name is None or not str(name).strip():
        return None
    try:
        return ZoneInfo(str(name).strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/London or UTC)"
        ) from None


def _naive(s: str) -> datetime | None:
    """``s`` as a datetime (naive when it carries no offset), or None if unparseable."""
    try:
        return datetime.fromisoformat(s[:-1] + "+00:00" if s[-1] in "zZ" else s)
    except ValueError:
        pass
    if "/" in s:
        for fmt in _DAY_FIRST:
            try:
                return datetime.strptime(s, fmt)
            except ValueError:
                continue
    return None


def parse_csv_timestamp(text: str, tz: ZoneInfo | None, fold: int = 0) -> datetime:
    """One CSV timestamp to aware UTC (see the module docstring). ValueError with the reason."""
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    t = _naive(s)
    if t is None:
        try:
            epoch = float(s)
        except ValueError:
            raise ValueError(f"unrecognised timestamp {text!r}") from None
        if not math.isfinite(epoch):
            raise ValueError(f"unrecognised timestamp {text!r}")
        return _EPOCH + timedelta(seconds=epoch)
    if t.tzinfo is not None:
        return t.astimezone(UTC)
    if tz is None:
        raise ValueError(
            f"timestamp {text.strip()!r} has no UTC offset: write it with Z or +hh:mm, or give the file's "
            "time zone (--tz Europe/London, or ORCH_CARBON_CSV_TZ for the csv provider)"
        )
    local = t.replace(tzinfo=tz, fold=fold)
    back = local.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != t:
        raise ValueError(
            f"local time {text.strip()!r} does not exist in {tz.key} (skipped by the DST change)"
        )
    return local.astimezone(UTC)


def _ambiguous(t: datetime, tz: ZoneInfo) -> bool:
    return t.replace(tzinfo=tz, fold=0).utcoffset() != t.replace(tzinfo=tz, fold=1).utcoffset()


def _number(cell: str) -> float:
    c = cell.strip()
    if c == "":
        return math.nan
    return float(c.replace(",", ".")) if c.count(",") == 1 and "." not in c else float(c)


def load_csv(
    path_or_text: str | Path | bytes,
    *,
    time_column: int | str = 0,
    value_column: int | str = 1,
    tz: str | ZoneInfo | None = None,
    max_gap: timedelta | None = DEFAULT_MAX_GAP,
    step: timedelta | None = None,
) -> CsvSeries:
    """Read a CSV (header row + rows) into a regular series and the warnings to show the user.

    ``path_or_text``: a path (``.gz`` is decompressed), or the CSV text itself (str with a newline, or
    bytes). ValueError naming the line for every refused input."""
    if isinstance(path_or_text, bytes):
        text = path_or_text.decode("utf-8-sig")
    elif isinstance(path_or_text, Path) or "\n" not in path_or_text:
        p = Path(path_or_text)
        raw = p.read_bytes()
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    else:
        text = path_or_text
    zi = tz if isinstance(tz, ZoneInfo) else zone(tz)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError("empty CSV: expected a header row and `timestamp, g/kWh` rows") from None

    def col(c: int | str) -> int:
        if isinstance(c, int):
            if c >= len(header):
                raise ValueError(f"CSV has {len(header)} columns, column {c} requested")
            return c
        if c not in header:
            raise ValueError(f"column {c!r} not in CSV header {header}")
        return header.index(c)

    ti, vi = col(time_column), col(value_column)
    times: list[float] = []
    vals: list[float] = []
    lines: list[int] = []
    seen_ambiguous: set[datetime] = set()
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if max(ti, vi) >= len(row):
            raise ValueError(f"line {lineno}: expected at least {max(ti, vi) + 1} columns, got {len(row)}")
        fold = 0
        if zi is not None:
            naive = _naive(row[ti].strip()) if row[ti].strip() else None
            if naive is not None and naive.tzinfo is None and _ambiguous(naive, zi):
                fold = 1 if naive in seen_ambiguous else 0  # second occurrence: after the clocks go back
                seen_ambiguous.add(naive)
        try:
            t = parse_csv_timestamp(row[ti], zi, fold)
        except ValueError as e:
            raise ValueError(f"line {lineno}: {e}") from None
        try:
            v = _number(row[vi])
        except ValueError:
            raise ValueError(f"line {lineno}: intensity {row[vi]!r} is not a number (g/kWh)") from None
        if not math.isnan(v) and (not math.isfinite(v) or v < 0):
            raise ValueError(f"line {lineno}: intensity {row[vi]!r} must be a finite number >= 0")
        times.append((t - _EPOCH).total_seconds())
        vals.append(v)
        lines.append(lineno)
    if len(times) < 2:
        raise ValueError(f"CSV has {len(times)} data rows; a series needs at least 2")
    warnings: list[str] = []
    t_arr, v_arr, l_arr = np.array(times), np.array(vals), np.array(lines)
    if np.any(np.diff(t_arr) < 0):
        order = np.argsort(t_arr, kind="stable")
        first_bad = int(l_arr[1:][np.diff(t_arr) < 0][0])
        warnings.append(f"rows are not in time order (first at line {first_bad}): sorted")
        t_arr, v_arr, l_arr = t_arr[order], v_arr[order], l_arr[order]
    ut, first_idx, inv = np.unique(t_arr, return_index=True, return_inverse=True)
    if ut.size < t_arr.size:
        dup_lines = sorted(set(l_arr.tolist()) - set(l_arr[first_idx].tolist()))
        warnings.append(
            f"{t_arr.size - ut.size} rows repeat an earlier time (first at line {dup_lines[0]}): averaged"
        )
        ok = ~np.isnan(v_arr)
        sums = np.bincount(inv[ok], weights=v_arr[ok], minlength=ut.size)
        cnt = np.bincount(inv[ok], minlength=ut.size)
        v_arr = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        l_arr = l_arr[first_idx]
        t_arr = ut
    if ut.size < 2:
        raise ValueError("all rows have the same timestamp: cannot infer a resolution")
    if np.isnan(v_arr).all():
        raise ValueError("no numeric intensity values")
    d, _, auto_step = row_segments(t_arr)
    step_sec = step.total_seconds() if step is not None else auto_step
    resolutions = sorted({float(x) for x in d})
    if len(resolutions) > 1 and step is None:
        warnings.append(
            "rows have mixed resolutions ("
            + ", ".join(f"{r / 60:g} min" for r in resolutions)
            + f"): resampled time-weighted onto a {step_sec / 60:g}-minute grid"
        )
    bound = (max_gap or timedelta(0)).total_seconds()
    blocks, gaps = grid_blocks(t_arr, t_arr + d, v_arr, step_sec, bound)
    if gaps:
        g = gaps[0]
        before = l_arr[t_arr < (g.start - _EPOCH).total_seconds()]
        after = l_arr[t_arr >= (g.end - _EPOCH).total_seconds()]
        where = (
            f"between line {before[-1] if before.size else '?'} and line {after[0] if after.size else '?'}"
        )
        hours = g.length.total_seconds() / 3600
        raise ValueError(
            f"gap of {hours:g} h {where} ({g.start:%Y-%m-%dT%H:%MZ} to {g.end:%Y-%m-%dT%H:%MZ}): "
            f"at most {bound / 3600:g} h is interpolated"
        )
    (block,) = blocks
    if block.interpolated_cells:
        warnings.append(
            f"{block.interpolated_cells} missing {step_sec / 60:g}-minute intervals interpolated "
            f"(gaps of at most {bound / 3600:g} h)"
        )
    return CsvSeries(block.series, warnings, rows=int(ut.size))


def load_csv_series(path_or_text: str | Path | bytes, **kw) -> CarbonSeries:
    """:func:`load_csv` that logs the warnings and returns the series."""
    out = load_csv(path_or_text, **kw)
    for w in out.warnings:
        log.warning("carbon CSV: %s", w)
    return out.series
