"""The loopback HTTP plumbing every provider stub shares: a threaded server on 127.0.0.1, a fault
queue, a request log, cursor helpers and JSON answers.

A provider stub subclasses `LoopbackStub` and fills in

    name                    thread / server label
    base_path               appended to http://HOST:PORT to make `base_url` (e.g. "/v1"; none by default)
    authorized(headers)     None when the request may proceed, else (status, body) to refuse it
    handle(path, params)    (status, body) for an authorized GET; raise BadRequest for a 400
    error_body(status, msg) the provider's error envelope (used by fail_next and BadRequest)

Fault injection: `fail_next(...)`/`enqueue(...)` put responses on a queue served (before auth) to
the next matching requests, then the real answer resumes. `drop=True` closes the connection
without answering, to exercise connection-error retries; `drip=S` sends the headers, then the body
one byte every S seconds (a provider that never quite stops answering).

Slow providers: `hold(path)` makes matching requests wait (the connection open, nothing sent) until
`release()`; `wait_held()` blocks until one is waiting, so a test knows its run is mid-request.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from collections import deque
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Container, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

DAY = 86400


class BadRequest(Exception):
    """Raised by a stub's handle() for a request the real API would answer with HTTP 400."""


def day_ts(day: dt.date) -> int:
    """Unix seconds of UTC midnight starting `day`."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def rfc3339(ts: int) -> str:
    """Epoch seconds as `2025-01-31T00:00:00Z`, the form these APIs write times in."""
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(raw: str, *, invalid: str, no_zone: str | None) -> int:
    """Epoch seconds of an RFC 3339 time: BadRequest(invalid) when it is not one; a time without a zone is
    BadRequest(no_zone), or UTC when no_zone is None (the real APIs differ on that)."""
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(invalid) from None
    if when.tzinfo is None:
        if no_zone is not None:
            raise BadRequest(no_zone)
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def encode_cursor(kind: str, ts: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"{kind}:{ts}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    try:
        raw = cursor.removeprefix("page_")
        k, ts = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        if k != kind:
            raise ValueError
        return int(ts)
    except Exception:  # noqa: BLE001 - any malformed cursor is the caller's error
        raise BadRequest(f"Invalid page cursor: {cursor!r}") from None


def last_param(params: Mapping[str, list[str]], name: str, default: Any = None) -> Any:
    values = params.get(name)
    return values[-1] if values else default


def group_records(records: Iterable[dict], dims: tuple[str, ...], group_by: Container[str]
                  ) -> list[tuple[tuple, list[dict]]]:
    """Records grouped the way a usage API groups them: dimensions in `group_by` keep their value,
    the others become None (summed across). Groups come back in a stable order."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(d) if d in group_by else None for d in dims), []).append(r)
    return sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0]))


def json_default(v: Any):
    if isinstance(v, Decimal):  # sent as a JSON number; stubs that need strings put strings in the body
        return float(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    raise TypeError(type(v).__name__)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up (a killed job) is no news
            super().handle_error(request, client_address)


class LoopbackStub:
    name = "stub"
    base_path = ""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._faults: deque[dict] = deque()
        self._log: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._hold: str | None = None  # path part of held requests ("" = every path)
        self._released = threading.Event()
        self._released.set()
        self._waiting = threading.Semaphore(0)

    # -- what a provider stub provides ---------------------------------------------------------------
    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        raise NotImplementedError

    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        raise NotImplementedError

    def handle_post(self, path: str, params: dict[str, list[str]], body: Any) -> tuple[int, dict]:
        """A POST with a JSON body (query APIs); stubs of GET-only APIs answer 405."""
        return 405, self.error_body(405, f"POST is not supported on {path}")

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"message": message}}

    def refuse_bearer(self, headers: Mapping[str, str], token: str, message: str) -> tuple[int, dict] | None:
        """`authorized` for APIs that take `Authorization: Bearer <token>` and answer 401 in error_body."""
        if headers.get("Authorization", "") != f"Bearer {token}":
            return 401, self.error_body(401, message)
        return None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self):
        if self._server is not None:
            return self
        handler = type(f"{type(self).__name__}Handler", (self.handler_class,),
                       {"stub": self, "server_version": f"{self.name}/1"})
        self._server = _QuietServer((self._host, self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.base_path}"

    # -- slow providers --------------------------------------------------------------------------------
    def hold(self, path: str | None = None) -> None:
        """Requests whose path contains `path` (every request when None) wait until release()."""
        with self._lock:
            self._hold = path or ""
            self._released.clear()

    def release(self) -> None:
        with self._lock:
            self._hold = None
            self._released.set()

    def wait_held(self, timeout: float = 10) -> bool:
        """True once a request is waiting on hold (consumes one such notice)."""
        return self._waiting.acquire(timeout=timeout)

    def _maybe_hold(self, path: str) -> None:
        with self._lock:
            held = self._hold is not None and self._hold in path
        if held:
            self._waiting.release()
            self._released.wait()

    # -- fault injection and request log -------------------------------------------------------------
    def enqueue(self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None,
                times: int = 1, path: str | None = None, drop: bool = False, after: int = 0,
                drip: float | None = None) -> None:
        """Serve this response to the next `times` requests (whose path contains `path`, if given),
        once `after` such requests have been answered normally (e.g. `after=1`: from the second page)."""
        with self._lock:
            for _ in range(after):
                self._faults.append({"pass": True, "path": path})
            for _ in range(times):
                self._faults.append({"status": status, "body": body, "headers": dict(headers or {}),
                                     "path": path, "drop": drop, "drip": drip})

    def fail_next(self, status: int = 500, *, retry_after: str | None = None, times: int = 1,
                  path: str | None = None, message: str | None = None, drop: bool = False,
                  after: int = 0) -> None:
        """Queue `times` error answers (e.g. 429 with `retry_after="0"`, or 500) before the real one."""
        body = self.error_body(status, message or f"Injected HTTP {status} from the stub")
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.enqueue(status, body, headers=headers, times=times, path=path, drop=drop, after=after)

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
                    return None if f.get("pass") else f
        return None

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._log.append(entry)


class AdminApiStub(LoopbackStub):
    """A GenAI admin API holding usage records and cost lines (computed from the usage by
    `demo_costs` unless given), behind one admin key."""
    default_admin_key = ""
    demo_costs: Any = None  # staticmethod(usage records -> cost lines)

    def __init__(self, admin_key: str | None = None, usage: list[dict] | None = None, *,
                 costs: list[dict] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.admin_key = self.default_admin_key if admin_key is None else admin_key
        self.usage = list(usage or [])
        self.costs = list(costs) if costs is not None else self.demo_costs(self.usage)


class _Handler(BaseHTTPRequestHandler):
    stub: LoopbackStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body, default=json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _drip(self, status: int, body: Any, every: float) -> None:
        """Headers now, then the body a byte at a time until the client gives up."""
        raw = json.dumps(body, default=json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.close_connection = True
        try:
            for i in range(len(raw)):
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
                time.sleep(every)
        except OSError:  # the client hung up: what a deadline is for
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        params = parse_qs(url.query, keep_blank_values=True)
        entry = {"method": method, "path": path, "params": params, "status": None}
        body = None
        if method == "POST":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            entry["body"] = body
        self.stub._maybe_hold(path)
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
            if fault.get("drip"):
                self._drip(fault["status"], fault["body"], fault["drip"])
                return
            self._send(fault["status"], fault["body"], fault["headers"])
            return
        refusal = self.stub.authorized(self.headers)
        if refusal is not None:
            status, answer = refusal
        else:
            try:
                status, answer = (self.stub.handle(path, params) if method == "GET"
                                  else self.stub.handle_post(path, params, body))
            except BadRequest as e:
                status, answer = 400, self.stub.error_body(400, str(e))
        entry["status"] = status
        self.stub._record(entry)
        self._send(status, answer)


LoopbackStub.handler_class = _Handler  # stubs that answer other than JSON set their own subclass
