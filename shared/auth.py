"""Org API keys: shown once, stored as a SHA-256 hash, bound to one org, compared in constant time.

A key looks like `cak_<key_id>_<secret>`. The key_id finds the row; the hash of the whole key is
compared with hmac.compare_digest, so a wrong key takes the same time whatever its prefix.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shared.naming import validate_org_slug
from shared.warehouse.base import Warehouse

PREFIX = "cak_"
# Hash of a key that cannot exist, compared when no row matches so a miss costs as much as a hit.
_DUMMY_HASH = hashlib.sha256(b"cloudact-no-such-key").hexdigest()


@dataclass(frozen=True)
class KeyCheck:
    ok: bool
    org_slug: str | None = None  # the org the key belongs to, when ok
    key_id: str | None = None  # the key's row, when ok (not secret: it is part of the key's public prefix)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(wh: Warehouse, org_slug: str) -> str:
    validate_org_slug(org_slug)
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    wh.insert_rows("organizations", "org_api_keys", [{
        "key_id": key_id, "org_slug": org_slug, "key_hash": _hash(key),
        "created_at": dt.datetime.now(dt.timezone.utc), "revoked_at": None,
    }])
    return key


def revoke_key(wh: Warehouse, org_slug: str, key_id: str) -> bool:
    n = wh.execute(
        "UPDATE `organizations.org_api_keys` SET revoked_at = CURRENT_TIMESTAMP() "
        "WHERE org_slug = @org AND key_id = @key_id AND revoked_at IS NULL",
        {"org": org_slug, "key_id": key_id},
    )
    return n > 0


def list_keys(wh: Warehouse, org_slug: str) -> list[dict]:
    return wh.query(
        "SELECT key_id, created_at, revoked_at FROM `organizations.org_api_keys` WHERE org_slug = @org ORDER BY created_at",
        {"org": org_slug},
    )


def check_key(wh: Warehouse, presented: str | None) -> KeyCheck:
    """Which org does this key belong to? `ok=False` for a missing, malformed, unknown or revoked key."""
    if not presented or not presented.startswith(PREFIX) or len(presented) > 200:
        hmac.compare_digest(_DUMMY_HASH, _DUMMY_HASH)
        return KeyCheck(False)
    key_id = presented[len(PREFIX):].split("_", 1)[0]
    rows = wh.query(
        "SELECT org_slug, key_hash FROM `organizations.org_api_keys` WHERE key_id = @key_id AND revoked_at IS NULL",
        {"key_id": key_id},
    )
    stored = rows[0]["key_hash"] if rows else _DUMMY_HASH
    match = hmac.compare_digest(stored, _hash(presented))
    return KeyCheck(True, rows[0]["org_slug"], key_id) if (rows and match) else KeyCheck(False)


def key_active(wh: Warehouse, org_slug: str, key_id: str) -> bool:
    """Is the key `key_id` of `org_slug` still unrevoked, and its org still there? A dashboard session lives only
    as long as both."""
    return bool(wh.query(
        "SELECT 1 AS one FROM `organizations.org_api_keys` k JOIN `organizations.organizations` o "
        "ON o.org_slug = k.org_slug WHERE k.key_id = @key_id AND k.org_slug = @org AND k.revoked_at IS NULL",
        {"key_id": key_id, "org": org_slug}))
