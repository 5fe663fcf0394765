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

Fault injection: `fail_next(...)`/`enqueue(...)` put responses on a queue served (before auth) to
the next matching requests, then the real answer resumes. `drop=True` closes the connection
without answering, to exercise connection-error retries.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections import deque
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stubs.genai_data import openai_demo_costs

DAY = 86400
USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")
COST_GROUPS = ("project_id", "line_item")
_USAGE_NUMBERS = ("input_tokens", "input_cached_tokens", "output_tokens", "input_audio_tokens",
                  "output_audio_tokens", "num_model_requests")
_OPTIONAL_NUMBERS = ("input_uncached_tokens", "input_text_tokens", "input_image_tokens",
                     "input_cached_text_tokens", "input_cached_image_tokens", "input_cached_audio_tokens",
                     "input_cache_write_tokens", "input_cache_write_12h_tokens", "output_text_tokens",
                     "output_image_tokens")


class _BadRequest(Exception):
    pass


def _day_ts(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _encode_cursor(kind: str, ts: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"{kind}:{ts}".encode()).decode().rstrip("=")


def _decode_cursor(kind: str, cursor: str) -> int:
    try:
        raw = cursor.removeprefix("page_")
        k, ts = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        if k != kind:
            raise ValueError
        return int(ts)
    except Exception:  # noqa: BLE001 - any malformed cursor is the caller's error
        raise _BadRequest(f"Invalid page cursor: {cursor!r}") from None


def _json_default(v: Any):
    if isinstance(v, Decimal):  # sent as a JSON number, like the real API's float
        return float(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    raise TypeError(type(v).__name__)


class OpenAIStub:
    def __init__(self, admin_key: str = "sk-admin-stub-key", usage: list[dict] | None = None, *,
                 costs: list[dict] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.admin_key = admin_key
        self.usage = list(usage or [])
        self.costs = list(costs) if costs is not None else openai_demo_costs(self.usage)
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._faults: deque[dict] = deque()
        self._log: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "OpenAIStub":
        if self._server is not None:
            return self
        stub = self

        class Handler(_Handler):
            pass

        Handler.stub = stub
        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "OpenAIStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("OpenAIStub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- fault injection and request log -------------------------------------------------------------
    def enqueue(self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None,
                times: int = 1, path: str | None = None, drop: bool = False) -> None:
        """Serve this response to the next `times` requests (whose path contains `path`, if given)."""
        with self._lock:
            for _ in range(times):
                self._faults.append({"status": status, "body": body, "headers": dict(headers or {}),
                                     "path": path, "drop": drop})

    def fail_next(self, status: int = 500, *, retry_after: str | None = None, times: int = 1,
                  path: str | None = None, message: str | None = None, drop: bool = False) -> None:
        """Queue `times` error answers (e.g. 429 with `retry_after="0"`, or 500) before the real one."""
        kind = {429: "rate_limit_exceeded", 401: "invalid_request_error"}.get(status, "server_error")
        body = {"error": {"message": message or f"Injected HTTP {status} from the stub", "type": kind,
                          "param": None, "code": None}}
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.enqueue(status, body, headers=headers, times=times, path=path, drop=drop)

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._log]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _next_fault(self, path: str) -> dict | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f["path"] is None or f["path"] in path:
                    del self._faults[i]
                    return f
        return None

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._log.append(entry)

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
            values = params.get(name)
            return values[-1] if values else default

        if one("start_time") is None:
            raise _BadRequest("Missing required parameter: 'start_time'.")
        try:
            start = int(one("start_time"))
            limit = int(one("limit", default_limit))
            last_data = max((_day_ts(r["date"]) for r in self.usage), default=start) + DAY
            end = int(one("end_time", max(last_data, start + DAY)))
        except ValueError:
            raise _BadRequest("start_time, end_time and limit must be integers.") from None
        if one("bucket_width", "1d") != "1d":
            raise _BadRequest("The stub only serves bucket_width=1d.")
        if not 1 <= limit <= max_limit:
            raise _BadRequest(f"Invalid 'limit': must be between 1 and {max_limit}.")
        group_by = params.get("group_by", []) + params.get("group_by[]", [])
        bad = [g for g in group_by if g not in groupable]
        if bad:
            raise _BadRequest(f"Invalid 'group_by' value(s): {bad}.")
        cursor = one("page")
        first = _decode_cursor(kind, cursor) if cursor else start
        starts = list(range(first, end, DAY))
        data = []
        for b_start in starts[:limit]:
            b_end = min(b_start + DAY, end)
            data.append({"object": "bucket", "start_time": b_start, "end_time": b_end,
                         "results": results_for(b_start, b_end, set(group_by), params)})
        more = len(starts) > limit
        return {"object": "page", "data": data, "has_more": more,
                "next_page": _encode_cursor(kind, starts[limit]) if more else None}

    @staticmethod
    def _in_bucket(day: dt.date, b_start: int, b_end: int) -> bool:
        return b_start <= _day_ts(day) < b_end

    def _usage_results(self, b_start, b_end, group_by, params) -> list[dict]:
        projects, models = set(params.get("project_ids", [])), set(params.get("models", []))
        batch_filter = params.get("batch", [None])[-1]
        groups: dict[tuple, dict] = {}
        for r in self.usage:
            if not self._in_bucket(r["date"], b_start, b_end):
                continue
            if (projects and r.get("project_id") not in projects) or (models and r.get("model") not in models):
                continue
            if batch_filter is not None and bool(r.get("batch")) != (batch_filter.lower() == "true"):
                continue
            key = tuple(r.get(g) if g in group_by else None for g in USAGE_GROUPS)
            g = groups.get(key)
            if g is None:
                g = groups[key] = {"object": "organization.usage.completions.result",
                                   **{n: 0 for n in _USAGE_NUMBERS}}
                g.update(dict(zip(USAGE_GROUPS, key)))
            for n in _USAGE_NUMBERS:
                g[n] += int(r.get(n) or 0)
            for n in _OPTIONAL_NUMBERS:
                if n in r:
                    g[n] = g.get(n, 0) + int(r[n] or 0)
        return [groups[k] for k in sorted(groups, key=lambda k: tuple(str(x) for x in k))]

    def _cost_results(self, b_start, b_end, group_by, params) -> list[dict]:
        projects = set(params.get("project_ids", []))
        groups: dict[tuple, dict] = {}
        for c in self.costs:
            if not self._in_bucket(c["date"], b_start, b_end):
                continue
            if projects and c.get("project_id") not in projects:
                continue
            key = tuple(c.get(g) if g in group_by else None for g in COST_GROUPS)
            g = groups.get(key)
            if g is None:
                g = groups[key] = {"object": "organization.costs.result",
                                   "amount": {"value": Decimal(0), "currency": c.get("currency", "usd")},
                                   **dict(zip(COST_GROUPS, key))}
            g["amount"]["value"] += Decimal(c["amount"])
        return [groups[k] for k in sorted(groups, key=lambda k: tuple(str(x) for x in k))]


def _masked(auth: str) -> str:
    """The key as the real API echoes it back: first and last few characters only."""
    token = auth.removeprefix("Bearer ").strip()
    return f"{token[:8]}{'*' * 8}{token[-4:]}" if len(token) > 12 else "****"


class _Handler(BaseHTTPRequestHandler):
    stub: OpenAIStub
    protocol_version = "HTTP/1.1"
    server_version = "openai-stub/1"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body, default=_json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        params = parse_qs(url.query, keep_blank_values=True)
        entry = {"method": "GET", "path": path, "params": params, "status": None}
        fault = self.stub._next_fault(path)
        if fault is not None:
            entry["injected"] = True
            if fault["drop"]:
                entry["status"] = "dropped"
                self.stub._record(entry)
                self.close_connection = True
                return
            entry["status"] = fault["status"]
            self.stub._record(entry)
            self._send(fault["status"], fault["body"], fault["headers"])
            return
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {self.stub.admin_key}":
            entry["status"] = 401
            self.stub._record(entry)
            self._send(401, {"error": {
                "message": f"Incorrect API key provided: {_masked(auth)}. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
            return
        try:
            status, body = self.stub.handle(path, params)
        except _BadRequest as e:
            status, body = 400, {"error": {"message": str(e), "type": "invalid_request_error",
                                           "param": None, "code": None}}
        entry["status"] = status
        self.stub._record(entry)
        self._send(status, body)
