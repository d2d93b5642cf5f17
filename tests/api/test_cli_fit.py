"""`orch jobs|runs|preview|recurring` fit the terminal and scripts (issue 20, item 4), in-process: typer's
CliRunner against the real app served by uvicorn in a thread (the `live_url` fixture of
test_cli_resources.py: real DB, SeaweedFS and Temporal dev server, no worker). Ids whole at 80 and 60 columns,
region shown, `preview --top N`, one duration format for every duration option, errors printed once,
timestamped `--watch` / `--follow` lines without ANSI codes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import httpx
import pytest
import typer
from sqlalchemy import update
from sqlalchemy.orm import Session

from cli.fmt import parse_duration
from core.s3 import s3_client
from fleets.logstore import log_key
from models.db import Run
from tests.support.api import engine_for, insert_job_and_run, setup_template
from tests.support.cli import js, orch

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ")


@pytest.fixture(scope="module")
def tenant(live_url, api_settings):  # noqa: F811
    """A client with a template, and three runs written to the DB with their regions."""
    with httpx.Client(base_url=live_url, timeout=30) as http:
        cid, headers, tpl = setup_template(http)
    runs = []
    for status, region in (("SCHEDULED", "eu-west-3"), ("SUCCEEDED", "eu-north-1"), ("FAILED", None)):
        _, run_id = insert_job_and_run(api_settings, cid, tpl, status=status)
        exit_code = 0 if status == "SUCCEEDED" else None
        _set(api_settings, run_id, region=region, exit_code=exit_code, fleet={"attempt": 1, "run_id": run_id})
        runs.append(run_id)
    return headers["X-API-Key"], cid, tpl, runs


def _set(api_settings, run_id: str, **values) -> None:
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            s.execute(update(Run).where(Run.id == run_id).values(**values))
            s.commit()
    finally:
        eng.dispose()


# ---------------------------------------------------------------- durations
@pytest.mark.parametrize(
    "text,expected",
    [
        ("3h", timedelta(hours=3)),
        ("90m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("PT3H", timedelta(hours=3)),
        ("P1D", timedelta(days=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("pt90m", timedelta(minutes=90)),
    ],
)
def test_one_duration_format(text, expected):
    assert parse_duration(text, "--within") == expected


@pytest.mark.parametrize("text", ["", "3x", "3", "h", "1.5h", "-1h", "P1M", "PT", "3 hours"])
def test_bad_durations_name_the_option(text):
    with pytest.raises(typer.BadParameter) as e:
        parse_duration(text, "--within")
    assert e.value.param_hint == "'--within'"
    assert parse_duration("3600", "--timeout", bare_seconds=True) == timedelta(hours=1)


@pytest.mark.parametrize(
    "args,option",
    [
        (("jobs", "submit", "-t", "tpl_x", "--within", "3x"), "--within"),
        (("preview", "-t", "tpl_x", "--within", "P1M"), "--within"),
        (("preview", "-t", "tpl_x", "--earliest", "+soon"), "--earliest"),
        (("recurring", "create", "-t", "tpl_x", "--cron", "0 1 * * *", "--before", "3 hours"), "--before"),
        (("recurring", "create", "-t", "tpl_x", "--cron", "0 1 * * *", "--catchup", "1y"), "--catchup"),
        (("recurring", "update", "rec_x", "--after", "PT"), "--after"),
        (("runs", "watch", "run_x", "--timeout", "soon"), "--timeout"),
        (("runs", "watch", "run_x", "--interval", "often"), "--interval"),
        (("runs", "logs", "run_x", "--follow", "--interval", "1x"), "--interval"),
        (("templates", "create", "--name", "n", "--expected-runtime", "half an hour"), "--expected-runtime"),
        (("templates", "update", "tpl_x", "--max-runtime", "P1Y"), "--max-runtime"),
        (("demo", "--admin-key", "k", "--timeout", "forever"), "--timeout"),
    ],
)
def test_a_bad_duration_is_a_usage_error_naming_the_option_once(args, option):
    r = orch("http://127.0.0.1:1", "orch_any", *args)  # refused before any call
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '{option}'" in r.stderr, r.stderr
    assert r.stderr.count("is not") + r.stderr.count("ISO 8601") >= 1
    assert r.stderr.count(f"'{option}'") == 1  # printed once


def test_durations_reach_the_api_in_both_spellings(live_url, tenant):  # noqa: F811
    key, _, tpl, _ = tenant
    rec = js(orch(live_url, key, "recurring", "create", "-t", tpl, "--cron", "0 1 * * *", "--before", "3h",
                  "--after", "PT90M", "--catchup", "1d", "--deadline", "PT20H", "--json"))  # fmt: skip
    got = (rec["margin_before"], rec["margin_after"], rec["catchup_window"], rec["deadline"])
    assert got == ("PT3H", "PT1H30M", "P1D", "PT20H")
    shown = orch(live_url, key, "recurring", "get", rec["id"], columns=80)
    full = js(orch(live_url, key, "recurring", "get", rec["id"], "--json"))
    region = full["next_preview"]["chosen"]["region"]
    assert shown.exit_code == 0 and re.search(rf"next start\s.*Z in {region} ", shown.stdout), shown.stdout
    upd = js(orch(live_url, key, "recurring", "update", rec["id"], "--before", "45m", "--json"))
    assert upd["margin_before"] == "PT45M"
    assert orch(live_url, key, "recurring", "delete", rec["id"]).exit_code == 0

    made = js(orch(live_url, key, "templates", "update", tpl, "--expected-runtime", "30m", "--max-runtime",
                   "PT2H", "--json"))  # fmt: skip
    assert (made["expected_runtime_sec"], made["max_runtime_sec"]) == (1800, 7200)
    job = js(orch(live_url, key, "jobs", "submit", "-t", tpl, "--within", "P1D", "--json"))
    got = js(orch(live_url, key, "jobs", "get", job["job_id"], "--json"))
    window = datetime.fromisoformat(got["latest_finish"]) - datetime.fromisoformat(got["earliest_start"])
    assert window == timedelta(days=1)


# ---------------------------------------------------------------- tables
@pytest.mark.parametrize("columns", [80, 60])
def test_ids_are_whole_and_region_is_shown_at_any_width(live_url, tenant, columns):  # noqa: F811
    key, _, tpl, runs = tenant
    r = orch(live_url, key, "runs", "list", columns=columns)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, r.stdout
    for run_id in runs:  # each id whole on one line
        assert any(run_id in line for line in lines), (run_id, r.stdout)
    assert "eu-west-3" in r.stdout and "eu-north-1" in r.stdout
    assert "…" not in r.stdout and "..." not in r.stdout

    wide = orch(live_url, key, "runs", "list", "--wide", columns=columns)
    assert wide.exit_code == 0 and all(h in wide.stdout for h in ("planned start", "finished", "saving"))
    wide_lines = wide.stdout.splitlines()
    assert all(any(f"{run_id} " in line and tpl in line for line in wide_lines) for run_id in runs)

    jobs = orch(live_url, key, "jobs", "list", columns=columns)
    assert jobs.exit_code == 0, jobs.output
    for run_id in runs:
        assert any(run_id in line for line in jobs.stdout.splitlines()), jobs.stdout

    got = orch(live_url, key, "runs", "get", runs[0], columns=columns)
    assert got.exit_code == 0, got.output
    assert re.search(r"region\s+eu-west-3", got.stdout) and runs[0] in got.stdout
    assert any(tpl in line for line in got.stdout.splitlines())


def test_piped_tables_keep_every_column(live_url, tenant):  # noqa: F811
    """No COLUMNS and stdout not a terminal: every column, no note, no ANSI codes."""
    key, *_ = tenant
    env = {"ORCH_URL": live_url, "ORCH_API_KEY": key, "COLUMNS": None}
    from typer.testing import CliRunner

    from cli import app

    r = CliRunner().invoke(app, ["runs", "list"], env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert all(h in r.stdout for h in ("planned start", "started", "finished", "exit", "saving", "region"))
    assert "left out" not in r.stdout and "\x1b" not in r.stdout


# ---------------------------------------------------------------- preview
def test_preview_top_n_and_region(live_url, tenant):  # noqa: F811
    key, _, tpl, _ = tenant
    data = js(orch(live_url, key, "preview", "-t", tpl, "--within", "PT24H", "--top", "20", "--json"))
    assert data["feasible_count"] >= 20
    assert len(data["candidates"]) == 20
    table = orch(live_url, key, "preview", "-t", tpl, "--within", "24h", "--top", "20", columns=80)
    assert table.exit_code == 0, table.output
    shown = [line for line in table.stdout.splitlines() if re.match(r"^\W*20\d\d-\d\d-\d\d", line)]
    assert len(shown) == 20, table.stdout  # a row's first line starts with its start time
    region = data["chosen"]["region"]
    assert region and f"in {region}" in table.stdout and "region" in table.stdout
    assert sum(region in line for line in shown) == 20
    assert orch(live_url, key, "preview", "-t", tpl, "--top", "0").exit_code == 2
    body = {"job_template_id": tpl, "earliest_start": data["baseline"]["proposed_start"],
            "latest_finish": data["chosen"]["estimated_finish_p90"]}  # fmt: skip
    bad = httpx.post(f"{live_url}/v1/schedules/preview", params={"top": 101}, json=body,
                     headers={"X-API-Key": key})  # fmt: skip
    assert bad.status_code == 422 and "top" in bad.text


# ---------------------------------------------------------------- errors once
def test_a_validation_error_is_printed_once(live_url, tenant):  # noqa: F811
    key, _, tpl, _ = tenant
    r = orch(live_url, key, "jobs", "submit", "-t", tpl, "--earliest", "+2h", "--latest", "+1h")
    assert r.exit_code == 3, r.output
    # the problem's detail repeats its first field errors: each is printed once
    assert r.stderr.count("earliest_start must be before latest_finish") == 1, r.stderr
    assert r.stderr.count("/v1/jobs") == 1


# ---------------------------------------------------------------- watch and follow
def test_watch_lines_are_timestamped_and_plain(live_url, tenant):  # noqa: F811
    key, _, _, runs = tenant
    done = orch(live_url, key, "runs", "watch", runs[1])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), done.stdout
    assert "SUCCEEDED" in lines[0] and "eu-north-1" in lines[0]
    assert "\x1b" not in done.stdout and "\r" not in done.stdout

    failed = orch(live_url, key, "runs", "watch", runs[2], "--json")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["status"] == "FAILED"  # stdout is the JSON alone
    assert all(STAMP.match(line) for line in failed.stderr.splitlines()), failed.stderr

    waiting = orch(live_url, key, "runs", "watch", runs[0], "--timeout", "1s", "--interval", "0.2")
    assert waiting.exit_code == 124, waiting.output
    assert STAMP.match(waiting.stdout) and "SCHEDULED" in waiting.stdout and "eu-west-3" in waiting.stdout
    assert STAMP.match(waiting.stderr) and "still SCHEDULED after 1 s" in waiting.stderr


def test_logs_follow_stamps_each_line(live_url, tenant, api_settings):  # noqa: F811
    key, cid, _, runs = tenant
    s3 = s3_client(api_settings)
    log = b"one\r\n10%\r50%\rtwo\nDONE"
    s3.put_object(Bucket=api_settings.s3_bucket, Key=log_key(cid, runs[1], 1), Body=log)
    plain = orch(live_url, key, "runs", "logs", runs[1])  # the log as the app wrote it
    assert plain.exit_code == 0 and plain.stdout.split("\n") == ["one", "10%\r50%\rtwo", "DONE"]
    followed = orch(live_url, key, "runs", "logs", runs[1], "--follow")
    assert followed.exit_code == 0, followed.output
    lines = followed.stdout.splitlines()
    assert [STAMP.sub("", line) for line in lines] == ["one", "two", "DONE"]  # what a terminal shows
    assert all(STAMP.match(line) for line in lines) and "\r" not in followed.stdout


@pytest.mark.parametrize("columns", [80, 60])
def test_resource_tables_keep_ids_whole(live_url, tenant, columns):  # noqa: F811
    key, _, tpl, _ = tenant
    tpls = orch(live_url, key, "templates", "list", columns=columns)
    assert tpls.exit_code == 0 and any(tpl in line for line in tpls.stdout.splitlines()), tpls.stdout
    art = js(orch(live_url, key, "templates", "get", tpl, "--json"))["app_artifact_id"]
    arts = orch(live_url, key, "artifacts", "list", columns=columns)
    assert arts.exit_code == 0 and any(art in line for line in arts.stdout.splitlines()), arts.stdout
    for out in (tpls.stdout, arts.stdout):
        assert max(len(line) for line in out.splitlines()) <= columns and "…" not in out
    one = orch(live_url, key, "artifacts", "get", art, columns=columns)  # every field
    assert one.exit_code == 0 and any(art in line for line in one.stdout.splitlines()), one.stdout
    sha = js(orch(live_url, key, "artifacts", "get", art, "--json"))["sha256"]
    assert (columns < 70) or any(sha in line for line in one.stdout.splitlines())  # 64 hex digits fit at 80


@pytest.mark.parametrize("columns", [80, 60])
def test_carbon_report_fits(live_url, tenant, columns):  # noqa: F811
    key, *_ = tenant
    for group in ("template", "region"):
        r = orch(live_url, key, "report", "carbon", "--group-by", group, columns=columns)
        assert r.exit_code == 0, r.output
        assert "total" in r.stdout and "…" not in r.stdout
        table = r.stdout.split("signal:")[0].splitlines()
        assert max(len(line) for line in table) <= columns, r.stdout


@pytest.mark.parametrize("columns", [100, 60, 45, 30])
def test_fitted_table_never_cuts_an_id(monkeypatch, columns):
    """Pure: wrap, then leave out columns (named in a note), then one block per row; ids whole throughout."""
    import io

    from rich.console import Console

    from cli.fmt import Col, fitted_table

    monkeypatch.setenv("COLUMNS", str(columns))
    ids = ["run_" + f"{n:020x}" for n in (1, 2)]
    cols = (Col("run", keep=100, ident=True), Col("status", keep=100), Col("note", 10), Col("when", keep=50))
    rows = [(i, "SUCCEEDED", "a long note that wraps at spaces " * 2, "2026-12-04 17:25:48Z") for i in ids]
    buf = io.StringIO()
    fitted_table(Console(file=buf, width=columns), cols, rows)
    text = buf.getvalue()
    assert all(any(i in line for line in text.splitlines()) for i in ids), text
    # only a line holding an id may run past a terminal narrower than that line (the terminal wraps it)
    assert all(len(line) <= columns or any(i in line for i in ids) for line in text.splitlines()), text
    assert columns > 30 or max(len(line) for line in text.splitlines()) > columns  # the id did not fit
    if columns == 100:
        assert "left out" not in text and "note" in text
    elif columns == 60:
        assert "(note left out at 60 columns: --wide shows every column)" in text.replace("\n", " ")
    elif columns == 30:  # not even run + status fit: a block per row
        assert "┃" not in text and re.search(r"^status\s+SUCCEEDED", text, re.M), text


def test_an_empty_list_prints_its_headers(monkeypatch):
    import io

    from rich.console import Console

    from cli.client import RUN_COLS
    from cli.fmt import fitted_table

    for columns in ("80", "20"):
        monkeypatch.setenv("COLUMNS", columns)
        buf = io.StringIO()
        fitted_table(Console(file=buf, width=int(columns)), RUN_COLS, [])
        assert "run" in buf.getvalue()
    monkeypatch.delenv("COLUMNS")
    buf = io.StringIO()
    fitted_table(Console(file=buf), RUN_COLS, [], wide=True)
    assert "planned start" in buf.getvalue()
