"""AWS Bedrock pay-as-you-go: daily token usage per model from CloudWatch metrics (namespace `AWS/Bedrock`).

Credential (`cloudact credentials add ORG aws --from-json FILE`):
    {"region": "us-east-1",                      # or "regions": ["us-east-1", "eu-west-1"] (metrics are per region)
     "aws_access_key_id": "...", "aws_secret_access_key": "...", "aws_session_token": "...",   # optional
     "role_arn": "arn:aws:iam::123456789012:role/cloudact-bedrock-reader", "external_id": "...", # optional
     "endpoint_url": "http://127.0.0.1:5000",    # optional (tests / VPC endpoints; multi: public https only)
     "model_ids": ["anthropic.claude-3-haiku-20240307-v1:0"],                                   # optional
     "account_id": "123456789012"}               # optional: else the role's account, else sts:GetCallerIdentity
In multi tenancy the keys or the role are required and a role is assumed with the org's ExternalId
(jobs/identity.py). Needs `cloudwatch:ListMetrics` and `cloudwatch:GetMetricData` (+ `bedrock:GetInferenceProfile` to name
the model behind an application inference profile; without it those rows keep the profile ARN).

What it does, per region:
1. `list_metrics(Namespace="AWS/Bedrock")` (paged by NextToken) finds the metrics that carry exactly one
   dimension, `ModelId`. CloudWatch only lists metrics with data in the **last 14 days**, so a backfill
   misses models idle since then unless the credential names them in `model_ids` (a warning says so).
2. `get_metric_data` with Stat=Sum, Period=86400 and StartTime/EndTime on UTC midnights
   (`start_date 00:00Z` .. `end_date + 1 00:00Z`, exclusive), so each datapoint is one UTC day. Queries
   are batched (<= 500 per call and <= 100,800 datapoints per call) and every call follows NextToken.
3. One `genai_usage_daily` row per (day, model, project): InputTokenCount -> input_tokens (Bedrock
   reports it without cache reads/writes), CacheReadInputTokenCount -> cached_input_tokens,
   CacheWriteInputTokenCount -> cache_write_tokens, OutputTokenCount -> output_tokens, Invocations ->
   request_count. Regions are summed. `is_batch` is False (batch inference is not in these metrics)
   and `service_tier` is null.

Model ids. The `ModelId` dimension is whatever the caller invoked: a base model id
(`anthropic.claude-3-5-sonnet-20240620-v1:0`, `meta.llama3-3-70b-instruct-v1:0`), a cross-region
inference profile id (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, `global.…`), or an ARN
(foundation model, system inference profile, application inference profile, provisioned model).
`model` keeps the id as reported; application inference profiles are resolved to their foundation
model when `bedrock:GetInferenceProfile` allows it and keep the ARN in `project_id` (the profile is
how Bedrock users attribute spend to an application). `model_family` comes from `normalize_model_id`
(see there) followed by `shared.models.model_family`, so prices can be keyed once per model:

    us.anthropic.claude-sonnet-4-5-20250929-v1:0  -> anthropic.claude-sonnet-4-5
    anthropic.claude-3-5-sonnet-20240620-v1:0     -> anthropic.claude-3-5-sonnet
    meta.llama3-3-70b-instruct-v1:0               -> meta.llama3-3-70b-instruct
    amazon.nova-pro-v1:0:300k                     -> amazon.nova-pro
    openai.gpt-oss-120b-1:0                       -> openai.gpt-oss-120b

The vendor prefix (`anthropic.`, `meta.`) is kept on purpose: the same model sold by Bedrock is a
different price list from the vendor's own API, and the pricing procedure keys prices by
(provider='bedrock', model or family). Where the stripped part matters for price (geo/in-region
profiles of newer Claude models cost ~10% more than `global.`; `amazon.titan-embed-text-v1` vs `-v2:0`),
an exact-id price entry wins over the family entry.

`cloud_account_id` is the AWS account the metrics belong to (CloudWatch metrics are per account), the
`line_item_usage_account_id` of the CUR's Bedrock lines: the credential's `account_id`, else the account of
its `role_arn`, else `sts:GetCallerIdentity` (NULL, with a warning, when none answers). With it an org that
also runs the CUR counts the spend once (sp_genai_4_allocate_cloud_model_spend).

Money is not here: Bedrock spend is in Cost Explorer / CUR, and third-party models (Anthropic, Meta,
…) bill through AWS Marketplace under per-model product names, not `Amazon Bedrock`.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable, Iterator

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai.common import USAGE_TABLE, DayWindow, to_batches, usage_row
from jobs.identity import aws_session
from shared.models import model_family
from shared.tenancy import TrustViolation

PROVIDER = "bedrock"
NAMESPACE = "AWS/Bedrock"
DIMENSION = "ModelId"
# CloudWatch metric -> genai_usage_daily column
METRIC_COLUMNS = {
    "InputTokenCount": "input_tokens",
    "CacheReadInputTokenCount": "cached_input_tokens",
    "CacheWriteInputTokenCount": "cache_write_tokens",
    "OutputTokenCount": "output_tokens",
    "Invocations": "request_count",
}
PERIOD = 86_400
MAX_QUERIES = 500  # per GetMetricData call
MAX_DATAPOINTS = 100_800  # per GetMetricData call
MAX_PAGES = 10_000
LIST_METRICS_WINDOW_DAYS = 14  # ListMetrics only returns metrics with data in this many recent days
RETENTION_DAYS = 455  # hourly (and so daily) datapoints are kept this long
AWS_RETRIES = 8

# Cross-region inference profile prefixes (geo and global); `us-gov` before `us`.
PROFILE_PREFIXES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca", "global")
_PREFIX = re.compile(rf"^(?:{'|'.join(re.escape(p) for p in PROFILE_PREFIXES)})\.(?=[a-z0-9-]+\.)", re.IGNORECASE)
# -v1, -v2:0, -v1:0:300k (provisioned context-window variants), and unversioned-v `-1:0` (openai.gpt-oss-*)
_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|-\d+:\d+)(?::\d+[km])?$", re.IGNORECASE)
_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:(?P<region>[^:]*):(?P<account>[^:]*):(?P<kind>[a-z-]+)/(?P<id>.+)$")
_CREDENTIAL_CODES = {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
                     "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                     "AuthFailure", "MissingAuthenticationToken", "InvalidSignatureException", "UnauthorizedOperation"}


# -- model ids ----------------------------------------------------------------------------------------

def parse_arn(model_id: str) -> tuple[str, str] | None:
    """`(resource kind, resource id)` of a Bedrock ARN, else None.

    arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0
        -> ("foundation-model", "anthropic.claude-3-haiku-20240307-v1:0")
    """
    m = _ARN.match(model_id.strip())
    return (m["kind"], m["id"]) if m else None


def is_application_profile(model_id: str) -> bool:
    parsed = parse_arn(model_id)
    return parsed is not None and parsed[0] == "application-inference-profile"


def normalize_model_id(model_id: str) -> str:
    """A Bedrock model id reduced to the model it names, keeping the vendor prefix.

    - ARNs of foundation models and system inference profiles become the id after the `/`;
      other ARNs (application inference profiles, provisioned or custom models) are returned as they are.
    - A leading cross-region profile prefix (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `ca.`, `us-gov.`,
      `global.`) is removed, only when a `vendor.` part follows (so `us.` alone is not touched).
    - A trailing version (`-v1`, `-v2:0`, `-1:0`) and provisioned context-window variant (`:300k`)
      are removed.

    The dated snapshot (`-20240620`) is left for `shared.models.model_family`.
    """
    m = (model_id or "").strip()
    parsed = parse_arn(m)
    if parsed is not None:
        kind, rid = parsed
        if kind not in ("foundation-model", "inference-profile"):
            return m
        m = rid
    m = _PREFIX.sub("", m)
    stripped = _VERSION.sub("", m)
    return stripped or m


def bedrock_model_family(model_id: str) -> str:
    """`normalize_model_id` then `model_family`: `us.anthropic.claude-3-5-haiku-20241022-v1:0` ->
    `anthropic.claude-3-5-haiku`."""
    return model_family(normalize_model_id(model_id))


# -- AWS plumbing -------------------------------------------------------------------------------------

def _aws_error(e: Exception, what: str) -> Exception:
    if isinstance(e, TrustViolation):
        return e
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return CredentialError(
            f"No usable AWS credentials for {what}: add aws_access_key_id/aws_secret_access_key or role_arn to the "
            "credential with `cloudact credentials add ORG aws --from-json FILE`.")
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        if code in _CREDENTIAL_CODES or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (401, 403):
            return CredentialError(
                f"AWS refused {what} ({code}: {message}). The credential needs cloudwatch:ListMetrics and "
                "cloudwatch:GetMetricData; update it with `cloudact credentials add ORG aws --from-json FILE`.")
        return ExtractError(f"AWS error on {what} ({code}: {message})")
    return ExtractError(f"AWS error on {what}: {type(e).__name__}: {e}")


def _cloudwatch_client(session, region: str, endpoint_url: str | None):
    """The CloudWatch client (botocore retries throttling with its standard mode). Tests wrap it."""
    from botocore.config import Config

    return session.client("cloudwatch", region_name=region, endpoint_url=endpoint_url,
                          config=Config(retries={"max_attempts": AWS_RETRIES, "mode": "standard"}))


def resolve_profile(session, region: str, endpoint_url: str | None, arn: str) -> str | None:
    """The foundation model id behind an application inference profile, or None when it cannot be
    read (no bedrock:GetInferenceProfile permission, or a profile that spans several models)."""
    from botocore.config import Config

    client = session.client("bedrock", region_name=region, endpoint_url=endpoint_url,
                            config=Config(retries={"max_attempts": 2, "mode": "standard"}))
    try:
        resp = client.get_inference_profile(inferenceProfileIdentifier=arn)
    except Exception:  # noqa: BLE001 - any failure just leaves the ARN as the model
        return None
    ids = set()
    for m in resp.get("models") or []:
        parsed = parse_arn(str(m.get("modelArn", "")))
        if parsed:
            ids.add(parsed[1])
    return ids.pop() if len(ids) == 1 else None


_ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):")


def cloud_account(session, cred: dict, region: str, endpoint_url: str | None) -> str | None:
    """The AWS account id the usage is read in (see the module doc), or None when nothing says it."""
    given = str(cred.get("account_id") or "").strip()
    if given:
        return given
    m = _ROLE_ACCOUNT.match(str(cred.get("role_arn") or ""))
    if m:
        return m[1]
    from botocore.config import Config

    try:
        sts = session.client("sts", region_name=region, endpoint_url=endpoint_url,
                             config=Config(retries={"max_attempts": 2, "mode": "standard"}))
        return str(sts.get_caller_identity()["Account"])
    except Exception:  # noqa: BLE001 - no account only means the usage cannot be matched to a CUR
        return None


def _regions(cred: dict) -> list[str]:
    regions = cred.get("regions") or ([cred["region"]] if cred.get("region") else [])
    if isinstance(regions, str):
        regions = [regions]
    regions = [str(r).strip() for r in regions if str(r).strip()]
    if not regions:
        raise CredentialError(
            'The Bedrock credential has no region. Add one with `cloudact credentials add ORG aws --from-json FILE` '
            '(FILE: {"region": "us-east-1", ...}; several regions: "regions": ["us-east-1", "eu-west-1"]).')
    return list(dict.fromkeys(regions))


def _pages(call, args: dict[str, Any], action: str, region: str) -> Iterator[dict]:
    """Every answer of a CloudWatch call that pages by NextToken. A repeated token or an endless run of
    pages is an error, never a silent loop; AWS errors become CredentialError/ExtractError."""
    seen: set[str] = set()
    token = None
    for _ in range(MAX_PAGES):
        try:
            page = call(**args, **({"NextToken": token} if token else {}))
        except Exception as e:  # noqa: BLE001
            raise _aws_error(e, f"cloudwatch:{action} in {region}") from None
        yield page
        token = page.get("NextToken")
        if not token:
            return
        if token in seen:
            raise ExtractError(f"CloudWatch returned the same {action} NextToken twice in {region}; stopping")
        seen.add(token)
    raise ExtractError(f"CloudWatch {action} returned more than {MAX_PAGES} pages in {region}")


def discover(cw, region: str) -> set[tuple[str, str]]:
    """(metric name, model id) pairs in AWS/Bedrock whose only dimension is ModelId, over every page."""
    found: set[tuple[str, str]] = set()
    for page in _pages(cw.list_metrics, {"Namespace": NAMESPACE}, "ListMetrics", region):
        for m in page.get("Metrics") or []:
            dims = m.get("Dimensions") or []
            if m.get("MetricName") in METRIC_COLUMNS and len(dims) == 1 and dims[0].get("Name") == DIMENSION:
                found.add((m["MetricName"], dims[0]["Value"]))
    return found


def _query(i: int, metric: str, model_id: str) -> dict:
    return {"Id": f"q{i}", "ReturnData": True,
            "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                                      "Dimensions": [{"Name": DIMENSION, "Value": model_id}]},
                           "Period": PERIOD, "Stat": "Sum"}}


def fetch(cw, region: str, queries: list[dict], start: dt.datetime, end: dt.datetime
          ) -> dict[str, dict[dt.datetime, float]]:
    """Datapoints per query Id for one GetMetricData batch, following NextToken to the end.

    A query's points may be spread over several pages; a timestamp seen twice keeps the last value.
    Any query not `Complete` once the pages run out is an error (never a silent short read)."""
    points: dict[str, dict[dt.datetime, float]] = {q["Id"]: {} for q in queries}
    status: dict[str, str] = {}
    args = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending"}
    for resp in _pages(cw.get_metric_data, args, "GetMetricData", region):
        for r in resp.get("MetricDataResults") or []:
            qid = r.get("Id")
            if qid not in points:
                raise ExtractError(f"CloudWatch answered GetMetricData with an unknown query id {qid!r}")
            stamps, values = r.get("Timestamps") or [], r.get("Values") or []
            if len(stamps) != len(values):
                raise ExtractError(f"CloudWatch returned {len(stamps)} timestamps but {len(values)} values for {qid}")
            points[qid].update(zip(stamps, values, strict=True))
            status[qid] = r.get("StatusCode") or "Complete"
    bad = {qid: st for qid, st in status.items() if st != "Complete"}
    if bad:
        if "Forbidden" in bad.values():
            raise CredentialError(f"CloudWatch refused some Bedrock metrics in {region} (StatusCode Forbidden); "
                                  "check the credential's cloudwatch:GetMetricData access")
        raise ExtractError(f"CloudWatch did not complete {len(bad)} Bedrock metric queries in {region} "
                           f"(status {sorted(set(bad.values()))}); retry the run later")
    return points


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _day_of(ts: Any) -> dt.date:
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if not isinstance(ts, dt.datetime):
        raise ExtractError(f"CloudWatch returned a timestamp that is not a datetime: {ts!r}")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return ts.astimezone(dt.timezone.utc).date()


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def extract(ctx: ExtractContext, *, today: dt.date | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Bedrock token usage for ctx.start_date..ctx.end_date (inclusive, UTC days)."""
    cred = ctx.credential or {}
    regions = _regions(cred)
    if ctx.end_date < ctx.start_date:
        return {USAGE_TABLE: []}
    today = today or dt.datetime.now(dt.timezone.utc).date()
    listed_since = today - dt.timedelta(days=LIST_METRICS_WINDOW_DAYS)
    extra_ids = [str(m) for m in (cred.get("model_ids") or []) if str(m).strip()]
    if ctx.start_date < listed_since:
        ctx.warn(f"CloudWatch only lists Bedrock metrics that had data in the last {LIST_METRICS_WINDOW_DAYS} days: "
                 f"models last used before {listed_since} are not found unless the credential lists them in "
                 f"model_ids ({len(extra_ids)} listed)")
    kept_since = today - dt.timedelta(days=RETENTION_DAYS)
    if ctx.start_date < kept_since:
        ctx.warn(f"CloudWatch keeps hourly Bedrock metrics for {RETENTION_DAYS} days: days before {kept_since} "
                 "have no data and come back empty")
    start, end = _midnight(ctx.start_date), _midnight(ctx.end_date + dt.timedelta(days=1))
    days = (ctx.end_date - ctx.start_date).days + 1
    per_call = max(1, min(MAX_QUERIES, MAX_DATAPOINTS // days))
    endpoint = cred.get("endpoint_url")

    agg: dict[tuple, dict] = {}
    window = DayWindow(ctx)
    unresolved: set[str] = set()
    account: str | None = None
    for n, region in enumerate(regions):
        session = aws_session(cred, region, "cloudact-bedrock-usage")
        if n == 0:
            account = cloud_account(session, cred, region, endpoint)
            if account is None:
                ctx.warn("the AWS account of the Bedrock usage is unknown (no account_id or role_arn in the credential "
                         "and sts:GetCallerIdentity refused): its spend cannot be matched to a CUR's Bedrock lines")
        cw = _cloudwatch_client(session, region, endpoint)
        pairs = discover(cw, region)
        pairs |= {(metric, mid) for mid in extra_ids for metric in METRIC_COLUMNS}
        ordered = sorted(pairs, key=lambda p: (p[1], p[0]))
        ctx.log.info("bedrock: %s has %d model id(s), %d metric series", region, len({p[1] for p in ordered}),
                     len(ordered))
        profiles: dict[str, str | None] = {}
        for chunk in _chunks(ordered, per_call):
            queries = [_query(i, metric, mid) for i, (metric, mid) in enumerate(chunk)]
            points = fetch(cw, region, queries, start, end)
            for q, (metric, mid) in zip(queries, chunk, strict=True):
                series = points[q["Id"]]
                for ts, value in series.items():
                    day = _day_of(ts)
                    if not window.keep(day, [value]):
                        continue
                    model, project = mid, None
                    if is_application_profile(mid):
                        if mid not in profiles:
                            profiles[mid] = resolve_profile(session, region, endpoint, mid)
                        project = mid
                        if profiles[mid]:
                            model = profiles[mid]
                        else:
                            unresolved.add(mid)
                    key = (day, model, project)
                    row = agg.get(key)
                    if row is None:
                        # CloudWatch does not split cache-write TTLs: cache_write_1h_tokens stays None
                        row = agg[key] = usage_row(day, PROVIDER, model, project, cloud_account_id=account,
                                                   family=bedrock_model_family)
                    column = METRIC_COLUMNS[metric]
                    row[column] = (row[column] or 0) + int(round(value))
    window.warn("CloudWatch", "Bedrock metrics")
    if unresolved:
        ctx.warn(f"{len(unresolved)} Bedrock application inference profile(s) could not be resolved to a model "
                 "(bedrock:GetInferenceProfile refused or unavailable); their rows keep the profile ARN as model "
                 "and stay unpriced")
    rows = [agg[k] for k in sorted(agg, key=lambda k: (k[0], k[1], str(k[2])))]
    ctx.log.info("bedrock: %d usage rows over %d region(s)", len(rows), len(regions))
    return {USAGE_TABLE: to_batches(USAGE_TABLE, rows)}
