"""The HTTP API behind `run_pipeline`: routing, authentication, validation, responses.

POST /api/v1/pipelines/run/{org}/{pipeline path}   -> 202 {run_id, status}
GET  /api/v1/pipelines/runs/{org}/{run_id}         -> 200 {run_id, status, ...}
GET  /api/v1/pipelines/runs/{org}                  -> 200 {runs: [...]}
POST /api/v1/pipelines/runs/{org}/{run_id}/cancel  -> 200 {run_id, status: "cancelled", ...}
/api/v1/subscriptions/{org}[/{id}[/cancel]]        SaaS subscriptions (shared/subscriptions.py)
/api/v1/schedules/{org}[/{id}]                     per-org schedules (shared/schedules.py)
/api/v1/credentials/{org}[/{id}[/rotate]]          provider credentials: add, list, rotate, disable (DELETE)
/api/v1/price-overrides/{org}[/{id}[/end]]          negotiated GenAI prices (shared/price_overrides.py)
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import inputs, registry, runs
from shared.auth import check_key
from shared.bus.base import TOPIC_RUN_REQUESTS
from shared.naming import InvalidName, validate_org_slug
from shared.secrets import CredentialStore, NoCredential
from shared.tenants import get_org

RUN_PREFIX = "/api/v1/pipelines/run/"
RUNS_PREFIX = "/api/v1/pipelines/runs/"
SUBSCRIPTIONS_PREFIX = "/api/v1/subscriptions/"
SCHEDULES_PREFIX = "/api/v1/schedules/"
CREDENTIALS_PREFIX = "/api/v1/credentials/"
PRICE_OVERRIDES_PREFIX = "/api/v1/price-overrides/"
MAX_RANGE_DAYS = 400


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


def default_range(category: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """Cloud bills restate the open and previous month; usage APIs settle within a week."""
    if category == "cloud":
        first = today.replace(day=1)
        prev = (first - dt.timedelta(days=1)).replace(day=1)
        return prev, today
    return today - dt.timedelta(days=7), today - dt.timedelta(days=1)


def parse_run_body(body: Any, category: str, today: dt.date) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "bad_body", "the request body must be a JSON object")
    unknown = set(body) - {"start_date", "end_date", "credential_id", "resume"}
    if unknown:
        raise ApiError(400, "bad_body", f"unknown field(s): {', '.join(sorted(unknown))}; "
                       "allowed: start_date, end_date, credential_id, resume")
    if not isinstance(body.get("resume", False), bool):
        raise ApiError(400, "bad_body", "resume must be true or false")
    start, end = default_range(category, today)
    dates = {}
    for field, default in (("start_date", start), ("end_date", end)):
        value = body.get(field)
        if value is None:
            dates[field] = default
            continue
        try:
            dates[field] = dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:
            dates[field] = None
        if dates[field] is None:
            raise ApiError(400, "bad_dates", f"{field} must be a date as YYYY-MM-DD, got {value!r}")
        try:
            inputs.check_date(field, dates[field])
        except inputs.DateOutOfRange as e:
            raise ApiError(400, "bad_dates", str(e)) from None
    if ("start_date" in body) != ("end_date" in body):
        raise ApiError(400, "bad_dates", "give both start_date and end_date, or neither")
    if dates["start_date"] > dates["end_date"]:
        raise ApiError(400, "bad_dates", "start_date is after end_date")
    if dates["end_date"] > today:
        raise ApiError(400, "bad_dates", f"end_date {dates['end_date']} is in the future (today is {today} UTC)")
    if (dates["end_date"] - dates["start_date"]).days >= MAX_RANGE_DAYS:
        raise ApiError(400, "bad_dates", f"a run covers at most {MAX_RANGE_DAYS} days; split the backfill")
    cred = body.get("credential_id")
    if cred is not None and (not isinstance(cred, str) or not cred or len(cred) > 100):
        raise ApiError(400, "bad_body", "credential_id must be a non-empty string")
    return {**dates, "credential_id": cred, "resume": body.get("resume", False)}


def month_chunks(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """[start, end] cut at month boundaries: cloud bills are restated and reconciled per month."""
    chunks = []
    while start <= end:
        next_month = (start.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        chunks.append((start, min(end, next_month - dt.timedelta(days=1))))
        start = next_month
    return chunks


def request_run(rt, org: str, pipeline_path: str, body: Any, trigger: str) -> dict[str, Any]:
    """Validate and queue a run, then publish its request. The HTTP handler, the CLI and schedules
    all come through here."""
    wh = rt.warehouse
    try:
        validate_org_slug(org)
    except InvalidName as e:
        raise ApiError(400, "bad_org", str(e)) from None
    if get_org(wh, org, missing_ok=True) is None:
        raise ApiError(404, "unknown_org", f"no organization {org!r}")
    try:
        pipeline = registry.get(pipeline_path)
    except registry.UnknownPipeline as e:
        raise ApiError(404, "unknown_pipeline", str(e)) from None
    except registry.PipelineNotAvailable as e:
        raise ApiError(501, "pipeline_not_built", str(e)) from None
    opts = parse_run_body(body, pipeline.category, dt.datetime.now(dt.timezone.utc).date())
    if pipeline.needs_credential:
        try:
            cred = CredentialStore(wh, rt.settings).find(org, pipeline.credential, opts["credential_id"])
        except NoCredential as e:
            raise ApiError(422, "no_credential", str(e)) from None
        credential_id = cred["credential_id"]
    else:
        credential_id = "none"
    # Cloud backfills are one run per month, so a failure costs one month and a re-post (with
    # "resume": true) only redoes the months that have not succeeded yet.
    chunks = month_chunks(opts["start_date"], opts["end_date"]) if pipeline.category == "cloud" \
        else [(opts["start_date"], opts["end_date"])]
    queued, skipped = [], []
    for start, end in chunks:
        if opts["resume"] and runs.succeeded_before(wh, org, pipeline.path, credential_id, start, end):
            skipped.append({"start_date": start.isoformat(), "end_date": end.isoformat(), "reason": "succeeded before"})
            continue
        try:
            queued.append(_queue_one(rt, org, pipeline, credential_id, start, end, trigger))
        except ApiError as e:
            if not queued:
                raise
            skipped.append({"start_date": start.isoformat(), "end_date": end.isoformat(), "reason": e.message})
    if not queued:
        raise ApiError(409, "nothing_to_run", "every month of this range already succeeded; post without "
                       "\"resume\" to re-run it")
    first = queued[0]
    return {**first, "start_date": opts["start_date"].isoformat(), "end_date": opts["end_date"].isoformat(),
            "runs": queued, "not_queued": skipped}


def _queue_one(rt, org: str, pipeline, credential_id: str, start: dt.date, end: dt.date, trigger: str) -> dict:
    from shared import plans

    wh = rt.warehouse
    try:  # the slice check and the plan's quotas are one atomic statement
        run_id = plans.create_run_with_quota(wh, org_slug=org, pipeline=pipeline, credential_id=credential_id,
                                             start_date=start, end_date=end, trigger=trigger)
    except runs.SliceBusy as e:
        raise ApiError(409, "slice_busy", str(e)) from None
    except plans.QuotaExceeded as e:
        raise ApiError(e.status, e.code, e.message) from None
    request = {"run_id": run_id, "org_slug": org, "pipeline_id": pipeline.path, "credential_id": credential_id,
               "start_date": start.isoformat(), "end_date": end.isoformat()}
    try:
        rt.bus.publish(TOPIC_RUN_REQUESTS, request, {"org": org, "pipeline": pipeline.path})
    except Exception as e:  # noqa: BLE001 - never leave a queued run nobody will pick up
        runs.finish(wh, run_id, "failed", error=f"could not publish the run request: {e}")
        raise ApiError(503, "bus_unavailable", "the run could not be queued; try again shortly") from None
    return {"run_id": run_id, "status": "queued", "pipeline": pipeline.path, "credential_id": credential_id,
            "start_date": request["start_date"], "end_date": request["end_date"]}


def cancel_run(rt, org: str, run_id: str, by: str) -> dict[str, Any]:
    """Cancel a queued or running run (the HTTP route and the CLI)."""
    try:
        return runs.public_view(runs.cancel(rt.warehouse, org, run_id, by=by))
    except runs.UnknownRun as e:
        raise ApiError(404, "unknown_run", str(e)) from None
    except runs.RunFinished as e:
        raise ApiError(409, "run_finished", str(e)) from None


def _authorize(rt, org: str, headers) -> None:
    try:
        validate_org_slug(org)
    except InvalidName as e:
        raise ApiError(400, "bad_org", str(e)) from None
    result = check_key(rt.warehouse, headers.get("X-API-Key"))
    if not result.ok:
        raise ApiError(401, "unauthorized", "missing or invalid X-API-Key")
    if result.org_slug != org:
        raise ApiError(403, "forbidden", f"this API key does not belong to organization {org!r}")


def _json_body(raw_body: bytes | Callable[[], bytes]) -> Any:
    """The body as JSON (None when empty). `raw_body` may be a reader, so that a route reads the body
    only after it has checked the key (the HTTP entry point passes one)."""
    if callable(raw_body):
        try:
            raw_body = raw_body()
        except inputs.BodyTooLarge as e:
            raise ApiError(413, "body_too_large", str(e)) from None
    if not raw_body or not raw_body.strip():
        return None
    try:
        return inputs.parse_json(raw_body)
    except inputs.BadJson as e:
        raise ApiError(400, "bad_body", str(e)) from None


def handle_subscriptions(rt, method: str, rest: str, query: dict, raw_body: bytes) -> tuple[int, dict[str, Any]]:
    """/api/v1/subscriptions/{org}[/{id}[/cancel]]: list, create, read, update (PATCH), cancel."""
    from shared import subscriptions as subs
    from shared.tenants import UnknownOrg

    org, _, tail = rest.partition("/")
    sid, _, action = tail.strip("/").partition("/")
    wh = rt.warehouse
    try:
        if not sid and method == "GET":
            return 200, {"subscriptions": subs.list_subscriptions(org, wh=wh)}
        if not sid and method == "POST":
            return 201, subs.create(org, _json_body(raw_body), wh=wh)
        if sid and not action and method == "GET":
            return 200, subs.get(org, sid, history=query.get("history") in ("1", "true"), wh=wh)
        if sid and not action and method == "PATCH":
            body = _json_body(raw_body)
            if not isinstance(body, dict):
                raise subs.SubscriptionInvalid("body", "must be a JSON object")
            changes = {k: v for k, v in body.items() if k != "effective_date"}
            return 200, subs.update(org, sid, changes, body.get("effective_date"), wh=wh)
        if sid and action == "cancel" and method == "POST":
            body = _json_body(raw_body) or {}
            if not isinstance(body, dict):
                raise subs.SubscriptionInvalid("body", "must be a JSON object")
            return 200, subs.cancel(org, sid, body.get("end_date"), wh=wh)
    except subs.SubscriptionInvalid as e:
        return 400, {"error": "invalid_subscription", "field": e.field, "message": str(e)}
    except subs.UnknownSubscription as e:
        raise ApiError(404, "unknown_subscription", str(e)) from None
    except UnknownOrg as e:
        raise ApiError(404, "unknown_org", str(e)) from None
    except subs.SubscriptionConflict as e:
        raise ApiError(409, "conflict", str(e)) from None
    raise ApiError(405, "method_not_allowed", f"{method} is not supported on this subscriptions path")


def handle_credentials(rt, method: str, rest: str, raw_body) -> tuple[int, dict[str, Any]]:
    """/api/v1/credentials/{org}[/{id}[/rotate]]: a tenant sets up its own integrations with its org key.
    Secrets go in and never come out."""
    from shared.secrets import CredentialConflict, CredentialInvalid, CredentialStore

    org, _, tail = rest.partition("/")
    cid, _, action = tail.strip("/").partition("/")
    store = CredentialStore(rt.warehouse, rt.settings)
    try:
        if not cid and method == "GET":
            return 200, {"credentials": [_iso(r) for r in store.list(org)]}
        if not cid and method == "POST":
            body = _json_body(raw_body)
            if not isinstance(body, dict):
                raise CredentialInvalid("the body must be a JSON object: {\"provider\", \"credential\", \"label\"?}")
            unknown = set(body) - {"provider", "credential", "label"}
            if unknown:
                raise CredentialInvalid(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: provider, "
                                        "credential, label")
            if not isinstance(body.get("provider"), str):
                raise CredentialInvalid("provider must be a credential kind, e.g. \"openai\" or \"aws\"")
            return 201, store.create(org, body["provider"], body.get("credential"), body.get("label"))
        if cid and action == "rotate" and method == "POST":
            body = _json_body(raw_body)
            if isinstance(body, dict) and set(body) == {"credential"}:
                body = body["credential"]
            return 200, store.rotate(org, cid, body)
        if cid and not action and method == "DELETE":
            return 200, store.disable(org, cid)
    except CredentialInvalid as e:
        raise ApiError(400, "invalid_credential", str(e)) from None
    except CredentialConflict as e:
        raise ApiError(409, "source_already_read", str(e)) from None
    except NoCredential as e:
        raise ApiError(404, "unknown_credential", str(e)) from None
    raise ApiError(405, "method_not_allowed", f"{method} is not supported on this credentials path")


def handle_price_overrides(rt, method: str, rest: str, query: dict, raw_body) -> tuple[int, dict[str, Any]]:
    """/api/v1/price-overrides/{org}[/{id}[/end]]: list, add, read (?history=1), end from a date.
    Stored rows change only when their slice is run again."""
    from shared import price_overrides as po
    from shared.tenants import UnknownOrg

    org, _, tail = rest.partition("/")
    oid, _, action = tail.strip("/").partition("/")
    wh = rt.warehouse
    try:
        if not oid and method == "GET":
            return 200, {"price_overrides": po.list_overrides(org, wh=wh)}
        if not oid and method == "POST":
            return 201, po.add(org, _json_body(raw_body), wh=wh)
        if oid and not action and method == "GET":
            return 200, po.get(org, oid, history=query.get("history") in ("1", "true"), wh=wh)
        if oid and action == "end" and method == "POST":
            body = _json_body(raw_body)
            if not isinstance(body, dict) or set(body) != {"effective_to"}:
                raise po.OverrideInvalid("body", 'must be {"effective_to": "YYYY-MM-DD"} (the first day the '
                                         "override no longer applies)")
            return 200, po.end(org, oid, body["effective_to"], wh=wh)
    except po.OverrideInvalid as e:
        return 400, {"error": "invalid_override", "field": e.field, "message": str(e)}
    except po.UnknownOverride as e:
        raise ApiError(404, "unknown_override", str(e)) from None
    except UnknownOrg as e:
        raise ApiError(404, "unknown_org", str(e)) from None
    except po.OverrideConflict as e:
        raise ApiError(409, "conflict", str(e)) from None
    raise ApiError(405, "method_not_allowed", f"{method} is not supported on this price-overrides path")


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in row.items()}


def handle(rt, method: str, path: str, headers, raw_body: bytes | Callable[[], bytes],
           query: dict | None = None) -> tuple[int, dict[str, Any]]:
    """Route one request; return (status, JSON body). Never raises for client errors.

    A declared body over the size limit is refused first; `raw_body` may be a reader that each route
    calls (through _json_body) only after the key is checked."""
    try:
        try:
            inputs.check_length(headers.get("Content-Length"))
        except inputs.BodyTooLarge as e:
            raise ApiError(413, "body_too_large", str(e)) from None
        if path.startswith(SCHEDULES_PREFIX):
            from shared import schedules

            rest = path[len(SCHEDULES_PREFIX):]
            _authorize(rt, rest.partition("/")[0], headers)
            return schedules.handle_schedules(rt, method, rest, raw_body)
        if path.startswith(CREDENTIALS_PREFIX):
            rest = path[len(CREDENTIALS_PREFIX):]
            _authorize(rt, rest.partition("/")[0], headers)
            return handle_credentials(rt, method, rest, raw_body)
        if path.startswith(PRICE_OVERRIDES_PREFIX):
            rest = path[len(PRICE_OVERRIDES_PREFIX):]
            _authorize(rt, rest.partition("/")[0], headers)
            return handle_price_overrides(rt, method, rest, query or {}, raw_body)
        if path.startswith(SUBSCRIPTIONS_PREFIX):
            rest = path[len(SUBSCRIPTIONS_PREFIX):]
            _authorize(rt, rest.partition("/")[0], headers)
            return handle_subscriptions(rt, method, rest, query or {}, raw_body)
        if path.startswith(RUN_PREFIX):
            if method != "POST":
                raise ApiError(405, "method_not_allowed", "use POST to start a run")
            org, _, pipeline_path = path[len(RUN_PREFIX):].partition("/")
            _authorize(rt, org, headers)
            return 202, request_run(rt, org, pipeline_path.strip("/"), _json_body(raw_body), trigger="api")
        if path.startswith(RUNS_PREFIX):
            org, _, run_id = path[len(RUNS_PREFIX):].partition("/")
            run_id, _, action = run_id.strip("/").partition("/")
            if action == "cancel":
                if method != "POST":
                    raise ApiError(405, "method_not_allowed", "use POST to cancel a run")
                _authorize(rt, org, headers)
                return 200, cancel_run(rt, org, run_id, by="api")
            if action:
                raise ApiError(404, "not_found", f"no route for {method} {path}")
            if method != "GET":
                raise ApiError(405, "method_not_allowed", "use GET to read runs, POST .../cancel to cancel one")
            _authorize(rt, org, headers)
            if not run_id:
                return 200, {"runs": [runs.public_view(r) for r in runs.list_runs(rt.warehouse, org)]}
            try:
                return 200, runs.public_view(runs.get_run(rt.warehouse, org, run_id))
            except runs.UnknownRun as e:
                raise ApiError(404, "unknown_run", str(e)) from None
        if path in ("/", "/health", "/healthz"):
            return 200, {"status": "ok"}
        raise ApiError(404, "not_found", f"no route for {method} {path}")
    except ApiError as e:
        return e.status, e.body()
