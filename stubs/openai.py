"""A loopback stand-in for the OpenAI Admin API (usage completions + costs) over real HTTP.

    with OpenAIStub(admin_key="sk-admin-test", usage=openai_demo_usage(start, 30, seed=7)) as api:
        api.base_url                          # http://127.0.0.1:PORT/v1
        api.fail_next(status=429, retry_after="0", times=2)
        ...
        api.requests                          # [{"method", "path", "params", "status"}, ...]

Serves, in the documented shapes:
  GET /v1/organization/usage/completions  start_time (required), end_time, bucket_width=1d,
      group_by (project_id, user_id, api_key_id, model, batch, service_tier), project_ids, models,
      batch, limit (1-31, default 7), page
  GET /v1/organization/costs              start_time (required), end_time, bucket_width=1d,
      group_by (project_id, line_item), project_ids, limit (1-180, default 7), page
Fields not grouped by come back null and are summed across. Costs are computed from the usage held
(`stubs.genai_data.openai_demo_costs`) unless `costs=` is given. Every request needs
`Authorization: Bearer <admin_key>`; anything else gets a 401 JSON error like the real API.

Server plumbing, fault injection (`fail_next`, `enqueue`, `drop=True`) and the request log come from
`stubs.http_stub.LoopbackStub`.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Mapping

from stubs.genai_data import openai_demo_costs
from stubs.http_stub import (DAY, AdminApiStub, BadRequest, day_ts, decode_cursor, encode_cursor, group_records,
                             last_param)

USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")
COST_GROUPS = ("project_id", "line_item")
_USAGE_NUMBERS = ("input_tokens", "input_cached_tokens", "output_tokens", "input_audio_tokens",
                  "output_audio_tokens", "num_model_requests")
_OPTIONAL_NUMBERS = ("input_uncached_tokens", "input_text_tokens", "input_image_tokens",
                     "input_cached_text_tokens", "input_cached_image_tokens", "input_cached_audio_tokens",
                     "input_cache_write_tokens", "input_cache_write_12h_tokens", "output_text_tokens",
                     "output_image_tokens")


class OpenAIStub(AdminApiStub):
    name = "openai-stub"
    base_path = "/v1"
    default_admin_key = "sk-admin-stub-key"
    demo_costs = staticmethod(openai_demo_costs)

    def error_body(self, status: int, message: str) -> dict:
        kind = {429: "rate_limit_exceeded", 401: "invalid_request_error",
                400: "invalid_request_error"}.get(status, "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        auth = headers.get("Authorization", "")
        if auth == f"Bearer {self.admin_key}":
            return None
        return 401, {"error": {
            "message": f"Incorrect API key provided: {_masked(auth)}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}

    # -- the API -----------------------------------------------------------------------------------
    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        if path == "/v1/organization/usage/completions":
            return 200, self._page("usage", params, 7, 31, USAGE_GROUPS, self._usage_results)
        if path == "/v1/organization/costs":
            return 200, self._page("costs", params, 7, 180, COST_GROUPS, self._cost_results)
        return 404, {"error": {"message": f"Unknown request URL: GET {path}.", "type": "invalid_request_error",
                               "param": None, "code": "unknown_url"}}

    def _page(self, kind, params, default_limit, max_limit, groupable, results_for) -> dict:
        def one(name, default=None):
            return last_param(params, name, default)

        if one("start_time") is None:
            raise BadRequest("Missing required parameter: 'start_time'.")
        try:
            start = int(one("start_time"))
            limit = int(one("limit", default_limit))
            last_data = max((day_ts(r["date"]) for r in self.usage), default=start) + DAY
            end = int(one("end_time", max(last_data, start + DAY)))
        except ValueError:
            raise BadRequest("start_time, end_time and limit must be integers.") from None
        if one("bucket_width", "1d") != "1d":
            raise BadRequest("The stub only serves bucket_width=1d.")
        if not 1 <= limit <= max_limit:
            raise BadRequest(f"Invalid 'limit': must be between 1 and {max_limit}.")
        group_by = params.get("group_by", []) + params.get("group_by[]", [])
        bad = [g for g in group_by if g not in groupable]
        if bad:
            raise BadRequest(f"Invalid 'group_by' value(s): {bad}.")
        cursor = one("page")
        first = decode_cursor(kind, cursor) if cursor else start
        starts = list(range(first, end, DAY))
        data = []
        for b_start in starts[:limit]:
            b_end = min(b_start + DAY, end)
            data.append({"object": "bucket", "start_time": b_start, "end_time": b_end,
                         "results": results_for(b_start, b_end, set(group_by), params)})
        more = len(starts) > limit
        return {"object": "page", "data": data, "has_more": more,
                "next_page": encode_cursor(kind, starts[limit]) if more else None}

    @staticmethod
    def _in_bucket(day: dt.date, b_start: int, b_end: int) -> bool:
        return b_start <= day_ts(day) < b_end

    def _usage_results(self, b_start, b_end, group_by, params) -> list[dict]:
        projects, models = set(params.get("project_ids", [])), set(params.get("models", []))
        batch_filter = params.get("batch", [None])[-1]
        wanted = [r for r in self.usage if self._in_bucket(r["date"], b_start, b_end)
                  and not (projects and r.get("project_id") not in projects)
                  and not (models and r.get("model") not in models)
                  and (batch_filter is None or bool(r.get("batch")) == (batch_filter.lower() == "true"))]
        out = []
        for key, members in group_records(wanted, USAGE_GROUPS, group_by):
            g = {"object": "organization.usage.completions.result", **{n: 0 for n in _USAGE_NUMBERS},
                 **dict(zip(USAGE_GROUPS, key))}
            for r in members:
                for n in _USAGE_NUMBERS:
                    g[n] += int(r.get(n) or 0)
                for n in _OPTIONAL_NUMBERS:
                    if n in r:
                        g[n] = g.get(n, 0) + int(r[n] or 0)
            out.append(g)
        return out

    def _cost_results(self, b_start, b_end, group_by, params) -> list[dict]:
        projects = set(params.get("project_ids", []))
        wanted = [c for c in self.costs if self._in_bucket(c["date"], b_start, b_end)
                  and not (projects and c.get("project_id") not in projects)]
        return [{"object": "organization.costs.result",
                 "amount": {"value": sum((Decimal(c["amount"]) for c in members), Decimal(0)),
                            "currency": members[0].get("currency", "usd")},
                 **dict(zip(COST_GROUPS, key))}
                for key, members in group_records(wanted, COST_GROUPS, group_by)]


def _masked(auth: str) -> str:
    """The key as the real API echoes it back: first and last few characters only."""
    token = auth.removeprefix("Bearer ").strip()
    return f"{token[:8]}{'*' * 8}{token[-4:]}" if len(token) > 12 else "****"
