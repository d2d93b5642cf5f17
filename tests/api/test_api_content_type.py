"""A JSON body sent with the wrong content type gets a 415 that names the header to send."""

from __future__ import annotations

import json

import pytest

from tests.support.common import ADMIN_KEY


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain"])
def test_json_body_with_wrong_content_type_is_415_naming_the_header(api, ctype):
    r = api.post(
        "/v1/clients",
        content=json.dumps({"name": "ctype"}),
        headers={"X-API-Key": ADMIN_KEY, "content-type": ctype},
    )
    assert r.status_code == 415, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Content-Type: application/json" in r.json()["detail"]
    assert ctype in r.json()["detail"]


def test_json_content_type_still_validates_fields_with_422(api):
    r = api.post("/v1/clients", json={"name": ""}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "name"


def test_missing_content_type_is_415_naming_the_header(api):
    r = api.post("/v1/clients", content=json.dumps({"name": "noctype"}), headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 415, r.text
    assert "no Content-Type header" in r.json()["detail"]
