"""Provider credentials: validated on entry, encrypted at rest, never logged.

Embedded backend: the secret JSON is encrypted with a local Fernet key ($CLOUDACT_HOME/secret.key,
created with mode 0600) and stored in organizations.org_credentials.
GCP backend: the secret JSON is a Secret Manager secret; the table holds only its version name.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets as _secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.config import Settings, settings as current_settings
from shared.naming import validate_org_slug
from shared.warehouse.base import Warehouse


class CredentialInvalid(ValueError):
    pass


class NoCredential(LookupError):
    pass


def _check_url(value: Any, field: str) -> None:
    u = urlparse(str(value))
    if u.scheme not in ("http", "https") or not u.netloc:
        raise CredentialInvalid(f"{field} must be an http(s) URL, got {value!r}")


def _require(doc: dict, *fields: str) -> None:
    missing = [f for f in fields if not doc.get(f)]
    if missing:
        raise CredentialInvalid(f"credential JSON is missing {', '.join(missing)}")


# Per kind: alternative sets of fields, one of which must be complete. `source` (a folder holding the
# provider's files) always works for the billing kinds.
_ACCESS: dict[str, tuple[tuple[str, ...], ...]] = {
    "openai": (("admin_key",),),
    "anthropic": (("admin_key",),),
    "deepseek": (("usage_csv_dir",),),
    "aws": (("source",), ("bucket",), ("region",), ("regions",)),
    "gcp": (("source",), ("service_account_json",), ("access_token",), ("project",), ("monitoring_projects",)),
    "azure": (("source",), ("account_url",), ("connection_string",), ("resource_ids",), ("cost_scope",)),
    "oci": (("source",), ("tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region")),
}


def validate(kind: str, doc: Any) -> dict:
    """Check a credential document before it is stored, naming what is missing."""
    if not isinstance(doc, dict):
        raise CredentialInvalid("credential must be a JSON object")
    options = _ACCESS.get(kind)
    if options and not any(all(doc.get(f) for f in fields) for fields in options):
        if len(options) == 1:
            _require(doc, *options[0])
        readable = " | ".join(" + ".join(fields) for fields in options)
        raise CredentialInvalid(f"a {kind} credential needs one of: {readable}")
    for field in ("base_url", "endpoint_url", "endpoint", "account_url"):
        if doc.get(field):
            _check_url(doc[field], field)
    for field in ("source", "usage_csv_dir"):
        if field in doc and not str(doc[field]).startswith(("file://", "gs://", "s3://", "https://")):
            raise CredentialInvalid(f"{field} must be a file://, gs://, s3:// or https:// location")
    return doc


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


class CredentialStore:
    def __init__(self, wh: Warehouse, s: Settings | None = None):
        self.wh = wh
        self.s = s or current_settings()

    def add(self, org_slug: str, provider: str, doc: Any, label: str | None = None) -> str:
        validate_org_slug(org_slug)
        doc = validate(provider, doc)
        credential_id = f"cred_{provider}_{_secrets.token_hex(4)}"
        row = {
            "credential_id": credential_id, "org_slug": org_slug, "provider": provider, "label": label,
            "secret_ciphertext": None, "secret_ref": None, "status": "active",
            "created_at": dt.datetime.now(dt.timezone.utc),
        }
        if self.s.backend == "gcp":
            from shared.secret_manager import put_secret

            row["secret_ref"] = put_secret(self.s.project, f"{org_slug}--{credential_id}", json.dumps(doc))
        else:
            row["secret_ciphertext"] = _Fernet(self.s.secret_key_path).encrypt(doc)
        self.wh.insert_rows("organizations", "org_credentials", [row])
        return credential_id

    def find(self, org_slug: str, provider: str, credential_id: str | None = None) -> dict:
        """The credential row to use: the one named, or the org's newest active one for the provider."""
        rows = self.wh.query(
            "SELECT credential_id, provider, secret_ciphertext, secret_ref FROM `organizations.org_credentials` "
            "WHERE org_slug = @org AND provider = @provider AND status = 'active' ORDER BY created_at DESC",
            {"org": org_slug, "provider": provider},
        )
        if credential_id:
            rows = [r for r in rows if r["credential_id"] == credential_id]
        if not rows:
            what = f"credential {credential_id!r}" if credential_id else f"no active {provider} credential"
            raise NoCredential(
                f"{what} for org {org_slug!r}; add one with `cloudact credentials add {org_slug} {provider} --from-json FILE`"
            )
        return rows[0]

    def load(self, org_slug: str, provider: str, credential_id: str) -> dict:
        row = self.find(org_slug, provider, credential_id)
        if row["secret_ref"]:
            from shared.secret_manager import get_secret

            return json.loads(get_secret(row["secret_ref"]))
        return _Fernet(self.s.secret_key_path).decrypt(row["secret_ciphertext"])

    def list(self, org_slug: str) -> list[dict]:
        return self.wh.query(
            "SELECT credential_id, provider, label, status, created_at FROM `organizations.org_credentials` "
            "WHERE org_slug = @org ORDER BY created_at",
            {"org": org_slug},
        )
