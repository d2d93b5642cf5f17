"""`orch clients|artifacts|templates|webhooks|runs rerun` (issue 19), in-process: typer's CliRunner against
the real app served by uvicorn in a thread on 127.0.0.1 (real DB, SeaweedFS and Temporal dev server; no
worker, so runs stay planned). Every command's table and `--json`, the exit codes, and errors that name the
URL called."""

from __future__ import annotations

import zipfile

from tests.support.cli import js, orch
from tests.support.common import ADMIN_KEY


def test_clients_commands_with_the_admin_key(live_url):
    key = orch(live_url, None, "clients", "create", "cli-acme", "--key-only", admin=ADMIN_KEY)
    assert key.exit_code == 0 and key.stdout.strip().startswith("orch_"), key.output
    me = js(orch(live_url, key.stdout.strip(), "clients", "list", "--json"))["items"]
    assert [c["name"] for c in me] == ["cli-acme"]  # a client key lists itself
    cid = me[0]["id"]

    listed = js(orch(live_url, None, "clients", "list", "--json", admin=ADMIN_KEY))["items"]
    assert cid in [c["id"] for c in listed]
    table = orch(live_url, None, "clients", "get", cid, admin=ADMIN_KEY)
    assert table.exit_code == 0 and cid in table.stdout and "cli-acme" in table.stdout

    rotated = js(orch(live_url, None, "clients", "rotate-key", cid, "--json", admin=ADMIN_KEY))
    assert rotated["api_key"] != key.stdout.strip()
    old = orch(live_url, key.stdout.strip(), "artifacts", "list")
    assert old.exit_code == 3 and "401" in old.stderr and f"{live_url}/v1/artifacts" in old.stderr

    sus = orch(live_url, None, "clients", "suspend", cid, admin=ADMIN_KEY)
    assert sus.exit_code == 0 and "suspended" in sus.stdout, sus.output
    refused = orch(live_url, rotated["api_key"], "templates", "list")
    assert refused.exit_code == 3 and "403" in refused.stderr and live_url in refused.stderr
    assert (
        js(orch(live_url, None, "clients", "reactivate", cid, "--json", admin=ADMIN_KEY))["status"]
        == "active"
    )
    # a client key is not the admin key: creating a client is refused, naming the URL
    no = orch(live_url, rotated["api_key"], "clients", "create", "x")
    assert no.exit_code == 3 and f"{live_url}/v1/clients" in no.stderr


def test_artifacts_templates_versions_rerun_and_retire(live_url, tmp_path):
    key = orch(live_url, None, "clients", "create", "cli-tpl", "--key-only", admin=ADMIN_KEY).stdout.strip()
    app_zip = tmp_path / "app.zip"
    with zipfile.ZipFile(app_zip, "w") as z:
        z.writestr("main.py", "print('hi')\n")
    art = js(orch(live_url, key, "artifacts", "upload", str(app_zip), "--version", "1.0.0", "--json"))
    aid = art["artifact_id"]
    assert aid in orch(live_url, key, "artifacts", "list").stdout
    assert js(orch(live_url, key, "artifacts", "get", aid, "--json"))["sha256"] == art["sha256"]

    made = orch(
        live_url, key, "templates", "create", "--name", "etl", "--artifact", aid, "--fleet", "m5.large",
        "--arg", "day=mon", "--expected-runtime", "600", "--json",
    )  # fmt: skip
    tpl = js(made)
    assert (tpl["version"], tpl["default_args"]) == (1, {"day": "mon"})
    upd = orch(live_url, key, "templates", "update", tpl["id"], "--expected-runtime", "900")
    assert upd.exit_code == 0 and "version 2" in upd.stdout, upd.output
    versions = js(orch(live_url, key, "templates", "versions", tpl["id"], "--json"))
    assert [(v["version"], v["expected_runtime_sec"]) for v in versions] == [(2, 900), (1, 600)]
    shown = orch(live_url, key, "templates", "get", tpl["id"])
    assert shown.exit_code == 0 and tpl["id"] in shown.stdout and "900" in shown.stdout
    assert tpl["id"] in orch(live_url, key, "templates", "list").stdout
    bad = orch(live_url, key, "templates", "update", tpl["id"], "--fleet", "m9.none")
    assert bad.exit_code == 3 and "fleet_template_id" in bad.stderr and live_url in bad.stderr

    sub = js(orch(live_url, key, "jobs", "submit", "-t", tpl["id"], "--at", "now", "--json"))
    again = js(orch(live_url, key, "runs", "rerun", sub["run_id"], "--json", "--idempotency-key", "k1"))
    same = js(orch(live_url, key, "runs", "rerun", sub["run_id"], "--json", "--idempotency-key", "k1"))
    assert again["run_id"] != sub["run_id"] and same["job_id"] == again["job_id"]
    run = js(orch(live_url, key, "runs", "get", again["run_id"], "--json"))
    assert run["job_template_version"] == 2

    # a recurring job uses it: delete names it; switched to another template, delete works
    other = js(orch(live_url, key, "templates", "create", "--name", "etl2", "--artifact", aid, "--fleet",
                    "m5.large", "--json"))  # fmt: skip
    rec = js(orch(live_url, key, "recurring", "create", "-t", tpl["id"], "--cron", "0 1 * * *", "--json"))
    used = orch(live_url, key, "templates", "delete", tpl["id"])
    assert used.exit_code == 3 and rec["id"] in used.stderr, used.output
    switched = js(orch(live_url, key, "recurring", "update", rec["id"], "--template", other["id"], "--json"))
    assert switched["job_template_id"] == other["id"]
    retired = orch(live_url, key, "templates", "delete", tpl["id"])
    assert retired.exit_code == 0 and "retired" in retired.stdout, retired.output
    assert tpl["id"] not in orch(live_url, key, "templates", "list", "--active").stdout
    refused = orch(live_url, key, "runs", "rerun", sub["run_id"])
    assert refused.exit_code == 3 and "retired" in refused.stderr
    assert f"{live_url}/v1/runs/{sub['run_id']}/rerun" in refused.stderr
    assert orch(live_url, key, "recurring", "delete", rec["id"]).exit_code == 0


def test_errors_name_the_url_and_its_setting(live_url):
    r = orch(live_url, "orch_not_a_key", "jobs", "list", columns=60)  # one line, even in a narrow terminal
    assert r.exit_code == 3
    assert f"401 unknown API key from {live_url}/v1/jobs?limit=20 (ORCH_URL" in r.stderr, r.stderr
    down = "http://127.0.0.1:1"
    r = orch(down, "orch_any", "templates", "list")
    assert r.exit_code == 4 and f"cannot reach the API at {down}/v1/job-templates (ORCH_URL)" in r.stderr
    r = orch(down, None, "webhooks", "list")
    assert r.exit_code == 2 and "ORCH_API_KEY" in r.stderr  # no key: usage error before any call
    # orch demo reads ORCH_URL
    r = orch(down, None, "demo", "--admin-key", "x", "--timeout", "1")
    assert r.exit_code == 4 and down in r.stderr, r.output


def test_webhooks_commands_call_v1_webhooks(live_url):
    """The client side of /v1/webhooks: an unknown endpoint id is a 404 whether or not the API has the
    routes yet, and the error names the URL."""
    key = orch(live_url, None, "clients", "create", "cli-hooks", "--key-only", admin=ADMIN_KEY).stdout.strip()
    for args in (("get", "wh_missing"), ("deliveries", "wh_missing"), ("delete", "wh_missing")):
        r = orch(live_url, key, "webhooks", *args)
        assert r.exit_code == 3 and "404" in r.stderr, r.output
        assert f"{live_url}/v1/webhooks/wh_missing" in r.stderr
    help_ = orch(live_url, key, "webhooks", "--help")
    for cmd in ("list", "create", "get", "update", "delete", "test", "deliveries", "redeliver"):
        assert cmd in help_.stdout


def test_webhooks_create_list_update_test_deliveries_redeliver_delete(live_url):
    """Every `orch webhooks` command against the real API: the secret is printed once (by create only), a
    test event is queued and shows in the delivery log (no worker here: it stays pending), redelivery keeps
    its event id, another client sees a 404, delete removes it."""
    key, other = (
        orch(live_url, None, "clients", "create", name, "--key-only", admin=ADMIN_KEY).stdout.strip()
        for name in ("cli-hooks2", "cli-hooks3")
    )
    url = "http://127.0.0.1:9/hook"
    made = orch(live_url, key, "webhooks", "create", "--url", url, "-e", "run.failed", "--description", "x")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert len(secret) >= 32 and "shown once" in made.stdout
    listed = js(orch(live_url, key, "webhooks", "list", "--json"))["items"]
    assert [(w["url"], w["event_types"], w["enabled"]) for w in listed] == [(url, ["run.failed"], True)]
    wid = listed[0]["id"]
    table = orch(live_url, key, "webhooks", "list", "--wide")
    assert wid in table.stdout and "run.failed" in table.stdout and secret not in table.stdout
    got = orch(live_url, key, "webhooks", "get", wid, "--json")
    assert secret not in got.stdout and js(got)["description"] == "x"

    upd = js(orch(live_url, key, "webhooks", "update", wid, "-e", "run.succeeded", "--disable", "--json"))
    assert (upd["event_types"], upd["enabled"]) == (["run.succeeded"], False)
    assert "disabled" in orch(live_url, key, "webhooks", "get", wid).stdout
    assert js(orch(live_url, key, "webhooks", "update", wid, "--enable", "--json"))["enabled"] is True
    nothing = orch(live_url, key, "webhooks", "update", wid)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output

    sent = orch(live_url, key, "webhooks", "test", wid)
    assert sent.exit_code == 0 and "test event" in sent.stdout, sent.output
    log = js(orch(live_url, key, "webhooks", "deliveries", wid, "--json"))["items"]
    assert [(d["event_type"], d["status"]) for d in log] == [("webhook.test", "pending")]
    assert log[0]["event_id"] in sent.stdout and log[0]["id"] in sent.stdout
    again = js(orch(live_url, key, "webhooks", "redeliver", wid, log[0]["id"], "--json"))
    assert again["event_id"] == log[0]["event_id"] and again["redeliveries"] == 1
    table = orch(live_url, key, "webhooks", "deliveries", wid, "--wide")
    assert log[0]["id"] in table.stdout and "webhook.test" in table.stdout

    for args in (("get", wid), ("deliveries", wid), ("test", wid), ("delete", wid)):  # tenancy
        r = orch(live_url, other, "webhooks", *args)
        assert r.exit_code == 3 and "404" in r.stderr, (args, r.output)
    gone = orch(live_url, key, "webhooks", "delete", wid)
    assert gone.exit_code == 0 and "deleted" in gone.stdout
    assert js(orch(live_url, key, "webhooks", "list", "--json"))["items"] == []
