"""Calendars of recurring jobs (scheduling/calendar.py): cron parsing, DST, margins, end dates, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.calendar import Calendar, CalendarError, build_calendar, format_duration, parse_duration

LON = ZoneInfo("Europe/London")
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def cal(**kw) -> Calendar:
    base = dict(cron=None, interval=None, time_zone="UTC", margin_before="PT0S", margin_after="PT0S", now=NOW)
    return build_calendar(**(base | kw))


# ---------------------------------------------------------------- durations
@pytest.mark.parametrize(
    "text,expected",
    [
        ("PT3H", timedelta(hours=3)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT30S", timedelta(seconds=30)),
        ("P1W", timedelta(weeks=1)),
        ("PT0S", timedelta(0)),
        ("pt90m", timedelta(minutes=90)),
    ],
)
def test_iso_durations(text, expected):
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "3H", "PT-1H", "P1M", "P1Y", "PT1.5H", "1 hour", "P1DT"])
def test_bad_durations(text):
    with pytest.raises(CalendarError) as e:
        parse_duration(text, "margin_after")
    assert e.value.field == "margin_after"
    assert "ISO 8601" in str(e.value)


# ---------------------------------------------------------------- cron parsing
@pytest.mark.parametrize(
    "expr,why",
    [
        ("0 1 * * * *", "5-field"),
        ("0 1 * *", "5-field"),
        ("61 1 * * *", "not a valid"),
        ("0 25 * * *", "not a valid"),
        ("@daily", "5-field"),
        ("a b c d e", "not a valid"),
        ("", "5-field"),
    ],
)
def test_bad_cron(expr, why):
    with pytest.raises(CalendarError) as e:
        cal(cron=expr)
    assert e.value.field == "cron"
    assert why in str(e.value)


def test_cron_is_normalised_and_lists_times():
    c = cal(cron="  0   1 * * 1-5 ")
    assert c.cron == "0 1 * * 1-5"
    times = c.nominal_times(NOW, 5)  # Sat 10 Jan 2026 -> Mon..Fri
    assert [t.weekday() for t in times] == [0, 1, 2, 3, 4]
    assert all(t.hour == 1 and t.minute == 0 for t in times)


def test_unknown_zone_and_exactly_one_calendar():
    for name in ("Mars/Olympus", "../etc/passwd", "", "Europe/Lon don"):
        with pytest.raises(CalendarError) as e:
            cal(cron="0 1 * * *", time_zone=name)
        assert e.value.field == "time_zone"
    with pytest.raises(CalendarError, match="exactly one"):
        cal(cron="0 1 * * *", interval="PT1H")
    with pytest.raises(CalendarError, match="exactly one"):
        cal()
    with pytest.raises(CalendarError, match="at least"):
        cal(interval="PT30S")


# ---------------------------------------------------------------- DST
def test_london_0100_stays_0100_local_across_both_changes():
    c = cal(cron="0 1 * * *", time_zone="Europe/London")
    spring = c.nominal_times(datetime(2026, 3, 27, 12, tzinfo=UTC), 3)  # change on Sun 29 Mar 01:00 GMT
    # 01:00 on the 29th does not exist (01:00 GMT -> 02:00 BST): moved forward by the gap
    assert [t.isoformat() for t in spring] == [
        "2026-03-28T01:00:00+00:00",
        "2026-03-29T01:00:00+00:00",  # = 02:00 BST, the first instant after the gap
        "2026-03-30T00:00:00+00:00",  # 01:00 BST
    ]
    autumn = c.nominal_times(datetime(2026, 10, 23, 12, tzinfo=UTC), 3)  # change on Sun 25 Oct 02:00 BST
    assert [t.astimezone(LON).hour for t in autumn] == [1, 1, 1]
    assert [t.isoformat() for t in autumn] == [
        "2026-10-24T00:00:00+00:00",
        "2026-10-25T00:00:00+00:00",  # 01:00 happens twice: the first (BST) one, once
        "2026-10-26T01:00:00+00:00",
    ]


def test_new_york_gap_and_fold():
    c = cal(cron="30 1,2 * * *", time_zone="America/New_York")
    spring = c.nominal_times(datetime(2026, 3, 8, 5, tzinfo=UTC), 2)  # 8 Mar: 02:00 EST -> 03:00 EDT
    assert [t.astimezone(NY).strftime("%H:%M %Z") for t in spring] == ["01:30 EST", "03:30 EDT"]
    fall = c.nominal_times(datetime(2026, 11, 1, 4, tzinfo=UTC), 3)  # 1 Nov: 02:00 EDT -> 01:00 EST
    # 01:30 happens twice: once (the EDT one); 02:30 EST once; no duplicates
    assert [t.isoformat() for t in fall] == [
        "2026-11-01T05:30:00+00:00",
        "2026-11-01T07:30:00+00:00",
        "2026-11-02T06:30:00+00:00",
    ]


def test_interval_ignores_wall_clock():
    c = cal(interval="PT6H", time_zone="Europe/London")
    times = c.nominal_times(datetime(2026, 3, 28, 23, tzinfo=UTC), 3)
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [timedelta(hours=6)] * 2
    assert times[0] == datetime(2026, 3, 29, 0, tzinfo=UTC)


# ---------------------------------------------------------------- margins and fire times
def test_margin_across_midnight_moves_firing_to_previous_day():
    c = cal(cron="30 0 * * 1", margin_before="PT1H", margin_after="PT3H", time_zone="Europe/London")
    assert c.fire_cron_expressions() == ["30 23 * * 0"]  # Monday 00:30 -> Sunday 23:30
    n = c.nominal_times(NOW, 1)[0]
    assert c.margin(n) == (n - timedelta(hours=1), n + timedelta(hours=3))
    assert c.margin(n)[0].astimezone(LON).weekday() == 6  # Sunday


def test_margin_borrowing_minutes_gives_several_expressions():
    c = cal(cron="15,45 3 * * *", margin_before="PT30M")
    assert sorted(c.fire_cron_expressions()) == ["15 3 * * *", "45 2 * * *"]


@pytest.mark.parametrize(
    "expr,zone,before",
    [
        ("15,45 3 * * *", "UTC", "PT30M"),
        ("0 1 * * *", "Europe/London", "PT3H"),
        ("0 9 * * 1-5", "America/New_York", "PT10H30M"),
        ("*/20 * * * *", "Europe/London", "PT5M"),
        ("0 0 * * 0", "UTC", "P1D"),
    ],
)
def test_every_fire_time_maps_to_its_nominal_time(expr, zone, before):
    """Shifted expressions fire exactly at each margin's start (wall clock), over a year with two DST
    changes; mapping a fire time back gives the calendar's nominal time."""
    c = cal(cron=expr, time_zone=zone, margin_before=before)
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    horizon = start + timedelta(days=40 if "*/" in expr else 365)
    nominal = set()
    for t in c._raw_after(start + timedelta(days=2)):
        if t > horizon - timedelta(days=2):
            break
        nominal.add(t)
    fired = set()
    for e in c.fire_cron_expressions():
        it = croniter(e, start.astimezone(tz).replace(tzinfo=None))
        while True:
            wall = it.get_next(datetime)
            f = wall.replace(tzinfo=tz).astimezone(UTC)
            if f > horizon:
                break
            n = c.nominal_for_fire(f)
            if start + timedelta(days=2) < n <= horizon - timedelta(days=2):
                fired.add(n)
    assert fired == nominal


def test_month_end_margin():
    c = cal(cron="0 0 1 * *", margin_after="PT6H")  # no margin before: fires at the nominal time
    n = c.nominal_times(datetime(2026, 1, 31, 12, tzinfo=UTC), 1)[0]
    assert n == datetime(2026, 2, 1, tzinfo=UTC)
    assert c.margin(n) == (n, n + timedelta(hours=6))
    with pytest.raises(CalendarError) as e:  # 1st of the month minus 2 h is "the last day": no cron for it
        cal(cron="0 0 1 * *", margin_before="PT2H")
    assert e.value.field == "margin_before"
    c = cal(cron="0 2 1 * *", margin_before="PT2H")  # stays on the same day: fine
    assert c.fire_cron_expressions() == ["0 0 1 * *"]


def test_interval_fire_offset():
    c = cal(interval="PT1H", margin_before="PT10M", margin_after="PT20M")
    assert c.fire_interval_offset() == timedelta(minutes=50)
    fire = datetime(2026, 1, 10, 12, 50, tzinfo=UTC)
    assert c.nominal_for_fire(fire) == datetime(2026, 1, 10, 13, 0, tzinfo=UTC)


def test_margin_longer_than_period():
    with pytest.raises(CalendarError, match="longer than the calendar's shortest period"):
        cal(cron="0 * * * *", margin_before="PT40M", margin_after="PT30M")
    with pytest.raises(CalendarError, match="shortest period"):  # weekdays at 9 and 17: 8 h apart
        cal(cron="0 9,17 * * 1-5", margin_after="PT9H")
    cal(cron="0 9,17 * * 1-5", margin_after="PT8H")  # exactly the period: margins touch, fine
    with pytest.raises(CalendarError, match="shortest period"):
        cal(interval="PT1H", margin_after="PT61M")


def test_end_dates():
    end = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)
    c = cal(cron="0 1 * * *", margin_before="PT2H", end_at=end)
    times = c.nominal_times(NOW, 10)
    assert times[-1] == end and len(times) == 4  # 11, 12, 13, 14 Jan: end_at is inclusive
    assert c.fire_window() == (None, end - timedelta(hours=2))
    start = datetime(2026, 1, 12, 1, 0, tzinfo=UTC)
    c = cal(cron="0 1 * * *", start_at=start, end_at=end)
    assert c.nominal_times(NOW, 10)[0] == start
    with pytest.raises(CalendarError) as e:
        cal(cron="0 1 * * *", end_at=NOW - timedelta(days=1))
    assert e.value.field == "end_at"
    with pytest.raises(CalendarError, match="after start_at"):
        cal(cron="0 1 * * *", start_at=end, end_at=start)
    with pytest.raises(CalendarError, match="no nominal time"):
        cal(
            cron="0 1 * * *",
            start_at=datetime(2026, 1, 12, 2, tzinfo=UTC),
            end_at=datetime(2026, 1, 12, 3, tzinfo=UTC),
        )


def test_deadline_rules():
    cal(cron="0 1 * * *", margin_after="PT1H", deadline="PT6H")
    with pytest.raises(CalendarError) as e:
        cal(cron="0 1 * * *", margin_after="PT1H", deadline="PT1H")
    assert e.value.field == "deadline"
    with pytest.raises(CalendarError):
        cal(cron="0 * * * *", deadline="PT3H")


_durs = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"P(\d{1,12}W)?(\d{1,12}D)?(T(\d{1,12}H)?(\d{1,12}M)?(\d{1,12}S)?)?", fullmatch=True),
)
_crons = st.one_of(
    st.text(max_size=30),
    st.lists(
        st.sampled_from(["*", "0", "59", "1-5", "*/7", "L", "31", "2", "?", "60", "-1", "7", "SUN", "1,2"]),
        min_size=5,
        max_size=5,
    ).map(" ".join),
)
_zones = st.sampled_from(
    ["UTC", "Europe/London", "Europe", "", "Etc/GMT+5", "Asia/Kathmandu", "../x", "a" * 80]
)
_times = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)


@settings(max_examples=400, deadline=None)
@given(
    cron=st.one_of(st.none(), _crons),
    interval=st.one_of(st.none(), _durs),
    tz=_zones,
    before=_durs,
    after=_durs,
    deadline=st.one_of(st.none(), _durs),
    start=_times,
    end=_times,
)
def test_any_input_builds_or_is_a_calendar_error(cron, interval, tz, before, after, deadline, start, end):
    """Whatever a client sends, the calendar either builds (and lists times) or names the bad field: never
    another exception (the API would answer 500)."""
    try:
        c = build_calendar(
            cron=cron,
            interval=interval,
            time_zone=tz,
            margin_before=before,
            margin_after=after,
            deadline=deadline,
            start_at=start,
            end_at=end,
        )
    except CalendarError as exc:
        assert exc.field in {"cron", "interval", "time_zone", "margin_before", "margin_after", "deadline",
                             "start_at", "end_at"}  # fmt: skip
        return
    c.nominal_times(datetime.now(UTC), 5)
    c.fire_window()
    assert c.fire_cron_expressions() or c.interval is not None
