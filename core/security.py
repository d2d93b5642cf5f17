"""API keys: random, shown once, stored only as a SHA-256 hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "orch_"


def new_api_key() -> str:
    """A fresh client key: 32 random bytes (256 bits), URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(raw: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is safe (no dictionary to attack); lookups stay O(1).
    return hashlib.sha256(raw.encode()).hexdigest()


def key_matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(raw), stored_hash)


def new_external_id() -> str:
    """A strong STS external id (AWS allows 2-1224 chars of [\\w+=,.@:/-])."""
    return "orch-" + secrets.token_hex(24)
