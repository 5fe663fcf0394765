"""The HTTP API behind `run_pipeline`: routing, authentication, validation, responses.

Every route is one line of ROUTES (method, path pattern, handler), matched by werkzeug's router.
Every path under an ORG_KEY_GROUPS prefix names its org first and needs that org's X-API-Key; the
check runs once, for the group, before the route itself is matched, so without the right key a
client learns nothing about which paths or methods exist (401 / 403, then 404 / 405).
The routes, in short:

POST /api/v1/pipelines/run/{org}/{pipeline path}   -> 202 {run_id, status}
GET  /api/v1/pipelines/runs/{org}[/{run_id}]       -> 200 {runs: [...]} | {run_id, status, ...}
POST /api/v1/pipelines/runs/{org}/{run_id}/cancel  -> 200 {run_id, status: "cancelled", ...}
/api/v1/subscriptions/{org}[/{id}[/cancel]]        SaaS subscriptions (shared/subscriptions.py)
/api/v1/schedules/{org}[/{id}]                     per-org schedules (shared/schedules.py)
/api/v1/credentials/{org}[/{id}[/rotate]]          provider credentials: add, list, rotate, disable (DELETE)
/api/v1/price-overrides/{org}[/{id}[/end]]         negotiated GenAI prices (shared/price_overrides.py)
GET  /api/v1/costs/{org}                           the cost query (shared/costs.py)
GET  /api/v1/costs/{org}/export?format&from&to&provider  the FOCUS rows as a streamed file (shared/export.py)
GET|POST /api/v1/fx-rates/{org}                    the org's exchange rates (shared/fx.py)
"""
from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule

from shared import inputs, registry, runs
from shared.auth import check_key
from shared.bus.base import TOPIC_RUN_REQUESTS
from shared.naming import InvalidName, validate_org_slug
from shared.secrets import CredentialStore, NoCredential
from shared.tenants import get_org

MAX_RANGE_DAYS = 400


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    field: str | None = None  # the request field at fault, for 400s that name one

    def body(self) -> dict[str, Any]:
        if self.field is None:
            return {"error": self.code, "message": self.message}
        return {"error": self.code, "field": self.field, "message": self.message}


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


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in row.items()}


# -- routing ---------------------------------------------------------------------------------------

@dataclass
class Call:
    """One request as a route handler sees it, after its group's key check."""

    rt: Any
    method: str
    query: Any  # a dict or werkzeug MultiDict of the query string
    raw_body: bytes | Callable[[], bytes]

    def json(self) -> Any:
        return _json_body(self.raw_body)

    def getlist(self, name: str) -> list[str]:
        """Every value of a repeated query parameter (a plain dict has one per name)."""
        if hasattr(self.query, "getlist"):
            return self.query.getlist(name)
        return [self.query[name]] if name in self.query else []

    def values(self, name: str) -> list[str]:
        """Every value of a query parameter given once, repeated or as a comma list."""
        return [v.strip() for value in self.getlist(name) for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class Stream:
    """A non-JSON answer (a download): the HTTP entry point sends `chunks` as they come."""

    chunks: Iterable[bytes]
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # werkzeug rule after the group's "{prefix}/<org>"
    handler: Callable[..., tuple[int, Any]]


@dataclass(frozen=True)
class Group:
    """Routes under `{prefix}/<org>`, all behind that org's key. `errors` turns the group's domain
    exceptions into ApiErrors (a context manager factory, so the domain modules import lazily)."""

    prefix: str
    routes: tuple[Route, ...]
    errors: Callable[[], Any] | None = None


# -- pipelines and runs
def _post_run(c: Call, org: str, pipeline: str):
    return 202, request_run(c.rt, org, pipeline.strip("/"), c.json(), trigger="api")


def _list_runs(c: Call, org: str):
    return 200, {"runs": [runs.public_view(r) for r in runs.list_runs(c.rt.warehouse, org)]}


def _get_run(c: Call, org: str, run_id: str):
    try:
        return 200, runs.public_view(runs.get_run(c.rt.warehouse, org, run_id))
    except runs.UnknownRun as e:
        raise ApiError(404, "unknown_run", str(e)) from None


def _cancel_run(c: Call, org: str, run_id: str):
    return 200, cancel_run(c.rt, org, run_id, by="api")


# -- records an org keeps with their history: subscriptions and price overrides
@dataclass(frozen=True)
class _Records:
    """The routes a domain module of dated records shares: list, create, get (with `?history`), and its
    errors. Names, not objects: the module is imported on the first request, as every domain module here."""

    module: str
    key: str  # of the list in a list answer
    noun: str  # in the error codes invalid_<noun> (400) and unknown_<noun> (404)
    list_fn: str
    create_fn: str
    invalid: str  # the module's exception classes: a bad document (with .field), an unknown id, a conflict
    unknown: str
    conflict: str

    def _module(self):
        return importlib.import_module(self.module)

    @contextmanager
    def errors(self):
        from shared.tenants import UnknownOrg

        mod = self._module()
        try:
            yield
        except getattr(mod, self.invalid) as e:
            raise ApiError(400, f"invalid_{self.noun}", str(e), field=e.field) from None
        except getattr(mod, self.unknown) as e:
            raise ApiError(404, f"unknown_{self.noun}", str(e)) from None
        except UnknownOrg as e:
            raise ApiError(404, "unknown_org", str(e)) from None
        except getattr(mod, self.conflict) as e:
            raise ApiError(409, "conflict", str(e)) from None

    def list(self, c: Call, org: str):
        return 200, {self.key: getattr(self._module(), self.list_fn)(org, wh=c.rt.warehouse)}

    def create(self, c: Call, org: str):
        return 201, getattr(self._module(), self.create_fn)(org, c.json(), wh=c.rt.warehouse)

    def get(self, c: Call, org: str, rid: str):
        return 200, self._module().get(org, rid, history=c.query.get("history") in ("1", "true"), wh=c.rt.warehouse)


_SUBSCRIPTIONS = _Records("shared.subscriptions", "subscriptions", "subscription", "list_subscriptions", "create",
                          "SubscriptionInvalid", "UnknownSubscription", "SubscriptionConflict")
# stored rows change only when their slice is run again
_PRICE_OVERRIDES = _Records("shared.price_overrides", "price_overrides", "override", "list_overrides", "add",
                            "OverrideInvalid", "UnknownOverride", "OverrideConflict")


def _object_body(c: Call, invalid: Callable[[str, str], Exception], empty_ok: bool = False) -> dict:
    body = c.json()
    body = (body or {}) if empty_ok else body
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


def _update_subscription(c: Call, org: str, rid: str):
    from shared import subscriptions as subs

    body = _object_body(c, subs.SubscriptionInvalid)
    changes = {k: v for k, v in body.items() if k != "effective_date"}
    return 200, subs.update(org, rid, changes, body.get("effective_date"), wh=c.rt.warehouse)


def _cancel_subscription(c: Call, org: str, rid: str):
    from shared import subscriptions as subs

    body = _object_body(c, subs.SubscriptionInvalid, empty_ok=True)
    return 200, subs.cancel(org, rid, body.get("end_date"), wh=c.rt.warehouse)


def _end_override(c: Call, org: str, rid: str):
    from shared import price_overrides as po

    body = c.json()
    if not isinstance(body, dict) or set(body) != {"effective_to"}:
        raise po.OverrideInvalid("body", 'must be {"effective_to": "YYYY-MM-DD"} (the first day the '
                                 "override no longer applies)")
    return 200, po.end(org, rid, body["effective_to"], wh=c.rt.warehouse)


# -- schedules (shared/schedules.py routes within the group itself)
def _schedules(c: Call, org: str, sid: str = ""):
    from shared import schedules

    return schedules.handle_schedules(c.rt, c.method, f"{org}/{sid}" if sid else org, c.raw_body)


# -- credentials: a tenant sets up its own integrations with its org key; secrets go in and never come out
@contextmanager
def _credential_errors():
    from shared.secrets import CredentialConflict, CredentialInvalid

    try:
        yield
    except CredentialInvalid as e:
        raise ApiError(400, "invalid_credential", str(e)) from None
    except CredentialConflict as e:
        raise ApiError(409, "source_already_read", str(e)) from None
    except NoCredential as e:
        raise ApiError(404, "unknown_credential", str(e)) from None


def _list_credentials(c: Call, org: str):
    return 200, {"credentials": [_iso(r) for r in CredentialStore(c.rt.warehouse, c.rt.settings).list(org)]}


def _create_credential(c: Call, org: str):
    from shared.secrets import CredentialInvalid

    body = c.json()
    if not isinstance(body, dict):
        raise CredentialInvalid("the body must be a JSON object: {\"provider\", \"credential\", \"label\"?}")
    unknown = set(body) - {"provider", "credential", "label"}
    if unknown:
        raise CredentialInvalid(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: provider, "
                                "credential, label")
    if not isinstance(body.get("provider"), str):
        raise CredentialInvalid("provider must be a credential kind, e.g. \"openai\" or \"aws\"")
    return 201, CredentialStore(c.rt.warehouse, c.rt.settings).create(org, body["provider"], body.get("credential"),
                                                                      body.get("label"))


def _rotate_credential(c: Call, org: str, cid: str):
    body = c.json()
    if isinstance(body, dict) and set(body) == {"credential"}:
        body = body["credential"]
    return 200, CredentialStore(c.rt.warehouse, c.rt.settings).rotate(org, cid, body)


def _disable_credential(c: Call, org: str, cid: str):
    return 200, CredentialStore(c.rt.warehouse, c.rt.settings).disable(org, cid)


# -- costs and exchange rates
# the query parameter a CostQuery field comes from, so a 400 names what the client sent
_COST_PARAMS = {"start": "from", "end": "to", "providers": "filter", "services": "filter", "tags": "filter"}


@contextmanager
def _cost_errors():
    from shared.fx import MissingRate
    from shared.tenants import UnknownOrg

    try:
        yield
    except MissingRate as e:
        raise ApiError(422, "missing_rate", e.message, field="currency") from None
    except inputs.FieldInvalid as e:
        field_name = _COST_PARAMS.get(e.field, e.field)
        raise ApiError(400, "invalid_query", f"{field_name}: {e.message}", field=field_name) from None
    except UnknownOrg as e:
        raise ApiError(404, "unknown_org", str(e)) from None


def _query_date(c: Call, name: str) -> dt.date | None:
    value = c.query.get(name)
    if value in (None, ""):
        return None
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise inputs.FieldInvalid(name, f"must be a date as YYYY-MM-DD, got {value!r}")


def cost_query(c: Call, org: str):
    """The CostQuery of `GET /api/v1/costs/{org}?from&to&group_by&metric&currency&top&filter`; a filter is
    provider=NAME, service=NAME or tag:KEY=VALUE (repeat the parameter for several)."""
    import dataclasses

    from shared import costs

    today = dt.datetime.now(dt.timezone.utc).date()
    q = costs.default_query(org, today)
    end = _query_date(c, "to") or q.end
    start = _query_date(c, "from") or end.replace(day=1)
    providers, services, tags = [], [], []
    for f in c.getlist("filter"):
        name, sep, value = f.partition("=")
        if not sep or not value:
            raise inputs.FieldInvalid("filter", f"{f!r}: give provider=NAME, service=NAME or tag:KEY=VALUE")
        if name == "provider":
            providers.append(value)
        elif name == "service":
            services.append(value)
        elif costs.tag_key(name):
            tags.append((costs.tag_key(name), value))
        else:
            raise inputs.FieldInvalid("filter", f"{f!r}: filter by provider, service or tag:KEY")
    top = c.query.get("top")
    if top not in (None, "") and not (top.isdigit() and len(top) <= 6):
        raise inputs.FieldInvalid("top", f"must be a whole number of at least 1, got {top!r}")
    group_by = c.values("group_by")
    return dataclasses.replace(
        q, start=start, end=end, group_by=tuple(group_by) if "group_by" in c.query else q.group_by,
        metric=c.query.get("metric") or q.metric, currency=c.query.get("currency") or None,
        providers=tuple(providers), services=tuple(services), tags=tuple(tags),
        top=int(top) if top not in (None, "") else None)


def _get_costs(c: Call, org: str):
    from shared import costs

    return 200, costs.to_json(costs.query(c.rt.warehouse, cost_query(c, org)))


def _export_costs(c: Call, org: str):
    """The org's FOCUS rows as Parquet, CSV or gzip CSV, sent as they are written (shared/export.py)."""
    from shared import export

    try:
        fmt = export.check_format(c.query.get("format") or "parquet")
        flt = export.Filter.parse(c.query.get("from"), c.query.get("to"), c.query.get("provider"))
    except export.ExportInvalid as e:
        raise ApiError(400, "invalid_query", str(e), field=e.field) from None
    chunks = export.stream(c.rt.warehouse, org, fmt, flt)  # the org and the query checked before the first byte
    return 200, Stream(chunks, export.MEDIA_TYPES[fmt],
                       {"Content-Disposition": f'attachment; filename="{org}-focus.{fmt}"'})


@contextmanager
def _fx_errors():
    from shared.tenants import UnknownOrg

    try:
        yield
    except inputs.FieldInvalid as e:
        raise ApiError(400, "invalid_rate", str(e), field=e.field) from None
    except UnknownOrg as e:
        raise ApiError(404, "unknown_org", str(e)) from None


MAX_POSTED_RATES = 5000


def _list_fx(c: Call, org: str):
    from shared import fx

    get_org(c.rt.warehouse, org)
    return 200, {"rates": [{**_iso(r), "rate": format(r["rate"], "f")} for r in fx.list_rates(c.rt.warehouse, org)]}


def _post_fx(c: Call, org: str):
    """An org's own rates (they win over the platform's for this org only); platform-wide rates are the
    operator's (`cloudact fx import`), never an org key's."""
    from shared import fx

    body = c.json()
    if not isinstance(body, dict) or set(body) != {"rates"} or not isinstance(body["rates"], list):
        raise inputs.FieldInvalid("body", 'must be {"rates": [{"date", "from", "to", "rate"}, ...]}')
    if not 0 < len(body["rates"]) <= MAX_POSTED_RATES:
        raise inputs.FieldInvalid("rates", f"give 1 to {MAX_POSTED_RATES} rates")
    rates = [fx.validate_rate(r, f"rates[{i}]") for i, r in enumerate(body["rates"])]
    get_org(c.rt.warehouse, org)
    stored, unchanged = fx.store(c.rt.warehouse, rates, org=org, source="api")
    return 201, {"stored": stored, "unchanged": unchanged, "scope": "org"}


def _health(c: Call):
    return 200, {"status": "ok"}


# The whole API: add a route with one line in its group.
ROUTES: tuple[Group, ...] = (
    Group("/api/v1/pipelines/run", (
        Route("POST", "/<path:pipeline>", _post_run),
    )),
    Group("/api/v1/pipelines/runs", (
        Route("GET", "", _list_runs),
        Route("GET", "/<run_id>", _get_run),
        Route("POST", "/<run_id>/cancel", _cancel_run),
    )),
    Group("/api/v1/subscriptions", (
        Route("GET", "", _SUBSCRIPTIONS.list),
        Route("POST", "", _SUBSCRIPTIONS.create),
        Route("GET", "/<rid>", _SUBSCRIPTIONS.get),
        Route("PATCH", "/<rid>", _update_subscription),
        Route("POST", "/<rid>/cancel", _cancel_subscription),
    ), errors=_SUBSCRIPTIONS.errors),
    Group("/api/v1/schedules", (
        Route("GET", "", _schedules),
        Route("POST", "", _schedules),
        Route("GET", "/<sid>", _schedules),
        Route("PATCH", "/<sid>", _schedules),
        Route("DELETE", "/<sid>", _schedules),
    )),
    Group("/api/v1/credentials", (
        Route("GET", "", _list_credentials),
        Route("POST", "", _create_credential),
        Route("POST", "/<cid>/rotate", _rotate_credential),
        Route("DELETE", "/<cid>", _disable_credential),
    ), errors=_credential_errors),
    Group("/api/v1/price-overrides", (
        Route("GET", "", _PRICE_OVERRIDES.list),
        Route("POST", "", _PRICE_OVERRIDES.create),
        Route("GET", "/<rid>", _PRICE_OVERRIDES.get),
        Route("POST", "/<rid>/end", _end_override),
    ), errors=_PRICE_OVERRIDES.errors),
    Group("/api/v1/costs", (
        Route("GET", "", _get_costs),
        Route("GET", "/export", _export_costs),
    ), errors=_cost_errors),
    Group("/api/v1/fx-rates", (
        Route("GET", "", _list_fx),
        Route("POST", "", _post_fx),
    ), errors=_fx_errors),
)
PUBLIC_ROUTES: tuple[Route, ...] = (
    Route("GET", "/", _health),
    Route("GET", "/health", _health),
    Route("GET", "/healthz", _health),
)


def _maps() -> tuple[Map, Map]:
    """(groups: any path under a group's `{prefix}/<org>`, routes: each route with its method).
    Trailing slashes are optional and never redirect: API clients do not follow redirects."""
    options = {"strict_slashes": False, "merge_slashes": False}
    groups = Map([Rule(p, endpoint=g) for g in ROUTES for p in (f"{g.prefix}/<org>", f"{g.prefix}/<org>/<path:rest>")],
                 **options)
    routes = Map([Rule(f"{g.prefix}/<org>{r.path}", methods=[r.method], endpoint=(g, r)) for g in ROUTES for r in g.routes]
                 + [Rule(r.path, methods=[r.method], endpoint=(None, r)) for r in PUBLIC_ROUTES], **options)
    return groups, routes


_GROUP_MAP, _ROUTE_MAP = _maps()


def _match(method: str, path: str) -> tuple[Group | None, Route, dict[str, str]]:
    try:
        (group, route), args = _ROUTE_MAP.bind("api").match(path, method=method)
    except MethodNotAllowed as e:
        allowed = sorted(set(e.valid_methods or ()) - {"HEAD", "OPTIONS"})
        raise ApiError(405, "method_not_allowed", f"{method} is not supported on {path}; use "
                       f"{' or '.join(allowed)}") from None
    except (NotFound, RequestRedirect):
        raise ApiError(404, "not_found", f"no route for {method} {path}") from None
    return group, route, args


def handle(rt, method: str, path: str, headers, raw_body: bytes | Callable[[], bytes],
           query: Any = None) -> tuple[int, Any]:
    """Route one request; return (status, JSON body or Stream). Never raises for client errors.

    A declared body over the size limit is refused first; `raw_body` may be a reader that each route
    calls (through Call.json) only after the key is checked."""
    try:
        try:
            inputs.check_length(headers.get("Content-Length"))
        except inputs.BodyTooLarge as e:
            raise ApiError(413, "body_too_large", str(e)) from None
        try:
            group, group_args = _GROUP_MAP.bind("api").match(path)
        except (NotFound, RequestRedirect, MethodNotAllowed):
            group = None
        if group is not None:  # the org key first: nothing about the group's routes before it
            _authorize(rt, group_args["org"], headers)
        group, route, args = _match(method, path)
        call = Call(rt, method, query if query is not None else {}, raw_body)
        with group.errors() if group is not None and group.errors else nullcontext():
            return route.handler(call, **args)
    except ApiError as e:
        return e.status, e.body()
