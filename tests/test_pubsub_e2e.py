"""The Pub/Sub backend end to end against the real Pub/Sub emulator (skipped with a reason when absent).

POST /api/v1/pipelines/run (functions-framework HTTP server, `run_pipeline`)
  -> PubSubBus.publish(pipeline-run-requests)   -> emulator push -> `dispatch_run` (CloudEvent server)
  -> LocalLauncher runs the job in-process       -> loopback OpenAI stub -> raw rows in DuckDB
  -> PubSubBus.publish(pipeline-run-completed)  -> emulator push -> `convert_on_completion` (CloudEvent server)
  -> procedures -> FOCUS 1.3 rows -> run `succeeded`, read back over HTTP.

Only the launcher is in-process (the Cloud Run launcher has its own tests); every message travels
through the emulator and arrives as the CloudEvent functions-framework builds from a push request
whose path names the topic, as Eventarc's would.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared import runs
from shared.bus.base import TOPIC_RUN_COMPLETED, TOPIC_RUN_REQUESTS, TOPIC_SCHEDULE_TICKS, TOPICS
from tests.emulators import pubsub_emulator, pubsub_emulator_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.emulator

MAIN = str(Path(__file__).resolve().parent.parent / "functions" / "main.py")
PIPELINE = "genai/payg/openai"
START, DAYS = dt.date(2026, 10, 1), 5
BODY = {"start_date": START.isoformat(), "end_date": (START + dt.timedelta(days=DAYS - 1)).isoformat()}
ADMIN_KEY = "sk-admin-pubsub-e2e"


class Recorder:
    """WSGI middleware noting (path, status) of each finished request, so a test can wait for a push."""

    def __init__(self, app):
        self.app = app
        self.calls: list[tuple[str, int]] = []
        self._cond = threading.Condition()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        seen = {}

        def recording_start(status, headers, exc_info=None):
            seen["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        try:
            yield from self.app(environ, recording_start)
        finally:
            with self._cond:
                self.calls.append((path, seen.get("status", 500)))
                self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[tuple[str, int]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} push deliveries, got {self.calls}")
            return list(self.calls)


def _serve(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ff-pubsub-e2e", daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture()
def stack(home, pubsub_emulator, monkeypatch):  # noqa: F811 - fixture from tests.emulators
    import functions_framework
    from google.cloud import pubsub_v1

    from cli.server import app as http_app
    from jobs.runner import run_job
    from shared import runtime
    from shared.auth import create_key
    from shared.bus.pubsub import PubSubBus, ensure_topology, subscription_name
    from shared.config import settings
    from shared.launcher.local import LocalLauncher
    from shared.secrets import CredentialStore
    from shared.tenants import bootstrap, create_org, sync_reference_data
    from shared.warehouse.duckdb import DuckDBWarehouse
    from stubs.genai_data import openai_demo_usage
    from stubs.openai import OpenAIStub

    project = f"e2e-{uuid.uuid4().hex[:10]}"  # the emulator keeps each project's resources apart
    s = dataclasses.replace(settings(), project=project)
    rt = runtime.Runtime(s, DuckDBWarehouse(s.warehouse_path), PubSubBus(project), LocalLauncher(run_job))
    previous = runtime.use(rt)
    bootstrap(rt.warehouse)
    sync_reference_data(rt.warehouse)
    create_org(rt.warehouse, "acme")

    stub = OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(START, DAYS, seed=5))
    stub.start()
    # One app per target: create_app re-executes functions/main.py each time, and each app keeps
    # the function object it loaded, so the servers do not interfere.
    dispatch = Recorder(functions_framework.create_app(target="dispatch_run", source=MAIN, signature_type="cloudevent"))
    convert = Recorder(functions_framework.create_app(target="convert_on_completion", source=MAIN,
                                                      signature_type="cloudevent"))
    tick = Recorder(functions_framework.create_app(target="schedule_tick", source=MAIN, signature_type="cloudevent"))
    servers = [_serve(dispatch), _serve(convert), _serve(tick), _serve(http_app())]
    (_, _, dispatch_url), (_, _, convert_url), (_, _, tick_url), (_, _, api_url) = servers
    # The push path names the topic, so functions-framework gives the CloudEvent Eventarc's source.
    ensure_topology(project, push_endpoints={
        TOPIC_RUN_REQUESTS: f"{dispatch_url}/projects/{project}/topics/{TOPIC_RUN_REQUESTS}",
        TOPIC_RUN_COMPLETED: f"{convert_url}/projects/{project}/topics/{TOPIC_RUN_COMPLETED}",
        TOPIC_SCHEDULE_TICKS: f"{tick_url}/projects/{project}/topics/{TOPIC_SCHEDULE_TICKS}",
    }, min_backoff=1, max_backoff=2)
    key = create_key(rt.warehouse, "acme")
    cred = CredentialStore(rt.warehouse, s).add("acme", "openai", {"admin_key": ADMIN_KEY, "base_url": stub.base_url})
    try:
        yield {"rt": rt, "project": project, "stub": stub, "api": api_url, "key": key, "cred": cred,
               "dispatch": dispatch, "convert": convert, "tick": tick}
    finally:
        subscriber = pubsub_v1.SubscriberClient()  # stop the pushes before their servers go away
        for topic in TOPICS:
            subscriber.delete_subscription(
                request={"subscription": f"projects/{project}/subscriptions/{subscription_name(topic)}"})
        subscriber.close()
        for server, thread, _ in servers:
            server.shutdown()
            thread.join(timeout=5)
        stub.stop()
        runtime.use(previous)
        rt.close()


def post_and_poll(stack, timeout: float = 25.0) -> dict:
    with httpx.Client(base_url=stack["api"], headers={"X-API-Key": stack["key"]}, timeout=10) as http:
        r = http.post(f"/api/v1/pipelines/run/acme/{PIPELINE}", json=BODY)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "queued"
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = http.get(f"/api/v1/pipelines/runs/acme/{run_id}").json()
            if run["status"] in runs.TERMINAL:
                return run
            time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s: {run}")


def snapshot(wh) -> dict:
    out = {}
    for table, col in (("genai_usage_daily", "input_tokens + output_tokens + cached_input_tokens"),
                       ("genai_costs_daily", "cost"), ("cost_data_standard_1_3", "BilledCost")):
        out[table] = wh.query(f"SELECT COUNT(*) AS n, SUM({col}) AS s FROM `acme_prod.{table}`")[0]
    return out


def test_run_request_to_focus_rows_through_pubsub(stack, monkeypatch):
    import shared.convert
    from shared import runs
    from shared.bus.pubsub import PubSubBus

    outcomes = []  # a spy: convert_on_completion imports shared.convert.convert at each call
    real_convert = shared.convert.convert
    monkeypatch.setattr(shared.convert, "convert", lambda event: outcomes.append(real_convert(event)) or outcomes[-1])
    rt, project = stack["rt"], stack["project"]
    wh = rt.warehouse
    run = post_and_poll(stack)
    assert run["status"] == "succeeded", run
    assert run["rows_ingested"] > 0 and run["rows_converted"] > 0 and run["error"] is None

    # Each message reached its function through a push from the emulator, and was acknowledged.
    dispatched = stack["dispatch"].wait_for(1)
    converted = stack["convert"].wait_for(1)
    assert dispatched == [(f"/projects/{project}/topics/{TOPIC_RUN_REQUESTS}", 200)]
    assert converted == [(f"/projects/{project}/topics/{TOPIC_RUN_COMPLETED}", 200)]
    assert outcomes == ["succeeded"]

    # FOCUS rows exist for this run, every one carrying the run's lineage.
    focus = wh.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT x_run_id) AS runs, "
        "SUM(CASE WHEN x_org_slug = 'acme' AND x_pipeline_id = @p AND x_credential_id = @c AND x_run_id = @r "
        "AND x_ingested_at IS NOT NULL AND x_ingestion_date IS NOT NULL AND x_pipeline_run_date IS NOT NULL "
        "THEN 1 ELSE 0 END) AS stamped FROM `acme_prod.cost_data_standard_1_3`",
        {"p": PIPELINE, "c": stack["cred"], "r": run["run_id"]})[0]
    assert focus["n"] == run["rows_converted"] > 0
    assert focus["runs"] == 1 and focus["stamped"] == focus["n"]
    usage = wh.query("SELECT COUNT(*) AS n FROM `acme_prod.genai_usage_daily` WHERE x_run_id = @r "
                     "AND x_credential_id = @c AND x_pipeline_run_date = usage_date",
                     {"r": run["run_id"], "c": stack["cred"]})[0]["n"]
    assert usage > 0

    # A redelivered completion (published again through Pub/Sub) is acknowledged and changes nothing.
    before, record = snapshot(wh), runs.get_run(wh, "acme", run["run_id"])
    event = {"run_id": run["run_id"], "org_slug": "acme", "pipeline_id": PIPELINE, "credential_id": stack["cred"],
             "start_date": BODY["start_date"], "end_date": BODY["end_date"], "status": "ingested",
             "rows_ingested": run["rows_ingested"]}
    bus = PubSubBus(project)
    bus.publish(TOPIC_RUN_COMPLETED, event, {"org": "acme", "pipeline": PIPELINE})
    bus.close()
    assert stack["convert"].wait_for(2)[1] == (f"/projects/{project}/topics/{TOPIC_RUN_COMPLETED}", 200)
    assert outcomes == ["succeeded", "ignored"]
    assert snapshot(wh) == before
    assert runs.get_run(wh, "acme", run["run_id"]) == record
    assert len(stack["dispatch"].calls) == 1  # nothing re-ran the job


def test_provider_failure_ends_the_run_failed(stack, monkeypatch):
    monkeypatch.setenv("CLOUDACT_HTTP_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CLOUDACT_HTTP_BACKOFF_MAX", "0.01")
    stack["stub"].fail_next(status=500, times=50)
    run = post_and_poll(stack)
    assert run["status"] == "failed", run
    assert "500" in run["error"] and ADMIN_KEY not in run["error"]
    # The failure is recorded by the job and the push acknowledged (no redelivery storm); no completion.
    assert stack["dispatch"].wait_for(1) == [(f"/projects/{stack['project']}/topics/{TOPIC_RUN_REQUESTS}", 200)]
    time.sleep(0.3)
    assert stack["convert"].calls == []
    assert snapshot(stack["rt"].warehouse)["cost_data_standard_1_3"]["n"] == 0


def test_a_schedule_tick_has_its_own_topic_and_function_and_starts_the_run(stack):
    """Cloud Scheduler's tick -> pipeline-schedule-ticks -> schedule_tick (queues the run, no HTTP, no key)
    -> pipeline-run-requests -> dispatch_run -> job -> completion -> FOCUS rows."""
    from shared import schedules
    from shared.bus.pubsub import PubSubBus

    rt, project = stack["rt"], stack["project"]
    s = schedules.create_schedule(rt.warehouse, "acme", {"pipeline_id": PIPELINE, "cron": "0 3 * * *",
                                                         "body": {"credential_id": stack["cred"], **BODY}})
    bus = PubSubBus(project)
    try:
        due = schedules.publish_due(dataclasses.replace(rt, bus=bus), dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC))
    finally:
        bus.close()
    assert [d["schedule_id"] for d in due] == [s["schedule_id"]]
    assert stack["tick"].wait_for(1) == [(f"/projects/{project}/topics/{TOPIC_SCHEDULE_TICKS}", 200)]
    assert stack["dispatch"].wait_for(1) == [(f"/projects/{project}/topics/{TOPIC_RUN_REQUESTS}", 200)]
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        [run] = [runs.public_view(r) for r in runs.list_runs(rt.warehouse, "acme")]
        if run["status"] in runs.TERMINAL:
            break
        time.sleep(0.05)
    assert run["status"] == "succeeded" and run["trigger"] == "schedule" and run["rows_converted"] > 0, run
    assert len(stack["tick"].calls) == len(stack["dispatch"].calls) == 1  # the tick did not loop back
