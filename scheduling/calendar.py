"""Calendars of recurring jobs: 5-field cron or ISO 8601 interval, an IANA zone, and a carbon margin.

Pure (no I/O but the zone database): the API validates and previews with it, the firing activity turns a
Schedule's fire time into the nominal time of the firing, and services/recurring.py turns a calendar into
the Temporal ScheduleSpec.

Vocabulary:

- **nominal time** N: a time the calendar names ("01:00 Europe/London"), in the zone's wall clock, so it
  stays 01:00 local across DST changes. A wall time that does not exist (the spring-forward gap) is moved
  forward by the gap (01:30 on the spring-forward day in London is 02:30 BST); a wall time that happens twice
  (autumn) is the first one (``fold=0``).
- **margin** [N - margin_before, N + margin_after]: the run STARTS somewhere inside it (at its end at the
  latest). The Temporal Schedule fires at the margin's start, N - margin_before: for a cron the expression is
  shifted in wall-clock time (several expressions when minutes borrow from hours; the day of week moves with
  a shift across midnight); for an interval the offset is shifted.
- **fire time** F: when Temporal starts the firing workflow. N = F + margin_before, in wall-clock time for a
  cron (so DST nights keep N on the calendar) and in absolute time for an interval. A manual trigger at F is a
  firing whose margin starts at F.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_INTERVAL = timedelta(minutes=1)
MAX_NOMINALS = 100
PERIOD_SAMPLE = 400  # consecutive nominal times looked at to find a calendar's shortest period

_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$",
    re.ASCII,
)
MAX_DURATION = timedelta(days=3660)  # no margin, interval or deadline needs more than 10 years


class CalendarError(ValueError):
    """Bad calendar input; ``field`` names the request field it is about."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def parse_duration(text: str, field: str = "duration") -> timedelta:
    """ISO 8601 duration in weeks, days, hours, minutes, seconds: ``PT3H``, ``P1DT12H``, ``PT30S``, ``P1W``.
    Years and months are refused (their length depends on the date)."""
    if not isinstance(text, str):
        raise CalendarError(field, "must be an ISO 8601 duration string such as PT3H")
    m = _ISO_DURATION.match(text.strip().upper())
    if not m:
        hint = (
            " (years and months are not supported: use days, e.g. P30D)"
            if re.search(r"P\d+[YM]", text)
            else ""
        )
        raise CalendarError(field, f"{text!r} is not an ISO 8601 duration such as PT3H or P1DT12H{hint}")
    g = {k: int(v or 0) for k, v in m.groupdict().items()}
    try:
        td = timedelta(weeks=g["w"], days=g["d"], hours=g["h"], minutes=g["m"], seconds=g["s"])
    except OverflowError as exc:
        raise CalendarError(field, f"{text!r} is too long") from exc
    if td > MAX_DURATION:
        raise CalendarError(field, f"{text!r} is longer than {MAX_DURATION.days} days")
    return td


def format_duration(td: timedelta) -> str:
    """The ISO 8601 spelling of a duration (``PT3H``, ``P1DT30M``, ``PT0S``)."""
    total = int(td.total_seconds())
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    t = (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{s}S" if s else "")
    if t:
        out += "T" + t
    return out if out != "P" else "PT0S"


def zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64 or ".." in name or name.startswith("/"):
        raise CalendarError(
            "time_zone", f"unknown time zone {name!r}: use an IANA name such as Europe/London"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(
            "time_zone", f"unknown time zone {name!r}: use an IANA name such as Europe/London"
        ) from exc


# The cron this API accepts: per field a comma list of `*`, `N`, `N-M`, each optionally `/step`; month
# names (jan-dec) and day names (sun-sat) too. Everything else (`L`, `W`, `#`, `?`, `H`, `@daily`...) is
# read differently by croniter and Temporal, or not at all by one of them: refused, naming the field.
_CRON_ITEM = r"(?:\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/[0-9]+)?"
_CRON_FIELD = re.compile(rf"{_CRON_ITEM}(?:,{_CRON_ITEM})*", re.ASCII)
_CRON_NAMES = re.compile(r"[a-z]+", re.ASCII)
_MONTHS = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
_DAYS = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def check_cron(expr: str) -> str:
    """A standard 5-field cron (minute hour day-of-month month day-of-week), normalised to single spaces.
    Only what croniter and Temporal read alike: numbers, `*`, ranges, lists and steps (and month and day
    names); `L`, `W`, `#`, `?` and the like are refused."""
    fields = expr.split() if isinstance(expr, str) else []
    if len(fields) != 5:
        raise CalendarError(
            "cron",
            f"{expr!r} is not a 5-field cron expression (minute hour day-of-month month day-of-week), "
            "e.g. '0 1 * * *'",
        )
    for name, field in zip(CRON_FIELDS, fields, strict=True):
        low = field.lower()
        names = set(_CRON_NAMES.findall(low))
        allowed = _MONTHS if name == "month" else _DAYS if name == "day-of-week" else set()
        if not _CRON_FIELD.fullmatch(low) or not names <= allowed:
            raise CalendarError(
                "cron",
                f"{expr!r} is not a valid cron expression here: the {name} field {field!r} is not "
                "supported: use numbers, '*', ranges (1-5), "
                "lists (1,15) and steps (*/15)"
                + (" or names (jan, mon)" if allowed else "")
                + "; L, W, #, ? and H are not",
            )
    norm = " ".join(fields)
    if not croniter.is_valid(norm):
        raise CalendarError("cron", f"{expr!r} is not a valid cron expression")
    return norm


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Wall time -> aware UTC: a time in a spring-forward gap moves forward by the gap, a repeated autumn
    time is its first occurrence."""
    aware = naive.replace(tzinfo=tz, fold=0)
    # fold=0 in a gap reads the wall time with the offset from before the change: that IS the time moved
    # forward by the gap once converted (01:30 GMT-wall on the London spring day -> 01:30Z = 02:30 BST).
    return aware.astimezone(UTC)


@dataclass(frozen=True)
class Calendar:
    """A validated calendar: exactly one of ``cron`` / ``interval``."""

    time_zone: str = "UTC"
    cron: str | None = None
    interval: timedelta | None = None
    margin_before: timedelta = timedelta(0)
    margin_after: timedelta = timedelta(0)
    start_at: datetime | None = None
    end_at: datetime | None = None

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)

    # ---------- nominal times ----------
    def _raw_after(self, after: datetime) -> Iterator[datetime]:
        """Nominal times strictly after ``after`` (aware), ignoring start_at / end_at."""
        if self.interval is not None:
            step = self.interval.total_seconds()
            k = int((after - EPOCH).total_seconds() // step) + 1
            while True:
                try:
                    yield EPOCH + timedelta(seconds=k * step)
                except OverflowError:  # past year 9999: the calendar ends there
                    return
                k += 1
        tz = self.tz
        local = after.astimezone(tz).replace(tzinfo=None)
        # croniter walks wall-clock times; start an hour early so a gap/fold never skips a time, then
        # keep only the ones after `after` (de-duplicated: two wall times can map to one instant)
        it = croniter(self.cron, local - timedelta(hours=3))
        last: datetime | None = None
        while True:
            t = localize(it.get_next(datetime), tz)
            if t > after and t != last:
                last = t
                yield t

    def nominal_times(self, after: datetime, n: int) -> list[datetime]:
        """The next ``n`` nominal times strictly after ``after`` within [start_at, end_at]."""
        out: list[datetime] = []
        lower = after if self.start_at is None else max(after, self.start_at - timedelta(microseconds=1))
        for t in self._raw_after(lower):
            if self.end_at is not None and t > self.end_at:
                break
            out.append(t)
            if len(out) >= n:
                break
        return out

    def shortest_period(self, after: datetime) -> timedelta | None:
        """The shortest gap between consecutive nominal times (looking at the next PERIOD_SAMPLE of them);
        None if the calendar has fewer than two."""
        if self.interval is not None:
            return self.interval
        times = self.nominal_times(after, PERIOD_SAMPLE)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return min(gaps) if gaps else None

    def margin(self, nominal: datetime) -> tuple[datetime, datetime]:
        return nominal - self.margin_before, nominal + self.margin_after

    # ---------- fire times ----------
    def nominal_for_fire(self, fire: datetime) -> datetime:
        """The nominal time of a firing at ``fire`` (see the module doc)."""
        fire = fire.astimezone(UTC)
        if self.interval is not None or not self.margin_before:
            return fire + self.margin_before
        tz = self.tz
        wall = fire.astimezone(tz).replace(tzinfo=None) + self.margin_before
        return localize(wall, tz)

    def fire_cron_expressions(self) -> list[str]:
        """The cron expressions that fire at each margin's start: the nominal cron shifted back by
        margin_before in wall-clock time."""
        if self.cron is None:
            return []
        shift = self.margin_before
        if not shift:
            return [self.cron]
        if shift.total_seconds() % 60:
            raise CalendarError("margin_before", "with a cron calendar, margin_before must be whole minutes")
        fields = self.cron.split()
        minutes, hours, _, _, dows = croniter(self.cron).expanded
        hours = list(range(24)) if hours == ["*"] else [int(h) for h in hours]
        minutes = list(range(60)) if minutes == ["*"] else [int(m) for m in minutes]
        total_min = int(shift.total_seconds() // 60)
        groups: dict[tuple[int, int], set[int]] = {}
        for m in minutes:
            for h in hours:
                t = h * 60 + m - total_min
                day, rest = divmod(t, 24 * 60)  # day <= 0: how many days earlier the firing is
                groups.setdefault((rest % 60, day), set()).add(rest // 60)
        day_shifts = {d for _, d in groups}
        if day_shifts != {0} and (fields[2] != "*" or fields[3] != "*"):
            raise CalendarError(
                "margin_before",
                "margin_before moves the firing to an earlier day, which a cron with a day-of-month or "
                "month field cannot express: use '*' for those fields or a shorter margin_before",
            )
        out: list[str] = []
        for (minute, day), hrs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if day == 0:
                dow = fields[4]
            else:
                base = range(7) if dows == ["*"] else [int(d) % 7 for d in dows]
                dow = (
                    "*" if dows == ["*"] else ",".join(str(x) for x in sorted({(d + day) % 7 for d in base}))
                )
            hour_field = "*" if len(hrs) == 24 else ",".join(str(h) for h in sorted(hrs))
            out.append(f"{minute} {hour_field} {fields[2]} {fields[3]} {dow}")
        return _merge_minutes(out)

    def fire_interval_offset(self) -> timedelta:
        """Offset of the interval's fire times from the epoch grid: nominal grid shifted by -margin_before."""
        assert self.interval is not None
        step = int(self.interval.total_seconds())
        return timedelta(seconds=(-int(self.margin_before.total_seconds())) % step)

    def fire_window(self) -> tuple[datetime | None, datetime | None]:
        """Schedule start_at / end_at for the fire times, so nominal times stay within [start_at, end_at]."""
        start = self.start_at - self.margin_before if self.start_at else None
        end = self.end_at - self.margin_before if self.end_at else None
        return start, end


def _merge_minutes(exprs: list[str]) -> list[str]:
    """Join expressions that differ only in the minute field (fewer, more readable expressions)."""
    by_rest: dict[str, list[str]] = {}
    for e in exprs:
        minute, rest = e.split(" ", 1)
        by_rest.setdefault(rest, []).append(minute)
    return [f"{','.join(sorted(ms, key=int))} {rest}" for rest, ms in by_rest.items()]


def build_calendar(
    *,
    cron: str | None,
    interval: str | None,
    time_zone: str,
    margin_before: str,
    margin_after: str,
    deadline: str | None = None,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    now: datetime | None = None,
    min_interval: timedelta = MIN_INTERVAL,
) -> Calendar:
    """Validate every part of a calendar; raises CalendarError naming the field. ``min_interval``: the
    shortest ``interval`` accepted (``ORCH_RECURRING_MIN_INTERVAL_SEC``)."""
    now = now or datetime.now(UTC)
    if (cron is None) == (interval is None):
        raise CalendarError("cron", "give exactly one of cron (5 fields) or interval (ISO 8601 duration)")
    tz_name = "UTC" if time_zone is None else time_zone
    zone(tz_name)
    before = parse_duration(margin_before, "margin_before")
    after = parse_duration(margin_after, "margin_after")
    every = None
    expr = None
    if interval is not None:
        every = parse_duration(interval, "interval")
        if every < min_interval:
            raise CalendarError("interval", f"interval must be at least {format_duration(min_interval)}")
        if every.total_seconds() % 1:
            raise CalendarError("interval", "interval must be whole seconds")
    else:
        expr = check_cron(cron or "")
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise CalendarError("end_at", "end_at must be after start_at")
    if end_at is not None and end_at <= now:
        raise CalendarError("end_at", "end_at is in the past: the calendar would never fire")
    cal = Calendar(
        time_zone=tz_name,
        cron=expr,
        interval=every,
        margin_before=before,
        margin_after=after,
        start_at=start_at,
        end_at=end_at,
    )
    probe = max(now, start_at) if start_at else now
    try:
        first = cal.nominal_times(probe, 1)
    except (ValueError, OverflowError, KeyError) as exc:  # croniter: a date that never comes (30 2 31 2 *)
        raise CalendarError("cron", f"{cron!r} never fires") from exc
    if not first:
        raise CalendarError("end_at", "the calendar has no nominal time between start_at and end_at")
    period = cal.shortest_period(probe)
    if period is not None and before + after > period:
        raise CalendarError(
            "margin_after",
            f"margin_before + margin_after ({format_duration(before + after)}) is longer than the calendar's "
            f"shortest period ({format_duration(period)}): consecutive margins would overlap",
        )
    if deadline is not None:
        dl = parse_duration(deadline, "deadline")
        if dl <= after:
            raise CalendarError("deadline", "deadline must be longer than margin_after")
        if period is not None and dl > period + before:
            raise CalendarError("deadline", "deadline is longer than the calendar's shortest period")
    cal.fire_cron_expressions()  # raises if margin_before cannot be expressed for this cron
    return cal
