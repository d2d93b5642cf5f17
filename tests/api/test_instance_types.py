"""Instance types are stored in AWS's canonical lower case, on input and (migration 0002) in existing rows."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from core.db import normalise_url
from core.migrate import upgrade
from tests.support.api import template_body, upload
from tests.support.common import make_settings, new_client
from tests.support.zips import make_zip


def test_template_instance_type_is_normalised_on_input(api):
    _, h = new_client(api, "case")
    art = upload(api, h, make_zip()).json()["artifact_id"]
    r = api.post("/v1/job-templates", json=template_body(art, fleet_template_id="  M5.Large "), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["fleet_template_id"] == "m5.large"
    got = api.get(f"/v1/job-templates/{r.json()['id']}", headers=h)
    assert got.json()["fleet_template_id"] == "m5.large"
    unknown = api.post("/v1/job-templates", json=template_body(art, fleet_template_id="Q9.Huge"), headers=h)
    assert unknown.status_code == 422


def test_migration_lowercases_stored_instance_types(tmp_path):
    settings = make_settings(tmp_path)
    upgrade(settings, "0001")
    engine = create_engine(normalise_url(settings.db_url))
    with engine.begin() as c:  # plain engine: SQLite does not enforce foreign keys here, one row suffices
        c.execute(
            text(
                "INSERT INTO job_templates (id, client_id, name, app_artifact_id, default_args, "
                "fleet_template_id, created_at) VALUES ('t1', 'c1', 'n', 'a1', '{}', ' M5.Large', "
                "CURRENT_TIMESTAMP)"
            )
        )
    upgrade(settings)
    with engine.connect() as c:
        assert c.execute(text("SELECT fleet_template_id FROM job_templates")).scalar_one() == "m5.large"
    engine.dispose()
