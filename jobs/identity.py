"""Whose identity a tenant's source is read with, and where the SDK clients may connect: one place per cloud.

In `multi` tenancy (shared/tenancy.py) a credential carries its own identity and the platform's own is never a
fallback: boto3's default chain, DefaultAzureCredential and Google's application-default credentials would read
a tenant's source with the platform's permissions (the cross-tenant read of issue 10). Where the platform's
identity is used on purpose (assuming an AWS role, impersonating a GCP service account) it only ever mints the
tenant-granted identity, and a rule binds that grant to the tenant (AWS: the per-org ExternalId; GCP: see
`gcp_credentials`). SDK clients cannot take `tenancy.transport()`, so each gets a hook that runs
`tenancy.check_connect` on every request it sends (retries and redirects included), and a tenant endpoint
whose DNS changed to a private address after it was stored is refused before anything is sent. The hook
checks the name just before the SDK resolves it again: pinning the checked address, as PublicOnlyTransport
does for httpx, is not possible through these SDKs.

In `single` tenancy (one operator) everything here behaves as before: the operator's own identity and
loopback endpoints are fine.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

from jobs.base import CredentialError, ExtractError
from shared import tenancy
from shared.config import Settings
from shared.config import settings as current_settings

_FIX = "update it with `cloudact credentials rotate` (or add a new one)"


# --------------------------------------------------------------------------------------------------
# AWS
# --------------------------------------------------------------------------------------------------
AWS_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
# A tenant's botocore session reads every setting from its default: no AWS_* variable, profile or ~/.aws file
# (those belong to the platform: a profile could name the platform's role, a config file its endpoints).
_ISOLATED_DEFAULTS = {"config_file": os.devnull, "credentials_file": os.devnull,
                      "ignore_configured_endpoint_urls": True}


def _check_send(request, **_: Any) -> None:
    """botocore `before-send`: the request's host is public (multi), checked for every attempt."""
    tenancy.check_connect(request.url)


def _isolated_session(region: str, keys: dict[str, str]):
    """A boto3 session holding exactly `keys`: no credential chain behind them, no environment or config file."""
    import boto3
    import botocore.session
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES
    from botocore.credentials import CredentialResolver

    session_vars = {name: (None, None, _ISOLATED_DEFAULTS.get(name, default), convert)
                    for name, (_, _, default, convert) in BOTOCORE_DEFAUT_SESSION_VARIABLES.items()}
    core = botocore.session.Session(session_vars=session_vars)
    core.register_component("credential_provider", CredentialResolver(providers=[]))
    core.set_credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"], keys.get("aws_session_token"))
    core.register("before-send", _check_send)
    return boto3.session.Session(botocore_session=core, region_name=region)


def _assume_role(sts, cred: dict, session_name: str) -> dict[str, str]:
    args = {"RoleArn": cred["role_arn"], "RoleSessionName": session_name}
    if cred.get("external_id"):
        args["ExternalId"] = str(cred["external_id"])
    try:
        c = sts.assume_role(**args)["Credentials"]
    except tenancy.TrustViolation:
        raise
    except Exception as e:  # noqa: BLE001 - botocore raises many kinds
        err = getattr(e, "response", {}).get("Error", {}) if hasattr(e, "response") else {}
        why = f"{err.get('Code')}: {err.get('Message')}" if err else f"{type(e).__name__}: {e}"
        raise CredentialError(f"could not assume role {cred['role_arn']} ({why}). The role's trust policy must "
                              "allow the caller, with the sts:ExternalId condition when one is set.") from None
    return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"]}


def _aws_identity(cred: dict) -> dict[str, str]:
    """Multi: the credential's keys (maybe none, with a role), refused unless it carries an identity."""
    keys = {k: str(cred[k]) for k in AWS_KEYS if cred.get(k)}
    if bool(keys.get("aws_access_key_id")) != bool(keys.get("aws_secret_access_key")):
        raise CredentialError("the AWS credential needs aws_access_key_id and aws_secret_access_key together; "
                              + _FIX)
    if not keys.get("aws_access_key_id") and not cred.get("role_arn"):
        raise CredentialError(
            "multi tenancy reads AWS only with the credential's own identity, never the platform's: give "
            "aws_access_key_id + aws_secret_access_key, or a role_arn that the platform assumes with your "
            f"organization's ExternalId; {_FIX}")
    if cred.get("role_arn") and not cred.get("external_id"):
        raise CredentialError(
            "multi tenancy assumes a role_arn only with your organization's ExternalId (shown when the credential "
            "was created); put it in the role's trust policy as the sts:ExternalId condition and "
            "re-add the credential")
    return keys


def aws_session(cred: dict, region: str, session_name: str, s: Settings | None = None):
    """The boto3 session a tenant's AWS source is read with.

    Single: boto3's own session (keys when given, else the default chain), the role assumed at the
    credential's endpoint_url as before. Multi: the credential's keys, or its role assumed with the per-org
    ExternalId (the credential store writes it into `external_id`); the platform's own identity makes the
    AssumeRole call when the credential has no keys, which is what the ExternalId guards (AWS's confused
    deputy). STS is then AWS's own endpoint (or the one the operator configures for the platform's identity,
    e.g. AWS_ENDPOINT_URL_STS), never the tenant's endpoint_url. Every session a tenant's data is read with
    is isolated (`_isolated_session`) and checks each request's host (`_check_send`).
    """
    try:
        import boto3
    except ImportError as e:  # pragma: no cover
        raise ExtractError("reading from AWS needs boto3 (pip install boto3)") from e
    s = s or current_settings()
    if not tenancy.is_multi(s):
        keys = {k: cred[k] for k in AWS_KEYS if cred.get(k)}
        session = boto3.session.Session(region_name=region, **keys)
        if not cred.get("role_arn"):
            return session
        assumed = _assume_role(session.client("sts", endpoint_url=cred.get("endpoint_url")), cred, session_name)
        return boto3.session.Session(region_name=region, **assumed)
    keys = _aws_identity(cred)
    if cred.get("endpoint_url"):
        tenancy.check_endpoint(cred["endpoint_url"], "endpoint_url", s)
    if not cred.get("role_arn"):
        return _isolated_session(region, keys)
    caller = _isolated_session(region, keys) if keys else boto3.session.Session(region_name=region)
    return _isolated_session(region, _assume_role(caller.client("sts", region_name=region), cred, session_name))


# --------------------------------------------------------------------------------------------------
# Azure
# --------------------------------------------------------------------------------------------------
class _StaticToken:
    """A TokenCredential around an access token the credential holds (its expiry is the service's to judge)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 300)


def azure_identity(cred: dict):
    """The Entra ID identity an Azure credential carries, else None: a client secret, a certificate
    (`client_certificate`: PEM with the private key, `client_certificate_password` optional) or an access token."""
    if cred.get("client_secret") or cred.get("client_certificate"):
        missing = [k for k in ("tenant_id", "client_id") if not cred.get(k)]
        if missing:
            kind = "client_secret" if cred.get("client_secret") else "client_certificate"
            raise CredentialError(f"Azure credential with {kind} also needs {', '.join(missing)}")
        try:
            from azure.identity import CertificateCredential, ClientSecretCredential
        except ImportError as e:  # pragma: no cover
            raise ExtractError("Azure AD sign-in needs azure-identity (pip install azure-identity)") from e
        if cred.get("client_secret"):
            return ClientSecretCredential(cred["tenant_id"], cred["client_id"], cred["client_secret"])
        pem = cred["client_certificate"]
        password = cred.get("client_certificate_password")
        try:
            return CertificateCredential(cred["tenant_id"], cred["client_id"],
                                         certificate_data=pem.encode() if isinstance(pem, str) else bytes(pem),
                                         password=password.encode() if isinstance(password, str) else password)
        except (ValueError, TypeError) as e:
            raise CredentialError(f"client_certificate is not a PEM certificate with its private key "
                                  f"({type(e).__name__}); {_FIX}") from None
    if cred.get("access_token"):
        return _StaticToken(str(cred["access_token"]))
    return None


def no_azure_identity() -> CredentialError:
    return CredentialError(
        "multi tenancy reads Azure only with the credential's own identity, never the platform's: give "
        "tenant_id + client_id with client_secret or client_certificate (PEM), an access_token, or the storage "
        f"account's account_key / connection_string; {_FIX}")


def azure_request_hook(pipeline_request) -> None:
    """azure-core `raw_request_hook`: the request's host is public (multi), for every try and redirect."""
    tenancy.check_connect(pipeline_request.http_request.url)


# --------------------------------------------------------------------------------------------------
# GCP
# --------------------------------------------------------------------------------------------------
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_SA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,61}[a-z0-9]@[a-z0-9][a-z0-9.-]*\.iam\.gserviceaccount\.com$")


def source_reader(org_slug: str, s: Settings | None = None) -> str | None:
    """The platform's source-reader service account (CLOUDACT_SOURCE_READER_SA; `{org}` becomes the org slug)."""
    reader = (s or current_settings()).source_reader_sa
    return reader.replace("{org}", org_slug) if reader else None


def _impersonated(cred: dict, scopes: list[str], org_slug: str, s: Settings):
    target = str(cred["impersonate_service_account"]).strip().lower()
    if not _SA_EMAIL.match(target):
        raise CredentialError("impersonate_service_account must be a service account e-mail "
                              "(name@project.iam.gserviceaccount.com)")
    reader = source_reader(org_slug, s)
    if tenancy.is_multi(s):
        if not reader:
            raise CredentialError("impersonating a service account needs the platform's source reader, which the "
                                  "operator sets in CLOUDACT_SOURCE_READER_SA; use a service_account_json key until "
                                  "then")
        if target == reader.lower() or (s.project and target.endswith(f"@{s.project.lower()}.iam.gserviceaccount.com")):
            raise tenancy.TrustViolation(
                f"impersonate_service_account {target} belongs to the platform's own project; name a service "
                "account of your own project that grants roles/iam.serviceAccountTokenCreator to the source reader")
    try:
        import google.auth
        from google.auth import impersonated_credentials
    except ImportError as e:  # pragma: no cover - google-auth ships with the GCP extras
        raise ExtractError("impersonation needs google-auth (pip install google-auth)") from e
    # The platform's own identity, on purpose: it can only mint tokens for the source reader.
    base, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    if reader:
        base = impersonated_credentials.Credentials(source_credentials=base, target_principal=reader,
                                                    target_scopes=[CLOUD_PLATFORM])
    return impersonated_credentials.Credentials(source_credentials=base, target_principal=target,
                                                target_scopes=list(scopes))


def gcp_credentials(cred: dict, scopes: list[str], org_slug: str, s: Settings | None = None):
    """The google.auth credentials a tenant's GCP source is read with: its `service_account_json` key, its
    `access_token`, or its service account named in `impersonate_service_account`. None only in single
    tenancy, where the caller may use the operator's application-default credentials.

    Impersonation goes platform jobs SA -> source reader (CLOUDACT_SOURCE_READER_SA, which the jobs' SA may only
    mint tokens for) -> the tenant's SA, which the tenant lets the reader impersonate by granting it
    roles/iam.serviceAccountTokenCreator. GCP has no ExternalId, so this is a confused deputy: with one reader
    shared by every org, an org that learns the e-mail of an SA another org granted to the reader could name it
    and read that org's data. What stands against it here: the platform's own project's SAs are refused, and the
    mitigation chosen is one reader per org: CLOUDACT_SOURCE_READER_SA may hold `{org}`
    (`cloudact-src-{org}@<platform>.iam.gserviceaccount.com`), replaced by the org slug, so a tenant grants its own
    org's reader and another org's runs, impersonating through their own reader, are refused by IAM. With a
    reader without `{org}` the risk remains, reduced by the credential store keeping one SA to one org
    (one source, counted once); operators hosting untrusted tenants should create the per-org readers.
    """
    s = s or current_settings()
    if cred.get("service_account_json"):
        return service_account_credentials(cred["service_account_json"], scopes)
    if cred.get("access_token"):
        from google.oauth2.credentials import Credentials

        return Credentials(token=str(cred["access_token"]))
    if cred.get("impersonate_service_account"):
        return _impersonated(cred, scopes, org_slug, s)
    if tenancy.is_multi(s):
        raise CredentialError(
            "multi tenancy reads GCP only with the credential's own identity, never the platform's: give a "
            "service_account_json key, an access_token, or impersonate_service_account (your service account, "
            f"granting roles/iam.serviceAccountTokenCreator to the platform's source reader); {_FIX}")
    return None


def service_account_credentials(raw: Any, scopes: list[str]):
    """service_account.Credentials from a key given as JSON text or an object."""
    import json

    from google.oauth2 import service_account

    try:
        info = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return service_account.Credentials.from_service_account_info(info, scopes=scopes)
    except (ValueError, KeyError, TypeError) as e:
        raise CredentialError(f"service_account_json is not a valid service account key: {e}") from None


# --------------------------------------------------------------------------------------------------
# requests-based SDKs (OCI)
# --------------------------------------------------------------------------------------------------
class _CheckedAdapter:
    """A requests transport adapter that checks the host (multi) before its inner adapter sends."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def send(self, request, **kwargs):
        tenancy.check_connect(request.url)
        return self.inner.send(request, **kwargs)

    def close(self) -> None:
        self.inner.close()


def guard_requests_session(session) -> None:
    """Every request the `requests` session sends (redirect hops included) goes to a public host (multi)."""
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, _CheckedAdapter):
            session.mount(prefix, _CheckedAdapter(adapter))
