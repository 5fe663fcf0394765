"""A small retrying JSON HTTP client shared by the provider extractors.

    client = ApiClient("https://api.openai.com/v1", {"Authorization": f"Bearer {key}"},
                       provider="OpenAI", credential_kind="openai", org_slug=ctx.org_slug, log=ctx.log)
    page = client.get_json("/organization/costs", {"start_time": 0, "group_by": ["project_id", "line_item"]})

- Retries 429 (honouring `Retry-After`, seconds or HTTP-date, capped at `retry_after_max`), 408, 5xx
  and connection errors with exponential backoff plus jitter, at most `max_attempts` requests in all.
- Deadlines: each request has a total deadline (`request_deadline`, default CLOUDACT_HTTP_REQUEST_DEADLINE_S
  = 120 s: the body is read in chunks, so a server dripping a byte at a time still ends), and inside a
  run (shared.lifecycle.current()) no request, retry or wait outlasts the run's deadline: a wait that
  would is not started, and the error names the provider and the request. Waits wake when the run
  is cancelled.
- 401/403 raise `CredentialError` telling the user how to add a new key; other 4xx raise
  `ExtractError` with the status, the provider's error code and a short message (never a body that is
  not the provider's JSON error: run errors are read by the tenant).
- Never logs or raises with a header value: log lines carry method, path, status and attempt only,
  and provider error text is scrubbed of the header values sent (also URL-encoded or base64), of
  values after secret-sounding names and of anything shaped like a key.
- In multi tenancy connections go only to public addresses (`shared.tenancy.PublicOnlyTransport`).
"""
from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
import random
import re
import time
from decimal import Decimal
from typing import Any, Callable, Mapping
from urllib.parse import quote, quote_plus

import httpx

from shared import lifecycle, tenancy
from shared.errors import CredentialError, ExtractError
from shared.config import env_number

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})  # 529: Anthropic "overloaded"
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|signature", re.IGNORECASE)
_SCHEMES = {"bearer", "basic", "token"}
_KEY_SHAPED = re.compile(r"\b(sk|pk|rk|key|token)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)


def retry_settings() -> dict[str, float]:
    """Retry knobs for extractors: defaults, overridable by environment for ops and tests.

    CLOUDACT_HTTP_MAX_ATTEMPTS (8), CLOUDACT_HTTP_BACKOFF_BASE (0.5 s), CLOUDACT_HTTP_BACKOFF_MAX (30 s).
    """
    def read(name: str, default: float, cast) -> float:
        return env_number(name, default, cast, least=1 if cast is int else 0)

    return {"max_attempts": read("CLOUDACT_HTTP_MAX_ATTEMPTS", 8, int),
            "backoff_base": read("CLOUDACT_HTTP_BACKOFF_BASE", 0.5, float),
            "backoff_max": read("CLOUDACT_HTTP_BACKOFF_MAX", 30.0, float)}


def request_deadline_default() -> float:
    """CLOUDACT_HTTP_REQUEST_DEADLINE_S (120 s): the most one request (connect to last byte) may take."""
    return env_number("CLOUDACT_HTTP_REQUEST_DEADLINE_S", 120.0, least=0, above=True)


class _Overdue(Exception):
    """A response still arriving at its deadline."""


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if absent/unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - now())


MESSAGE_MAX = 160  # characters of a provider's error message that reach a run's error
# `password=...`, `"secret": "..."`: values after a secret-sounding name, whatever the service that sent them.
_NAMED_SECRET = re.compile(
    r"""(?i)\b((?:db_?)?pass(?:word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)s?"""
    r"""(["']?\s*[=:]\s*["']?)[^\s"',;&]+""")


def _error_message(response: httpx.Response) -> str:
    """What a provider's error answer may tell the user: its error code and its own short message, from
    `{"error": {"code"|"type", "message"}}`, `{"error": "..."}`, `{"code", "message"}`. A body that is not such a
    JSON document (an HTML page, a proxy's or an internal service's text) is not repeated at all: error text
    is read by the tenant, so it must not become a way to read what the platform's network can reach."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    code = message = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            code = err.get("code") or err.get("type") or err.get("status")
            message = err.get("message")
        elif isinstance(err, str):
            code = err if re.fullmatch(r"[\w.:-]{1,64}", err) else None
            message = None if code else err
        code = code or doc.get("code") or doc.get("type")
        message = message or doc.get("message") or doc.get("detail") or doc.get("error_description")
    if not isinstance(code, (str, int)) or not re.fullmatch(r"[\w.:-]{1,64}", str(code)):
        code = None
    if not isinstance(message, str) or not message.strip():
        message = None
    else:
        message = " ".join(message.split())
        if len(message) > MESSAGE_MAX:
            message = message[:MESSAGE_MAX].rstrip() + " [cut]"
    if code is None and message is None:
        kind = (response.headers.get("content-type") or "no content type").split(";")[0].strip()
        return f"no provider error message ({kind}, {len(response.content)} bytes, not shown)"
    return f"{code}: {message}" if code and message else str(code or message)


def _secret_forms(value: str) -> set[str]:
    """The forms a secret takes in transit: as sent, URL-encoded, base64 (an Authorization: Basic header carries
    base64 of `user:password`, so its parts are secrets too)."""
    forms = {value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()}
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if decoded.isprintable() and len(decoded) >= 6:
        forms |= {decoded, *decoded.split(":", 1)}
    return {f for f in forms if len(f) >= 6}


def scrub_text(text: str, secrets: list[str]) -> str:
    """`text` without the given secrets (in any of their transit forms), named secrets or key-shaped strings."""
    for form in sorted({f for s in secrets for f in _secret_forms(s)}, key=len, reverse=True):
        text = text.replace(form, "***")
    text = _NAMED_SECRET.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    return _KEY_SHAPED.sub(lambda m: m.group(1) + "-***", text)


class ApiClient:
    """JSON from one provider API (GET, or POST for query APIs) with bounded retries. Use as a context manager or call close()."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float = 30,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30,
        sleep: Callable[[float], Any] | None = None,
        provider: str = "The provider",
        credential_kind: str | None = None,
        key_label: str = "admin key",
        org_slug: str = "ORG",
        retry_after_max: float = 300,
        request_deadline: float | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.timeout = timeout
        self.request_deadline = request_deadline if request_deadline is not None else request_deadline_default()
        self.provider = provider
        self.credential_kind = credential_kind or provider.lower()
        self.key_label = key_label
        self.org_slug = org_slug
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.sleep = sleep
        self.log = log or logging.getLogger("cloudact.http")
        self._rng = rng or random.Random()
        # Values of credential-bearing headers (and the token part of "Bearer x") are scrubbed from
        # any provider text that ends up in an error message.
        secret_values = [str(v) for k, v in headers.items() if _SECRET_HEADER.search(k)]
        self._secrets = sorted(
            {p for v in secret_values for p in (v, *v.split()) if len(p) >= 6 and p.lower() not in _SCHEMES},
            key=len, reverse=True,
        )
        # Multi tenancy: tenant-named hosts are connected to only at public addresses, checked per connection.
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=dict(headers), timeout=timeout,
                                  transport=transport or tenancy.transport())

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        return scrub_text(text, self._secrets)

    def _wait(self, seconds: float) -> None:
        sleep = time.sleep if self.sleep is None else self.sleep
        scope = lifecycle.current()
        if scope is not None and sleep is time.sleep:
            scope.wait(seconds)  # the real clock, waking when the run is cancelled
        else:
            sleep(seconds)

    def _send(self, method: str, path: str, query, json_body, budget: float) -> httpx.Response:
        """One request that ends within `budget` seconds: every read waits at most what is left, and
        the body is read in chunks with the clock checked between them (_Overdue past the budget)."""
        end = time.monotonic() + budget
        timeout = httpx.Timeout(min(self.timeout, budget))
        scope = lifecycle.current()
        with self._http.stream(method, path, params=query, json=json_body, timeout=timeout) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > end:
                    raise _Overdue
                if scope is not None and scope.stopped:
                    scope.checkpoint()
        # the body as read (decoded), with the headers that now describe it
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length")]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                              request=response.request)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): exponential, capped, with equal jitter (> 0)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _refused(self, status: int, path: str, response: httpx.Response) -> CredentialError:
        article = "an" if self.key_label[:1].lower() in "aeiou" else "a"
        detail = self.scrub(_error_message(response))
        return CredentialError(
            f"{self.provider} refused the {self.key_label} (HTTP {status}): it is invalid, expired or not "
            f"{article} {self.key_label}. Add a new one with "
            f"`cloudact credentials add {self.org_slug} {self.credential_kind} --from-json FILE`. "
            f"({self.provider} said: {detail})"
        )

    # -- the one verb extractors need ---------------------------------------------------------------
    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *,
                 parse_float: Callable[[str], Any] | None = Decimal) -> Any:
        """GET `path` (relative to base_url) and return the decoded JSON body (see request_json)."""
        return self.request_json("GET", path, params, parse_float=parse_float)

    def post_json(self, path: str, body: Any, params: Mapping[str, Any] | None = None, *,
                  parse_float: Callable[[str], Any] | None = Decimal) -> Any:
        """POST a JSON body (a query API such as Azure Cost Management) with the same retries."""
        return self.request_json("POST", path, params, json_body=body, parse_float=parse_float)

    def request_json(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                     json_body: Any = None, parse_float: Callable[[str], Any] | None = Decimal) -> Any:
        """Send `method path` (relative to base_url) and return the decoded JSON body.

        List values in `params` are sent as repeated keys; None values are left out; booleans are
        sent as `true`/`false`. JSON numbers with a fraction decode as Decimal unless `parse_float`
        says otherwise, so money never passes through a float.
        """
        query: list[tuple[str, str]] = []
        for k, v in (params or {}).items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                if item is None:
                    continue
                query.append((k, "true" if item is True else "false" if item is False else str(item)))
        last = "no response"
        scope = lifecycle.current()
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            budget = self.request_deadline
            if scope is not None:
                scope.checkpoint(f"waiting for {self.provider} to answer {method} {path} (attempt {attempt}, "
                                 f"last answer: {last})")
                budget = min(budget, scope.remaining())
            try:
                response = self._send(method, path, query, json_body, budget)
            except tenancy.TrustViolation as e:
                raise ExtractError(f"{self.provider}: the platform will not connect there: {e}") from None
            except (httpx.TransportError, _Overdue) as e:
                last = (f"no complete answer within {budget:.3g} s" if isinstance(e, _Overdue) or
                        isinstance(e, httpx.TimeoutException) and budget < self.timeout
                        else f"connection error ({type(e).__name__})")
                self.log.warning("%s %s attempt %d/%d: %s", method, path, attempt, self.max_attempts, last)
            else:
                status = response.status_code
                self.log.info("%s %s -> HTTP %d (attempt %d/%d)", method, path, status, attempt, self.max_attempts)
                if status < 300:
                    try:
                        return json.loads(response.content, parse_float=parse_float) if parse_float else response.json()
                    except ValueError:
                        raise ExtractError(
                            f"{self.provider} answered {method} {path} with HTTP {status} but the body is not JSON"
                        ) from None
                if status in (401, 403):
                    raise self._refused(status, path, response)
                if status not in RETRYABLE_STATUS:
                    raise ExtractError(
                        f"{self.provider} rejected {method} {path} (HTTP {status}): "
                        f"{self.scrub(_error_message(response))}"
                    )
                last = f"HTTP {status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    wait = min(retry_after, self.retry_after_max)
            if attempt == self.max_attempts:
                break
            if wait is None:
                wait = self.backoff(attempt)
            if scope is not None and wait >= scope.remaining():
                raise lifecycle.DeadlineExceeded(scope.deadline_message(
                    f"{self.provider} kept failing on {method} {path} (last answer: {last}; its next try was "
                    f"{wait:g} s away)"))
            self.log.warning("%s %s: %s, retrying in %.2fs (attempt %d/%d)", method, path, last, wait, attempt,
                             self.max_attempts)
            self._wait(wait)
        if scope is not None and scope.remaining() <= 0:
            raise lifecycle.DeadlineExceeded(scope.deadline_message(
                f"waiting for {self.provider} to answer {method} {path} (last answer: {last})"))
        raise ExtractError(
            f"{self.provider} kept failing on {method} {path}: last answer {last} after "
            f"{self.max_attempts} attempts. It may be an outage or rate limiting; retry the run later."
        )
