"""Backtest: scheduling/backtest.py and the `orch backtest` command (cli/backtest.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cli.backtest import backtest
from scheduling.backtest import (
    BacktestConfig,
    daily_submissions,
    parse_submissions,
    run_backtest,
    run_region_backtest,
)
from scheduling.carbon import CarbonSeries, embedded_history
from scheduling.scoring import UNGATED, RiskMode, Weights

app = typer.Typer()
app.command()(backtest)
runner = CliRunner()

KEYS = {
    "submissions",
    "baseline_g",
    "chosen_g",
    "oracle_g",
    "savings_pct",
    "oracle_savings_pct",
    "share_of_oracle",
    "deadline_misses",
}


def month_csv(tmp_path, zone="GB", days=40, minutes=60, extra=""):
    h = embedded_history(zone)
    rows = [f"{t:%Y-%m-%dT%H:%MZ},{v}" for t, v in zip(h.times()[: days * 24], h.values, strict=False)]
    if minutes == 30:  # GB-style half-hourly CSV
        rows = [
            r
            for t, v in zip(h.times()[: days * 24], h.values, strict=False)
            for r in (f"{t:%Y-%m-%dT%H:%MZ},{v}", f"{t + timedelta(minutes=30):%Y-%m-%dT%H:%MZ},{v}")
        ]
    p = tmp_path / f"{zone}.csv"
    p.write_text("timestamp,gco2_per_kwh\n" + "\n".join(rows) + "\n" + extra)
    return p


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_issue_command_perfect_forecast_reaches_the_oracle(tmp_path):
    csv = month_csv(tmp_path)
    r = run(
        "--carbon-csv",
        csv,
        "--daily-at",
        "01:00",
        "--job-minutes",
        30,
        "--window-hours",
        8,
        "--forecast",
        "perfect",
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) >= KEYS
    assert out["submissions"] >= 38 and out["deadline_misses"] == 0
    assert out["share_of_oracle"] == 1.0
    assert out["chosen_g"] == out["oracle_g"] < out["baseline_g"]
    assert out["savings_pct"] == out["oracle_savings_pct"] > 0


@pytest.mark.parametrize("mode", list(RiskMode))
def test_perfect_forecast_is_oracle_for_every_risk_mode(mode):
    h = embedded_history("DE").slice(datetime(2023, 2, 1, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC))
    cfg = BacktestConfig(p50_sec=3600, p90_sec=5400, window_hours=6, risk_mode=mode)
    r = run_backtest(h, daily_submissions(h, "09:30"), cfg)
    assert r.share_of_oracle == 1.0 and r.chosen_g == r.oracle_g


def test_seasonal_has_no_look_ahead():
    """Changing the actual series after a window opens cannot change the seasonal choice."""
    h = embedded_history("FR")
    cfg = BacktestConfig(p50_sec=3600, p90_sec=3600, window_hours=8, forecast="seasonal")
    subs = [datetime(2023, 4, d, 13, tzinfo=UTC) for d in (3, 10, 17)]
    a = run_backtest(h, subs, cfg)
    for sub, res in zip(subs, a.results, strict=True):
        opens = sub - timedelta(hours=8)
        vals = np.array(h.values)
        i = h.index_of(opens)
        vals[i:] = vals[i:][::-1][: len(vals) - i] * 3  # scramble the future
        changed = run_backtest(CarbonSeries(h.start, h.step, vals), [sub], cfg)
        assert changed.results[0].chosen_start == res.chosen_start


def test_noisy_is_seeded_and_zero_noise_is_perfect():
    h = embedded_history("ES").slice(datetime(2023, 7, 1, tzinfo=UTC), datetime(2023, 8, 1, tzinfo=UTC))
    subs = daily_submissions(h, "12:00")
    cfg = BacktestConfig(p50_sec=3600, p90_sec=3600, window_hours=8, forecast="noisy:0.2", seed=7)
    a, b = run_backtest(h, subs, cfg), run_backtest(h, subs, cfg)
    assert a.chosen_g == b.chosen_g and a.share_of_oracle < 1.0
    zero = run_backtest(
        h,
        subs,
        BacktestConfig(p50_sec=3600, p90_sec=3600, window_hours=8, forecast="noisy:0", policy=UNGATED),
    )
    assert zero.share_of_oracle == 1.0


def test_deadline_misses_counted_with_runtime_spread():
    h = embedded_history("GB").slice(datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC))
    subs = daily_submissions(h, "06:00")
    risky = BacktestConfig(
        p50_sec=3600,
        p90_sec=3 * 3600,
        deadline_hours=1.5,
        risk_mode=RiskMode.AGGRESSIVE,
        forecast="perfect",
        seed=1,
    )
    r = run_backtest(h, subs, risky)
    assert r.deadline_misses > 0  # p50 fits, the tail does not
    safe = BacktestConfig(
        p50_sec=3600,
        p90_sec=3 * 3600,
        deadline_hours=12,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=Weights(),
        seed=1,
    )
    assert run_backtest(h, subs, safe).deadline_misses <= 0.1 * len(subs)


def test_region_seasonal_table_and_weights(tmp_path):
    r = run(
        "--region",
        "eu-west-2",
        "--daily-at",
        "18:00",
        "--p50-minutes",
        60,
        "--p90-minutes",
        90,
        "--window-hours",
        6,
        "--forecast",
        "seasonal",
        "--risk-mode",
        "neutral",
        "--weights",
        "carbon=0.6,risk=0.3,slack=0.1",
    )
    assert r.exit_code == 0, r.output
    assert "share of oracle's saving" in r.output and "embedded GB" in r.output and "NEUTRAL" in r.output


def test_submissions_file_and_details(tmp_path):
    csv = month_csv(tmp_path, zone="DE", days=10, minutes=30)
    subs = tmp_path / "subs.txt"
    subs.write_text(
        "submitted_at\n# nightly runs\n2023-01-03 01:00\n2023-01-04T01:00:00Z\n\n2023-01-05 01:00\n"
    )
    r = run(
        "--carbon-csv",
        csv,
        "--submissions-file",
        subs,
        "--job-minutes",
        45,
        "--window-hours",
        4,
        "--forecast",
        "perfect",
        "--json",
        "--details",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["submissions"] == 3 and len(out["results"]) == 3 and out["share_of_oracle"] == 1.0


def test_csv_with_gaps_and_duplicates_is_handled(tmp_path):
    csv = month_csv(tmp_path, days=5, extra="2023-01-02T05:00Z,999\n")  # a duplicate hour
    text = csv.read_text().splitlines()
    del text[40:43]  # a 3-hour gap
    csv.write_text("\n".join(text) + "\n")
    r = run("--carbon-csv", csv, "--daily-at", "12:00", "--job-minutes", 30, "--window-hours", 3, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["share_of_oracle"] == 1.0
    assert "rows are not in time order" in r.stderr and "repeat an earlier time" in r.stderr
    assert "3 missing 60-minute intervals interpolated" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--daily-at", "01:00", "--job-minutes", "30", "--window-hours", "8"], "--carbon-csv"),
        (
            ["--region", "eu-north-1", "--daily-at", "01:00", "--job-minutes", "30", "--window-hours", "8"],
            "no embedded hourly series",
        ),
        (
            ["--region", "eu-west-2", "--daily-at", "25:99", "--job-minutes", "30", "--window-hours", "8"],
            "HH:MM",
        ),
        (["--region", "eu-west-2", "--daily-at", "01:00", "--window-hours", "8"], "job length"),
        (["--region", "eu-west-2", "--daily-at", "01:00", "--job-minutes", "30"], "--window-hours"),
        (
            [
                "--region",
                "eu-west-2",
                "--daily-at",
                "01:00",
                "--job-minutes",
                "30",
                "--window-hours",
                "8",
                "--forecast",
                "psychic",
            ],
            "unknown forecast",
        ),
        (
            [
                "--region",
                "eu-west-2",
                "--daily-at",
                "01:00",
                "--job-minutes",
                "30",
                "--window-hours",
                "8",
                "--weights",
                "carbon=-1",
            ],
            ">= 0",
        ),
    ],
)
def test_errors_are_clear(args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert message in r.output


def test_garbage_csv_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("timestamp,g\n2023-01-01T00:00Z,12\nhello,world\n")
    r = run("--carbon-csv", p, "--daily-at", "01:00", "--job-minutes", 30, "--window-hours", 8)
    assert r.exit_code == 2 and "line 3" in r.output
    r = run(
        "--carbon-csv",
        tmp_path / "missing.csv",
        "--daily-at",
        "01:00",
        "--job-minutes",
        30,
        "--window-hours",
        8,
    )
    assert r.exit_code == 2 and "cannot read" in r.output


def test_parse_submissions_errors():
    with pytest.raises(ValueError, match="line 3"):
        parse_submissions("2023-01-01 00:00\n2023-01-02 00:00\nbogus\n")
    with pytest.raises(ValueError, match="no submission"):
        parse_submissions("# nothing\n")


def test_naive_csv_needs_tz(tmp_path):
    p = tmp_path / "local.csv"
    h = embedded_history("GB")
    p.write_text(
        "t,g\n"
        + "\n".join(f"{t:%Y-%m-%d %H:%M},{v}" for t, v in zip(h.times()[:240], h.values[:240], strict=True))
    )
    args = ["--carbon-csv", p, "--daily-at", "01:00", "--job-minutes", 60, "--window-hours", 8, "--json"]
    r = run(*args)
    assert r.exit_code == 2 and "line 2" in r.output and "--tz" in r.output
    r = run(*args, "--tz", "Europe/London")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["submissions"] >= 8


def test_forecast_embedded_decides_like_a_run_and_scores_on_the_csv(tmp_path):
    """Issue 11 item 8: the product's embedded provider for the region decides, the CSV's actuals judge."""
    from carbon import get_series
    from core.settings import Settings
    from scheduling.scoring import plan_schedule

    # "another year": the 2023 DE series read one week later, so the climatology is not judged on itself
    h = embedded_history("DE")
    actual = h.shift(timedelta(days=7)).slice(
        datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 4, 1, tzinfo=UTC)
    )
    p = tmp_path / "actual.csv"
    p.write_text(
        "t,g\n"
        + "\n".join(f"{t:%Y-%m-%dT%H:%MZ},{v}" for t, v in zip(actual.times(), actual.values, strict=True))
    )
    base = ["--carbon-csv", p, "--daily-at", "01:00", "--job-minutes", 60, "--window-hours", 8]
    r = run(*base, "--forecast", "embedded", "--region", "eu-central-1", "--json", "--details")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert "decisions: the product's embedded provider for eu-central-1" in out["source"]
    assert out["submissions"] >= 29 and {"stayed_at_baseline", "no_skill"} <= set(out)
    assert 0 <= out["stayed_at_baseline"] <= out["submissions"]
    # the decision is exactly what carbon.get_series + plan_schedule give for that window
    first = out["results"][0]
    nominal = datetime.fromisoformat(first["nominal"])
    e, latest = nominal - timedelta(hours=8), nominal + timedelta(hours=9)
    series, _ = get_series(
        "eu-central-1", e, latest + timedelta(minutes=15), settings=Settings(carbon_provider="embedded")
    )
    plan = plan_schedule(
        earliest=e,
        latest=latest,
        p50_sec=3600,
        p90_sec=3600,
        series=series,
        power_kw=1.0,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=Weights(carbon=1, risk=0, slack=0),
        top_k=1,
        baseline=nominal,  # the backtest judges "not moving" at the nominal time
    )
    assert datetime.fromisoformat(first["chosen_start"]) == plan.chosen.start
    # the actuals score it: the oracle is computed on the CSV, not on the forecast
    perfect = json.loads(run(*base, "--forecast", "perfect", "--json").output)
    assert out["oracle_g"] == perfect["oracle_g"] and out["baseline_g"] == perfect["baseline_g"]
    r = run(*base, "--forecast", "embedded")
    assert r.exit_code == 2 and "give --region" in r.output


# --------------------------------------------------------------------------- several regions


def _two_regions(days=30):
    de, fr = embedded_history("DE"), embedded_history("FR")
    end = de.start + timedelta(days=days)
    return {"eu-central-1": de.slice(de.start, end), "eu-west-3": fr.slice(fr.start, end)}


def test_region_backtest_time_scope_is_the_one_region_backtest_and_both_beats_each_alone():
    actuals = _two_regions()
    home = actuals["eu-central-1"]
    subs = daily_submissions(home, "01:00")
    cfg = BacktestConfig(p50_sec=3600, p90_sec=3600, window_hours=6, forecast="perfect")
    res = run_region_backtest(actuals, subs, cfg)
    alone = run_backtest(home, subs, cfg)
    assert res["time"].chosen_g == pytest.approx(alone.chosen_g, rel=1e-12)
    assert res["time"].submissions == alone.submissions > 20
    # with a perfect forecast and carbon-only weights, more freedom never emits more
    assert res["both"].chosen_g <= res["time"].chosen_g + 1e-6
    assert res["both"].chosen_g <= res["region"].chosen_g + 1e-6
    # France's grid is far cleaner than Germany's: the region alone saves far more than the time alone
    assert res["region"].savings_pct > 50 > res["time"].savings_pct > 0
    assert {r.chosen_region for r in res["both"].results} <= set(actuals)
    # the region scope never moves the start; the time scope never moves the region
    assert all(r.chosen_start == r.nominal for r in res["region"].results)
    assert all(r.chosen_region == "eu-central-1" for r in res["time"].results)


def test_cli_compares_time_region_and_both():
    r = run(
        "--region",
        "eu-central-1",
        "--region",
        "eu-west-3",
        "--daily-at",
        "01:00",
        "--job-minutes",
        60,
        "--window-hours",
        4,
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["regions"] == ["eu-central-1", "eu-west-3"] and out["home_region"] == "eu-central-1"
    for scope in ("time", "region", "both"):
        assert set(out[scope]) >= KEYS
    assert out["both"]["savings_pct"] >= out["time"]["savings_pct"]
    table = run(
        "--region",
        "eu-central-1",
        "--region",
        "eu-west-3",
        "--daily-at",
        "01:00",
        "--job-minutes",
        60,
        "--window-hours",
        4,
    )
    assert table.exit_code == 0 and "region alone" in table.output and "time and region" in table.output


def test_cli_refuses_a_csv_with_several_regions(tmp_path):
    r = run(
        "--carbon-csv",
        month_csv(tmp_path),
        "--region",
        "eu-central-1",
        "--region",
        "eu-west-3",
        "--daily-at",
        "01:00",
        "--job-minutes",
        60,
        "--window-hours",
        4,
    )
    assert r.exit_code == 2 and "drop --carbon-csv" in r.output


def test_cli_out_of_sample_compares_the_old_gate_the_paired_rule_and_ungated(tmp_path):
    subs = tmp_path / "nights.txt"
    subs.write_text("\n".join(f"2023-{m:02d}-{d:02d}T01:00Z" for m in (2, 6, 10) for d in (3, 10, 17, 24)))
    args = ["--forecast", "embedded", "--out-of-sample", "--job-minutes", 30, "--window-hours", 8]
    r = run(*args, "--region", "eu-west-2", "--region", "ap-south-1", "--submissions-file", subs, "--json")
    assert r.exit_code == 0, r.output
    rows = {x["zone"]: x for x in json.loads(r.output)["zones"]}
    assert set(rows) == {"GB", "IN-WE"}
    for x in rows.values():
        assert x["submissions"] == 12 and set(x["paired_rule_month_shares"]) == {"2", "6", "10"}
        for k in ("share_old_gate", "share_paired_rule", "share_ungated"):
            assert x[k] is None or -1.0 <= x[k] <= 1.0 + 1e-9
    # GB may not shift on history (paired_skill.json): the rule keeps every night at the baseline
    assert rows["GB"]["paired_rule_moves"] == 0 and rows["GB"]["share_paired_rule"] in (0.0, None)
    table = run(*args, "--region", "eu-west-2", "--submissions-file", subs)
    assert table.exit_code == 0 and "paired rule" in table.output and "old gate" in table.output
    refused = run(*args, "--carbon-csv", month_csv(tmp_path), "--daily-at", "01:00")
    assert refused.exit_code == 2 and "--out-of-sample" in refused.output
