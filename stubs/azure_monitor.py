"""A loopback stand-in for the Azure management plane pieces Azure OpenAI cost needs, over real HTTP.

    usage = azure_openai_demo_usage(start, 30, seed=7)
    with AzureMonitorStub(access_token="eyJ.test", usage=usage, cost_scope=AZURE_DEMO_SUBSCRIPTION) as api:
        api.base_url                          # http://127.0.0.1:PORT  (paths are ARM resource paths)
        api.fail_next(status=429, retry_after="0", times=2, path="/query")
        api.requests                          # [{"method", "path", "params", "status", ("body")}, ...]

Serves, in the documented shapes:
  GET  {resourceId}/providers/Microsoft.Insights/metrics   api-version (required), metricnames
       (ProcessedPromptTokens, GeneratedTokens, TokenTransaction, AzureOpenAIRequests), timespan
       "start/end" (UTC midnights), interval=P1D, aggregation (must include Total), $filter
       ("Dim eq '*'" splits by Dim, "Dim eq 'v'" keeps v; joined with " and "), top (series per
       metric, **default 10** as in Azure: more series are silently dropped)
       -> {"cost", "timespan", "interval", "value": [{"id", "type", "name": {"value", "localizedValue"},
          "unit": "Count", "timeseries": [{"metadatavalues": [{"name": {"value": "<lowercase dim>"},
          "value"}], "data": [{"timeStamp", "total"}]}], "errorCode": "Success"}], "namespace", "resourceregion"}
       Every day of the timespan has a data point per series (total 0.0 when idle); totals are JSON floats.
  POST {scope}/providers/Microsoft.CostManagement/query     api-version (required), $skiptoken; body
       {type: ActualCost|AmortizedCost, timeframe: Custom, timePeriod {from, to}, dataset {granularity:
       Daily, aggregation {<alias>: {name: Cost|PreTaxCost, function: Sum}}, grouping (<= 2 Dimensions of
       ResourceId, MeterName, ServiceName, MeterCategory), filter (and/or/dimensions In)}}
       -> {"id", "name", "type", "properties": {"nextLink", "columns": [{"name", "type"}],
          "rows": [[Cost, UsageDate (int YYYYMMDD), <groupings>..., Currency]]}}, `page_size` rows a page.
Usage records come from `stubs.genai_data.azure_openai_demo_usage`, cost lines from
`azure_openai_demo_costs` unless `costs=` is given. Every request needs `Authorization: Bearer
<access_token>` (else 401 InvalidAuthenticationToken); an unknown resource is 404 ResourceNotFound,
another scope 403 AuthorizationFailed.

Server plumbing, fault injection (`fail_next`, `enqueue`, `drop=True`, matched on path) and the request
log come from `stubs.http_stub.LoopbackStub`; this module adds POST handling on top of it.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Mapping

from stubs.genai_data import azure_openai_demo_costs
from stubs.http_stub import (DAY, BadRequest, LoopbackStub, day_ts, decode_cursor, encode_cursor, last_param,
                             parse_rfc3339, rfc3339)

METRICS_SUFFIX = "/providers/microsoft.insights/metrics"
QUERY_SUFFIX = "/providers/microsoft.costmanagement/query"
# metric -> (localized name, value of one usage record)
_METRICS = {
    "ProcessedPromptTokens": ("Processed Prompt Tokens", lambda r: r["prompt_tokens"]),
    "GeneratedTokens": ("Generated Completion Tokens", lambda r: r["generated_tokens"]),
    "TokenTransaction": ("Processed Inference Tokens", lambda r: r["prompt_tokens"] + r["generated_tokens"]),
    "AzureOpenAIRequests": ("Azure OpenAI Requests", lambda r: r["requests"]),
}
_DIMENSIONS = {"modeldeploymentname": ("ModelDeploymentName", "deployment"), "modelname": ("ModelName", "model"),
               "modelversion": ("ModelVersion", "model_version"), "region": ("Region", "region")}
_COST_DIMENSIONS = {"resourceid": ("ResourceId", "resource_id"), "metername": ("MeterName", "meter_name"),
                    "servicename": ("ServiceName", "service_name"), "metercategory": ("MeterCategory", "meter_category")}
_FILTER_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_ERROR_CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "AuthorizationFailed",
                404: "ResourceNotFound", 429: "TooManyRequests", 500: "InternalServerError"}


def _parse_time(raw: str, what: str) -> int:
    return parse_rfc3339(raw.strip(), invalid=f"Invalid {what}: {raw!r}", no_zone=None)  # ARM reads a bare time as UTC


class AzureMonitorStub(LoopbackStub):
    name = "azure-monitor-stub"

    def __init__(self, access_token: str = "eyJ.stub-token", usage: list[dict] | None = None, *,
                 costs: list[dict] | None = None, cost_scope: str | None = None, resource_ids: list[str] | None = None,
                 page_size: int = 1000, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.access_token = access_token
        self.usage = list(usage or [])
        self.costs = list(costs) if costs is not None else azure_openai_demo_costs(self.usage)
        ids = resource_ids if resource_ids is not None else [r["resource_id"] for r in self.usage]
        self.resource_ids = {i.lower(): i for i in ids}
        self.cost_scope = cost_scope
        self.page_size = page_size

    # -- LoopbackStub hooks ----------------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"code": _ERROR_CODES.get(status, str(status)), "message": message}}

    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        return self.refuse_bearer(headers, self.access_token, "The access token is invalid or has expired.")

    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        if not path.lower().endswith(METRICS_SUFFIX):
            return 404, self.error_body(404, f"No HTTP resource was found for GET {path}")
        self._api_version(params, "2023-10-01")
        resource = self.resource_ids.get(path[:-len(METRICS_SUFFIX)].lower())
        if resource is None:
            return 404, self.error_body(404, f"The Resource '{path[:-len(METRICS_SUFFIX)]}' was not found.")
        return 200, self._metrics(resource, params)

    def handle_post(self, path: str, params: dict[str, list[str]], body: Any) -> tuple[int, dict]:
        if not path.lower().endswith(QUERY_SUFFIX):
            return 404, self.error_body(404, f"No HTTP resource was found for POST {path}")
        self._api_version(params, "2023-11-01")
        scope = path[:-len(QUERY_SUFFIX)]
        if self.cost_scope is None or scope.lower() != self.cost_scope.lower():
            return 403, self.error_body(403, "The client does not have authorization to perform action "
                                             f"'Microsoft.CostManagement/query/read' over scope '{scope}'.")
        return 200, self._query(path, params, body)

    @staticmethod
    def _api_version(params, expected: str) -> None:
        version = last_param(params, "api-version")
        if not version:
            raise BadRequest("The api-version query parameter (?api-version=) is required for all requests.")
        if version != expected:
            raise BadRequest(f"The stub serves api-version {expected}, not {version}")

    # -- Azure Monitor metrics ----------------------------------------------------------------------------------
    def _metrics(self, resource: str, params) -> dict:
        names = [n.strip() for n in (last_param(params, "metricnames") or "").split(",") if n.strip()]
        if not names:
            raise BadRequest("metricnames is required")
        unknown = [n for n in names if n not in _METRICS]
        if unknown:
            raise BadRequest(f"Failed to find metric configuration for provider: Microsoft.CognitiveServices, "
                             f"resource Type: accounts, metric: {unknown[0]}")
        timespan = last_param(params, "timespan") or ""
        if "/" not in timespan:
            raise BadRequest("timespan must be 'start/end'")
        start, end = (_parse_time(t, "timespan") for t in timespan.split("/", 1))
        if start % DAY or end % DAY or end <= start:
            raise BadRequest("The stub only serves timespans between UTC midnights")
        if last_param(params, "interval") != "P1D":
            raise BadRequest("The stub only serves interval=P1D")
        if "total" not in [a.strip().lower() for a in (last_param(params, "aggregation") or "").split(",")]:
            raise BadRequest("The stub needs aggregation=Total")
        try:
            top = int(last_param(params, "top", 10))
        except ValueError:
            raise BadRequest("top must be an integer") from None
        split, fixed = self._parse_filter(last_param(params, "$filter"))
        records = [r for r in self.usage if r["resource_id"] == resource and start <= day_ts(r["date"]) < end
                   and all(str(r.get(_DIMENSIONS[d][1])) == v for d, v in fixed.items())]
        days = list(range(start, end, DAY))
        value = []
        for name in names:
            localized, of = _METRICS[name]
            groups: dict[tuple, dict[int, int]] = {}
            for r in records:
                key = tuple(r.get(_DIMENSIONS[d][1]) for d in split)
                per_day = groups.setdefault(key, {})
                per_day[day_ts(r["date"])] = per_day.get(day_ts(r["date"]), 0) + of(r)
            if not groups and not split:
                groups[()] = {}
            ranked = sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), [str(x) for x in kv[0]]))[:top]
            series = [{"metadatavalues": [{"name": {"value": d, "localizedValue": _DIMENSIONS[d][0]}, "value": v}
                                          for d, v in zip(split, key)],
                       "data": [{"timeStamp": rfc3339(ts), "total": float(per_day.get(ts, 0))} for ts in days]}
                      for key, per_day in ranked]
            value.append({"id": f"{resource}/providers/Microsoft.Insights/metrics/{name}",
                          "type": "Microsoft.Insights/metrics", "name": {"value": name, "localizedValue": localized},
                          "displayDescription": localized, "unit": "Count", "timeseries": series,
                          "errorCode": "Success"})
        return {"cost": 0, "timespan": timespan, "interval": "P1D", "value": value,
                "namespace": "Microsoft.CognitiveServices/accounts", "resourceregion": "eastus"}

    @staticmethod
    def _parse_filter(raw: str | None) -> tuple[list[str], dict[str, str]]:
        split: list[str] = []
        fixed: dict[str, str] = {}
        if not raw:
            return split, fixed
        for clause in re.split(r"\s+and\s+", raw.strip(), flags=re.IGNORECASE):
            m = _FILTER_CLAUSE.match(clause)
            if not m or m.group(1).lower() not in _DIMENSIONS:
                raise BadRequest(f"Invalid $filter clause: {clause!r}")
            dim = m.group(1).lower()
            if m.group(2) == "*":
                split.append(dim)
            else:
                fixed[dim] = m.group(2)
        return split, fixed

    # -- Cost Management query ------------------------------------------------------------------------------
    def _query(self, path: str, params, body: Any) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object")
        if body.get("type") not in ("ActualCost", "AmortizedCost", "Usage"):
            raise BadRequest(f"Invalid query type {body.get('type')!r}")
        if body.get("timeframe") != "Custom" or not isinstance(body.get("timePeriod"), dict):
            raise BadRequest("The stub serves timeframe=Custom with a timePeriod")
        start = _parse_time(str(body["timePeriod"].get("from", "")), "timePeriod.from") // DAY * DAY
        end = _parse_time(str(body["timePeriod"].get("to", "")), "timePeriod.to")
        if end < start:
            raise BadRequest("timePeriod.to is before timePeriod.from")
        dataset = body.get("dataset") or {}
        if dataset.get("granularity") != "Daily":
            raise BadRequest("The stub serves granularity=Daily")
        aggregation = dataset.get("aggregation") or {}
        if len(aggregation) != 1:
            raise BadRequest("The stub serves exactly one aggregation")
        (measure,) = [a.get("name") for a in aggregation.values()]
        if measure not in ("Cost", "PreTaxCost") or list(aggregation.values())[0].get("function") != "Sum":
            raise BadRequest(f"Invalid aggregation {aggregation!r}")
        grouping = dataset.get("grouping") or []
        if len(grouping) > 2:
            raise BadRequest("Query can have at most 2 grouping clauses")
        dims = []
        for g in grouping:
            name = str(g.get("name", "")).lower()
            if g.get("type") != "Dimension" or name not in _COST_DIMENSIONS:
                raise BadRequest(f"Invalid grouping {g!r}")
            dims.append(name)
        lines = [c for c in self.costs if start <= day_ts(c["date"]) <= end
                 and self._matches(c, dataset.get("filter"))]
        totals: dict[tuple, Decimal] = {}
        for c in lines:
            key = (c["date"], *(c.get(_COST_DIMENSIONS[d][1]) for d in dims), c.get("currency", "USD"))
            totals[key] = totals.get(key, Decimal(0)) + Decimal(c["amount"])
        rows = [[float(amount), int(key[0].strftime("%Y%m%d")), *key[1:]] for key, amount in sorted(
            totals.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]
        token = last_param(params, "$skiptoken")
        offset = decode_cursor("costquery", token) if token else 0
        page = rows[offset:offset + self.page_size]
        more = offset + self.page_size < len(rows)
        next_link = None
        if more:
            next_link = (f"{self.base_url}{path}?api-version=2023-11-01&$skiptoken="
                         f"{encode_cursor('costquery', offset + self.page_size)}")
        columns = ([{"name": measure, "type": "Number"}, {"name": "UsageDate", "type": "Number"}]
                   + [{"name": _COST_DIMENSIONS[d][0], "type": "String"} for d in dims]
                   + [{"name": "Currency", "type": "String"}])
        return {"id": f"{path}/stub-query", "name": "stub-query", "type": "Microsoft.CostManagement/query",
                "location": None, "sku": None, "eTag": None,
                "properties": {"nextLink": next_link, "columns": columns, "rows": page}}

    def _matches(self, line: dict, flt: Any) -> bool:
        if not flt:
            return True
        if "and" in flt:
            return all(self._matches(line, f) for f in flt["and"])
        if "or" in flt:
            return any(self._matches(line, f) for f in flt["or"])
        if "not" in flt:
            return not self._matches(line, flt["not"])
        cond = flt.get("dimensions")
        if not isinstance(cond, dict) or cond.get("operator") != "In":
            raise BadRequest(f"The stub only serves dimension In filters, not {flt!r}")
        name = str(cond.get("name", "")).lower()
        if name not in _COST_DIMENSIONS:
            raise BadRequest(f"Invalid filter dimension {cond.get('name')!r}")
        return str(line.get(_COST_DIMENSIONS[name][1])).lower() in {str(v).lower() for v in cond.get("values", [])}


