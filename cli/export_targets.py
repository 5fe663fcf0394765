"""Where `cloudact export` writes: a local file, or an object in S3 (`s3://bucket/key`) or Blob Storage
(`az://container/blob`), with the org's own credential for that cloud, checked as its billing sources are.

The object store client is the one the org's sources are read with (jobs.identity.aws_session for S3,
jobs.cloud.azure.BlobSource's container client for Blob Storage), so the same tenancy rules apply: in multi
tenancy only the credential's own identity and public https endpoints; in single tenancy a missing credential
falls back to the operator's identity (boto3's default chain; AZURE_STORAGE_CONNECTION_STRING).
The file is written to a temporary file first (disk, not memory) and then uploaded in parts by the SDK.

gs:// is refused for now: there is no offline GCS emulator to test an upload against. Write a local file and
copy it (`gcloud storage cp`), or on GCP query BigQuery directly (README, "BI tools and notebooks").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from shared.export import ExportInvalid

SCHEMES = {"s3": "aws", "az": "azure"}  # scheme -> the credential kind that reaches it


class ExportFailed(RuntimeError):
    """The object store refused or failed the upload; the message names the target."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    bucket: str  # S3 bucket or Blob Storage container
    key: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name


def parse(out: str) -> Target | None:
    """`out` as an object-store target, or None for a local path (also `file://`)."""
    parts = urlsplit(out)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a Windows drive letter is a path
        return None
    if parts.scheme == "gs":
        raise ExportInvalid("gs:// targets are not supported yet: export to a local file and `gcloud storage cp` "
                            "it, or on GCP read BigQuery directly (see the README, BI tools and notebooks)")
    if parts.scheme not in SCHEMES:
        raise ExportInvalid(f"{out}: export to a local path, s3://bucket/key or az://container/blob")
    key = unquote(parts.path).lstrip("/")
    if not parts.netloc or not key or key.endswith("/"):
        raise ExportInvalid(f"{out}: name the object, e.g. {parts.scheme}://bucket/exports/focus.parquet")
    return Target(out, parts.scheme, parts.netloc, key)


def local_path(out: str) -> str:
    parts = urlsplit(out)
    return unquote(parts.path) if parts.scheme == "file" else out


def _credential(rt, org_slug: str, kind: str, credential_id: str | None) -> dict:
    """The org's credential for `kind` (the one named, else its newest), or {} in single tenancy when it has none:
    the operator's own identity. Multi tenancy never falls back to the platform's identity."""
    from shared import tenancy
    from shared.secrets import CredentialStore, NoCredential

    store = CredentialStore(rt.warehouse, rt.settings)
    try:
        row = store.find(org_slug, kind, credential_id)
    except NoCredential:
        if credential_id or tenancy.is_multi(rt.settings):
            raise
        return {}
    return store.load(org_slug, kind, row["credential_id"])


def upload(rt, org_slug: str, target: Target, path: str, credential_id: str | None = None) -> None:
    """The finished local file `path` put at `target` with the org's credential."""
    cred = _credential(rt, org_slug, SCHEMES[target.scheme], credential_id)
    if target.scheme == "s3":
        _to_s3(cred, target, path)
    else:
        _to_blob(cred, target, path)


def _to_s3(cred: dict, target: Target, path: str) -> None:
    from botocore.config import Config

    from jobs.identity import aws_session

    session = aws_session(cred, cred.get("region") or "us-east-1", "cloudact-export")
    s3 = session.client("s3", endpoint_url=cred.get("endpoint_url"),
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))
    try:
        s3.upload_file(path, target.bucket, target.key)
    except Exception as e:  # noqa: BLE001 - boto3 raises many kinds; the message names the target
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "") if hasattr(e, "response") else ""
        raise ExportFailed(f"S3 refused writing {target.url}: {code or e}. The credential needs s3:PutObject "
                           "on the bucket.") from None


def _to_blob(cred: dict, target: Target, path: str) -> None:
    from jobs.cloud.azure import BlobSource

    if not cred and os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):  # single tenancy, the operator's account
        cred = {"connection_string": os.environ["AZURE_STORAGE_CONNECTION_STRING"]}
    if not (cred.get("connection_string") or cred.get("account_url")):
        raise ExportInvalid(f"{target.url}: the org's azure credential needs account_url or connection_string "
                            "(or, in single tenancy, set AZURE_STORAGE_CONNECTION_STRING)")
    container = BlobSource({**cred, "container": target.bucket}).client
    try:
        with open(path, "rb") as f:
            container.upload_blob(target.key, f, overwrite=True)
    except Exception as e:  # noqa: BLE001 - azure-core raises many kinds
        raise ExportFailed(f"Blob Storage refused writing {target.url}: {getattr(e, 'reason', None) or e}. The "
                           "identity needs the Storage Blob Data Contributor role on the container.") from None
