"""focus/file/import: any vendor's FOCUS export (1.0 to 1.3; CSV, gzip CSV or Parquet) -> cloud_focus_raw.

SaaS vendors, data platforms and other clouds publish FOCUS files; this reads them with the reader of the
clouds' native exports (jobs/cloud/focus_export.py) and 50_focus_export.sql up-converts them to FOCUS 1.3.
What differs from a cloud's own export is whose names the rows carry: the file's. ProviderName, PublisherName,
ServiceProviderName, HostProviderName and InvoiceIssuerName are taken as the vendor wrote them (the catalog
entry says `names_from: file`, so no provider facts are looked up), each falling back to the vendor's
ProviderName (or, in a 1.3 file, its ServiceProviderName) where the file leaves it empty.

Credential (kind `focus`):
  {"source": "file:///folder"}                      every .csv / .csv.gz / .parquet file below the folder
  {"source": "s3://bucket/prefix", "region", "endpoint_url" (an S3-compatible store),
   "aws_access_key_id"/"aws_secret_access_key" or "role_arn"}   every such object under the prefix, read as the
                                                                 AWS pipeline reads S3 (jobs/identity.py rules)
Every file must be a FOCUS export (BilledCost and ChargePeriodStart in its header): a stray file fails the run
naming it, rather than being skipped. Reconciliation is the clouds': SUM(BilledCost) per billing period and
currency of the file against the FOCUS 1.3 rows.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import focus_export
from jobs.cloud.aws import S3Source
from jobs.cloud.common import DataFile, LocalFiles, format_of

PROVIDER = "focus"


class _Folder(LocalFiles):
    def files(self, ctx: ExtractContext) -> list[DataFile]:
        return [DataFile(self.name(p), format_of(p.name)) for p in self.data_files()]


class _Bucket(S3Source):
    """Every data object under the prefix (a vendor's export has no CUR manifest to follow)."""

    def files(self, ctx: ExtractContext) -> list[DataFile]:
        out = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                out += [DataFile(f"s3://{self.bucket}/{o['Key']}", format_of(o["Key"]))
                        for o in page.get("Contents", []) if format_of(o["Key"]) and o.get("Size", 1)]
        except Exception as e:  # noqa: BLE001 - botocore raises many kinds; _err names what was refused
            raise self._err(e, f"listing s3://{self.bucket}/{self.prefix}") from None
        return sorted(out, key=lambda f: f.name)


def _source(cred: dict, org_slug: str):
    url = str(cred.get("source") or "")
    parts = urlparse(url)
    if parts.scheme == "s3":
        return _Bucket({**cred, "bucket": parts.netloc, "prefix": cred.get("prefix") or parts.path.strip("/")})
    if parts.scheme == "file":
        return _Folder(url, org_slug)
    raise CredentialError('a focus credential needs {"source": "file:///folder"} or {"source": "s3://bucket/prefix"}')


def extract(ctx: ExtractContext) -> dict[str, Any]:
    source = _source(ctx.credential, ctx.org_slug)
    files = source.files(ctx)
    if not files:
        raise ExtractError("no FOCUS files (.csv, .csv.gz, .parquet) in the credential's source")
    for f in files:
        names = focus_export.header_names(source, f)
        if names and not focus_export.is_focus_export(names):
            raise ExtractError(f"{f.name} is not a FOCUS export: its header has no BilledCost and ChargePeriodStart "
                               "columns (remove it from the source, or export the vendor's FOCUS dataset)")
        if names and not focus_export.names_a_provider(names):
            raise ExtractError(f"{f.name} names no provider: a FOCUS file carries ProviderName (1.0-1.2) or "
                               "ServiceProviderName (1.3)")
    return focus_export.stream_files(ctx, source, files, PROVIDER)
