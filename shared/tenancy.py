"""Who may reach what: the tenancy mode and the rules a tenant's credential keeps in `multi`.

CLOUDACT_TENANCY     single (embedded default: one operator; local folders, loopback endpoints and the
                     operator's own cloud identity are fine) | multi (GCP default; set it to host several
                     orgs on one embedded server)
CLOUDACT_SOURCE_ROOT multi only: file:// sources must resolve inside $CLOUDACT_SOURCE_ROOT/<org_slug>/

In `multi` a tenant names data the platform reads with the platform's own process, so every place a credential
points at is checked twice: when the credential is stored (a clear refusal, nothing stored) and when the
connection is made (DNS and folders can change in between). The checks live here, once; the credential specs,
the HTTP client and the extractors call them.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from shared.config import Settings, settings as current_settings

SINGLE, MULTI = "single", "multi"

# Names that reach the machine's own metadata service or private zones whatever the DNS answers.
_INTERNAL_NAMES = ("localhost", "metadata", "metadata.google.internal", "metadata.goog", "instance-data")
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa", ".goog")
# Datasets of the platform's own project that no tenant source may name: the meta dataset and every org's.
PLATFORM_DATASET = "organizations"
ORG_DATASET_SUFFIX = "_prod"


class TrustViolation(ValueError):
    """A credential names something outside what its tenant owns. The message names the rule and what to do."""


def is_multi(s: Settings | None = None) -> bool:
    return (s or current_settings()).tenancy == MULTI


# --------------------------------------------------------------------------------------------------
# Local folders
# --------------------------------------------------------------------------------------------------
def split_url(value: Any, field: str):
    """`value` split as a URL, or a TrustViolation naming the field (urlsplit raises ValueError on a broken
    IPv6 host such as `https://[::1`)."""
    try:
        parts = urlsplit(str(value))
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise TrustViolation(f"{field} is not a valid URL") from None
    return parts


def _path_of(url: str) -> Path:
    parsed = split_url(url, "source")
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(str(url))


def org_root(org_slug: str, s: Settings | None = None) -> Path:
    """The folder an org's file:// sources must lie in (multi), resolved."""
    s = s or current_settings()
    if s.source_root is None:
        raise TrustViolation(
            "file:// sources are refused in multi tenancy unless the operator sets CLOUDACT_SOURCE_ROOT; "
            "read the provider's own storage (S3, Blob Storage, BigQuery, Object Storage) instead")
    return (s.source_root / org_slug).resolve()


def source_folder(url: str, org_slug: str, s: Settings | None = None) -> Path:
    """A file:// source (or plain path) as a folder path. In multi it must resolve, symlinks followed, inside
    $CLOUDACT_SOURCE_ROOT/<org>/; the resolved path is returned so what is read is what was checked."""
    s = s or current_settings()
    path = _path_of(url)
    if not is_multi(s):
        return path
    root = org_root(org_slug, s)
    if not path.is_absolute():
        path = root / path
    return contained(path, root, what="the source folder")


def contained(path: Path | str, root: Path, what: str = "a file") -> Path:
    """`path` resolved (symlinks followed), refused unless it lies inside `root` (already resolved). Messages
    name paths relative to the org's root, never the host's layout."""
    resolved = Path(os.path.realpath(path))
    if resolved != root and root not in resolved.parents:
        try:
            shown = Path(path).relative_to(root)
        except ValueError:
            shown = Path(Path(path).name)
        raise TrustViolation(
            f"{what} {shown} leaves the organization's source folder (a '..' path or a symlink to elsewhere); "
            "multi tenancy reads only files inside $CLOUDACT_SOURCE_ROOT/<org>/")
    return resolved


def check_file_url(url: str, field: str, org_slug: str, s: Settings | None = None) -> None:
    """At add time: a file:// location a credential names (multi: inside the org's root, and existing)."""
    s = s or current_settings()
    if not is_multi(s):
        return
    try:
        folder = source_folder(url, org_slug, s)
    except TrustViolation as e:
        raise TrustViolation(f"{field}: {e}") from None
    if not folder.is_dir():
        raise TrustViolation(f"{field}: {folder.relative_to(org_root(org_slug, s))} is not a folder under the "
                             "organization's source root; create it there first")


# --------------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------------
def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (tests replace this to stand in for DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def is_public(address: str) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (cloud metadata lives there),
    shared, reserved, documentation, multicast or unspecified; IPv4-mapped IPv6 judged as its IPv4 form."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _internal_name(host: str) -> bool:
    h = host.lower().rstrip(".")
    return h in _INTERNAL_NAMES or h.endswith(_INTERNAL_SUFFIXES)


def public_addresses(host: str, port: int) -> list[str]:
    """The addresses of `host`, refused unless every one of them is public."""
    if _internal_name(host):
        raise TrustViolation(f"{host} is an internal host name; multi tenancy only connects to public endpoints")
    try:
        addresses = [host] if _is_ip(host) else _resolve(host, port)
    except (OSError, UnicodeError):
        raise TrustViolation(f"{host} does not resolve; check the endpoint's host name") from None
    if not addresses:
        raise TrustViolation(f"{host} does not resolve; check the endpoint's host name")
    private = [a for a in addresses if not is_public(a)]
    if private:
        raise TrustViolation(f"{host} resolves to a non-public address ({private[0]}); multi tenancy only "
                             "connects to public endpoints (no loopback, private, link-local or metadata addresses)")
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_endpoint(url: Any, field: str, s: Settings | None = None) -> str:
    """An endpoint a credential names. Single: an http(s) URL. Multi: https, no user info, no query or fragment
    (they would let a tenant steer the request), and a host that resolves only to public addresses."""
    text = str(url).strip()
    parts = split_url(text, field)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TrustViolation(f"{field} must be an http(s) URL")
    if not is_multi(s):
        return text
    if parts.scheme != "https":
        raise TrustViolation(f"{field} must use https in multi tenancy")
    if parts.username is not None or parts.password is not None:
        raise TrustViolation(f"{field} must not carry a user name or password; credentials go in their own fields")
    if "?" in text or "#" in text:
        raise TrustViolation(f"{field} must not have a query or fragment; give the provider's base URL only")
    host = parts.hostname.strip("[]")
    try:
        public_addresses(host, parts.port or 443)
    except TrustViolation as e:
        raise TrustViolation(f"{field}: {e}") from None
    return text


def check_connect(url: str, s: Settings | None = None) -> None:
    """Just before a connection by a client this module cannot pin (SDKs): the URL's host is public (multi)."""
    if not is_multi(s):
        return
    parts = split_url(url, "the endpoint")
    if parts.hostname:
        public_addresses(parts.hostname.strip("[]"), parts.port or (443 if parts.scheme == "https" else 80))


class _PublicOnlyBackend:
    """httpcore's network backend, connecting only to the public addresses a host resolves to *now*, and to the
    very address that was checked (no second lookup an attacker's DNS could answer differently). TLS still
    verifies the host name: httpcore passes it as server_hostname."""

    def __init__(self) -> None:
        import httpcore

        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None):
        address = public_addresses(host, port)[0]
        return self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    def connect_unix_socket(self, *args, **kwargs):
        raise TrustViolation("unix sockets are refused in multi tenancy")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PublicOnlyTransport(httpx.HTTPTransport):
    """An httpx transport for tenant-named endpoints in multi tenancy: public addresses only, checked at each
    new connection, no proxy from the environment (a proxy would resolve the host where we cannot check it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trust_env=False, **kwargs)
        # httpx exposes no network-backend option; httpcore's pool takes one, and a test pins that it is used.
        self._pool._network_backend = _PublicOnlyBackend()
        # A TrustViolation from the backend is no httpcore error, so httpx passes it through unchanged.


def transport(s: Settings | None = None) -> httpx.BaseTransport | None:
    """The transport for a client that talks to tenant-named endpoints: guarded in multi, httpx's own otherwise."""
    return PublicOnlyTransport() if is_multi(s) else None


# --------------------------------------------------------------------------------------------------
# The platform's own data
# --------------------------------------------------------------------------------------------------
def check_bigquery_source(cred: dict, s: Settings | None = None) -> None:
    """Multi tenancy: a tenant's BigQuery source is not one of the platform's datasets (the meta dataset, any
    org's `*_prod`), and its queries do not run in the platform's project. Checked when the credential is added
    and again by the extractor."""
    s = s or current_settings()
    if not is_multi(s):
        return
    project, dataset, platform = cred.get("project"), cred.get("dataset"), s.project
    for field in ("project", "job_project"):
        if str(cred.get(field) or "").isdigit():  # a project number could name the platform's project unseen
            raise TrustViolation(f"{field} must be the project's id, not its number")
    if dataset:
        ds = str(dataset).strip().strip("`").lower()
        same_project = not project or not platform or str(project).strip().lower() == platform.lower()
        if same_project and (ds == PLATFORM_DATASET or ds.endswith(ORG_DATASET_SUFFIX)):
            raise TrustViolation(
                f"dataset {dataset!r} belongs to the platform (its meta dataset or an organization's dataset); "
                "name your own billing export table")
    job_project = cred.get("job_project") or project
    if platform and job_project and str(job_project).lower() == platform.lower():
        raise TrustViolation(
            f"job_project {job_project!r} is the platform's own project; queries run in a project of yours "
            "(set job_project to one where your identity has roles/bigquery.jobUser)")
