"""Schedules: validation, CRUD, Cloud Scheduler sync against a fake client, due times, firing."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from google.api_core import exceptions as gexc
from google.cloud import scheduler_v1

from shared import schedules as S
from shared.tenants import create_org

PROJECT, REGION = "proj-x", "europe-west1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
TOPIC = f"projects/{PROJECT}/topics/pipeline-schedule-ticks"
SAAS = "subscription/costs/subscription_cost"
UTC = dt.timezone.utc


class FakeScheduler:
    """Cloud Scheduler's job CRUD over scheduler_v1 request/Job types, recording every mutation."""

    def __init__(self):
        self.jobs: dict[str, scheduler_v1.Job] = {}
        self.calls: list[tuple[str, str]] = []

    def list_jobs(self, request: scheduler_v1.ListJobsRequest):
        assert isinstance(request, scheduler_v1.ListJobsRequest)
        return [scheduler_v1.Job(j) for n, j in sorted(self.jobs.items()) if n.startswith(request.parent + "/jobs/")]

    def create_job(self, request: scheduler_v1.CreateJobRequest):
        assert isinstance(request, scheduler_v1.CreateJobRequest) and request.job.name.startswith(request.parent)
        if request.job.name in self.jobs:
            raise gexc.AlreadyExists(request.job.name)
        job = scheduler_v1.Job(request.job)
        job.state = scheduler_v1.Job.State.ENABLED
        self.jobs[job.name] = job
        self.calls.append(("create", job.name))
        return job

    def update_job(self, request: scheduler_v1.UpdateJobRequest):
        assert isinstance(request, scheduler_v1.UpdateJobRequest)
        name = request.job.name
        if name not in self.jobs:
            raise gexc.NotFound(name)
        job = self.jobs[name]
        for path in request.update_mask.paths:
            setattr(job, path, getattr(request.job, path))
        self.calls.append(("update", name))
        return job

    def delete_job(self, request: scheduler_v1.DeleteJobRequest):
        assert isinstance(request, scheduler_v1.DeleteJobRequest)
        if request.name not in self.jobs:
            raise gexc.NotFound(request.name)
        del self.jobs[request.name]
        self.calls.append(("delete", request.name))

    def resume_job(self, request: scheduler_v1.ResumeJobRequest):
        self.jobs[request.name].state = scheduler_v1.Job.State.ENABLED
        self.calls.append(("resume", request.name))


def sync(wh, client, org=None):
    return S.sync_to_cloud_scheduler(wh, client, PROJECT, REGION, "pipeline-schedule-ticks", org=org)


def new(wh, org="acme", pipeline=SAAS, cron="0 3 * * *", tz="Etc/UTC", **kw):
    return S.create_schedule(wh, org, {"pipeline_id": pipeline, "cron": cron, "timezone": tz, **kw})


# -- cron ---------------------------------------------------------------------------------
@pytest.mark.parametrize("expr", ["* * * * *", "0 3 * * *", "*/15 9-17 * * MON-FRI", "5,35 0 1,15 jan-jun 0",
                                  "0 0 * * 7", "10-50/20 */2 1-31/2 * *", "  0  3 * * * "])
def test_cron_accepts_unix_cron(expr):
    S.parse_cron(expr)


@pytest.mark.parametrize("expr,fragment", [
    ("0 3 * *", "5 fields"), ("0 3 * * * *", "5 fields"), ("60 * * * *", "outside 0-59"),
    ("* 24 * * *", "outside 0-23"), ("* * 0 * *", "outside 1-31"), ("* * * 13 *", "outside 1-12"),
    ("* * * * 8", "outside 0-7"), ("*/0 * * * *", "step"), ("5-1 * * * *", "backwards"),
    ("a * * * *", "not a number"), ("1,,2 * * * *", "not a number"), ("@daily", "5 fields"),
])
def test_cron_rejects_bad_syntax(expr, fragment):
    with pytest.raises(S.ScheduleInvalid) as e:
        S.parse_cron(expr)
    assert e.value.field == "cron" and fragment in str(e.value)


def test_cron_matching_semantics():
    c = S.parse_cron("30 9 * * MON-FRI")
    assert c.matches(dt.datetime(2026, 3, 2, 9, 30)) and not c.matches(dt.datetime(2026, 3, 1, 9, 30))  # Mon / Sun
    both = S.parse_cron("0 0 1 * SUN")  # day-of-month and day-of-week both restricted: either matches
    assert both.matches(dt.datetime(2026, 4, 1)) and both.matches(dt.datetime(2026, 3, 1))
    assert not both.matches(dt.datetime(2026, 3, 3))
    assert S.parse_cron("0 0 * * 7").matches(dt.datetime(2026, 3, 1))  # 7 is Sunday too


# -- validation and CRUD ---------------------------------------------------------------------
def test_crud_roundtrip(rt, acme):
    wh = rt.warehouse
    s = new(wh, body={"credential_id": "cred_1"})
    assert s["schedule_id"].startswith("sch_") and s["enabled"] and s["body"] == {"credential_id": "cred_1"}
    assert S.get_schedule(wh, "acme", s["schedule_id"]) == s
    u = S.update_schedule(wh, "acme", s["schedule_id"], {"cron": "15 4 * * *", "timezone": "Europe/Berlin",
                                                         "enabled": False})
    assert (u["cron"], u["timezone"], u["enabled"], u["body"]) == ("15 4 * * *", "Europe/Berlin", False,
                                                                 {"credential_id": "cred_1"})
    assert [x["schedule_id"] for x in S.list_schedules(wh, "acme")] == [s["schedule_id"]]
    assert S.delete_schedule(wh, "acme", s["schedule_id"]) and not S.delete_schedule(wh, "acme", s["schedule_id"])
    with pytest.raises(S.UnknownSchedule):
        S.get_schedule(wh, "acme", s["schedule_id"])


@pytest.mark.parametrize("spec,field", [
    ({"pipeline_id": "nope/x", "cron": "0 3 * * *"}, "pipeline_id"),
    ({"pipeline_id": SAAS, "cron": "0 3 * *"}, "cron"),
    ({"pipeline_id": SAAS, "cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"pipeline_id": SAAS, "cron": "0 3 * * *", "body": {"api_key": "x"}}, "body"),
    ({"pipeline_id": SAAS, "cron": "0 3 * * *", "body": {"start_date": "2026-01-01"}}, "body"),
    ({"pipeline_id": SAAS, "cron": "0 3 * * *", "enabled": "yes"}, "enabled"),
    ({"pipeline_id": SAAS, "cron": "0 3 * * *", "owner": "me"}, "body"),
])
def test_invalid_schedules_are_refused(rt, acme, spec, field):
    with pytest.raises(S.ScheduleInvalid) as e:
        S.create_schedule(rt.warehouse, "acme", spec)
    assert e.value.field == field
    assert S.list_schedules(rt.warehouse, "acme") == []


def test_unknown_or_bad_org(rt):
    from shared.tenants import UnknownOrg

    with pytest.raises(UnknownOrg):
        new(rt.warehouse, org="nobody")
    with pytest.raises(S.ScheduleInvalid):
        new(rt.warehouse, org="Bad;Org")


# -- Cloud Scheduler sync ------------------------------------------------------------------------
def test_sync_converges_create_update_delete_and_is_idempotent(rt, acme):
    wh = rt.warehouse
    create_org(wh, "globex")
    a1 = new(wh, cron="0 3 * * *", body={"credential_id": "c1"})
    a2 = new(wh, pipeline="genai/payg/openai", cron="*/30 * * * *", tz="America/New_York")
    g1 = new(wh, org="globex", cron="0 5 * * 1")
    off = new(wh, cron="0 6 * * *", enabled=False)
    fake = FakeScheduler()
    foreign = scheduler_v1.Job(name=f"{PARENT}/jobs/nightly-export", schedule="0 1 * * *")
    manual = scheduler_v1.Job(name=f"{PARENT}/jobs/cloudact-acme-manual", schedule="0 1 * * *")
    fake.jobs = {foreign.name: foreign, manual.name: manual}

    out = sync(wh, fake)
    expected = {f"{PARENT}/jobs/cloudact-acme-{a1['schedule_id']}", f"{PARENT}/jobs/cloudact-acme-{a2['schedule_id']}",
                f"{PARENT}/jobs/cloudact-globex-{g1['schedule_id']}"}
    assert set(out["created"]) == expected and out["updated"] == out["deleted"] == []
    assert set(fake.jobs) == expected | {foreign.name, manual.name}  # others' jobs untouched; disabled: no job
    job = fake.jobs[f"{PARENT}/jobs/cloudact-acme-{a2['schedule_id']}"]
    assert (job.schedule, job.time_zone, job.pubsub_target.topic_name) == ("*/30 * * * *", "America/New_York", TOPIC)
    assert json.loads(job.pubsub_target.data) == {"org_slug": "acme", "pipeline_id": "genai/payg/openai",
                                                  "schedule_id": a2["schedule_id"], "trigger": "schedule"}
    assert dict(job.pubsub_target.attributes) == {"org": "acme", "pipeline": "genai/payg/openai", "trigger": "schedule"}
    assert "key" not in job.pubsub_target.data.decode().lower() and not job.http_target.uri

    fake.calls.clear()
    assert sync(wh, fake) == {"created": [], "updated": [], "deleted": [], "resumed": [], "unchanged": 3,
                              "skipped": []}
    assert fake.calls == []

    S.update_schedule(wh, "acme", a1["schedule_id"], {"cron": "45 2 * * *"})
    S.update_schedule(wh, "acme", off["schedule_id"], {"enabled": True})
    S.update_schedule(wh, "acme", a2["schedule_id"], {"enabled": False})
    S.delete_schedule(wh, "globex", g1["schedule_id"])
    out = sync(wh, fake)
    assert out["created"] == [f"{PARENT}/jobs/cloudact-acme-{off['schedule_id']}"]
    assert out["updated"] == [f"{PARENT}/jobs/cloudact-acme-{a1['schedule_id']}"]
    assert set(out["deleted"]) == {f"{PARENT}/jobs/cloudact-acme-{a2['schedule_id']}",
                                   f"{PARENT}/jobs/cloudact-globex-{g1['schedule_id']}"}
    assert fake.jobs[f"{PARENT}/jobs/cloudact-acme-{a1['schedule_id']}"].schedule == "45 2 * * *"
    fake.calls.clear()
    assert sync(wh, fake)["unchanged"] == 2 and fake.calls == []


def test_sync_repairs_drift_and_resumes_paused_jobs(rt, acme):
    wh = rt.warehouse
    s = new(wh)
    fake = FakeScheduler()
    sync(wh, fake)
    name = f"{PARENT}/jobs/cloudact-acme-{s['schedule_id']}"
    fake.jobs[name].pubsub_target.data = b'{"org_slug": "globex"}'  # edited by hand in the console
    fake.jobs[name].state = scheduler_v1.Job.State.PAUSED
    out = sync(wh, fake)
    assert out["updated"] == [name] and out["resumed"] == [name]
    assert json.loads(fake.jobs[name].pubsub_target.data)["org_slug"] == "acme"
    assert fake.jobs[name].state == scheduler_v1.Job.State.ENABLED


def test_sync_of_one_org_leaves_other_orgs_alone(rt, acme):
    wh = rt.warehouse
    create_org(wh, "globex")
    fake = FakeScheduler()
    g = new(wh, org="globex")
    sync(wh, fake)
    S.delete_schedule(wh, "globex", g["schedule_id"])
    a = new(wh)
    out = sync(wh, fake, org="acme")
    assert out["created"] == [f"{PARENT}/jobs/cloudact-acme-{a['schedule_id']}"] and out["deleted"] == []
    assert sync(wh, fake, org="globex")["deleted"] == [f"{PARENT}/jobs/cloudact-globex-{g['schedule_id']}"]


def test_sync_needs_a_project(rt):
    with pytest.raises(ValueError, match="GOOGLE_CLOUD_PROJECT"):
        S.sync_to_cloud_scheduler(rt.warehouse, FakeScheduler(), None, REGION, "pipeline-schedule-ticks")


# -- embedded: due schedules and firing -------------------------------------------------------------
def test_due_schedules_in_a_minute_window_and_time_zones(rt, acme):
    wh = rt.warehouse
    q = new(wh, cron="*/15 * * * *")
    berlin = new(wh, cron="0 9 * * *", tz="Europe/Berlin")
    new(wh, cron="* * * * *", enabled=False)

    def due(now, since=None):
        return {s["schedule_id"] for s in S.due_schedules(wh, now, since)}

    assert due(dt.datetime(2026, 1, 15, 10, 15, 30, tzinfo=UTC)) == {q["schedule_id"]}
    assert due(dt.datetime(2026, 1, 15, 10, 16, tzinfo=UTC)) == set()
    assert due(dt.datetime(2026, 1, 15, 8, 0, tzinfo=UTC)) == {q["schedule_id"], berlin["schedule_id"]}  # CET
    assert due(dt.datetime(2026, 7, 15, 7, 0, tzinfo=UTC)) == {q["schedule_id"], berlin["schedule_id"]}  # CEST
    # A loop that lagged: the window (since, now] catches each schedule once, with its latest fire time.
    out = S.due_schedules(wh, dt.datetime(2026, 1, 15, 8, 20, tzinfo=UTC), since=dt.datetime(2026, 1, 15, 7, 50, tzinfo=UTC))
    fire = {s["schedule_id"]: s["fire_at"] for s in out}
    assert fire == {q["schedule_id"]: dt.datetime(2026, 1, 15, 8, 15, tzinfo=UTC),
                    berlin["schedule_id"]: dt.datetime(2026, 1, 15, 8, 0, tzinfo=UTC)}
    assert due(dt.datetime(2026, 1, 15, 8, 15, tzinfo=UTC), since=dt.datetime(2026, 1, 15, 8, 15, tzinfo=UTC)) == set()


@pytest.fixture()
def published(rt, monkeypatch):
    sent = []
    monkeypatch.setattr(rt.bus, "publish", lambda topic, payload, attrs=None: sent.append((topic, payload, attrs)) or "m")
    return sent


def test_publish_due_sends_the_same_message_as_cloud_scheduler(rt, acme, published):
    s = new(rt.warehouse, cron="0 * * * *")
    S.publish_due(rt, dt.datetime(2026, 1, 15, 10, 0, 5, tzinfo=UTC))
    job = S.build_job(s, PARENT, TOPIC)
    assert published == [("pipeline-schedule-ticks", json.loads(job.pubsub_target.data), dict(job.pubsub_target.attributes))]
    assert S.is_schedule_message(published[0][1])


def test_handle_message_runs_through_request_run(rt, acme, published):
    s = new(rt.warehouse)
    msg = S.message(s)
    out = S.handle_message(rt, msg)
    assert out["status"] == "queued" and out["pipeline"] == SAAS
    run = rt.warehouse.query("SELECT * FROM `organizations.org_pipeline_runs`")[0]
    assert (run["trigger"], run["org_slug"]) == ("schedule", "acme")
    assert [p for _, p, _ in published if "run_id" in p] and not S.is_schedule_message(published[-1][1])
    # Disabled, deleted or tampered schedules fire nothing.
    assert S.handle_message(rt, {**msg, "pipeline_id": "genai/payg/openai"})["status"] == "ignored"
    assert S.handle_message(rt, {**msg, "org_slug": "globex"})["status"] == "ignored"
    S.update_schedule(rt.warehouse, "acme", s["schedule_id"], {"enabled": False})
    assert S.handle_message(rt, msg)["status"] == "ignored"


def test_handle_message_reports_refusals_without_raising(rt, acme, published, monkeypatch):
    from shared import api

    def refuse(*a, **k):
        raise api.ApiError(402, "subscription_inactive", "the organization's subscription is 'past_due'")

    monkeypatch.setattr(api, "request_run", refuse)
    out = S.handle_message(rt, S.message(new(rt.warehouse)))
    assert (out["status"], out["http_status"], out["error"]) == ("refused", 402, "subscription_inactive")


# -- HTTP routes ----------------------------------------------------------------------------------
def test_routes(rt, acme):
    post = S.handle_schedules(rt, "POST", "acme", json.dumps({"pipeline_id": SAAS, "cron": "0 3 * * *"}).encode())
    assert post[0] == 201
    sid = post[1]["schedule_id"]
    assert S.handle_schedules(rt, "GET", "acme", b"")[1]["schedules"][0]["schedule_id"] == sid
    assert S.handle_schedules(rt, "GET", f"acme/{sid}", b"")[0] == 200
    assert S.handle_schedules(rt, "PATCH", f"acme/{sid}", b'{"cron": "0 4 * * *"}')[1]["cron"] == "0 4 * * *"
    bad = S.handle_schedules(rt, "PATCH", f"acme/{sid}", b'{"cron": "0 4 * *"}')
    assert bad[0] == 400 and bad[1]["field"] == "cron"
    assert S.handle_schedules(rt, "DELETE", f"acme/{sid}", b"") == (200, {"deleted": sid})
    from shared.api import ApiError

    for method, rest in (("DELETE", f"acme/{sid}"), ("GET", "acme/../x"), ("GET", "acme/sch_000000000000")):
        with pytest.raises(ApiError) as e:
            S.handle_schedules(rt, method, rest, b"")
        assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        S.handle_schedules(rt, "PUT", "acme", b"")
    assert e.value.status == 405


def test_routes_push_changes_to_cloud_scheduler_on_gcp(rt, acme, monkeypatch):
    fake = FakeScheduler()
    monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, backend="gcp", project=PROJECT, region=REGION))
    monkeypatch.setattr(S, "scheduler_client", lambda: fake)
    status, out = S.handle_schedules(rt, "POST", "acme", json.dumps({"pipeline_id": SAAS, "cron": "0 3 * * *"}).encode())
    assert status == 201 and len(out["cloud_scheduler"]["created"]) == 1 and len(fake.jobs) == 1
    monkeypatch.setattr(S, "scheduler_client", lambda: (_ for _ in ()).throw(RuntimeError("no credentials")))
    status, out = S.handle_schedules(rt, "DELETE", f"acme/{out['schedule_id']}", b"")
    assert status == 200 and "no credentials" in out["sync_warning"]


def test_sync_schedules_function(rt, acme, monkeypatch):
    from functions_framework import create_app

    from tests.test_stripe_webhook import MAIN

    fake = FakeScheduler()
    monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, project=PROJECT, region=REGION))
    monkeypatch.setattr(S, "scheduler_client", lambda: fake)
    s = new(rt.warehouse)
    client = create_app(target="sync_schedules", source=MAIN, signature_type="http").test_client()
    r = client.post("/")
    assert r.status_code == 200 and r.json["created"] == [f"{PARENT}/jobs/cloudact-acme-{s['schedule_id']}"]
    assert client.post("/").json["unchanged"] == 1


def test_a_tick_on_the_embedded_bus_reaches_its_own_handler_and_queues_the_run(rt, acme, monkeypatch):
    """publish_due -> pipeline-schedule-ticks -> functions.main.schedule_tick -> the run, as on GCP."""
    from shared import api

    calls = []
    real = api.request_run
    monkeypatch.setattr(api, "request_run", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    s = new(rt.warehouse, cron="0 * * * *")
    assert [d["schedule_id"] for d in S.publish_due(rt, dt.datetime(2026, 1, 15, 10, 0, tzinfo=UTC))] == [s["schedule_id"]]
    rt.bus.drain()
    assert calls == [("acme", SAAS)]  # once: the tick did not come back round through the run requests
    [run] = rt.warehouse.query("SELECT * FROM `organizations.org_pipeline_runs`")
    assert (run["trigger"], run["pipeline_id"]) == ("schedule", SAAS)
    assert not rt.bus.dead_letters
