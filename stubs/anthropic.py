"""A loopback stand-in for the Anthropic Admin API (Messages usage report + cost report) over real HTTP.

    with AnthropicStub(admin_key="sk-ant-admin01-test", usage=anthropic_demo_usage(start, 30, seed=7)) as api:
        api.base_url                          # http://127.0.0.1:PORT  (paths start with /v1)
        api.fail_next(status=429, retry_after="0", times=2)
        api.requests                          # [{"method", "path", "params", "status"}, ...]

Serves, in the documented shapes:
  GET /v1/organizations/usage_report/messages  starting_at (required, RFC 3339), ending_at (exclusive),
      bucket_width=1d, group_by[] (api_key_id, workspace_id, model, service_tier, context_window,
      inference_geo, account_id, service_account_id), workspace_ids[], models[], service_tiers[],
      limit (1-31, default 7), page
  GET /v1/organizations/cost_report            starting_at (required), ending_at, bucket_width=1d,
      group_by[] (workspace_id, description), limit (1-31, default 7), page
Dimensions not grouped by come back null and are summed across; cost-line details (cost_type, model,
token_type, service_tier, ...) are only filled when grouped by description, as documented. Cost
`amount`s are decimal strings in cents; costs come from `stubs.genai_data.anthropic_demo_costs`
unless `costs=` is given. Requests need `x-api-key: <admin_key>` (else 401 authentication_error) and
an `anthropic-version` header (else 400).

Server plumbing, fault injection (`fail_next`, `enqueue`, `drop=True`) and the request log come from
`stubs.http_stub.LoopbackStub`.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Callable, Mapping

from stubs.genai_data import ANTHROPIC_TOKEN_FIELDS, anthropic_demo_costs
from stubs.http_stub import (DAY, AdminApiStub, BadRequest, day_ts, decode_cursor, encode_cursor, group_records,
                             last_param, parse_rfc3339, rfc3339)

USAGE_PATH = "/v1/organizations/usage_report/messages"
COSTS_PATH = "/v1/organizations/cost_report"
USAGE_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo",
                "account_id", "service_account_id")
COST_GROUPS = ("workspace_id", "description")
COST_DETAILS = ("cost_type", "model", "token_type", "service_tier", "context_window", "inference_geo")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def _parse_time(name: str, value: str) -> int:
    return parse_rfc3339(value, invalid=f"{name}: invalid RFC 3339 datetime {value!r}",
                         no_zone=f"{name}: a timezone is required")


class AnthropicStub(AdminApiStub):
    name = "anthropic-stub"
    default_admin_key = "sk-ant-admin01-stub-key"
    demo_costs = staticmethod(anthropic_demo_costs)

    def error_body(self, status: int, message: str) -> dict:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}

    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        if headers.get("x-api-key", "") != self.admin_key:
            return 401, self.error_body(401, "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return 400, self.error_body(400, "anthropic-version: header is required")
        return None

    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        if path == USAGE_PATH:
            return 200, self._page("usage", params, USAGE_GROUPS, self._usage_results)
        if path == COSTS_PATH:
            return 200, self._page("costs", params, COST_GROUPS, self._cost_results)
        return 404, self.error_body(404, f"Not found: GET {path}")

    def _page(self, kind: str, params, groupable, results_for: Callable) -> dict:
        raw_start = last_param(params, "starting_at")
        if raw_start is None:
            raise BadRequest("starting_at: Field required")
        start = _parse_time("starting_at", raw_start) // DAY * DAY  # snapped to the start of the UTC day
        records = self.usage if kind == "usage" else self.costs
        last_data = max((day_ts(r["date"]) for r in records), default=start) + DAY
        raw_end = last_param(params, "ending_at")
        end = _parse_time("ending_at", raw_end) if raw_end else max(last_data, start + DAY)
        if last_param(params, "bucket_width", "1d") != "1d":
            raise BadRequest("The stub only serves bucket_width=1d.")
        try:
            limit = int(last_param(params, "limit", 7))
        except ValueError:
            raise BadRequest("limit: must be an integer") from None
        if not 1 <= limit <= 31:
            raise BadRequest("limit: must be between 1 and 31 for bucket_width=1d")
        group_by = params.get("group_by[]", [])
        bad = [g for g in group_by if g not in groupable]
        if bad:
            raise BadRequest(f"group_by[]: invalid value(s) {bad}")
        cursor = last_param(params, "page")
        first = decode_cursor(kind, cursor) if cursor else start
        starts = list(range(first, end, DAY))
        data = []
        for b_start in starts[:limit]:
            b_end = min(b_start + DAY, end)
            wanted = [r for r in records if b_start <= day_ts(r["date"]) < b_end]
            data.append({"starting_at": rfc3339(b_start), "ending_at": rfc3339(b_end),
                         "results": results_for(wanted, set(group_by), params)})
        more = len(starts) > limit
        return {"data": data, "has_more": more, "next_page": encode_cursor(kind, starts[limit]) if more else None}

    @staticmethod
    def _usage_results(records, group_by, params) -> list[dict]:
        for name, field in (("workspace_ids[]", "workspace_id"), ("models[]", "model"),
                            ("service_tiers[]", "service_tier")):
            allowed = set(params.get(name, []))
            if allowed:
                records = [r for r in records if r.get(field) in allowed]
        out = []
        for key, members in group_records(records, USAGE_GROUPS, group_by):
            total = {f: sum(int(r.get(f) or 0) for r in members) for f in ANTHROPIC_TOKEN_FIELDS}
            out.append({
                **dict(zip(USAGE_GROUPS, key)),
                "uncached_input_tokens": total["uncached_input_tokens"],
                "cache_read_input_tokens": total["cache_read_input_tokens"],
                "cache_creation": {"ephemeral_5m_input_tokens": total["ephemeral_5m_input_tokens"],
                                   "ephemeral_1h_input_tokens": total["ephemeral_1h_input_tokens"]},
                "output_tokens": total["output_tokens"],
                "server_tool_use": {"web_search_requests": total["web_search_requests"]},
            })
        return out

    @staticmethod
    def _cost_results(records, group_by, params) -> list[dict]:
        out = []
        for key, members in group_records(records, COST_GROUPS, group_by):
            amount = sum((Decimal(c["amount"]) for c in members), Decimal(0))
            details = {d: (members[0].get(d) if "description" in group_by else None) for d in COST_DETAILS}
            out.append({"amount": format(amount, "f"), "currency": members[0].get("currency", "USD"),
                        **dict(zip(COST_GROUPS, key)), **details})
        return out
