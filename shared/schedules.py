"""Per-org pipeline schedules (`organizations.org_schedules`) and how they fire.

A schedule: schedule_id, org_slug, pipeline_id, cron (unix cron, 5 fields), timezone (IANA),
enabled, body (the run body: credential_id, optionally start_date/end_date).

Firing. A schedule fires by publishing one tick on its own topic, `pipeline-schedule-ticks`:
    {"org_slug", "pipeline_id", "schedule_id", "trigger": "schedule"}   (no run_id, no API key)
- GCP: one Cloud Scheduler job per enabled schedule, `cloudact-{org}-{schedule_id}`, with a Pub/Sub
  target carrying that message; `sync_to_cloud_scheduler` makes the jobs match the table.
- Embedded: `cloudact serve` calls `publish_due(rt, now, since)` every minute, which publishes the
  same message on the in-process bus.
Either way the tick's own subscriber (functions.main.schedule_tick) hands it to `handle_message`, which
re-reads the schedule (a deleted or disabled schedule does nothing) and queues the run with
api.request_run(trigger="schedule"): org, pipeline, quota, credential and slice checks as for any run, in
process (no HTTP request, no API key); the queued run's request then goes on pipeline-run-requests.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared import inputs, registry
from shared.bus.base import TOPIC_SCHEDULE_TICKS
from shared.naming import InvalidName, validate_org_slug
from shared.warehouse.base import Warehouse

META = "organizations"
_T = "`organizations.org_schedules`"
JOB_PREFIX = "cloudact-"
MAX_SCHEDULES_PER_ORG = 50
MAX_WINDOW = dt.timedelta(days=1)
_JOB_ID = re.compile(r"^cloudact-([a-z][a-z0-9_]{2,29})-(sch_[0-9a-f]{12})$")
_SCHEDULE_ID = re.compile(r"^sch_[0-9a-f]{12}$")
BODY_FIELDS = ("credential_id", "start_date", "end_date")

log = logging.getLogger(__name__)


class ScheduleInvalid(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownSchedule(LookupError):
    pass


# -- cron --------------------------------------------------------------------------------
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS))


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_any: bool
    weekdays_any: bool

    def matches(self, t: dt.datetime) -> bool:
        """Does the cron fire at wall-clock minute t (in the schedule's zone)?"""
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        dom, dow = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self.days_any or self.weekdays_any:  # vixie cron: both restricted -> either may match
            return dom and dow
        return dom or dow


def _value(token: str, name: str, lo: int, hi: int, names: dict) -> int:
    if token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise ScheduleInvalid("cron", f"{name} value {token!r} is not a number")
    n = int(token)
    if not lo <= n <= hi:
        raise ScheduleInvalid("cron", f"{name} value {n} is outside {lo}-{hi}")
    return n


def parse_cron(expr: str) -> Cron:
    """Parse unix cron (5 fields: * , - / and month/day names), as Cloud Scheduler accepts it."""
    if not isinstance(expr, str):
        raise ScheduleInvalid("cron", "must be a string such as '0 3 * * *'")
    if not expr.isascii():
        # str.isdigit() takes '²' and '٣'; Cloud Scheduler takes neither
        raise ScheduleInvalid("cron", f"{expr!r} may hold only ASCII digits, letters and * , - /")
    parts = expr.split()
    if len(parts) != 5:
        raise ScheduleInvalid("cron", f"{expr!r} must have 5 fields (minute hour day-of-month month day-of-week), "
                                      f"got {len(parts)}")
    sets = []
    for part, (name, lo, hi, names) in zip(parts, _FIELDS):
        values: set[int] = set()
        for item in part.split(","):
            rng, slash, step_s = item.partition("/")
            if slash and (not step_s.isdigit() or int(step_s) == 0):
                raise ScheduleInvalid("cron", f"{name} step {step_s!r} must be a positive number")
            step = int(step_s) if slash else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a_s, b_s = rng.split("-", 1)
                a, b = _value(a_s, name, lo, hi, names), _value(b_s, name, lo, hi, names)
                if a > b:
                    raise ScheduleInvalid("cron", f"{name} range {rng!r} runs backwards")
            else:
                a = _value(rng, name, lo, hi, names)
                b = hi if slash else a
            values.update(range(a, b + 1, step))
        sets.append(values)
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Cron(frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]), weekdays,
                days_any=parts[2].startswith("*"), weekdays_any=parts[4].startswith("*"))


def validate_timezone(tz: Any) -> str:
    if not isinstance(tz, str) or not tz or len(tz) > 64:
        raise ScheduleInvalid("timezone", "must be an IANA time zone such as 'Etc/UTC' or 'Europe/Berlin'")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleInvalid("timezone", f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin'") from None
    return tz


def _validate_body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ScheduleInvalid("body", "must be a JSON object")
    unknown = set(body) - set(BODY_FIELDS)
    if unknown:
        raise ScheduleInvalid("body", f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(BODY_FIELDS)}")
    if ("start_date" in body) != ("end_date" in body):
        raise ScheduleInvalid("body", "give both start_date and end_date, or neither (then each run takes the "
                                      "pipeline's default range)")
    for f in ("start_date", "end_date"):
        if f in body:
            try:
                inputs.check_date(f, dt.date.fromisoformat(body[f]))
            except (TypeError, ValueError) as e:
                detail = str(e) if isinstance(e, inputs.DateOutOfRange) else f"{f} must be YYYY-MM-DD"
                raise ScheduleInvalid("body", detail) from None
    cred = body.get("credential_id")
    if cred is not None and (not isinstance(cred, str) or not cred or len(cred) > 100):
        raise ScheduleInvalid("body", "credential_id must be a non-empty string")
    return dict(body)


def _validate(spec: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(spec.get("pipeline_id"), str):
        raise ScheduleInvalid("pipeline_id", "must be a pipeline path such as 'genai/payg/openai'")
    try:
        pipeline = registry.get(spec["pipeline_id"])
    except (registry.UnknownPipeline, registry.PipelineNotAvailable) as e:
        raise ScheduleInvalid("pipeline_id", str(e)) from None
    parse_cron(spec.get("cron"))
    if not isinstance(spec.get("enabled", True), bool):
        raise ScheduleInvalid("enabled", "must be true or false")
    return {"pipeline_id": pipeline.path, "cron": " ".join(spec["cron"].split()),
            "timezone": validate_timezone(spec.get("timezone", "Etc/UTC")),
            "enabled": spec.get("enabled", True), "body": _validate_body(spec.get("body"))}


# -- CRUD ----------------------------------------------------------------------------------
def _public(row: dict[str, Any]) -> dict[str, Any]:
    body = row.get("body")
    body = json.loads(body) if isinstance(body, str) else (body or {})

    def iso(v):
        return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v

    return {"schedule_id": row["schedule_id"], "org_slug": row["org_slug"], "pipeline_id": row["pipeline_id"],
            "cron": row["cron"], "timezone": row["timezone"], "enabled": bool(row["enabled"]), "body": body,
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


def _org(wh: Warehouse, org: str) -> str:
    from shared.tenants import get_org

    try:
        validate_org_slug(org)
    except InvalidName as e:
        raise ScheduleInvalid("org", str(e)) from None
    get_org(wh, org)  # UnknownOrg
    return org


def create_schedule(wh: Warehouse, org: str, spec: Any) -> dict[str, Any]:
    _org(wh, org)
    if not isinstance(spec, dict):
        raise ScheduleInvalid("body", "must be a JSON object")
    unknown = set(spec) - {"pipeline_id", "cron", "timezone", "enabled", "body"}
    if unknown:
        raise ScheduleInvalid("body", f"unknown field(s) {', '.join(sorted(unknown))}; allowed: pipeline_id, cron, "
                                      "timezone, enabled, body")
    clean = _validate(spec)
    if len(list_schedules(wh, org)) >= MAX_SCHEDULES_PER_ORG:
        raise ScheduleInvalid("org", f"an organization has at most {MAX_SCHEDULES_PER_ORG} schedules")
    now = dt.datetime.now(dt.timezone.utc)
    row = {"schedule_id": f"sch_{uuid.uuid4().hex[:12]}", "org_slug": org, **clean, "body": json.dumps(clean["body"]),
           "created_at": now, "updated_at": now}
    wh.insert_rows(META, "org_schedules", [row])
    return _public({**row, "body": clean["body"]})


def get_schedule(wh: Warehouse, org: str, schedule_id: str) -> dict[str, Any]:
    rows = wh.query(f"SELECT * FROM {_T} WHERE org_slug = @org AND schedule_id = @id", {"org": org, "id": schedule_id})
    if not rows:
        raise UnknownSchedule(f"no schedule {schedule_id!r} for org {org!r}")
    return _public(rows[0])


def list_schedules(wh: Warehouse, org: str | None = None) -> list[dict[str, Any]]:
    if org is None:
        rows = wh.query(f"SELECT * FROM {_T} ORDER BY org_slug, created_at, schedule_id")
    else:
        rows = wh.query(f"SELECT * FROM {_T} WHERE org_slug = @org ORDER BY created_at, schedule_id", {"org": org})
    return [_public(r) for r in rows]


def update_schedule(wh: Warehouse, org: str, schedule_id: str, changes: Any) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise ScheduleInvalid("body", "must be a JSON object")
    unknown = set(changes) - {"pipeline_id", "cron", "timezone", "enabled", "body"}
    if unknown:
        raise ScheduleInvalid("body", f"cannot change {', '.join(sorted(unknown))}")
    current = get_schedule(wh, org, schedule_id)
    clean = _validate({**current, **changes})
    wh.execute(
        f"""UPDATE {_T} SET pipeline_id = @pipeline, cron = @cron, timezone = @tz, enabled = @enabled,
               body = PARSE_JSON(@body), updated_at = @now
        WHERE org_slug = @org AND schedule_id = @id""",
        {"pipeline": clean["pipeline_id"], "cron": clean["cron"], "tz": clean["timezone"], "enabled": clean["enabled"],
         "body": json.dumps(clean["body"]), "now": dt.datetime.now(dt.timezone.utc), "org": org, "id": schedule_id},
    )
    return get_schedule(wh, org, schedule_id)


def delete_schedule(wh: Warehouse, org: str, schedule_id: str) -> bool:
    return wh.execute(f"DELETE FROM {_T} WHERE org_slug = @org AND schedule_id = @id",
                      {"org": org, "id": schedule_id}) == 1


# -- the message a schedule publishes --------------------------------------------------------
def message(schedule: dict[str, Any]) -> dict[str, str]:
    return {"org_slug": schedule["org_slug"], "pipeline_id": schedule["pipeline_id"],
            "schedule_id": schedule["schedule_id"], "trigger": "schedule"}


def attributes(schedule: dict[str, Any]) -> dict[str, str]:
    return {"org": schedule["org_slug"], "pipeline": schedule["pipeline_id"], "trigger": "schedule"}


def is_schedule_message(payload: dict[str, Any]) -> bool:
    """A schedule's trigger (to route through request_run), not a queued run's request (to launch)."""
    return payload.get("trigger") == "schedule" and "run_id" not in payload


def handle_message(rt, payload: dict[str, Any]) -> dict[str, Any]:
    """Turn a schedule message into a run through api.request_run. Never raises for expected refusals
    (deleted/disabled schedule, quota, busy slice, missing credential): redelivery would not help."""
    from shared.api import ApiError, request_run

    org, sid = payload.get("org_slug"), payload.get("schedule_id")
    try:
        validate_org_slug(org)
        schedule = get_schedule(rt.warehouse, org, sid) if isinstance(sid, str) else None
    except (InvalidName, UnknownSchedule):
        schedule = None
    if schedule is None or not schedule["enabled"] or schedule["pipeline_id"] != payload.get("pipeline_id"):
        log.warning("schedule message ignored (schedule gone, disabled or changed): %s", payload)
        return {"status": "ignored", "schedule_id": sid}
    try:
        return request_run(rt, org, schedule["pipeline_id"], schedule["body"] or None, trigger="schedule")
    except ApiError as e:
        log.warning("scheduled run refused for %s/%s: %s %s", org, sid, e.status, e.message)
        return {"status": "refused", "schedule_id": sid, "error": e.code, "message": e.message, "http_status": e.status}


# -- embedded: which schedules are due ----------------------------------------------------------
def _minute(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None:
        raise ValueError("use timezone-aware datetimes")
    return t.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)


def due_schedules(wh: Warehouse, now: dt.datetime, since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Enabled schedules with a fire time in the minutes (since, now] (default: the minute of now).

    Each due schedule appears once, with `fire_at` (UTC) its latest fire time in the window; the
    window is capped at one day. The serve loop keeps `since` = the previous call's `now`.
    """
    end = _minute(now)
    start = _minute(since) if since is not None else end - dt.timedelta(minutes=1)
    start = max(start, end - MAX_WINDOW)
    out = []
    for s in list_schedules(wh):
        if not s["enabled"]:
            continue
        try:
            cron, zone = parse_cron(s["cron"]), ZoneInfo(s["timezone"])
        except (ScheduleInvalid, ZoneInfoNotFoundError, ValueError):
            log.warning("schedule %s has an invalid cron or time zone; skipped", s["schedule_id"])
            continue
        t = end
        while t > start:
            if cron.matches(t.astimezone(zone)):
                out.append({**s, "fire_at": t})
                break
            t -= dt.timedelta(minutes=1)
    return out


def publish_due(rt, now: dt.datetime, since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Publish the tick of every due schedule on pipeline-schedule-ticks (what Cloud Scheduler does)."""
    due = due_schedules(rt.warehouse, now, since)
    for s in due:
        rt.bus.publish(TOPIC_SCHEDULE_TICKS, message(s), attributes(s))
    return due


# -- GCP: Cloud Scheduler jobs ------------------------------------------------------------------
def job_id(org: str, schedule_id: str) -> str:
    return f"{JOB_PREFIX}{org}-{schedule_id}"


def topic_path(project: str | None, topic: str = TOPIC_SCHEDULE_TICKS) -> str:
    if not project:
        raise ValueError("GOOGLE_CLOUD_PROJECT is not set; Cloud Scheduler jobs need a project")
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def scheduler_client():
    """A CloudSchedulerClient; CLOUDACT_SCHEDULER_ENDPOINT overrides the endpoint."""
    import os

    from google.cloud import scheduler_v1

    endpoint = os.environ.get("CLOUDACT_SCHEDULER_ENDPOINT")
    return scheduler_v1.CloudSchedulerClient(client_options={"api_endpoint": endpoint} if endpoint else None)


def build_job(schedule: dict[str, Any], parent: str, topic: str):
    from google.cloud import scheduler_v1

    return scheduler_v1.Job(
        name=f"{parent}/jobs/{job_id(schedule['org_slug'], schedule['schedule_id'])}",
        description=f"cloudact {schedule['org_slug']} {schedule['pipeline_id']}",
        schedule=schedule["cron"], time_zone=schedule["timezone"],
        pubsub_target=scheduler_v1.PubsubTarget(
            topic_name=topic, data=json.dumps(message(schedule), sort_keys=True).encode(),
            attributes=attributes(schedule)),
    )


def _fingerprint(job) -> tuple:
    t = job.pubsub_target
    return (job.schedule, job.time_zone, job.description, t.topic_name, bytes(t.data), tuple(sorted(t.attributes.items())))


def sync_to_cloud_scheduler(wh: Warehouse, client, project: str | None, region: str, topic: str,
                            org: str | None = None) -> dict[str, Any]:
    """Make Cloud Scheduler hold exactly one job per enabled schedule: create missing jobs, update changed
    ones (and resume paused ones), delete jobs `cloudact-{org}-sch_*` with no enabled schedule.
    Only jobs named like ours are touched; `org` limits the sync to one org. A stored schedule that
    is no longer valid, or a job Cloud Scheduler refuses, is skipped and listed under "skipped"
    (its existing job is left alone): one bad row never stops the other orgs' sync."""
    from google.api_core import exceptions as gexc
    from google.cloud import scheduler_v1
    from google.protobuf import field_mask_pb2

    if not project:
        raise ValueError("GOOGLE_CLOUD_PROJECT is not set; cannot sync Cloud Scheduler jobs")
    if org is not None:
        validate_org_slug(org)
    topic = topic_path(project, topic)
    parent = scheduler_v1.CloudSchedulerClient.common_location_path(project, region)
    desired, keep = {}, set()
    summary: dict[str, Any] = {"created": [], "updated": [], "deleted": [], "resumed": [], "unchanged": 0,
                               "skipped": []}
    for s in list_schedules(wh, org):
        if not s["enabled"]:
            continue
        name = f"{parent}/jobs/{job_id(s['org_slug'], s['schedule_id'])}"
        try:  # a row stored before today's checks (or written around them) must not stop the others
            parse_cron(s["cron"])
            validate_timezone(s["timezone"])
            validate_org_slug(s["org_slug"])
        except (ScheduleInvalid, InvalidName) as e:
            log.warning("schedule %s of %s not synced: %s", s["schedule_id"], s["org_slug"], e)
            summary["skipped"].append({"schedule_id": s["schedule_id"], "org_slug": s["org_slug"], "reason": str(e)})
            keep.add(name)  # its job, if any, is left as it is rather than deleted
            continue
        job = build_job(s, parent, topic)
        desired[job.name] = job
    existing = {}
    for job in client.list_jobs(request=scheduler_v1.ListJobsRequest(parent=parent)):
        m = _JOB_ID.match(job.name.rsplit("/", 1)[-1])
        if m and (org is None or m.group(1) == org):
            existing[job.name] = job
    for name, job in desired.items():
        have = existing.get(name)
        try:
            if have is None:
                client.create_job(request=scheduler_v1.CreateJobRequest(parent=parent, job=job))
                summary["created"].append(name)
                continue
            if _fingerprint(have) != _fingerprint(job):
                mask = field_mask_pb2.FieldMask(paths=["description", "schedule", "time_zone", "pubsub_target"])
                client.update_job(request=scheduler_v1.UpdateJobRequest(job=job, update_mask=mask))
                summary["updated"].append(name)
            else:
                summary["unchanged"] += 1
        except gexc.InvalidArgument as e:  # Cloud Scheduler refuses this one job; the others still sync
            log.warning("Cloud Scheduler refused job %s: %s", name, e.message)
            summary["skipped"].append({"job": name, "reason": f"Cloud Scheduler refused it: {e.message}"})
            continue
        if have.state == scheduler_v1.Job.State.PAUSED:
            client.resume_job(request=scheduler_v1.ResumeJobRequest(name=name))
            summary["resumed"].append(name)
    for name in sorted(set(existing) - set(desired) - keep):
        client.delete_job(request=scheduler_v1.DeleteJobRequest(name=name))
        summary["deleted"].append(name)
    return summary


# -- HTTP routes (the lead mounts these under /api/v1/schedules/) ---------------------------------
def handle_schedules(rt, method: str, rest: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
    """/api/v1/schedules/{org}[/{schedule_id}]: GET list, POST create, GET, PATCH, DELETE.

    The caller has authorized the org. On the gcp backend a change is pushed to Cloud Scheduler for
    that org right away (a failure there is reported as `sync_warning`; sync_schedules catches up).
    """
    from shared.api import ApiError, _json_body
    from shared.tenants import UnknownOrg

    org, _, sid = rest.partition("/")
    sid = sid.strip("/")
    wh = rt.warehouse
    try:
        if sid and not _SCHEDULE_ID.match(sid):
            raise UnknownSchedule(f"no schedule {sid!r} for org {org!r}")
        if not sid and method == "GET":
            return 200, {"schedules": list_schedules(wh, _org(wh, org))}
        if not sid and method == "POST":
            status, out = 201, create_schedule(wh, org, _json_body(raw_body))
        elif sid and method == "GET":
            return 200, get_schedule(wh, org, sid)
        elif sid and method == "PATCH":
            status, out = 200, update_schedule(wh, org, sid, _json_body(raw_body))
        elif sid and method == "DELETE":
            if not delete_schedule(wh, org, sid):
                raise UnknownSchedule(f"no schedule {sid!r} for org {org!r}")
            status, out = 200, {"deleted": sid}
        else:
            raise ApiError(405, "method_not_allowed", f"{method} is not supported on this schedules path")
    except ScheduleInvalid as e:
        return 400, {"error": "invalid_schedule", "field": e.field, "message": str(e)}
    except UnknownSchedule as e:
        raise ApiError(404, "unknown_schedule", str(e)) from None
    except UnknownOrg as e:
        raise ApiError(404, "unknown_org", str(e)) from None
    if rt.settings.backend == "gcp":
        try:
            out["cloud_scheduler"] = sync_to_cloud_scheduler(wh, scheduler_client(), rt.settings.project,
                                                             rt.settings.region, TOPIC_SCHEDULE_TICKS, org=org)
        except Exception as e:  # noqa: BLE001 - the table is the truth; the periodic sync retries
            out["sync_warning"] = f"Cloud Scheduler not updated yet: {e}"
    return status, out
