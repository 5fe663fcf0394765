"""Azure OpenAI (Azure AI Foundry Models): daily tokens from Azure Monitor, billed cost from Cost Management.

Credential (`cloudact credentials add ORG azure --from-json FILE`):
    {"tenant_id": "...", "client_id": "...", "client_secret": "...",   # a service principal (real use)
     "client_certificate": "-----BEGIN ...",  # instead of client_secret: PEM certificate with its private key
     "access_token": "eyJ...",                 # alternative for tests and short jobs
     "resource_ids": ["/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>"],
     "cost_scope": "/subscriptions/<sub>",     # optional: no cost rows without it
     "base_url": "https://management.azure.com"}   # optional

The principal needs *Monitoring Reader* on the accounts and *Cost Management Reader* on the scope.

Why REST over httpx and not the Azure SDKs (azure-mgmt-monitor / azure-monitor-querymetrics /
azure-mgmt-costmanagement): one HTTP path for every extractor (`shared.http.ApiClient`, with its
bounded retries, Retry-After handling and secret scrubbing), the whole path is testable over real
HTTP against a loopback stub, and no heavy SDK sits on the job path. Only minting a token from a
client secret or certificate needs `azure-identity`, imported lazily and only for that credential form.

- Tokens -> `genai_usage_daily`: per resource, `GET {resourceId}/providers/Microsoft.Insights/metrics`
  (api-version 2023-10-01) for ProcessedPromptTokens (input), GeneratedTokens (output) and
  AzureOpenAIRequests (requests), interval P1D, aggregation Total, split by ModelDeploymentName,
  ModelName and ModelVersion. `project_id` is the deployment name, `model` the ModelName (versions of
  one deployment add up). Azure exposes no cached-token count (only a match rate), so
  `cached_input_tokens` is 0 and `input_tokens` is every prompt token; the billed cost below carries
  the cache discount. `cloud_account_id` is the resource's subscription id (lower case, as the cost details'
  SubscriptionId), so an org that also runs Azure cost details counts the spend once (sp_genai_4).
- Money -> `genai_provider_costs_daily`: `POST {cost_scope}/providers/Microsoft.CostManagement/query`
  (api-version 2023-11-01), ActualCost, Daily, summed Cost grouped by ResourceId and MeterName, filtered
  to the OpenAI / Foundry Models service, following `nextLink`. Amounts decode straight to Decimal.
  `line_item` is the meter name; `token_class`/`is_batch` are read from it where it says so.
- Billed meets metered: a meter names a model version (`gpt-4o-1120-Outp-glbl Tokens` -> `gpt-4o-1120`),
  the metrics a ModelName and ModelVersion (`gpt-4o`, `2024-11-20`). The cost row's `model` is the
  ModelName of the account's deployment whose name-MMDD the meter names (else the meter's model without
  its MMDD, `shared.models.model_family`), so `cloudact reconcile` and sp_genai_3 compare one model key.
  Azure bills per account, not per deployment: `project_id` is the deployment when exactly one deployment
  of that model version in the account had tokens that day, else the account name (the procedure then
  keeps the list price and its Adjustment row carries the bill). The cached-prompt meter bills part of
  the usage's `input` class (every prompt token), so its `token_class` is `input`.
"""
from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai.common import (COSTS_TABLE, MAX_PAGES, USAGE_TABLE, DayWindow, decimal_amount, to_batches,
                               to_numeric, usage_row, utc_date)
from jobs.identity import azure_identity
from shared.http import ApiClient, retry_settings
from shared.models import model_family

PROVIDER = "azure_openai"
DEFAULT_BASE_URL = "https://management.azure.com"
TOKEN_SCOPE = "https://management.azure.com/.default"
METRICS_API_VERSION = "2023-10-01"
COST_API_VERSION = "2023-11-01"
METRICS = {"ProcessedPromptTokens": "input_tokens", "GeneratedTokens": "output_tokens",
           "AzureOpenAIRequests": "request_count"}
DIMENSIONS = ("ModelDeploymentName", "ModelName", "ModelVersion")
METRICS_TOP = 1000  # series per metric; Azure Monitor silently keeps only 10 without it
COST_SERVICE_NAMES = ["Azure OpenAI", "Foundry Models"]
_RESOURCE_ID = re.compile(r"^/subscriptions/[^/?#]+/resourceGroups/[^/?#]+/providers/"
                          r"Microsoft\.CognitiveServices/accounts/[^/?#]+$", re.IGNORECASE)
_SCOPE = re.compile(r"^/(subscriptions|providers/Microsoft\.Billing)/[^?#]+$", re.IGNORECASE)


# -- the client ---------------------------------------------------------------------------------------

def _mint_token(cred: dict) -> str:
    """A management-plane token for the service principal (azure-identity, imported only here)."""
    principal = azure_identity({k: v for k, v in cred.items() if k != "access_token"})
    try:
        return principal.get_token(TOKEN_SCOPE).token
    except Exception as e:  # noqa: BLE001 - azure-identity raises its own hierarchy
        raise CredentialError(f"Microsoft Entra ID refused the service principal ({type(e).__name__}). Check "
                              "tenant_id, client_id and that the client_secret or client_certificate has not "
                              "expired.") from None


def azure_client(ctx: ExtractContext, *, sleep: Callable[[float], Any], max_attempts: int | None,
                 token_minter: Callable[[dict], str] = _mint_token) -> ApiClient:
    cred = ctx.credential or {}
    token = cred.get("access_token")
    if not token and (cred.get("client_secret") or cred.get("client_certificate")):
        token = token_minter(cred)
    if not token or not isinstance(token, str):
        raise CredentialError(
            "The azure credential has neither tenant_id/client_id/client_secret nor access_token (nor "
            "tenant_id/client_id/client_certificate). Add them with "
            f"`cloudact credentials add {ctx.org_slug} azure --from-json FILE`.")
    base_url = str(cred.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    retry = retry_settings()
    if max_attempts is not None:
        retry["max_attempts"] = max_attempts
    return ApiClient(base_url, {"Authorization": f"Bearer {token}"}, provider="Azure", credential_kind="azure",
                       key_label="Azure credential", org_slug=ctx.org_slug, log=ctx.log, sleep=sleep, **retry)


def resource_ids_of(ctx: ExtractContext) -> list[str]:
    ids = (ctx.credential or {}).get("resource_ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not ids:
        raise CredentialError(
            "The azure credential lists no Azure OpenAI resources. Add "
            '"resource_ids": ["/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/'
            f'accounts/<name>"] with `cloudact credentials add {ctx.org_slug} azure --from-json FILE`.')
    bad = [r for r in ids if not isinstance(r, str) or not _RESOURCE_ID.match(r.strip())]
    if bad:
        raise CredentialError(f"Not an Azure OpenAI (Microsoft.CognitiveServices/accounts) resource id: {bad[0]!r}")
    return list(dict.fromkeys(r.strip().rstrip("/") for r in ids))


# -- tokens (Azure Monitor) ------------------------------------------------------------------------------

def _day_of(raw: Any, what: str) -> dt.date:
    return utc_date(raw, f"Azure returned {what} with an unusable time {raw!r}")


def _whole(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ExtractError(f"Azure returned a {what} that is not a number: {value!r}")
    try:
        d = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    except ArithmeticError:
        raise ExtractError(f"Azure returned a {what} that is not a number: {value!r}") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ExtractError(f"Azure returned a {what} that is not a whole number: {value!r}")
    return int(d)


def _dimensions(series: dict) -> dict[str, str]:
    out = {}
    for md in series.get("metadatavalues") or []:
        name = (md.get("name") or {}).get("value")
        if name:
            out[str(name).lower()] = md.get("value")
    return out


def _usage_rows(ctx: ExtractContext, client: ApiClient, resource_ids: list[str],
                deployments: Deployments) -> list[dict]:
    end_excl = ctx.end_date + dt.timedelta(days=1)
    params = {"api-version": METRICS_API_VERSION, "metricnames": ",".join(METRICS),
              "timespan": f"{ctx.start_date.isoformat()}T00:00:00Z/{end_excl.isoformat()}T00:00:00Z",
              "interval": "P1D", "aggregation": "Total", "top": METRICS_TOP,
              "$filter": " and ".join(f"{d} eq '*'" for d in DIMENSIONS)}
    window = DayWindow(ctx)
    rows: dict[tuple, dict] = {}
    full_series = 0
    for resource_id in resource_ids:
        subscription = resource_id.split("/")[2].lower()  # the cost details' SubscriptionId (a GUID)
        path = f"{resource_id}/providers/Microsoft.Insights/metrics"
        doc = client.get_json(path, params)
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
            raise ExtractError(f"Azure answered GET {path} with an unexpected shape (no 'value' list)")
        for metric in doc["value"]:
            name = (metric.get("name") or {}).get("value")
            field = METRICS.get(name)
            if field is None:
                continue
            if metric.get("errorCode") not in (None, "Success"):
                raise ExtractError(f"Azure Monitor could not read {name} for {resource_id}: "
                                   f"{metric.get('errorCode')} {metric.get('errorMessage') or ''}".strip())
            series_list = metric.get("timeseries") or []
            full_series = max(full_series, len(series_list))
            for series in series_list:
                dims = _dimensions(series)
                deployment = dims.get("modeldeploymentname") or None
                model = dims.get("modelname") or "unknown"
                version = dims.get("modelversion") or None
                for point in series.get("data") or []:
                    day = _day_of(point.get("timeStamp"), f"a {name} point")
                    value = _whole(point.get("total"), f"{name} total")
                    if not window.keep(day, [value] if value else []) or not value:
                        continue
                    deployments.add(resource_id, day, deployment, model, version)
                    key = (day, deployment, model, subscription)
                    row = rows.get(key)
                    if row is None:
                        row = rows[key] = usage_row(day, PROVIDER, model, deployment,
                                                    cloud_account_id=subscription)
                    row[field] = (row[field] or 0) + value
    window.warn("Azure Monitor", "metrics")
    if full_series >= METRICS_TOP:
        ctx.warn(f"Azure Monitor returned {full_series} series for one metric, its top={METRICS_TOP} limit; "
                 "some deployments may be missing")
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], str(k[1]), k[2], k[3]))]


# -- billed meets metered -----------------------------------------------------------------------------------

_VERSION_DATE = re.compile(r"(?:^|\D)\d{4}-(\d{2})-(\d{2})$")


def version_tag(version: str | None) -> str | None:
    """The MMDD a meter name gives a ModelVersion: '2024-11-20' -> '1120', '0613' -> '0613', else None."""
    v = (version or "").strip()
    m = _VERSION_DATE.search(v)
    if m:
        return m[1] + m[2]
    return v if re.fullmatch(r"\d{4}", v) else None


class Deployments:
    """Which deployments of which model versions had tokens, per account and day (from the metrics)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, dt.date], set[tuple[str, str, str | None]]] = {}

    def add(self, resource_id: str, day: dt.date, deployment: str | None, model: str, version: str | None) -> None:
        if deployment:
            self._seen.setdefault((resource_id.lower(), day), set()).add((deployment, model, version_tag(version)))

    def resolve(self, resource_id: str, day: dt.date, meter_model: str) -> tuple[str, str | None]:
        """(the usage's model key, the one deployment the line bills or None) for a meter's model."""
        seen = self._seen.get((resource_id.rstrip("/").lower(), day), set())
        m = meter_model.lower()
        named = {(d, u) for d, u, tag in seen if tag and m == f"{u.lower()}-{tag}"}
        if not named:  # a meter without a version (`GPT 5 Inpt Glbl`), or metrics without ModelVersion
            family = model_family(meter_model).lower()
            named = {(d, u) for d, u, tag in seen if u.lower() in (m, family) and (tag is None or m == u.lower())}
        models = {u for _, u in named}
        model = models.pop() if len(models) == 1 else model_family(meter_model)
        deployment = next(iter(named))[0] if len(named) == 1 else None
        return model, deployment


# -- money (Cost Management) ------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z0-9.]+")
_INPUT = {"inp", "inpt", "input", "in"}
_OUTPUT = {"outp", "outpt", "output", "out", "opt"}
_NOT_MODEL = {"glbl", "global", "regnl", "regional", "dzone", "datazone", "tokens", "token", "batch", "cached",
              "cache", "cchd", "1k", "1m"} | _INPUT | _OUTPUT


def parse_meter(meter: str | None) -> tuple[str | None, str | None, bool | None]:
    """(model, token_class, is_batch) from an Azure OpenAI meter name, None where it does not say.

    `gpt-4o-0806-Inp-glbl Tokens` -> ("gpt-4o-0806", "input", False);
    `gpt 4o 1120 cached Inp glbl` -> ("gpt-4o-1120", "cached_input", False);
    `gpt-4-8K-Batch-Inp-glbl` -> ("gpt-4-8k", "input", True). Meter names are not a documented grammar,
    so the model is a best effort (its family groups dated variants: gpt-4o-0806 -> gpt-4o).
    """
    if not meter:
        return None, None, None
    words = [w.lower() for w in _WORD.findall(meter.replace("_", " "))]
    direction = next((i for i, w in enumerate(words) if w in _INPUT | _OUTPUT), None)
    if direction is None:
        return None, None, None
    cached = any(w in {"cached", "cache", "cchd"} for w in words)
    token_class = "output" if words[direction] in _OUTPUT else ("cached_input" if cached else "input")
    head = [w for w in words[:direction] if w not in _NOT_MODEL]
    model = "-".join(head) if head and head[0][:1].isalpha() else None
    return model, token_class, "batch" in words


def _cost_filter(ctx: ExtractContext) -> dict:
    names = (ctx.credential or {}).get("cost_service_names") or COST_SERVICE_NAMES
    return {"or": [{"dimensions": {"name": "ServiceName", "operator": "In", "values": list(names)}},
                   {"dimensions": {"name": "MeterCategory", "operator": "In", "values": list(names)}}]}


def cost_query_body(ctx: ExtractContext) -> dict:
    return {"type": "ActualCost", "timeframe": "Custom",
            "timePeriod": {"from": f"{ctx.start_date.isoformat()}T00:00:00Z",
                           "to": f"{ctx.end_date.isoformat()}T23:59:59Z"},
            "dataset": {"granularity": "Daily",
                        "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
                        "grouping": [{"type": "Dimension", "name": "ResourceId"},
                                     {"type": "Dimension", "name": "MeterName"}],
                        "filter": _cost_filter(ctx)}}


def _same_origin(link: str, base_url: str) -> bool:
    a, b = urlsplit(link), urlsplit(base_url)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def iter_cost_rows(client: ApiClient, scope: str, body: dict, base_url: str) -> Iterator[dict]:
    """Each result row of the query as {column name: value}, following nextLink (same host only)."""
    path: str = f"{scope}/providers/Microsoft.CostManagement/query"
    params: dict | None = {"api-version": COST_API_VERSION}
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        doc = client.post_json(path, body, params)
        props = doc.get("properties") if isinstance(doc, dict) else None
        if not isinstance(props, dict) or not isinstance(props.get("columns"), list) \
                or not isinstance(props.get("rows"), list):
            raise ExtractError("Azure answered the Cost Management query with an unexpected shape "
                               "(no properties.columns/rows)")
        names = [str(c.get("name")) for c in props["columns"]]
        for raw in props["rows"]:
            if not isinstance(raw, list) or len(raw) != len(names):
                raise ExtractError("Azure returned a Cost Management row that does not match its columns")
            yield dict(zip(names, raw))
        link = props.get("nextLink")
        if not link:
            return
        if not _same_origin(link, base_url):
            raise ExtractError(f"Azure's Cost Management nextLink points at another host ({urlsplit(link).netloc}); "
                               "not following it with the credential")
        if link in seen:
            raise ExtractError("Azure returned the same Cost Management nextLink twice; stopping")
        seen.add(link)
        # httpx replaces a URL's query with the params it is given, so the link's own query goes in params
        parts = urlsplit(link)
        path = f"{parts.scheme}://{parts.netloc}{parts.path}"
        params = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    raise ExtractError(f"The Cost Management query returned more than {MAX_PAGES} pages; narrow the date range")


def _usage_date(raw: Any) -> dt.date:
    """UsageDate: an int YYYYMMDD (documented) or an ISO datetime string (some api-versions)."""
    try:
        if isinstance(raw, str) and not raw.strip().isdigit():
            return _day_of(raw, "a cost row")
        n = _whole(raw, "UsageDate")
        return dt.date(n // 10000, n // 100 % 100, n % 100)
    except (ValueError, ExtractError):
        raise ExtractError(f"Azure returned a cost row with an unusable UsageDate {raw!r}") from None


def _cost_rows(ctx: ExtractContext, rows: Iterator[dict], deployments: Deployments) -> list[dict]:
    agg: dict[tuple, dict] = {}
    window = DayWindow(ctx)
    for r in rows:
        cost_key = next((k for k in ("Cost", "totalCost", "PreTaxCost") if k in r), None)
        if cost_key is None or "UsageDate" not in r:
            raise ExtractError("Azure's Cost Management answer has no Cost or UsageDate column")
        day = _usage_date(r["UsageDate"])
        if r[cost_key] is None:
            continue
        amount = decimal_amount(r[cost_key], "Azure")
        if not window.keep(day, [amount] if amount else []):
            continue
        resource_id = r.get("ResourceId") or ""
        account = resource_id.rstrip("/").rsplit("/", 1)[-1] or None
        meter = r.get("MeterName")
        currency = str(r.get("Currency") or r.get("BillingCurrency") or "USD").upper()
        model, token_class, is_batch = parse_meter(meter)
        project = account
        if model is not None:
            model, deployment = deployments.resolve(resource_id, day, model)
            project = deployment or account
        if token_class == "cached_input":  # the metrics count cached prompt tokens as input
            token_class = "input"
        key = (day, project, meter, currency)
        row = agg.get(key)
        if row is None:
            row = agg[key] = {"usage_date": day, "provider": PROVIDER, "project_id": project, "line_item": meter,
                              "model": model, "token_class": token_class, "is_batch": is_batch,
                              "amount": Decimal(0), "currency": currency}
        row["amount"] += amount
    window.warn("Azure", "Cost Management")
    out = [agg[k] for k in sorted(agg, key=lambda k: (k[0], str(k[1]), str(k[2]), k[3]))]
    for row in out:
        row["amount"] = to_numeric(row["amount"])
    return out


# -- the job ---------------------------------------------------------------------------------------------------

def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep, max_attempts: int | None = None,
            token_minter: Callable[[dict], str] | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Usage for every resource in the credential and, with a cost_scope, billed cost, for
    ctx.start_date..ctx.end_date (inclusive, UTC days)."""
    resource_ids = resource_ids_of(ctx)
    scope = str((ctx.credential or {}).get("cost_scope") or "").strip().rstrip("/")
    if scope and not _SCOPE.match(scope):
        raise CredentialError(f"cost_scope must look like /subscriptions/<id> (or a billing scope), not {scope!r}")
    extra = {"token_minter": token_minter} if token_minter else {}
    client = azure_client(ctx, sleep=sleep, max_attempts=max_attempts, **extra)
    with client:
        if ctx.end_date < ctx.start_date:
            return {USAGE_TABLE: [], COSTS_TABLE: []}
        deployments = Deployments()
        usage = _usage_rows(ctx, client, resource_ids, deployments)
        if scope:
            base_url = str(ctx.credential.get("base_url") or DEFAULT_BASE_URL)
            costs = _cost_rows(ctx, iter_cost_rows(client, scope, cost_query_body(ctx), base_url), deployments)
        else:
            costs = []
            ctx.warn("The azure credential has no cost_scope, so no billed cost was read; add "
                     '"cost_scope": "/subscriptions/<id>" to get genai_provider_costs_daily rows')
    ctx.log.info("azure_openai: %d usage rows, %d cost rows", len(usage), len(costs))
    return {USAGE_TABLE: to_batches(USAGE_TABLE, usage), COSTS_TABLE: to_batches(COSTS_TABLE, costs)}
