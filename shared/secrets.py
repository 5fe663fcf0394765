"""Provider credentials: validated on entry, encrypted at rest, never logged.

Embedded backend: the secret JSON is encrypted with a local Fernet key ($CLOUDACT_HOME/secret.key,
created with mode 0600) and stored in organizations.org_credentials.
GCP backend: the secret JSON is a Secret Manager secret; the table holds only its version name.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets as _secrets
from pathlib import Path
from typing import Any

from shared import credential_specs as specs
from shared.config import Settings, settings as current_settings
from shared.credential_specs import CredentialInvalid
from shared.naming import validate_org_slug
from shared.warehouse.base import Warehouse

__all__ = ["CredentialConflict", "CredentialInvalid", "CredentialStore", "NoCredential", "validate"]
_T = "`organizations.org_credentials`"


class NoCredential(LookupError):
    pass


class CredentialConflict(ValueError):
    """A second credential for a source another credential of the org already reads."""


def validate(kind: str, doc: Any, org_slug: str = "ORG", s: Settings | None = None) -> dict:
    """Check a credential document before it is stored, naming what is missing (see shared.credential_specs)."""
    return specs.validate(kind, doc, org_slug, s)


class _Fernet:
    def __init__(self, path: Path):
        from cryptography.fernet import Fernet

        from shared.config import private_dir

        if not path.exists():
            private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        self._f = Fernet(path.read_bytes().strip())

    def encrypt(self, doc: dict) -> str:
        return self._f.encrypt(json.dumps(doc).encode()).decode()

    def decrypt(self, token: str) -> dict:
        return json.loads(self._f.decrypt(token.encode()))


def _hashed(keys: list[str]) -> list[str]:
    return [hashlib.sha256(k.encode()).hexdigest() for k in keys]


class CredentialStore:
    """Add, rotate (new secrets, same id: slices stay keyed the same), disable, find and load credentials."""

    def __init__(self, wh: Warehouse, s: Settings | None = None):
        self.wh = wh
        self.s = s or current_settings()

    # -- writing --------------------------------------------------------------------------------------
    def add(self, org_slug: str, provider: str, doc: Any, label: str | None = None) -> str:
        return self.create(org_slug, provider, doc, label)["credential_id"]

    def create(self, org_slug: str, provider: str, doc: Any, label: str | None = None) -> dict[str, Any]:
        """Validate and store a credential; returns its public record (with the AWS ExternalId where one applies)."""
        validate_org_slug(org_slug)
        if label is not None and (not isinstance(label, str) or len(label) > 200):
            raise CredentialInvalid("label must be a string of at most 200 characters")
        doc = validate(provider, doc, org_slug, self.s)
        doc = self._with_external_id(org_slug, provider, doc)
        keys = _hashed(specs.source_keys(provider, doc))
        self._refuse_shared_source(org_slug, provider, keys, None)
        credential_id = f"cred_{provider}_{_secrets.token_hex(4)}"
        now = dt.datetime.now(dt.timezone.utc)
        row = {
            "credential_id": credential_id, "org_slug": org_slug, "provider": provider, "label": label,
            "secret_ciphertext": None, "secret_ref": None, "status": "active", "created_at": now,
            "source_keys": json.dumps(keys), "updated_at": now,
        }
        row.update(self._sealed(org_slug, credential_id, doc))
        self.wh.insert_rows("organizations", "org_credentials", [row])
        return self._public(row, doc)

    def rotate(self, org_slug: str, credential_id: str, changes: Any) -> dict[str, Any]:
        """New secret material for an existing credential: same id (its slices stay keyed the same), fields
        given replace the stored ones, the source it reads cannot change (add a credential for another source)."""
        row = self._row(org_slug, credential_id)
        if not isinstance(changes, dict) or not changes:
            raise CredentialInvalid("rotate takes a JSON object with the fields to replace (the new secrets)")
        provider = row["provider"]
        old = self._open(row)
        new = validate(provider, {**old, **changes}, org_slug, self.s)
        new = self._with_external_id(org_slug, provider, new)
        if not specs.same_source(provider, old, new):
            raise CredentialInvalid("rotate replaces secrets, not the source a credential reads; add a new "
                                    "credential for another source")
        keys = _hashed(specs.source_keys(provider, new))
        self._refuse_shared_source(org_slug, provider, keys, credential_id)
        sealed = self._sealed(org_slug, credential_id, new)
        self.wh.execute(
            f"UPDATE {_T} SET secret_ciphertext = @c, secret_ref = @r, status = 'active', source_keys = @keys, "
            "updated_at = @now WHERE org_slug = @org AND credential_id = @id",
            {"c": sealed["secret_ciphertext"], "r": sealed["secret_ref"], "now": dt.datetime.now(dt.timezone.utc),
             "keys": json.dumps(keys), "org": org_slug, "id": credential_id})
        if row["secret_ref"] and row["secret_ref"] != sealed["secret_ref"]:
            from shared.secret_manager import disable_secret_version

            disable_secret_version(row["secret_ref"])  # the old secret stops working for anyone who kept it
        return self._public({**row, "status": "active"}, new)

    def disable(self, org_slug: str, credential_id: str) -> dict[str, Any]:
        """No new runs with it; its data stays (the source stays claimed: rotate it to use it again)."""
        row = self._row(org_slug, credential_id)
        self.wh.execute(
            f"UPDATE {_T} SET status = 'disabled', updated_at = @now WHERE org_slug = @org AND credential_id = @id",
            {"now": dt.datetime.now(dt.timezone.utc), "org": org_slug, "id": credential_id})
        return self._public({**row, "status": "disabled"}, None)

    # -- reading --------------------------------------------------------------------------------------
    def find(self, org_slug: str, provider: str, credential_id: str | None = None) -> dict:
        """The credential row to use: the one named, or the org's newest active one for the provider."""
        rows = self.wh.query(
            f"SELECT credential_id, provider, status, secret_ciphertext, secret_ref FROM {_T} "
            "WHERE org_slug = @org AND provider = @provider ORDER BY created_at DESC",
            {"org": org_slug, "provider": provider},
        )
        if credential_id:
            rows = [r for r in rows if r["credential_id"] == credential_id]
            if rows and rows[0]["status"] != "active":
                raise NoCredential(f"credential {credential_id!r} of org {org_slug!r} is {rows[0]['status']}; "
                                   f"rotate it (`cloudact credentials rotate {org_slug} {credential_id} --from-json "
                                   "FILE`) to use it again")
        rows = [r for r in rows if r["status"] == "active"]
        if not rows:
            what = f"credential {credential_id!r}" if credential_id else f"no active {provider} credential"
            raise NoCredential(
                f"{what} for org {org_slug!r}; add one with `cloudact credentials add {org_slug} {provider} --from-json FILE`"
            )
        return rows[0]

    def load(self, org_slug: str, provider: str, credential_id: str) -> dict:
        row = self.find(org_slug, provider, credential_id)
        doc = self._open(row)
        if self._multi():
            # Checked again at run time: stored under other rules (single tenancy) or before DNS changed.
            specs.validate(provider, {k: v for k, v in doc.items() if k != "external_id"}, org_slug, self.s)
            if _assumes_role(provider, doc):
                doc["external_id"] = self.external_id(org_slug)  # never a value the tenant could have chosen
        return doc

    def list(self, org_slug: str) -> list[dict]:
        return self.wh.query(
            f"SELECT credential_id, provider, label, status, created_at, updated_at FROM {_T} "
            "WHERE org_slug = @org ORDER BY created_at",
            {"org": org_slug},
        )

    def external_id(self, org_slug: str) -> str:
        """The org's AWS ExternalId: generated by the platform once, never chosen by the tenant, so a tenant who
        learns another's role ARN cannot make the platform assume it (AWS's confused-deputy guard)."""
        params = {"org": org_slug, "id": f"cloudact-{org_slug}-{_secrets.token_hex(12)}"}
        self.wh.execute("UPDATE `organizations.organizations` SET external_id = @id "
                        "WHERE org_slug = @org AND external_id IS NULL", params)
        rows = self.wh.query("SELECT external_id FROM `organizations.organizations` WHERE org_slug = @org", params)
        if not rows or not rows[0]["external_id"]:
            raise NoCredential(f"no organization {org_slug!r}")
        return rows[0]["external_id"]

    # -- inside -----------------------------------------------------------------------------------------
    def _multi(self) -> bool:
        from shared import tenancy

        return tenancy.is_multi(self.s)

    def _with_external_id(self, org_slug: str, provider: str, doc: dict) -> dict:
        if _assumes_role(provider, doc) and (self._multi() or not doc.get("external_id")):
            return {**doc, "external_id": self.external_id(org_slug)}
        return doc

    def _refuse_shared_source(self, org_slug: str, provider: str, keys: list[str], own_id: str | None) -> None:
        if not keys:
            return
        for other in self.wh.query(
                f"SELECT credential_id, status, source_keys FROM {_T} WHERE org_slug = @org AND provider = @provider",
                {"org": org_slug, "provider": provider}):
            if other["credential_id"] != own_id and set(keys) & set(json.loads(other["source_keys"] or "[]")):
                state = "" if other["status"] == "active" else f" ({other['status']})"
                raise CredentialConflict(
                    f"credential {other['credential_id']}{state} already reads this source; one source is counted "
                    f"once: rotate that credential instead (`cloudact credentials rotate {org_slug} "
                    f"{other['credential_id']} --from-json FILE`)")

    def _row(self, org_slug: str, credential_id: str) -> dict:
        validate_org_slug(org_slug)
        rows = self.wh.query(f"SELECT * FROM {_T} WHERE org_slug = @org AND credential_id = @id",
                             {"org": org_slug, "id": str(credential_id)})
        if not rows:
            raise NoCredential(f"no credential {credential_id!r} for org {org_slug!r}")
        return rows[0]

    def _sealed(self, org_slug: str, credential_id: str, doc: dict) -> dict[str, str | None]:
        if self.s.backend == "gcp":
            from shared.secret_manager import put_secret

            return {"secret_ciphertext": None,
                    "secret_ref": put_secret(self.s.project, f"{org_slug}--{credential_id}", json.dumps(doc))}
        return {"secret_ciphertext": _Fernet(self.s.secret_key_path).encrypt(doc), "secret_ref": None}

    def _open(self, row: dict) -> dict:
        if row["secret_ref"]:
            from shared.secret_manager import get_secret

            return json.loads(get_secret(row["secret_ref"]))
        return _Fernet(self.s.secret_key_path).decrypt(row["secret_ciphertext"])

    @staticmethod
    def _public(row: dict, doc: dict | None) -> dict[str, Any]:
        """What the tenant sees: never a secret; the ExternalId its role's trust policy must require."""
        out = {k: row[k] for k in ("credential_id", "provider", "label", "status")}
        out["created_at"] = row["created_at"].isoformat() if row.get("created_at") else None
        if doc and doc.get("external_id") and doc.get("role_arn"):
            out["external_id"] = doc["external_id"]
        return out


def _assumes_role(kind: str, doc: dict) -> bool:
    """An AWS role the platform assumes for this credential, with the org's ExternalId (every kind whose spec
    lets the platform set it: aws, and focus files read from S3)."""
    return bool(doc.get("role_arn")) and "external_id" in specs.spec(kind).platform_set
