"""Daily token counts from Google Cloud Monitoring, shared by the Gemini and Vertex AI extractors.

Credential (`cloudact credentials add ORG gcp --from-json FILE`):
    {"project": "my-project",                 # or "projects": [...]; else the service account's project_id
     "monitoring_projects": [...],            # wins over project/projects (a gcp credential shared with the
                                              # billing export, whose "project" names the export's project)
     "service_account_json": {...} | "...",   # real use: a key with roles/monitoring.viewer
     "access_token": "ya29...",               # alternative to the service account (tests, short jobs)
     "impersonate_service_account": "reader@my-project.iam.gserviceaccount.com",  # alternative: the platform
                                              # impersonates it (jobs/identity.py: gcp_credentials)
     "base_url": "https://monitoring.googleapis.com"}   # optional

Why REST over httpx and not the `google-cloud-monitoring` gRPC SDK: every extractor then takes one
HTTP path (`shared.http.ApiClient`, with its bounded retries, Retry-After handling and secret
scrubbing), the whole path is testable over real HTTP against a loopback stub, and the job image does
not carry a heavy gRPC SDK. Only minting a token from a service-account key or by impersonation needs
`google-auth`, and it is imported lazily, only when that credential form is used.

The query is `GET /v3/projects/{project}/timeSeries` with `filter=metric.type="..."`, the interval
[start 00:00Z, end+1 00:00Z), `aggregation.alignmentPeriod=86400s`, `perSeriesAligner=ALIGN_SUM`,
`crossSeriesReducer=REDUCE_SUM` and `groupByFields`, paged with `pageToken`/`nextPageToken`. Points
then cover whole UTC days; `int64Value` arrives as a JSON string. A metric with no data answers `{}`.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Callable, Iterable, Iterator

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai.common import MAX_PAGES, USAGE_TABLE, DayWindow, to_batches, usage_row
from jobs.identity import gcp_credentials, service_account_credentials
from shared.http import ApiClient, retry_settings

DEFAULT_BASE_URL = "https://monitoring.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/monitoring.read"
DAY_SECONDS = 86400
PAGE_SIZE = 100_000  # points per page; the API's own maximum
_PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$")  # ids, numbers and domain:project


def _rfc3339(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _service_account_info(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            info = json.loads(raw)
        except ValueError:
            info = None
        if isinstance(info, dict):
            return info
    raise CredentialError("The gcp credential's service_account_json is not a service-account key JSON object.")


def projects_of(ctx: ExtractContext) -> list[str]:
    """The project ids to read: `projects`, `project`, else the service account's own project."""
    cred = ctx.credential or {}
    projects = (cred.get("monitoring_projects") or cred.get("projects")
                or ([cred["project"]] if cred.get("project") else []))
    if not projects and cred.get("service_account_json"):
        pid = _service_account_info(cred["service_account_json"]).get("project_id")
        projects = [pid] if pid else []
    if isinstance(projects, str):
        projects = [projects]
    if not projects or not all(isinstance(p, str) and p.strip() for p in projects):
        raise CredentialError(
            "The gcp credential names no project to read Cloud Monitoring metrics from. Add "
            f'"project": "<project id>" with `cloudact credentials add {ctx.org_slug} gcp --from-json FILE`.')
    projects = [p.strip() for p in dict.fromkeys(projects)]
    bad = [p for p in projects if not _PROJECT_ID.match(p)]
    if bad:
        raise CredentialError(f"The gcp credential names a project id that is not valid: {bad[0]!r}")
    return projects


def _refreshed_token(creds, what: str) -> str:
    """An OAuth access token from google-auth credentials (google-auth, imported only here)."""
    from google.auth.transport.requests import Request

    try:
        creds.refresh(Request())
    except Exception as e:  # noqa: BLE001 - google-auth raises several unrelated types
        raise CredentialError(f"Google refused {what} ({type(e).__name__}). Check that it is current and the "
                              "account has roles/monitoring.viewer.") from None
    return creds.token


def _mint_token(info: dict) -> str:
    """An OAuth access token for the service account key."""
    return _refreshed_token(service_account_credentials(info, [SCOPE]), "the service account key")


def monitoring_client(ctx: ExtractContext, *, provider: str, sleep: Callable[[float], Any],
                      max_attempts: int | None, token_minter: Callable[[dict], str] = _mint_token) -> ApiClient:
    cred = ctx.credential or {}
    token = cred.get("access_token")
    if not token and cred.get("service_account_json"):
        token = token_minter(_service_account_info(cred["service_account_json"]))
    if not token and cred.get("impersonate_service_account"):
        token = _refreshed_token(gcp_credentials(cred, [SCOPE], ctx.org_slug),
                                 f"impersonating {cred['impersonate_service_account']}")
    if not token or not isinstance(token, str):
        raise CredentialError(
            f"The gcp credential has neither service_account_json nor access_token (nor "
            f"impersonate_service_account). Add one with "
            f"`cloudact credentials add {ctx.org_slug} gcp --from-json FILE` "
            '(FILE: {"project": "...", "service_account_json": {...}}).')
    base_url = str(cred.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    retry = retry_settings()
    if max_attempts is not None:
        retry["max_attempts"] = max_attempts
    return ApiClient(base_url, {"Authorization": f"Bearer {token}"}, provider=provider, credential_kind="gcp",
                     key_label="Google credential", org_slug=ctx.org_slug, log=ctx.log, sleep=sleep, **retry)


def open_projects(ctx: ExtractContext, *, sleep: Callable[[float], Any], max_attempts: int | None,
                  token_minter: Callable[[dict], str] | None) -> tuple[list[str], ApiClient]:
    """The credential's projects and a Monitoring client to read them with."""
    projects = projects_of(ctx)
    extra = {"token_minter": token_minter} if token_minter else {}
    return projects, monitoring_client(ctx, provider="Google Cloud Monitoring", sleep=sleep,
                                       max_attempts=max_attempts, **extra)


def project_row(rows: dict[tuple, dict], provider: str, day: dt.date, project: str, model: str) -> dict:
    """The usage row of (day, project, model), made on first use: Monitoring usage is per project, and the
    project is the account the billing export names."""
    key = (day, project, model)
    if key not in rows:
        rows[key] = usage_row(day, provider, model, project, cloud_account_id=project)
    return rows[key]


def usage_batches(ctx: ExtractContext, provider: str, rows: dict[tuple, dict], projects: list[str]) -> dict:
    out = [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], k[2]))]
    ctx.log.info("%s: %d usage rows from %d project(s)", provider, len(out), len(projects))
    return {USAGE_TABLE: to_batches(USAGE_TABLE, out)}


def iter_time_series(client: ApiClient, project: str, metric_type: str, group_by: Iterable[str],
                     start: dt.date, end: dt.date, *, page_size: int | None = None) -> Iterator[dict]:
    """Every time series of `metric_type` summed per UTC day over [start, end] and grouped by `group_by`."""
    path = f"/v3/projects/{project}/timeSeries"
    params: dict[str, Any] = {
        "filter": f'metric.type="{metric_type}"',
        "interval.startTime": _rfc3339(start),
        "interval.endTime": _rfc3339(end + dt.timedelta(days=1)),
        "aggregation.alignmentPeriod": f"{DAY_SECONDS}s",
        "aggregation.perSeriesAligner": "ALIGN_SUM",
        "aggregation.crossSeriesReducer": "REDUCE_SUM",
        "aggregation.groupByFields": list(group_by),
        "view": "FULL",
        "pageSize": page_size or PAGE_SIZE,
    }
    seen: set[str] = set()
    token = None
    for _ in range(MAX_PAGES):
        page = client.get_json(path, {**params, "pageToken": token})
        if not isinstance(page, dict) or not isinstance(page.get("timeSeries", []), list):
            raise ExtractError(f"{client.provider} answered GET {path} with an unexpected shape (no 'timeSeries' list)")
        yield from page.get("timeSeries", [])
        token = page.get("nextPageToken") or None
        if token is None:
            return
        if token in seen:
            raise ExtractError(f"Cloud Monitoring returned the same nextPageToken twice for {metric_type}; stopping")
        seen.add(token)
    raise ExtractError(f"{metric_type} returned more than {MAX_PAGES} pages; narrow the date range")


def _parse_time(raw: Any, metric_type: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ExtractError(f"Cloud Monitoring returned a {metric_type} point with an unusable time {raw!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def point_day(point: dict, metric_type: str) -> tuple[dt.date, bool]:
    """The UTC day a daily point covers, and whether its interval starts at UTC midnight."""
    interval = point.get("interval") or {}
    if interval.get("startTime"):
        start = _parse_time(interval["startTime"], metric_type)
    elif interval.get("endTime"):
        start = _parse_time(interval["endTime"], metric_type) - dt.timedelta(seconds=DAY_SECONDS)
    else:
        raise ExtractError(f"Cloud Monitoring returned a {metric_type} point without an interval")
    aligned = start.hour == start.minute == start.second == start.microsecond == 0
    return start.date(), aligned


def point_value(point: dict, metric_type: str) -> int:
    """An INT64 point (`{"int64Value": "123"}`, a string) or an integral double, as an int."""
    value = point.get("value") or {}
    raw = value.get("int64Value", value.get("doubleValue"))
    if raw is None:
        raise ExtractError(f"Cloud Monitoring returned a {metric_type} point with no int64Value: {value!r}")
    try:
        if isinstance(raw, str):
            return int(raw)
        if isinstance(raw, bool):
            raise ValueError
        if int(raw) != raw:
            raise ValueError
        return int(raw)
    except (TypeError, ValueError, ArithmeticError):
        raise ExtractError(f"Cloud Monitoring returned a {metric_type} token count that is not a whole number: "
                           f"{raw!r}") from None


def label(series: dict, field: str) -> str | None:
    """`metric.label.model` / `resource.label.model_user_id` read from one returned series."""
    scope, _, name = field.split(".", 2)
    return ((series.get(scope) or {}).get("labels") or {}).get(name)


def daily_sums(ctx: ExtractContext, client: ApiClient, project: str, metric_type: str, group_by: list[str],
               window: DayWindow, key: Callable[[dict], Any]) -> dict[tuple[dt.date, Any], int]:
    """{(day, key(series)): summed value} for one metric over ctx's window; days outside are noted in `window`."""
    sums: dict[tuple[dt.date, Any], int] = {}
    misaligned = 0
    for series in iter_time_series(client, project, metric_type, group_by, ctx.start_date, ctx.end_date):
        k = key(series)
        for point in series.get("points") or []:
            day, aligned = point_day(point, metric_type)
            misaligned += not aligned
            value = point_value(point, metric_type)
            if not window.keep(day, [value] if value else []):
                continue
            sums[(day, k)] = sums.get((day, k), 0) + value
    if misaligned:
        ctx.warn(f"{misaligned} Cloud Monitoring point(s) of {metric_type} did not start at UTC midnight; "
                 "each was counted on the UTC day it starts in")
    return sums
