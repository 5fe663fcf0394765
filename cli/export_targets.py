"""Where `cloudact export` writes: a local file, or an object in S3 (`s3://bucket/key`), Cloud Storage
(`gs://bucket/object`) or Blob Storage (`az://container/blob`), with the org's own credential for that cloud,
checked as its billing sources are.

The object store client is built the way the org's sources are read (jobs.identity: aws_session for S3,
gcp_credentials and a guarded requests session for Cloud Storage, jobs.cloud.azure.BlobSource's container
client for Blob Storage), so the same tenancy rules apply: in multi tenancy only the credential's own identity
and public https endpoints; in single tenancy a missing credential falls back to the operator's identity
(boto3's default chain; Google's application-default credentials; AZURE_STORAGE_CONNECTION_STRING).
The file is written to a temporary file first (disk, not memory) and then uploaded in parts by the SDK.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from shared.export import ExportInvalid

SCHEMES = {"s3": "aws", "gs": "gcp", "az": "azure"}  # scheme -> the credential kind that reaches it
GCS_ENDPOINT = "https://storage.googleapis.com"
GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
GCS_PART = 16 * 1024 * 1024  # a resumable upload's part, held in memory while it is sent (a multiple of 256 KiB)


class ExportFailed(RuntimeError):
    """The object store refused or failed the upload; the message names the target."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    bucket: str  # S3 or Cloud Storage bucket, or Blob Storage container
    key: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name


def parse(out: str) -> Target | None:
    """`out` as an object-store target, or None for a local path (also `file://`)."""
    parts = urlsplit(out)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a Windows drive letter is a path
        return None
    if parts.scheme not in SCHEMES:
        raise ExportInvalid(f"{out}: export to a local path, s3://bucket/key, gs://bucket/object or "
                            "az://container/blob")
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
    from jobs.base import CredentialError

    try:
        {"s3": _to_s3, "gs": _to_gcs, "az": _to_blob}[target.scheme](cred, target, path, org_slug)
    except CredentialError as e:  # the credential cannot reach the store at all (e.g. no identity of its own)
        raise ExportFailed(f"{target.url}: {e}") from None


def _to_s3(cred: dict, target: Target, path: str, org_slug: str) -> None:
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


def _to_gcs(cred: dict, target: Target, path: str, org_slug: str) -> None:
    import google.auth
    import google.auth.exceptions
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import storage

    from jobs.identity import gcp_credentials, guard_requests_session

    credentials = gcp_credentials(cred, [GCS_SCOPE], org_slug)
    if credentials is None:  # single tenancy without a credential: the operator's application-default identity
        credentials, _ = google.auth.default(scopes=[GCS_SCOPE])
    session = AuthorizedSession(credentials)
    guard_requests_session(session)
    # An explicit endpoint always (Google's by default), so no STORAGE_EMULATOR_HOST of the host steers a tenant's
    # upload; project=None: an upload needs none, and looking one up would ask the platform's metadata server.
    endpoint = str(cred.get("storage_url") or GCS_ENDPOINT).rstrip("/")
    client = storage.Client(project=None, credentials=credentials, _http=session,
                            client_options={"api_endpoint": endpoint})
    try:
        client.bucket(target.bucket).blob(target.key, chunk_size=GCS_PART).upload_from_filename(path)
    except (GoogleAPICallError, google.auth.exceptions.GoogleAuthError, OSError, ValueError) as e:
        reason = getattr(e, "message", None) or e
        raise ExportFailed(f"Cloud Storage refused writing {target.url}: {reason}. The identity needs "
                           "storage.objects.create on the bucket (roles/storage.objectCreator).") from None


def _to_blob(cred: dict, target: Target, path: str, org_slug: str) -> None:
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
