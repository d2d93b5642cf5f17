"""Webhook signing secrets are encrypted at rest (core/secretbox.py): the row holds a Fernet token that the
deployment's key opens and nothing else does; key rotation, a lost key, rows written before encryption, and
the prod rule. Real DB (SQLite and PostgreSQL); the worker's side (decrypt, sign, the receiver verifies with
the secret shown at creation) runs end to end in tests/e2e/test_retries_webhooks_e2e.py."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.secretbox import PREFIX, SecretBox, SecretUnavailable, _key_file, key_source, new_key, secret_box
from core.settings import Settings
from models.db import WebhookDelivery, WebhookEndpoint
from services import webhooks
from tests.support.api import engine_for
from tests.support.common import new_client


def test_the_row_holds_a_token_only_the_deployment_key_opens(api, api_settings):
    _, h = new_client(api)
    made = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=h)
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    eng = engine_for(api_settings)
    wid = made.json()["id"]
    with Session(eng) as s:
        stored = s.scalars(select(WebhookEndpoint.secret).where(WebhookEndpoint.id == wid)).one()
    assert stored.startswith(PREFIX) and secret not in stored and secret[6:] not in stored
    assert secret_box(api_settings).open(stored) == secret
    with pytest.raises(SecretUnavailable, match="ORCH_SECRETS_KEY"):
        SecretBox((new_key(),)).open(stored)  # another deployment's key opens nothing

    # a delivery attempt reads it in clear, for that attempt only; a row from before encryption still works
    sent = api.post(f"/v1/webhooks/{wid}/test", headers=h)
    assert sent.status_code in (202, 503), sent.text  # no Temporal here: the delivery stays pending
    with Session(eng) as s:
        d_id = s.scalars(select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == wid)).first()
        assert d_id is not None
        prepared = webhooks.prepare_attempt(s, api_settings, d_id)
        assert prepared is not None and prepared.secret == secret
        s.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == wid).values(secret="legacy"))
        prepared = webhooks.prepare_attempt(s, api_settings, d_id)
        assert prepared is not None and prepared.secret == "legacy"
        s.rollback()
    eng.dispose()


def test_rotation_keeps_old_secrets_readable_and_seals_with_the_new_key():
    old, new = new_key(), new_key()
    token = SecretBox((old,)).seal("whsec_abc")
    rotated = SecretBox((new, old))
    assert rotated.open(token) == "whsec_abc"
    fresh = rotated.seal("whsec_def")
    assert SecretBox((new,)).open(fresh) == "whsec_def"
    with pytest.raises(SecretUnavailable):
        SecretBox((old,)).open(fresh)
    assert SecretBox((old,)).seal("x") != SecretBox((old,)).seal("x")  # random IV: equal secrets look unlike
    with pytest.raises(ValueError, match="Fernet keys"):
        SecretBox(("not-a-key",))


def test_prod_needs_the_key_and_dev_keeps_one_in_the_data_dir(tmp_path):
    base = {"env": "prod", "admin_api_key": "a" * 40, "s3_secret_access_key": "s3-secret"}
    with pytest.raises(ValueError, match="ORCH_SECRETS_KEY"):
        Settings(**base)
    keys, src = key_source(Settings(**base, secrets_key=f" {new_key()} , {new_key()} "))
    assert len(keys) == 2 and src == "from ORCH_SECRETS_KEY"
    dev = Settings(env="dev", data_dir=tmp_path / "d")
    (k1,), src = key_source(dev)
    assert src.startswith("stored in") and (tmp_path / "d" / "secrets_key").stat().st_mode & 0o077 == 0
    assert key_source(dev)[0] == (k1,)  # created once, then read


def test_processes_racing_to_create_the_key_all_read_the_same_one(tmp_path):
    got: list[str] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        got.append(_key_file(tmp_path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and len(set(got)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets_key"]  # no temporary file left
