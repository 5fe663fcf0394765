"""One declaration per credential kind: its fields, which are secret, which go together, which name the source.

The CLI, the HTTP API and the credential store validate through `validate`, so a credential is refused at
add time, with the field named, rather than failing at run time; `secret_fields` tells what is never shown
and `source_keys` which billing sources a credential reads (one source is counted once per org).
In multi tenancy (`shared.tenancy`) the same call also applies the trust rules: endpoints public https,
file:// inside the org's root, and an identity of the tenant's own in every credential that reaches a cloud.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared import tenancy
from shared.config import Settings, settings as current_settings


class CredentialInvalid(ValueError):
    """A credential refused before it is stored; the message names the field and what to do."""


@dataclass(frozen=True)
class Spec:
    kind: str
    text: tuple[str, ...]  # plain strings (ids, names, regions)
    secret: tuple[str, ...] = ()  # secret material: never shown, scrubbed from errors
    lists: tuple[str, ...] = ()  # lists of strings
    flags: tuple[str, ...] = ()  # booleans
    numbers: tuple[str, ...] = ()  # non-negative integers
    objects: tuple[str, ...] = ()  # a JSON object or its text (a service-account key)
    endpoints: tuple[str, ...] = ()  # URLs the platform connects to
    locations: tuple[str, ...] = ("source",)  # file:// (or gs://, s3://, https://) folders of provider files
    access: tuple[tuple[str, ...], ...] = ()  # alternatives: one of them complete
    together: tuple[tuple[str, ...], ...] = ()  # all of them or none
    conflicts: tuple[tuple[str, str], ...] = ()  # never both
    # Multi tenancy: a credential that reaches the provider (anything but local files) carries one of these.
    identity: tuple[tuple[str, ...], ...] = ()
    platform_set: tuple[str, ...] = ()  # fields the platform sets in multi tenancy, never the tenant
    sources: Callable[[dict], list[str]] = field(default=lambda doc: [])  # what the credential reads
    shape: Callable[[dict], None] = field(default=lambda doc: None)  # obviously wrong keys

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.text + self.secret + self.lists + self.flags + self.numbers + self.objects
                         + self.endpoints + self.locations)

    def remote(self, doc: dict) -> bool:
        """Does the credential reach the provider's services (anything but local folders)?"""
        for name, value in doc.items():
            if name in self.locations:
                if urlsplit(str(value)).scheme != "file":
                    return True
            elif name not in _LOCAL_OPTIONS:
                return True
        return False


_LOCAL_OPTIONS = frozenset({"dataset", "focus", "report", "late_days"})  # options of a folder source too


# --------------------------------------------------------------------------------------------------
# Source identities: text keys, compared per org across credentials of the same kind
# --------------------------------------------------------------------------------------------------
def _folder(doc: dict, fieldname: str = "source") -> list[str]:
    value = doc.get(fieldname)
    if not value:
        return []
    parts = urlsplit(str(value))
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme == "file" else str(value))
        return [f"folder:{path.resolve()}"]
    return [f"{parts.scheme}:{parts.netloc.lower()}{parts.path.rstrip('/')}"]


def _prefix(value: Any) -> str:
    return str(value or "").strip("/")


def _aws_sources(doc: dict) -> list[str]:
    keys = _folder(doc)
    if doc.get("bucket"):
        prefix = _prefix(doc.get("prefix"))
        keys.append(f"s3:{doc['bucket']}" + (f"/{prefix}" if prefix else ""))
    return keys


def _gcp_sources(doc: dict) -> list[str]:
    keys = _folder(doc)
    if doc.get("table"):
        keys.append(f"bigquery:{doc.get('project') or ''}.{doc.get('dataset') or ''}.{doc['table']}".lower())
    keys += [f"monitoring:{p}".lower() for p in doc.get("monitoring_projects") or []]
    return keys


def _azure_sources(doc: dict) -> list[str]:
    keys = _folder(doc)
    if doc.get("account_url") and doc.get("container"):
        host = urlsplit(str(doc["account_url"])).netloc.lower()
        keys.append(f"blob:{host}/{doc['container']}/{_prefix(doc.get('prefix'))}")
    if doc.get("cost_scope"):
        keys.append(f"cost_scope:{str(doc['cost_scope']).rstrip('/').lower()}")
    keys += [f"resource:{str(r).rstrip('/').lower()}" for r in doc.get("resource_ids") or []]
    return keys


def _oci_sources(doc: dict) -> list[str]:
    keys = _folder(doc)
    if doc.get("tenancy_ocid"):
        keys.append(f"oci:{doc['tenancy_ocid']}:{doc.get('report') or 'cost'}")
    return keys


SECRET_SOURCE = "secret:"  # a source known only by its secret: rotating the secret may change it


def _admin_key_source(doc: dict) -> list[str]:
    # The same admin key twice reads the same provider organization; a hash, so the key never leaves the vault.
    key = doc.get("admin_key")
    return [f"{SECRET_SOURCE}admin_key:{hashlib.sha256(str(key).encode()).hexdigest()}"] if key else []


# --------------------------------------------------------------------------------------------------
# Obviously wrong keys
# --------------------------------------------------------------------------------------------------
def _openai_shape(doc: dict) -> None:
    key = str(doc.get("admin_key") or "")
    if key.startswith(("sk-proj-", "sk-svcacct-")) or (key.startswith("sk-") and not key.startswith("sk-admin-")
                                                       and len(key) > 40):
        raise CredentialInvalid("admin_key looks like an OpenAI project or user API key; the usage and costs APIs "
                                "need an admin key (sk-admin-..., Settings > Organization > Admin keys)")


def _anthropic_shape(doc: dict) -> None:
    key = str(doc.get("admin_key") or "")
    if key.startswith("sk-ant-api"):
        raise CredentialInvalid("admin_key looks like an Anthropic API key (sk-ant-api...); the usage and cost "
                                "report needs an Admin API key (sk-ant-admin...)")


def _aws_shape(doc: dict) -> None:
    key_id = str(doc.get("aws_access_key_id") or "")
    if key_id and (len(key_id) > 128 or re.search(r"[/+=]", key_id)):
        raise CredentialInvalid("aws_access_key_id looks like a secret access key; put the key id (AKIA...) in "
                                "aws_access_key_id and the secret in aws_secret_access_key")
    if doc.get("account_id") and not re.fullmatch(r"\d{12}", str(doc["account_id"])):
        raise CredentialInvalid("account_id must be the 12-digit AWS account id the Bedrock usage runs in")
    arn = doc.get("role_arn")
    if arn and not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", str(arn)):
        raise CredentialInvalid("role_arn must be an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>")


def _focus_shape(doc: dict) -> None:
    scheme = urlsplit(str(doc.get("source") or "")).scheme
    if scheme not in ("file", "s3"):
        raise CredentialInvalid("source must be a file:// folder or an s3://bucket/prefix of FOCUS files")
    _aws_shape(doc)


# Names as BigQuery allows them, loosely; what matters is that no field can leave the `quoted` table reference.
_BIGQUERY_NAMES = (("project", re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$")),
                   ("dataset", re.compile(r"^\w{1,1024}$")),
                   ("table", re.compile(r"^[\w\- $*]{1,1024}$")),
                   ("job_project", re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$")))


def check_bigquery_names(doc: dict) -> None:
    """The project, dataset and table a GCP credential names are BigQuery names (both tenancy modes)."""
    for name, pattern in _BIGQUERY_NAMES:
        if doc.get(name) is not None and not pattern.match(str(doc[name])):
            raise CredentialInvalid(f"{name} {str(doc[name])[:80]!r} is not a BigQuery {name.replace('_', ' ')} name")


def _gcp_shape(doc: dict) -> None:
    check_bigquery_names(doc)
    key = doc.get("service_account_json")
    if key is None:
        return
    try:
        info = json.loads(key) if isinstance(key, str) else key
    except ValueError:
        raise CredentialInvalid("service_account_json is not JSON; paste the key file the console downloads") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise CredentialInvalid(f"service_account_json is not a service-account key (type {kind!r}); create a key "
                                "for a service account (IAM > Service accounts > Keys)")
    missing = [k for k in ("client_email", "private_key") if not info.get(k)]
    if missing:
        raise CredentialInvalid(f"service_account_json is missing {', '.join(missing)}")


def _oci_shape(doc: dict) -> None:
    pem = doc.get("private_key")
    if pem and "-----BEGIN" not in str(pem):
        raise CredentialInvalid("private_key must be the API signing key in PEM form (-----BEGIN ... PRIVATE KEY-----)")


# --------------------------------------------------------------------------------------------------
# The kinds
# --------------------------------------------------------------------------------------------------
SPECS: dict[str, Spec] = {s.kind: s for s in (
    Spec("openai", text=(), secret=("admin_key",), endpoints=("base_url",), locations=(),
         access=(("admin_key",),), sources=_admin_key_source, shape=_openai_shape),
    Spec("anthropic", text=(), secret=("admin_key",), endpoints=("base_url",), locations=(),
         access=(("admin_key",),), sources=_admin_key_source, shape=_anthropic_shape),
    Spec("deepseek", text=(), secret=("api_key",), endpoints=("base_url",), locations=("usage_csv_dir",),
         access=(("usage_csv_dir",),), sources=lambda doc: _folder(doc, "usage_csv_dir")),
    Spec("aws", text=("bucket", "prefix", "region", "aws_access_key_id", "role_arn", "external_id", "account_id"),
         secret=("aws_secret_access_key", "aws_session_token"), lists=("regions", "model_ids"),
         endpoints=("endpoint_url",),
         access=(("source",), ("bucket",), ("region",), ("regions",)),
         together=(("aws_access_key_id", "aws_secret_access_key"),),
         conflicts=(("source", "bucket"),),
         identity=(("aws_access_key_id", "aws_secret_access_key"), ("role_arn",)),
         platform_set=("external_id",), sources=_aws_sources, shape=_aws_shape),
    Spec("gcp", text=("project", "dataset", "table", "job_project", "location", "impersonate_service_account"),
         secret=("access_token",), objects=("service_account_json",), lists=("monitoring_projects", "projects"),
         flags=("focus",), numbers=("maximum_bytes_billed", "partition_lookback_days"),
         endpoints=("base_url", "storage_url"),
         access=(("source",), ("service_account_json",), ("access_token",), ("project",), ("monitoring_projects",),
                 ("impersonate_service_account",)),
         together=(("dataset", "table"),),
         conflicts=(("source", "table"),),
         identity=(("service_account_json",), ("access_token",), ("impersonate_service_account",)),
         sources=_gcp_sources, shape=_gcp_shape),
    Spec("azure", text=("tenant_id", "client_id", "container", "prefix", "cost_scope", "dataset"),
         secret=("client_secret", "client_certificate", "client_certificate_password", "access_token", "connection_string",
                 "account_key"),
         lists=("resource_ids",), endpoints=("account_url", "base_url"),
         access=(("source",), ("account_url",), ("connection_string",), ("resource_ids",), ("cost_scope",)),
         together=(("tenant_id", "client_id"),),
         conflicts=(("source", "account_url"), ("source", "connection_string"), ("account_url", "connection_string"),
                    ("client_secret", "client_certificate")),
         identity=(("tenant_id", "client_id", "client_secret"), ("tenant_id", "client_id", "client_certificate"),
                   ("access_token",), ("connection_string",), ("account_url", "account_key")),
         sources=_azure_sources),
    # A vendor's FOCUS files (focus/file/import): a folder, or an S3 (or S3-compatible) bucket read as AWS is.
    Spec("focus", text=("prefix", "region", "aws_access_key_id", "role_arn", "external_id"),
         secret=("aws_secret_access_key", "aws_session_token"), endpoints=("endpoint_url",),
         access=(("source",),),
         together=(("aws_access_key_id", "aws_secret_access_key"),),
         identity=(("aws_access_key_id", "aws_secret_access_key"), ("role_arn",)),
         platform_set=("external_id",), sources=_folder, shape=_focus_shape),
    Spec("oci", text=("tenancy_ocid", "user_ocid", "fingerprint", "region", "report"),
         secret=("private_key", "passphrase"), numbers=("late_days",), endpoints=("endpoint",),
         access=(("source",), ("tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region")),
         together=(("tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region"),),
         conflicts=(("source", "tenancy_ocid"),),
         identity=(("tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region"),),
         sources=_oci_sources, shape=_oci_shape),
)}


def spec(kind: str) -> Spec:
    try:
        return SPECS[kind]
    except KeyError:
        raise CredentialInvalid(f"unknown credential kind {kind!r}; one of: {', '.join(sorted(SPECS))}") from None


def secret_fields(kind: str) -> frozenset[str]:
    return frozenset(spec(kind).secret + spec(kind).objects)


def secret_values(kind: str, doc: dict) -> list[str]:
    """The secret material of a loaded credential as text (a key object's private key and whole text too), for
    scrubbing whatever a run reports: run errors and warnings are read by the tenant and its users."""
    sp = SPECS.get(kind)
    if sp is None:
        return []
    values = []
    for name in sp.secret + sp.objects:
        value = doc.get(name)
        if isinstance(value, str):
            try:
                value = json.loads(value) if name in sp.objects else value
            except ValueError:
                pass
        if isinstance(value, dict):
            values += [str(v) for k, v in value.items() if k in ("private_key", "private_key_id") and v]
            value = json.dumps(value)
        if value:
            values.append(str(value))
    return [v for v in values if len(v) >= 6]


def source_keys(kind: str, doc: dict) -> list[str]:
    """The billing sources `doc` reads, as comparable text (hashed before they are stored)."""
    return sorted(set(spec(kind).sources(doc)))


def same_source(kind: str, old: dict, new: dict) -> bool:
    """Does `new` read what `old` read (sources known only by a secret aside: rotation replaces those)?"""
    def named(doc: dict) -> list[str]:
        return [k for k in source_keys(kind, doc) if not k.startswith(SECRET_SOURCE)]
    return named(old) == named(new)


def _check_types(sp: Spec, doc: dict) -> None:
    for name, value in doc.items():
        if value is None:
            continue
        if name in sp.lists:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise CredentialInvalid(f"{name} must be a list of strings")
        elif name in sp.flags:
            if not isinstance(value, bool):
                raise CredentialInvalid(f"{name} must be true or false")
        elif name in sp.numbers:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CredentialInvalid(f"{name} must be a whole number >= 0")
        elif name in sp.objects:
            if not isinstance(value, (str, dict)):
                raise CredentialInvalid(f"{name} must be a JSON object or its text")
        elif not isinstance(value, str) or len(value) > 20_000 or "\x00" in value:
            raise CredentialInvalid(f"{name} must be a string (at most 20,000 characters, no NUL)")


def _check_location(name: str, value: str, org_slug: str, s: Settings) -> None:
    scheme = tenancy.split_url(value, name).scheme
    if scheme not in ("file", "gs", "s3", "https"):
        raise CredentialInvalid(f"{name} must be a file://, gs://, s3:// or https:// location")
    if scheme == "file":
        tenancy.check_file_url(value, name, org_slug, s)
    elif scheme == "https":
        tenancy.check_endpoint(value, name, s)


def _check_connection_string(value: str, s: Settings) -> None:
    """Multi tenancy: the storage endpoints a connection string names follow the endpoint rules."""
    if not tenancy.is_multi(s):
        return
    parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        raise tenancy.TrustViolation("connection_string points at the local storage emulator; multi tenancy only "
                                     "connects to public endpoints")
    if parts.get("DefaultEndpointsProtocol", "https").lower() != "https":
        raise tenancy.TrustViolation("connection_string must use https in multi tenancy")
    if parts.get("BlobEndpoint"):
        tenancy.check_endpoint(parts["BlobEndpoint"], "connection_string BlobEndpoint", s)


def validate(kind: str, doc: Any, org_slug: str, s: Settings | None = None) -> dict:
    """The credential document checked against its kind's spec (and, in multi tenancy, the trust rules);
    CredentialInvalid names what is wrong. Returns the document without empty fields."""
    s = s or current_settings()
    sp = spec(kind)
    if not isinstance(doc, dict):
        raise CredentialInvalid("credential must be a JSON object")
    unknown = sorted(set(doc) - sp.fields)
    if unknown:
        raise CredentialInvalid(f"unknown field(s) for a {kind} credential: {', '.join(unknown)}; "
                                f"allowed: {', '.join(sorted(sp.fields))}")
    doc = {k: v for k, v in doc.items() if v not in (None, "", [])}
    _check_types(sp, doc)
    if sp.access and not any(all(doc.get(f) for f in option) for option in sp.access):
        if len(sp.access) == 1:
            missing = [f for f in sp.access[0] if not doc.get(f)]
            raise CredentialInvalid(f"credential JSON is missing {', '.join(missing)}")
        raise CredentialInvalid(f"{_article(kind)} {kind} credential needs one of: "
                                + " | ".join(" + ".join(option) for option in sp.access))
    for group in sp.together:
        given = [f for f in group if doc.get(f)]
        if given and len(given) < len(group):
            missing = [f for f in group if not doc.get(f)]
            raise CredentialInvalid(f"{' and '.join(given)} also need{'s' if len(given) == 1 else ''} "
                                    f"{', '.join(missing)}")
    for a, b in sp.conflicts:
        if doc.get(a) and doc.get(b):
            raise CredentialInvalid(f"give either {a} or {b}, not both: one credential reads one source")
    sp.shape(doc)
    try:
        for name in sp.endpoints:
            if doc.get(name):
                tenancy.check_endpoint(doc[name], name, s)
        for name in sp.locations:
            if doc.get(name):
                _check_location(name, str(doc[name]), org_slug, s)
        if doc.get("connection_string"):
            _check_connection_string(str(doc["connection_string"]), s)
        if tenancy.is_multi(s):
            _check_multi(sp, doc, s)
    except tenancy.TrustViolation as e:
        raise CredentialInvalid(str(e)) from None
    return doc


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeio" else "a"


def _check_multi(sp: Spec, doc: dict, s: Settings) -> None:
    for name in sp.platform_set:
        if doc.get(name):
            raise tenancy.TrustViolation(
                f"{name} is set by the platform in multi tenancy (one per organization, shown when the credential "
                "is created); leave it out and put the platform's value in your role's trust policy")
    if sp.identity and sp.remote(doc) and not any(all(doc.get(f) for f in option) for option in sp.identity):
        raise tenancy.TrustViolation(
            f"{_article(sp.kind)} {sp.kind} credential must carry its own identity in multi tenancy "
            "(the platform's is never used): "
            + " | ".join(" + ".join(option) for option in sp.identity))
    if sp.kind == "gcp" and doc.get("table"):
        tenancy.check_bigquery_source(doc, s)
