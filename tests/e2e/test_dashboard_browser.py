"""The client dashboard at /ui, driven in a real headless Chromium (Debian's) against one served API with the
Temporal dev server (no worker: runs stay where the test puts them) and every request off 127.0.0.1 blocked.

It logs in, filters runs and watches a status change arrive by polling, cancels a run, pauses / resumes /
triggers a recurring job, submits a preview, downloads the report's CSV, and checks that another client's
ids show the same 404 as the API. Each page is screenshotted under the test's tmp dir (not committed) and
checked for overlapping text (bounding boxes) and horizontal overflow.

The charts themselves (the preview's, one region and three; the report's, by region and by month) are fetched
from the same API, inlined in a page, screenshotted and measured: no two texts overlap, the legend lies off
the plotted data, every series is drawn inside its panel and shows on the screen, and the image is at most
800 px wide.
"""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.main import create_app
from cli.devstack import free_port, wait_for
from models.db import Job, Run
from tests.support.api import AWS_BODY, engine_for, insert_job_and_run, template_body
from tests.support.common import ADMIN_KEY
from tests.support.zips import make_zip

# the dashboard only calls the API, whose own tests cover both databases: once on SQLite is enough
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
WAIT = 20_000  # ms: bound on every wait for the page

# Elements whose boxes must not overlap one another (an element and its own ancestor may).
OVERLAP_JS = """
(sel) => {
  const els = [...document.querySelectorAll(sel)].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden';
  });
  const bad = [];
  for (let i = 0; i < els.length; i++) {
    for (let j = i + 1; j < els.length; j++) {
      const a = els[i], b = els[j];
      if (a.contains(b) || b.contains(a)) continue;
      const r = a.getBoundingClientRect(), s = b.getBoundingClientRect();
      const w = Math.min(r.right, s.right) - Math.max(r.left, s.left);
      const h = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
      const name = (e) => `${e.tagName}(${e.textContent.slice(0, 30)})`;
      if (w > 1 && h > 1) bad.push(`${name(a)} x ${name(b)}`);
    }
  }
  return {bad, overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth};
}
"""
TEXT_BOXES = (
    "h1, h2, label, button, input, select, caption, th, td, dt, dd, legend, .rationale, .note, "
    "figure img, pre, .top .brand, nav a"
)


@pytest.fixture(scope="module")
def site(api_settings, temporal_dev_server):
    """The API served on a free port, a client with a template, runs and a recurring job, and a second client
    with a run and a recurring job of its own."""
    settings = api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-here",
        }
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the API")
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=30)

    def tenant(name: str) -> dict:
        r = http.post("/v1/clients", json={"name": name}, headers={"X-API-Key": ADMIN_KEY})
        assert r.status_code == 201, r.text
        cid, h = r.json()["id"], {"X-API-Key": r.json()["api_key"]}
        art = http.post(
            "/v1/artifacts/upload",
            headers=h,
            files={"file": ("app.zip", make_zip(), "application/zip")},
            data={"version": "1.0.0"},
        ).json()["artifact_id"]
        tpl = http.post(
            "/v1/job-templates",
            json=template_body(art, name=f"{name}-etl", expected_runtime_sec=1800),
            headers=h,
        )
        assert tpl.status_code == 201, tpl.text
        rec = http.post(
            "/v1/recurring-jobs",
            json={
                "job_template_id": tpl.json()["id"],
                "name": f"{name} nightly",
                "cron": "0 1 * * *",
                "time_zone": "Europe/London",
                "margin_before": "PT3H",
                "margin_after": "PT3H",
            },
            headers=h,
        )
        assert rec.status_code == 201, rec.text
        return {
            "id": cid, "key": h["X-API-Key"], "h": h, "template": tpl.json()["id"], "rec": rec.json()["id"]
        }  # fmt: skip

    a, b = tenant("acme"), tenant("globex")
    # runs written straight to the DB (no worker): one PENDING to cancel, one SCHEDULED with a plan and a
    # window, one SUCCEEDED with carbon figures for the report, one of the other client
    now = datetime.now(UTC).replace(microsecond=0)
    earliest, latest = now + timedelta(hours=1), now + timedelta(hours=13)
    preview = http.post(
        "/v1/schedules/preview",
        json={
            "job_template_id": a["template"],
            "earliest_start": earliest.isoformat(),
            "latest_finish": latest.isoformat(),
        },
        headers=a["h"],
    )
    assert preview.status_code == 200, preview.text
    p = preview.json()
    a["pending"] = insert_job_and_run(api_settings, a["id"], a["template"], status="PENDING")[1]
    job_s, a["scheduled"] = insert_job_and_run(api_settings, a["id"], a["template"], status="SCHEDULED")
    a["done"] = insert_job_and_run(api_settings, a["id"], a["template"], status="SUCCEEDED")[1]
    b["run"] = insert_job_and_run(api_settings, b["id"], b["template"], status="SCHEDULED")[1]
    eng = engine_for(api_settings)
    with Session(eng) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_s)
            .values(type="RESCHEDULABLE", earliest_start=earliest, latest_finish=latest)
        )
        s.execute(
            update(Run)
            .where(Run.id == a["scheduled"])
            .values(
                plan={**p["chosen"], "rationale": p["rationale"], "capacity": p["capacity"]},
                planned_start=datetime.fromisoformat(p["chosen"]["proposed_start"]),
                region=p["chosen"].get("region") or p.get("home_region"),
                fleet_template_id="m5.4xlarge",
            )
        )
        s.execute(
            update(Run)
            .where(Run.id == a["done"])
            .values(
                started_at=now - timedelta(days=2),
                finished_at=now - timedelta(days=2) + timedelta(minutes=30),
                runtime_sec=1800.0,
                carbon_chosen_g=41.5,
                carbon_earliest_g=52.25,
                exit_code=0,
                region="eu-north-1",
            )
        )
        s.commit()
    eng.dispose()
    yield {"base": base, "http": http, "a": a, "b": b, "settings": api_settings}
    http.close()
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("dashboard-screenshots")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield b, shots
        b.close()


@pytest.fixture
def page(site, browser):
    """A fresh tab (fresh sessionStorage) that may only reach the served API."""
    b, shots = browser
    ctx = b.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    outside: list[str] = []
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)

    def only_local(route):
        url = route.request.url
        if url.startswith(site["base"]) or url.startswith(("blob:", "data:")):
            return route.continue_()
        outside.append(url)
        return route.abort()

    pg.route("**/*", only_local)
    pg.shots = shots  # type: ignore[attr-defined]
    yield pg
    ctx.close()
    assert outside == [], f"the dashboard tried to load {outside}"
    # a 404/409/422 answer is logged by Chromium as a failed resource: expected; a script error is not
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def login(page, site, key: str | None = None) -> None:
    page.goto(site["base"] + "/ui")
    page.get_by_label("API key").fill(key or site["a"]["key"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Runs", exact=True).wait_for(timeout=WAIT)


def check_layout(page, name: str) -> None:
    """Screenshot, then no two text boxes overlap and nothing spills sideways."""
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)
    got = page.evaluate(OVERLAP_JS, TEXT_BOXES)
    assert got["bad"] == [], f"{name}: overlapping elements {got['bad'][:5]}"
    assert got["overflow"] <= 0, f"{name}: the page is {got['overflow']} px wider than the window"


def test_served_static_with_csp_and_no_cache_out_of_openapi(site):
    http = site["http"]
    r = http.get("/ui", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    for path, kind in (("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
        r = http.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), (path, r.headers)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["cache-control"] == "no-cache" and r.headers["etag"]
        assert r.headers["x-content-type-options"] == "nosniff"
        # revalidation: the browser's current copy gets a 304, without the body
        again = http.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == r.headers["etag"]
        # only the named files are served: no parameter reaches the file system
        assert http.get(path, params={"path": "/etc/passwd"}).content == r.content
    assert http.get("/ui/../pyproject.toml").status_code == 404
    assert http.get("/ui/__init__.py").status_code == 404
    html = http.get("/ui/").text
    assert '<script type="module" src="app.js"></script>' in html and "<script>" not in html
    assert "style=" not in html
    assert not [p for p in http.get("/openapi.json").json()["paths"] if p.startswith("/ui")]
    # no key ever reaches the server for the static files: they answer without one
    assert http.get("/ui/app.js", headers={"X-API-Key": ""}).status_code == 200


@needs_chromium
def test_login_filters_and_live_status(site, page):
    page.goto(site["base"] + "/ui/")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").filter(has_text="401").wait_for(timeout=WAIT)
    assert page.evaluate("sessionStorage.length") == 0
    check_layout(page, "01-login-refused")

    login(page, site)
    assert page.evaluate("sessionStorage.getItem('orch.apiKey')") == site["a"]["key"]
    a = site["a"]
    table = page.locator("table")
    for run_id in (a["pending"], a["scheduled"], a["done"]):
        table.get_by_role("link", name=run_id).wait_for(timeout=WAIT)
    assert site["b"]["run"] not in page.content()
    check_layout(page, "02-runs")
    page.set_viewport_size({"width": 800, "height": 900})
    check_layout(page, "02-runs-800px")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_label("Status").select_option("SCHEDULED")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/ui/#/runs?status=SCHEDULED", timeout=WAIT)
    page.locator("caption", has_text="1 run,").wait_for(timeout=WAIT)
    assert page.locator("tbody tr").count() == 1
    assert page.locator("tbody").get_by_role("link", name=a["scheduled"]).count() == 1

    # region: the API has no region filter; the dashboard narrows what it loaded
    page.goto(site["base"] + "/ui/#/runs?region=eu-north-1")
    page.locator("tbody").get_by_role("link", name=a["done"]).wait_for(timeout=WAIT)
    assert page.locator("tbody tr").count() == 1

    # live status: a change in the DB reaches the page by polling, announced in the aria-live region
    page.goto(site["base"] + "/ui/#/runs")
    page.locator("tbody").get_by_role("link", name=a["scheduled"]).wait_for(timeout=WAIT)
    eng = engine_for(site["settings"])
    with Session(eng) as s:
        s.execute(update(Run).where(Run.id == a["scheduled"]).values(status="LAUNCHING"))
        s.commit()
    try:
        live = page.locator("#live[aria-live=polite]")
        live.filter(has_text=f"{a['scheduled']} is now LAUNCHING").wait_for(timeout=WAIT)
        row = page.locator("tbody tr", has=page.get_by_role("link", name=a["scheduled"]))
        assert row.locator(".status").inner_text() == "LAUNCHING"
        # and a run made meanwhile (e.g. a recurring job's firing) appears on top
        new_run = insert_job_and_run(site["settings"], a["id"], a["template"], status="PENDING")[1]
        live.filter(has_text="1 new run").wait_for(timeout=WAIT)
        assert page.locator("tbody tr").first.get_by_role("link").first.inner_text() == new_run
    finally:
        with Session(eng) as s:
            s.execute(update(Run).where(Run.id == a["scheduled"]).values(status="SCHEDULED"))
            s.commit()
        eng.dispose()

    # keyboard: on a fresh load Tab reaches the skip link first, then the navigation; after a navigation
    # the focus is on the page's content, so the next Tab is its first control
    page.reload()
    page.get_by_role("heading", name="Runs", exact=True).wait_for(timeout=WAIT)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Runs"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # keyboard-operated navigation
    page.get_by_role("heading", name="Recurring jobs", exact=True).wait_for(timeout=WAIT)
    page.wait_for_function("() => document.activeElement.id === 'main'", timeout=WAIT)
    page.keyboard.press("Tab")  # the table's scrollable region, then its first link
    assert page.evaluate("document.activeElement.getAttribute('role')") == "region"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "acme nightly"


@needs_chromium
def test_run_page_shows_plan_and_cancels(site, page):
    a = site["a"]
    login(page, site)
    page.goto(site["base"] + f"/ui/#/run/{a['scheduled']}")
    page.get_by_role("heading", name="Plan and rationale").wait_for(timeout=WAIT)
    rationale = site["http"].get(f"/v1/runs/{a['scheduled']}", headers=a["h"]).json()["plan"]["rationale"]
    assert page.locator(".rationale").inner_text() == rationale
    chart = page.locator("figure.chart img")
    chart.wait_for(timeout=WAIT)
    page.wait_for_function("() => document.querySelector('figure.chart img').naturalWidth > 0", timeout=WAIT)
    page.locator("table caption", has_text="re-scored now").wait_for(timeout=WAIT)
    assert page.locator("tbody tr").count() >= 1
    # no audit record for a run the planner never saw (GET /v1/runs/{id}/plan: 404, or not there at all)
    page.locator("#audit:not(:has-text('Loading'))").wait_for(timeout=WAIT)
    assert page.locator("#audit").inner_text().startswith("No audit record for this run.")
    page.locator(".log, .note", has_text="No log yet").first.wait_for(timeout=WAIT)
    check_layout(page, "03-run-scheduled")
    page.set_viewport_size({"width": 800, "height": 900})  # narrower: things wrap, nothing collides
    check_layout(page, "03-run-scheduled-800px")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(site["base"] + f"/ui/#/run/{a['pending']}")
    page.get_by_role("heading", name=f"Run {a['pending']}").wait_for(timeout=WAIT)
    page.get_by_label("Reason for cancelling (optional)").fill("not needed after all")
    page.get_by_role("button", name="Cancel run").click()
    page.locator("#live").filter(has_text=f"{a['pending']} is CANCELLED").wait_for(timeout=WAIT)
    page.get_by_text("Nothing to cancel: the run is CANCELLED.").wait_for(timeout=WAIT)
    assert page.get_by_role("button", name="Cancel run").is_hidden()
    got = site["http"].get(f"/v1/runs/{a['pending']}", headers=a["h"]).json()
    assert got["status"] == "CANCELLED"
    check_layout(page, "04-run-cancelled")


@needs_chromium
def test_recurring_next_firings_pause_resume_trigger(site, page):
    a = site["a"]
    login(page, site)
    page.get_by_role("link", name="Recurring jobs").click()
    page.get_by_role("link", name="acme nightly").click()
    page.locator("table caption", has_text="Next nominal times").wait_for(timeout=WAIT)
    assert page.locator("tbody tr").count() == 5
    check_layout(page, "05-recurring")
    assert page.get_by_role("button", name="Resume").is_disabled()
    page.get_by_role("button", name="Pause").click()
    page.locator("#live").filter(has_text="is paused").wait_for(timeout=WAIT)
    assert site["http"].get(f"/v1/recurring-jobs/{a['rec']}", headers=a["h"]).json()["status"] == "paused"
    assert page.get_by_role("button", name="Pause").is_disabled()
    page.get_by_role("button", name="Resume").click()
    page.locator("#live").filter(has_text="is active").wait_for(timeout=WAIT)
    page.get_by_role("button", name="Trigger a firing now").click()
    page.locator("#live").filter(has_text="firing requested").wait_for(timeout=WAIT)


@needs_chromium
def test_preview_form(site, page):
    login(page, site)
    page.get_by_role("link", name="Preview").click()
    page.get_by_label("Job template").select_option(site["a"]["template"])
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("heading", name="Chosen start").wait_for(timeout=WAIT)
    page.wait_for_function("() => document.querySelector('figure.chart img')?.naturalWidth > 0", timeout=WAIT)
    assert page.locator("#preview-result tbody tr").count() >= 1
    check_layout(page, "06-preview")
    page.set_viewport_size({"width": 800, "height": 900})
    check_layout(page, "06-preview-800px")
    page.set_viewport_size({"width": 1280, "height": 900})

    # a bad window: the API's 422 shown with the field named, and the input marked invalid
    page.get_by_label("Latest finish (UTC)").fill("2020-01-01T00:00")
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("alert").filter(has_text="422").wait_for(timeout=WAIT)
    assert "latest_finish" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Latest finish (UTC)").get_attribute("aria-invalid") == "true"


@needs_chromium
def test_report_and_csv_download(site, page):
    a = site["a"]
    login(page, site)
    page.get_by_role("link", name="Carbon report").click()
    page.get_by_role("heading", name="Ledger").wait_for(timeout=WAIT)
    page.locator("table tfoot").wait_for(timeout=WAIT)
    page.wait_for_function("() => document.querySelector('figure.chart img')?.naturalWidth > 0", timeout=WAIT)
    check_layout(page, "07-report")
    frm = page.get_by_label("From (UTC day, inclusive)").input_value()
    to = page.get_by_label("To (UTC day, exclusive)").input_value()
    period = {"from": f"{frm}T00:00:00Z", "to": f"{to}T00:00:00Z", "group_by": "month"}
    total = site["http"].get("/v1/reports/carbon", params=period, headers=a["h"]).json()["total"]
    disp = total["display"]  # the headline reads exactly as the JSON's display strings (and so the chart)
    headline = page.locator(".headline").inner_text()
    assert "1 run:" in headline and f"saved {disp['saving']} ({disp['saving_pct']})" in headline, headline
    assert f"emitted {disp['emissions_chosen']} where" in headline and total["saving_g"] > 0
    with page.expect_download(timeout=WAIT) as dl:
        page.get_by_role("button", name="Download CSV").click()
    download = dl.value
    assert download.suggested_filename == "carbon-month.csv"
    got = download.path().read_text(encoding="utf-8")
    want = site["http"].get("/v1/reports/carbon", params=period, headers=a["h"] | {"Accept": "text/csv"})
    assert got == want.text and a["template"] not in ("",)
    assert len(got.splitlines()) >= 2  # a header and the SUCCEEDED run's month


@needs_chromium
def test_another_clients_ids_show_the_apis_404(site, page):
    a, b = site["a"], site["b"]
    login(page, site)
    for hash_path, api_path in (
        (f"#/run/{b['run']}", f"/v1/runs/{b['run']}"),
        (f"#/recurring/{b['rec']}", f"/v1/recurring-jobs/{b['rec']}"),
        ("#/run/run_doesnotexist", "/v1/runs/run_doesnotexist"),
    ):
        api = site["http"].get(api_path, headers=a["h"])
        assert api.status_code == 404
        page.goto(site["base"] + "/ui/" + hash_path)
        alert = page.get_by_role("alert")
        alert.wait_for(timeout=WAIT)
        text = alert.inner_text()
        assert f"404 {api.json()['title']}" in text and api.json()["detail"] in text, (text, api.text)
        assert b["id"] not in page.content()
    check_layout(page, "08-not-found")


@needs_chromium
def test_a_deep_link_opened_before_login_is_shown_after_it(site, page):
    a = site["a"]
    page.goto(site["base"] + f"/ui/#/recurring/{a['rec']}")
    page.get_by_label("API key").fill(a["key"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="acme nightly").wait_for(timeout=WAIT)
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API key").wait_for(timeout=WAIT)
    assert page.evaluate("() => sessionStorage.length") == 0


# ---------------------------------------------------------------- the charts themselves, measured in Chromium
# For an SVG inlined in a page: every <text> as the four corners of its box on the screen (rotation kept),
# and the screen boxes of the elements named by the selectors.
CHART_JS = """
(sels) => {
  const svg = document.querySelector('svg');
  const corners = (el, shrink) => {
    const b = el.getBBox(), m = el.getScreenCTM();
    const x0 = b.x + shrink, y0 = b.y + shrink, x1 = b.x + b.width - shrink, y1 = b.y + b.height - shrink;
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
      .map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
  };
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const texts = [...svg.querySelectorAll('text')].filter((t) => t.textContent.trim() && t.getBBox().width > 0)
    .map((t) => ({text: t.textContent, poly: corners(t, 0.5), box: box(t)}));
  const found = {};
  for (const [name, sel] of Object.entries(sels)) {
    found[name] = [...svg.querySelectorAll(sel)].map((el) => ({
      id: el.id || el.parentElement.id, box: box(el),
      stroke: getComputedStyle(el).stroke, fill: getComputedStyle(el).fill,
      series: el.dataset.series || null, label: el.dataset.label || null,
    }));
  }
  return {svg: box(svg), texts, found};
}
"""


def _separated(p: list, q: list) -> bool:
    """Two convex polygons (screen corners) overlap by less than 1 px along some axis (separating axes)."""
    for poly in (p, q):
        for i in range(len(poly)):
            (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % len(poly)]
            nx, ny = y1 - y0, x0 - x1
            norm = (nx * nx + ny * ny) ** 0.5 or 1.0
            a = [(x * nx + y * ny) / norm for x, y in p]
            b = [(x * nx + y * ny) / norm for x, y in q]
            if min(max(a), max(b)) - max(min(a), min(b)) < 1.0:
                return True
    return False


def _intersect(r: list, s: list) -> bool:
    return min(r[2], s[2]) - max(r[0], s[0]) > 1 and min(r[3], s[3]) - max(r[1], s[1]) > 1


def _inside(r: list, outer: list, tol: float = 1.0) -> bool:
    return (
        r[0] >= outer[0] - tol
        and r[1] >= outer[1] - tol
        and r[2] <= outer[2] + tol
        and r[3] <= outer[3] + tol
    )


def _measure_chart(page, svg: str, name: str, sels: dict, shots) -> dict:
    """The SVG inlined in a page (so its DOM can be measured) and screenshotted; no two texts overlap (rotated
    ones by their rotated boxes), every text lies inside the image, and the image is at most 800 px wide."""
    body = svg[svg.index("<svg") :]
    page.set_content(f"<!doctype html><html><body style='margin:0;background:#fff'>{body}</body></html>")
    page.locator("svg").first.screenshot(path=str(shots / f"{name}.png"))
    got = page.evaluate(CHART_JS, sels)
    width = got["svg"][2] - got["svg"][0]
    assert 600 <= width <= 800, f"{name}: {width} px wide"
    texts = got["texts"]
    assert texts, name
    bad = [
        (a["text"], b["text"])
        for i, a in enumerate(texts)
        for b in texts[i + 1 :]
        if not _separated(a["poly"], b["poly"])
    ]
    assert bad == [], f"{name}: overlapping texts {bad[:5]}"
    outside = [t["text"] for t in texts if not _inside(t["box"], got["svg"])]
    assert outside == [], f"{name}: texts cut off at the image's edge {outside}"
    return got


def _visible_pixels(page, selector: str, box: list, area: list) -> int:
    """How many pixels of the screenshot around ``box`` (within ``area``) change when the element is hidden:
    what of it shows, after everything drawn over it."""
    from io import BytesIO

    from PIL import Image, ImageChops

    x0, y0 = max(box[0] - 3, area[0]), max(box[1] - 3, area[1])
    x1, y1 = min(box[2] + 3, area[2]), min(box[3] + 3, area[3])
    clip = {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}
    shown = Image.open(BytesIO(page.screenshot(clip=clip))).convert("RGB")
    page.evaluate("(s) => document.querySelector(s).style.visibility = 'hidden'", selector)
    hidden = Image.open(BytesIO(page.screenshot(clip=clip))).convert("RGB")
    page.evaluate("(s) => document.querySelector(s).style.visibility = ''", selector)
    return (
        ImageChops.difference(shown, hidden)
        .convert("L")
        .point(lambda v: 255 if v > 24 else 0)
        .histogram()[255]
    )


@needs_chromium
def test_charts_show_every_series_legend_off_the_data_no_text_overlap(site, page):
    """The preview chart (one region; three regions with a flat ~8 g/kWh eu-north-1) and the report chart
    (four rows by region; ten by month, labels rotated), fetched from the served API, inlined in Chromium
    and measured (issue 20's acceptance)."""
    http, a = site["http"], site["a"]
    r = http.post("/v1/clients", json={"name": "initech"}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 201, r.text
    cid, h = r.json()["id"], {"X-API-Key": r.json()["api_key"]}
    regions = ["eu-central-1", "eu-west-3", "eu-north-1"]
    aws = AWS_BODY | {"region_default": "eu-central-1", "allowed_regions": regions}
    assert http.put(f"/v1/clients/{cid}/aws", json=aws, headers=h).status_code == 200
    art = http.post(
        "/v1/artifacts/upload",
        headers=h,
        files={"file": ("app.zip", make_zip(), "application/zip")},
        data={"version": "1.0.0"},
    ).json()["artifact_id"]
    tpl = http.post(
        "/v1/job-templates",
        json=template_body(art, name="nightly-etl", expected_runtime_sec=3600, fleet_template_id="m5.large"),
        headers=h,
    )
    assert tpl.status_code == 201, tpl.text
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    window = {"earliest_start": start.isoformat(), "latest_finish": (start + timedelta(hours=12)).isoformat()}

    def preview(headers: dict, template: str, **over) -> tuple[dict, str]:
        body = {"job_template_id": template, **window, **over}
        p = http.post("/v1/schedules/preview", json=body, headers=headers)
        svg = http.post("/v1/schedules/preview?format=svg", json=body, headers=headers)
        assert p.status_code == 200 and svg.status_code == 200, (p.text, svg.text)
        return p.json(), svg.text

    shots = page.shots
    sels = {
        "legend": "#legend",
        "plots": "#panel-intensity path, #panel-score path",
        "lines": "[id^=intensity-] > path, [id^=score-] > path",
    }
    one, one_svg = preview(a["h"], a["template"])
    multi, multi_svg = preview(h, tpl.json()["id"], weights={"carbon": 1.0, "risk": 0.0, "slack": 0.0})
    assert sorted(multi["regions"]) == sorted(regions)
    for name, svg, want in (
        ("chart-preview-one-region", one_svg, None),
        ("chart-preview-three-regions", multi_svg, regions),
    ):
        got = _measure_chart(page, svg, name, sels, shots)
        legend = got["found"]["legend"]
        assert len(legend) == 1, name
        plot, scores = (f["box"] for f in got["found"]["plots"])
        for area in (plot, scores):
            assert not _intersect(legend[0]["box"], area), f"{name}: the legend lies on a panel"
        lines = {f["id"]: f for f in got["found"]["lines"]}
        if want is None:  # one region: one intensity line and one score line, whatever the region's name
            names = {k.split("-", 1)[1] for k in lines}
            assert len(names) == 1, f"{name}: lines {sorted(lines)}"
            want = sorted(names)
        assert len(lines) == 2 * len(want), f"{name}: lines {sorted(lines)}"
        for region in want:
            for kind, area in (("intensity", plot), ("score", scores)):
                line = lines.get(f"{kind}-{region}")
                assert line is not None, f"{name}: no {kind} line for {region} in {sorted(lines)}"
                box = line["box"]
                assert box[2] - box[0] > 50, f"{name}: {kind} {region} is {box}"
                # inside its panel with room to spare: not clipped, not on the frame
                inner = [area[0], area[1] + 2, area[2], area[3] - 2]
                assert _inside(box, inner), f"{name}: {kind} {region} {box} outside {area}"
                shows = _visible_pixels(page, f"[id='{kind}-{region}'] > path", box, area)
                assert shows >= (box[2] - box[0]) * 0.5, f"{name}: {kind} {region} shows {shows} px"
        strokes = [lines[f"intensity-{r}"]["stroke"] for r in want]
        assert len(set(strokes)) == len(strokes), f"{name}: two regions alike {strokes}"
        legend_text = " ".join(t["text"] for t in got["texts"] if _inside(t["box"], legend[0]["box"]))
        assert "chosen" in legend_text and "earliest_start" in legend_text, legend_text
        if len(want) > 1:
            assert all(f"{r} " in legend_text for r in want), legend_text
            flat = lines["intensity-eu-north-1"]["box"]
            assert flat[3] - flat[1] < (plot[3] - plot[1]) * 0.1, "eu-north-1 is not flat and low here"

    # the report: ten months of runs in four regions, by month (ten rows, labels rotated) and by region
    now = datetime.now(UTC).replace(microsecond=0)
    eng = engine_for(site["settings"])
    ran = [
        insert_job_and_run(site["settings"], cid, tpl.json()["id"], status="SUCCEEDED")[1] for _ in range(10)
    ]
    try:
        with Session(eng) as s:
            for k, run_id in enumerate(ran):
                began = now - timedelta(days=30 * k + 3)
                s.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(
                        started_at=began,
                        finished_at=began + timedelta(hours=1),
                        runtime_sec=3600.0,
                        carbon_earliest_g=400.0 + 60 * k,
                        carbon_chosen_g=(400.0 + 60 * k) * (0.2 + 0.07 * k),
                        exit_code=0,
                        region=[*regions, "us-east-1"][k % 4],
                    )
                )
            s.commit()
    finally:
        eng.dispose()
    period = {"from": (now - timedelta(days=330)).isoformat(), "to": now.isoformat()}
    for group_by, rows in (("month", 10), ("region", 4)):
        q = period | {"group_by": group_by}
        report = http.get("/v1/reports/carbon", params=q, headers=h).json()
        assert len(report["rows"]) == rows, report["rows"]
        svg = http.get("/v1/reports/carbon", params=q | {"format": "svg"}, headers=h)
        assert svg.status_code == 200, svg.text
        name = f"chart-report-by-{group_by}"
        got = _measure_chart(
            page, svg.text, name, {"legend": "#legend-box", "plot": "#plot-area", "bars": "rect.bar"}, shots
        )
        (legend,), (plot,) = (
            (f["box"] for f in got["found"]["legend"]),
            (f["box"] for f in got["found"]["plot"]),
        )
        assert not _intersect(legend, plot), f"{name}: the legend lies on the plot area"
        bars = got["found"]["bars"]
        assert sorted((b["label"], b["series"]) for b in bars) == sorted(
            (r["label"] or r["key"], series) for r in report["rows"] for series in ("baseline", "chosen")
        ), name
        for b in bars:
            box = b["box"]
            assert box[2] - box[0] >= 4 and box[3] - box[1] >= 2, (
                f"{name}: bar {b['label']} {b['series']} {box}"
            )
            assert _inside(box, plot), f"{name}: bar {b['label']} {b['series']} {box} outside {plot}"
            assert not _intersect(box, legend)
        # every bar shows: hiding one changes at least its own area on the screen
        for i, b in enumerate(bars):
            box = b["box"]
            page.evaluate("(i) => document.querySelectorAll('rect.bar')[i].id = 'bar-under-test'", i)
            shows = _visible_pixels(page, "#bar-under-test", box, plot)
            page.evaluate("() => document.getElementById('bar-under-test').removeAttribute('id')")
            assert shows >= 0.8 * (box[2] - box[0]) * (box[3] - box[1]), f"{name}: {b['label']} {b['series']}"
        assert {b["fill"] for b in bars} == {"rgb(134, 150, 171)", "rgb(47, 133, 90)"}  # baseline grey, green
