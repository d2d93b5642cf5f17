"""Secrets the product must recover to use (a webhook endpoint's signing secret) are stored encrypted.

Fernet (``cryptography``: AES-128-CBC with an HMAC-SHA256 tag, a timestamped token) under the deployment's
key ``ORCH_SECRETS_KEY``: one or more Fernet keys, comma-separated; the first encrypts, every one decrypts
(rotation: put the new key first, keep the old ones until every row was rewritten). Without the setting,
``dev`` and ``test`` keep a key in ``<data_dir>/secrets_key`` (created once, mode 0600, shared by the API
and the worker through the data directory); ``prod`` requires the setting.

Stored form: ``enc:v1:<token>``. A value without that prefix was written before encryption at rest and is
read as it is (README "Webhooks").
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.settings import Settings

__all__ = ["PREFIX", "SecretBox", "SecretUnavailable", "new_key", "secret_box"]

PREFIX = "enc:v1:"
KEY_FILE = "secrets_key"


class SecretUnavailable(Exception):
    """A stored secret that none of the configured keys opens (the key was changed or lost)."""


def new_key() -> str:
    """A fresh Fernet key (URL-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


class SecretBox:
    def __init__(self, keys: tuple[str, ...]):
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        try:
            self._f = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:  # not 32 url-safe base64-encoded bytes
            raise ValueError(
                "ORCH_SECRETS_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
            ) from exc

    def seal(self, plain: str) -> str:
        return PREFIX + self._f.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before encryption at rest
        try:
            return self._f.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretUnavailable(
                "a stored secret cannot be decrypted with ORCH_SECRETS_KEY (was the key changed? keep the "
                "old key after the new one until every secret was rewritten)"
            ) from exc


def _key_file(data_dir: Path) -> str:
    """The dev/test key in ``<data_dir>/secrets_key``: created once, atomically (a process that loses the race
    reads the winner's key, never a half-written file)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_key())
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def key_source(settings: Settings) -> tuple[tuple[str, ...], str]:
    """The keys (first encrypts) and where they come from."""
    if settings.secrets_key:
        return tuple(k.strip() for k in settings.secrets_key.split(",") if k.strip()), "from ORCH_SECRETS_KEY"
    if settings.env == "prod":  # Settings refuses this already; kept for a Settings built without validation
        raise ValueError("ORCH_SECRETS_KEY is required when ORCH_ENV=prod")
    return (_key_file(settings.data_dir),), f"stored in {settings.data_dir / KEY_FILE}"


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)


def secret_box(settings: Settings) -> SecretBox:
    """The deployment's box (module docstring)."""
    return _box(key_source(settings)[0])
