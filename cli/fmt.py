"""Shared helpers of the client commands: one duration format for every duration option, tables that never
cut an id, and timestamped lines for ``--watch`` / ``--follow`` that stay plain when piped.

Durations: ``45s``, ``90m``, ``3h``, ``1d``, ``1d12h``, ``2w`` or ISO 8601 (``PT3H``, ``P1D``, ``P1DT12H``);
a bad value is a usage error (exit 2) naming the option, e.g. ``Invalid value for '--within': '3x' is not a
duration ...``.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

from scheduling.calendar import MAX_DURATION, CalendarError, format_duration
from scheduling.calendar import parse_duration as parse_iso_duration

_SHORT = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
DURATION_HELP = "3h, 90m, 1d12h or ISO 8601 PT3H, P1D"
_ID_WORD = re.compile(r"\b[a-z]{2,5}_[0-9a-f]{16,}\b")


def parse_duration(text: str, option: str = "duration", *, bare_seconds: bool = False) -> timedelta:
    """``3h``, ``90m``, ``1d12h``, ``45s``, ``2w`` or ISO 8601 (``PT3H``, ``P1D``); with ``bare_seconds`` a
    plain number is seconds (``--timeout 3600``). Bad input raises ``typer.BadParameter`` naming
    ``option``."""
    t = (text or "").strip()
    bad = f"{text!r} is not a duration: use {DURATION_HELP}"
    if bare_seconds and re.fullmatch(r"\d+(?:\.\d+)?", t):
        return timedelta(seconds=float(t))
    if t[:1] in ("P", "p"):
        try:
            return parse_iso_duration(t, option)
        except CalendarError as exc:
            raise typer.BadParameter(f"{exc}; or use 3h, 90m, 1d", param_hint=f"'{option}'") from exc
    m = _SHORT.match(t.lower())
    if not t or not m or not any(m.groups()):
        raise typer.BadParameter(bad, param_hint=f"'{option}'")
    w, d, h, mi, s = (int(g or 0) for g in m.groups())
    try:
        td = timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    except OverflowError as exc:
        raise typer.BadParameter(f"{text!r} is too long", param_hint=f"'{option}'") from exc
    if td > MAX_DURATION:
        raise typer.BadParameter(
            f"{text!r} is longer than {MAX_DURATION.days} days", param_hint=f"'{option}'"
        )
    return td


def iso_duration(text: str, option: str) -> str:
    """A duration option as the API's ISO 8601 spelling (``3h`` -> ``PT3H``)."""
    return format_duration(parse_duration(text, option))


def parse_time(text: str, option: str = "time", now: datetime | None = None) -> datetime:
    """``now``, ``+2h`` / ``+PT2H`` (from now), or an ISO 8601 time with an offset
    (``2026-12-01T01:00:00Z``)."""
    now = now or datetime.now(UTC)
    t = text.strip()
    if t == "now":
        return now
    if t.startswith("+"):
        return now + parse_duration(t[1:], option)
    try:
        value = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a time: use now, +2h or 2026-12-01T01:00:00Z", param_hint=f"'{option}'"
        ) from exc
    if value.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no UTC offset: add Z or +01:00", param_hint=f"'{option}'")
    return value


# ---------- tables that never cut an id ----------
@dataclass(frozen=True)
class Col:
    """A table column. ``ident`` columns (ids) are never shortened or wrapped. When the terminal is too narrow
    the columns with the lowest ``keep`` are left out first (``keep >= 100``: never left out); when even those
    do not fit, each row is printed as a block of ``field value`` lines. ``--wide`` shows every column."""

    header: str
    keep: int = 0
    ident: bool = False
    justify: str = "left"


def read_json_object(file: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``file`` (a ``--file`` option's request body); a usage error naming the file."""
    try:
        body = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}") from exc
    if not isinstance(body, dict):
        raise typer.BadParameter(f"{file} must hold a JSON object ({what})")
    return body


def terminal_width() -> int | None:
    """The width to fit tables to: ``COLUMNS``, else the terminal's; None when stdout is not a terminal
    (piped: nothing is cut, every column is printed)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 80


def _render(table: Table, width: int) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(
        table, crop=False
    )
    return buf.getvalue().splitlines()


def _least(col: Col, rows: Sequence[Sequence[str]], i: int) -> int:
    """The narrowest a column may be: an id column its longest line, others their longest word (up to 20)."""
    cells = [_plain(r[i]) for r in rows]
    if col.ident:
        return max([len(col.header), *(len(x) for cell in cells for x in cell.splitlines())])
    words = [w for cell in cells for w in cell.split()] + col.header.split()
    ids = [len(w) for w in words if _ID_WORD.search(w)]  # an id inside text (a label) is never cut either
    return max([min(20, max((len(w) for w in words), default=1)), *ids])


def _build(title: str | None, cols: Sequence[Col], rows: Sequence[Sequence[str]], keep: list[int]) -> Table:
    t = Table(title=title)
    for i in keep:
        c, least = cols[i], _least(cols[i], rows, i)
        if c.ident:
            t.add_column(c.header, no_wrap=True, min_width=least, justify=c.justify)  # type: ignore[arg-type]
        else:  # wraps at spaces; never narrower than its longest word (up to 20)
            t.add_column(c.header, overflow="fold", min_width=least, justify=c.justify)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*(r[i] for i in keep))
    return t


def _fits(cols: Sequence[Col], rows: Sequence[Sequence[str]], keep: list[int], width: int) -> bool:
    # rich squeezes columns below their min_width rather than overflow: check the widths ourselves
    # (each column: its width, 1 space of padding each side, 1 rule; plus the table's left edge)
    return 1 + sum(_least(cols[i], rows, i) + 3 for i in keep) <= width


def _plain(cell: str) -> str:
    from rich.text import Text

    return Text.from_markup(cell).plain


def record_table(cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> Table:
    """Each row as a block of ``field value`` lines (for terminals too narrow for the essential columns)."""
    t = Table(show_header=False, box=None, padding=(0, 1, 0, 0))
    t.add_column(style="bold", no_wrap=True)
    # an id longer than the space left runs past the edge (the terminal wraps it) rather than fold
    longest_id = max([len(_plain(r[i])) for r in rows for i, c in enumerate(cols) if c.ident], default=1)
    t.add_column(overflow="fold", min_width=longest_id)
    for n, r in enumerate(rows):
        if n:
            t.add_row("", "")
        for c, cell in zip(cols, r, strict=True):
            t.add_row(c.header, cell)
    return t


def fitted_table(
    console: Console,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    wide: bool = False,
) -> None:
    """Print a table whose ids are always whole, whatever the terminal's width: other columns wrap; when that
    is not enough the least useful columns are left out (a note names them and ``--wide``); when even the
    essential ones do not fit, one block of lines per row. ``wide`` (or stdout piped without ``COLUMNS``)
    prints every column, however long the lines."""
    width = None if wide else terminal_width()
    keep = list(range(len(cols)))
    if width is None:
        t = _build(title, cols, rows, keep)
        natural = max([1, *(len(line) for line in _render(t, 10_000))])
        # console.print would cap the width at the console's: print on one as wide as the table
        wide_console = Console(
            file=console.file,
            width=natural,
            color_system=console.color_system,  # type: ignore[arg-type]
            force_terminal=console.is_terminal,
        )
        wide_console.print(t, crop=False)
        return
    order = sorted((i for i, c in enumerate(cols) if c.keep < 100), key=lambda i: (cols[i].keep, -i))
    hidden: list[int] = []
    while True:
        t = _build(title, cols, rows, keep)
        if _fits(cols, rows, keep, width) and max([0, *(len(x) for x in _render(t, width))]) <= width:
            break
        if not order:  # even the essential columns do not fit: a block per row
            if title:
                console.print(title, style="italic", width=width)
            # plain text, each line's padding stripped: only a line holding a long id runs past the edge
            lines = _render(record_table(cols, rows), width)
            console.file.write("".join(line.rstrip() + "\n" for line in lines))
            return
        drop = order.pop(0)
        keep.remove(drop)
        hidden.append(drop)
    console.print(t, width=width, crop=False)
    if hidden:
        names = ", ".join(cols[i].header for i in sorted(hidden))
        # at the fitted width, not the console's (created once, perhaps before COLUMNS was what it is now)
        note = f"({names} left out at {width} columns: --wide shows every column)"
        console.print(note, style="dim", width=width)


# ---------- timestamped lines ----------
def stamp(now: datetime | None = None) -> str:
    """A UTC timestamp for the start of a line: ``2026-12-04T17:15:17Z``."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamped(stream: TextIO, text: str, **style: Any) -> None:
    """Write one line with a UTC timestamp; plain text (no ANSI codes, no carriage returns) unless the stream
    is a terminal."""
    from rich.markup import escape

    Console(file=stream, soft_wrap=True, highlight=False).print(f"{stamp()}  {escape(text)}", **style)
