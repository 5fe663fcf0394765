"""Runs that always end, in one process: leases and the sweep, the lease fence, cancellation, request and
run deadlines, and the per-org share of the in-process workers. Providers are loopback stubs over real
HTTP; the process-level cases (SIGKILL, SIGTERM, Ctrl-C) are in test_serve_lifecycle.py."""
from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest

from tests.run_api import RunsApi, wait_until
from shared import lifecycle, registry, runs
from shared.auth import create_key
from shared.http import ApiClient
from shared.naming import org_dataset
from shared.secrets import CredentialStore
from shared.tenants import create_org
from shared.warehouse.base import Fence, LeaseLost, Slice
from stubs.genai_data import openai_demo_usage
from stubs.openai import OpenAIStub

START, DAYS = dt.date(2026, 10, 1), 4
END = START + dt.timedelta(days=DAYS - 1)
BODY = {"start_date": START.isoformat(), "end_date": END.isoformat()}
PIPELINE = "genai/payg/openai"
OPENAI = registry.get(PIPELINE)
ADMIN_KEY = "sk-admin-lifecycle-test"
USAGE_PATH = "/organization/usage/completions"


class Org(RunsApi):
    """An org with a key, an OpenAI credential on its own loopback stub, and an HTTP client to the API."""

    def __init__(self, rt, slug: str, url: str):
        self.slug, self.rt = slug, rt
        self.stub = OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(START, 40, seed=11)).start()
        self.cred = CredentialStore(rt.warehouse, rt.settings).add(
            slug, "openai", {"admin_key": ADMIN_KEY, "base_url": self.stub.base_url})
        super().__init__(httpx.Client(base_url=url, headers={"X-API-Key": create_key(rt.warehouse, slug)},
                                      timeout=30), slug)

    def post(self, body=BODY) -> str:
        return self.post_run(PIPELINE, body)

    def raw_rows(self) -> int:
        return self.rt.warehouse.query(
            f"SELECT COUNT(*) AS n FROM `{org_dataset(self.slug)}.genai_usage_daily`")[0]["n"]

    def close(self):
        self.http.close()
        self.stub.release()
        self.stub.stop()


@pytest.fixture()
def server(rt):
    from cli.server import start_background

    srv, url = start_background()
    yield url
    srv.shutdown()


@pytest.fixture()
def org(rt, acme, server):
    o = Org(rt, "acme", server)
    yield o
    o.close()


def plan(wh, monkeypatch, **limits):
    from shared.stripe_events import handle_event
    from tests.test_stripe_webhook import event, product

    handle_event(wh, event("product.created", product("prod_small", "Small", **limits)))
    monkeypatch.setenv("CLOUDACT_DEFAULT_PLAN", "prod_small")


def queue(wh, cred="cred_1", start=START, end=END) -> str:
    from shared.plans import create_run_with_quota

    return create_run_with_quota(wh, org_slug="acme", pipeline=OPENAI, credential_id=cred, start_date=start,
                                 end_date=end, trigger="api")


# -- leases and the sweep ------------------------------------------------------------------------------


def test_an_expired_lease_fails_the_run_and_frees_its_slice_and_quota(rt, acme, monkeypatch):
    wh = rt.warehouse
    plan(wh, monkeypatch, concurrent_runs=1)
    dead = queue(wh)
    assert runs.mark_running(wh, dead, runs.new_token(), lease_s=1)  # a job that then died: no renewals
    with pytest.raises(runs.SliceBusy):  # while the lease holds, the slice is busy
        queue(wh)
    time.sleep(1.2)
    fresh = queue(wh)  # the sweep before the slice check ended the dead run: slice and quota are free
    ended = runs.get_run(wh, "acme", dead)
    assert ended["status"] == "failed" and ended["finished_at"] is not None
    assert ended["error"].startswith(runs.LEASE_EXPIRED)
    assert runs.get_run(wh, "acme", fresh)["status"] == "queued"


def test_a_queued_run_no_worker_started_fails_after_the_queue_timeout(rt, acme, monkeypatch):
    monkeypatch.setenv("CLOUDACT_RUN_QUEUE_TIMEOUT_S", "1")
    wh = rt.warehouse
    kw = dict(org_slug="acme", pipeline_id=PIPELINE, credential_id="c1", start_date=START, end_date=END,
              trigger="api")
    lost = runs.create_run(wh, **kw)  # its request never reached a worker
    with pytest.raises(runs.SliceBusy):
        runs.create_run(wh, **kw)
    time.sleep(1.2)
    runs.create_run(wh, **kw)
    run = runs.get_run(wh, "acme", lost)
    assert run["status"] == "failed" and "never started" in run["error"]
    assert "CLOUDACT_RUN_QUEUE_TIMEOUT_S" in run["error"]


def test_a_sweep_leaves_runs_this_process_still_holds(rt, acme, monkeypatch):
    monkeypatch.setenv("CLOUDACT_RUN_LEASE_S", "1")
    wh = rt.warehouse
    run_id = queue(wh)
    runs.mark_running(wh, run_id, runs.new_token(), lease_s=0.1)
    time.sleep(0.3)
    lifecycle.hold(run_id)  # e.g. its renewal waits behind another run's write on the embedded warehouse
    try:
        assert runs.sweep(wh) == []
        assert runs.get_run(wh, "acme", run_id)["status"] == "running"
    finally:
        lifecycle.release(run_id)
    assert runs.sweep(wh) == [run_id]


def test_a_lease_from_before_leases_existed_is_swept(rt, acme, monkeypatch):
    """Runs left `running` by an older version have no lease: they end a lease after they started."""
    monkeypatch.setenv("CLOUDACT_RUN_LEASE_S", "1")
    wh = rt.warehouse
    run_id = queue(wh)
    wh.execute("UPDATE `organizations.org_pipeline_runs` SET status = 'running', started_at = @t WHERE run_id = @r",
               {"t": dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=5), "r": run_id})
    assert runs.sweep(wh) == [run_id]


def test_sweep_runs_function_ends_dead_runs(rt, acme):
    from functions_framework import create_app

    from cli.server import MAIN

    wh = rt.warehouse
    run_id = queue(wh)
    runs.mark_running(wh, run_id, runs.new_token(), lease_s=0.1)
    time.sleep(0.3)
    client = create_app(target="sweep_runs", source=MAIN, signature_type="http").test_client()
    r = client.post("/")
    assert r.status_code == 200 and r.get_json() == {"ended": [run_id]}
    assert runs.get_run(wh, "acme", run_id)["status"] == "failed"


# -- the fence -----------------------------------------------------------------------------------------


def test_a_job_whose_lease_was_taken_never_writes(org):
    """The run is failed elsewhere (a sweep in another process) while its job waits on the provider."""
    wh = org.rt.warehouse
    org.stub.hold(USAGE_PATH)
    run_id = org.post()
    assert org.stub.wait_held()
    wh.execute("UPDATE `organizations.org_pipeline_runs` SET status = 'failed', error = 'swept elsewhere' "
               "WHERE run_id = @r", {"r": run_id})
    org.stub.release()
    org.rt.bus.drain(timeout=30)
    run = org.get(run_id)
    assert run["status"] == "failed" and run["error"] == "swept elsewhere" and run["rows_ingested"] is None
    assert org.raw_rows() == 0  # the job extracted everything, and its landing transaction refused to commit


def test_fenced_conversion_writes_only_under_a_held_lease(rt, acme):
    """call_procedure with the lease of a run that is no longer running changes nothing."""
    from jobs.base import ExtractContext
    from jobs.runner import land

    wh = rt.warehouse
    run_id = queue(wh, cred="c1")
    token = runs.new_token()
    runs.mark_running(wh, run_id, token, lease_s=60)
    stub = OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(START, DAYS, seed=3)).start()
    try:
        ctx = ExtractContext("acme", PIPELINE, "c1", run_id, START, END,
                             {"admin_key": ADMIN_KEY, "base_url": stub.base_url})
        assert sum(land(wh, OPENAI, ctx).values()) > 0
    finally:
        stub.stop()
    params = {"org_slug": "acme", "pipeline_id": PIPELINE, "credential_id": "c1", "run_id": run_id,
              "start_date": START, "end_date": END}
    focus = lambda: wh.query("SELECT COUNT(*) AS n FROM `acme_prod.cost_data_standard_1_3`")[0]["n"]  # noqa: E731
    runs.cancel(wh, "acme", run_id, by="test")
    for proc in OPENAI.procedures:
        with pytest.raises(LeaseLost):
            wh.call_procedure("acme_prod", proc, params, fence=Fence(run_id, token))
    assert focus() == 0 and wh.query("SELECT COUNT(*) AS n FROM `acme_prod.genai_costs_daily`")[0]["n"] == 0
    # the raw slice is fenced the same way: a stale lease leaves the rows that are there
    before = wh.query("SELECT COUNT(*) AS n FROM `acme_prod.genai_usage_daily`")[0]["n"]
    owner = {"x_org_slug": "acme", "x_pipeline_id": PIPELINE, "x_credential_id": "c1"}
    with pytest.raises(LeaseLost):
        wh.replace_slices("acme_prod", {"genai_usage_daily": (Slice(owner, "usage_date", START, END), [])},
                          fence=Fence(run_id, token))
    assert wh.query("SELECT COUNT(*) AS n FROM `acme_prod.genai_usage_daily`")[0]["n"] == before > 0
    # and with the lease held it writes
    live = queue(wh, cred="c1")
    live_token = runs.new_token()
    runs.mark_running(wh, live, live_token, lease_s=60)
    for proc in OPENAI.procedures:
        wh.call_procedure("acme_prod", proc, {**params, "run_id": live}, fence=Fence(live, live_token))
    assert focus() > 0


# -- cancellation --------------------------------------------------------------------------------------


def test_cancel_a_queued_run(org):
    wh = org.rt.warehouse
    run_id = runs.create_run(wh, org_slug="acme", pipeline_id=PIPELINE, credential_id=org.cred, start_date=START,
                             end_date=END, trigger="api")  # queued; its request not delivered yet
    r = org.http.post(f"/api/v1/pipelines/runs/acme/{run_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert org.get(run_id)["status"] == "cancelled"
    assert org.http.post(f"/api/v1/pipelines/runs/acme/{run_id}/cancel").status_code == 200  # again: no-op
    from jobs.runner import run_job

    late = run_job({"run_id": run_id, "org_slug": "acme", "pipeline_id": PIPELINE, "credential_id": org.cred,
                    "start_date": START.isoformat(), "end_date": END.isoformat()})
    assert late == {"status": "duplicate"} and org.raw_rows() == 0 and not org.stub.requests
    # the slice is free again
    done = org.ended(org.post())
    assert done["status"] == "succeeded"
    r = org.http.post(f"/api/v1/pipelines/runs/acme/{done['run_id']}/cancel")
    assert r.status_code == 409 and "already succeeded" in r.json()["message"]
    assert org.http.post("/api/v1/pipelines/runs/acme/run_nope/cancel").status_code == 404
    assert org.http.get(f"/api/v1/pipelines/runs/acme/{run_id}/cancel").status_code == 405


def test_cancel_is_bound_to_the_org_of_the_key(org, server):
    create_org(org.rt.warehouse, "globex")
    globex = httpx.Client(base_url=server, headers={"X-API-Key": create_key(org.rt.warehouse, "globex")})
    org.stub.hold(USAGE_PATH)
    run_id = org.post()
    assert org.stub.wait_held()
    assert globex.post(f"/api/v1/pipelines/runs/acme/{run_id}/cancel").status_code == 403
    assert globex.post(f"/api/v1/pipelines/runs/globex/{run_id}/cancel").status_code == 404
    assert org.get(run_id)["status"] == "running"
    assert lifecycle.current() is None  # (nothing leaked into this thread)
    org.stub.release()
    assert org.ended(run_id)["status"] == "succeeded"
    globex.close()


def test_cancel_a_running_run_stops_its_job_without_writing(org):
    org.stub.hold(USAGE_PATH)
    run_id = org.post()
    assert org.stub.wait_held()
    assert org.get(run_id)["status"] == "running"
    t0 = time.monotonic()
    r = org.http.post(f"/api/v1/pipelines/runs/acme/{run_id}/cancel")
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    print(f"\ncancel to cancelled: {took * 1000:.0f} ms")
    org.stub.release()  # the held page arrives; the job's next checkpoint stops it
    org.rt.bus.drain(timeout=30)
    run = org.get(run_id)
    assert run["status"] == "cancelled" and run["rows_ingested"] is None and run["rows_converted"] is None
    assert org.raw_rows() == 0
    assert len(org.stub.requests) == 1  # stopped at once: only the held page, no cost request after it


# -- deadlines -----------------------------------------------------------------------------------------


def test_retry_after_86400_sleeps_no_longer_than_the_cap():
    with OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(START, 2, seed=1)) as stub:
        stub.fail_next(429, retry_after="86400")
        stub.fail_next(503, retry_after="Wed, 21 Oct 2099 07:28:00 GMT")
        slept: list[float] = []
        with ApiClient(stub.base_url, {"Authorization": f"Bearer {ADMIN_KEY}"}, sleep=slept.append,
                       retry_after_max=300, provider="OpenAI") as client:
            client.get_json(USAGE_PATH, {"start_time": 1790812800, "bucket_width": "1d"})
    assert slept == [300, 300]


def test_retry_after_never_waits_past_the_run_deadline():
    with OpenAIStub(admin_key=ADMIN_KEY) as stub:
        stub.fail_next(429, retry_after="86400", times=5)
        scope = lifecycle.Scope("run_x", "acme", "tok", lease_s=60, deadline_s=2)
        t0 = time.monotonic()
        with lifecycle.working(scope), ApiClient(stub.base_url, {"Authorization": f"Bearer {ADMIN_KEY}"},
                                                 retry_after_max=5, provider="OpenAI") as client:
            with pytest.raises(lifecycle.DeadlineExceeded) as e:
                client.get_json(USAGE_PATH, {"start_time": 1790812800})
    assert time.monotonic() - t0 < 1.5  # the 5 s wait was never started
    assert "OpenAI" in str(e.value) and USAGE_PATH in str(e.value) and "HTTP 429" in str(e.value)
    assert "CLOUDACT_RUN_DEADLINE_S" in str(e.value)


def test_a_cancel_wakes_a_retry_after_wait():
    import threading

    with OpenAIStub(admin_key=ADMIN_KEY) as stub:
        stub.fail_next(429, retry_after="30")
        scope = lifecycle.Scope("run_x", "acme", "tok", lease_s=60, deadline_s=120)
        threading.Timer(0.5, scope.stop, args=("cancelled",)).start()
        t0 = time.monotonic()
        with lifecycle.working(scope), ApiClient(stub.base_url, {"Authorization": f"Bearer {ADMIN_KEY}"},
                                                 sleep=time.sleep, provider="OpenAI") as client:
            with pytest.raises(lifecycle.RunStopped):
                client.get_json(USAGE_PATH, {"start_time": 1790812800})
    assert time.monotonic() - t0 < 5  # not the 30 s the provider asked for
    assert len(stub.requests) == 1


def test_a_drip_fed_request_ends_at_its_deadline():
    with OpenAIStub(admin_key=ADMIN_KEY) as stub:
        stub.enqueue(200, {"data": "x" * 40}, drip=1.0)  # one byte a second: every read is quick
        t0 = time.monotonic()
        with ApiClient(stub.base_url, {"Authorization": f"Bearer {ADMIN_KEY}"}, request_deadline=2, max_attempts=1,
                       provider="OpenAI") as client:
            with pytest.raises(Exception) as e:
                client.get_json(USAGE_PATH, {"start_time": 1790812800})
    took = time.monotonic() - t0
    assert took < 8, took  # 2 s deadline + at most one more byte; the whole body takes 50 s
    assert "no complete answer within 2 s" in str(e.value)
    print(f"\ndrip-fed request to its 2 s deadline: {took:.1f} s")


def test_a_compressed_answer_read_in_chunks_is_decoded_once():
    import gzip
    import json
    from decimal import Decimal

    body = gzip.compress(json.dumps({"data": [{"amount": 1.25}], "has_more": False}).encode())
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, content=body))
    with ApiClient("https://api.example.test/v1", {}, transport=transport, provider="OpenAI") as client:
        assert client.get_json(USAGE_PATH) == {"data": [{"amount": Decimal("1.25")}], "has_more": False}


def test_a_drip_fed_run_fails_at_its_run_deadline(org, monkeypatch):
    monkeypatch.setenv("CLOUDACT_RUN_DEADLINE_S", "3")
    org.stub.enqueue(200, {"data": "x" * 60}, drip=1.0, times=20)
    t0 = time.monotonic()
    run = org.ended(org.post(), timeout=30)
    took = time.monotonic() - t0
    assert run["status"] == "failed" and took < 12, (took, run)
    assert "deadline of 3 s" in run["error"] and "OpenAI" in run["error"] and USAGE_PATH in run["error"]
    assert org.raw_rows() == 0
    print(f"\ndrip-fed run to its 3 s run deadline: {took:.1f} s")


def test_a_retry_after_storm_ends_within_the_run_deadline(org, monkeypatch):
    monkeypatch.setenv("CLOUDACT_RUN_DEADLINE_S", "3")
    monkeypatch.setenv("CLOUDACT_HTTP_MAX_ATTEMPTS", "1000")  # without the deadline: 1000 waits of 1 s
    org.stub.fail_next(429, retry_after="1", times=1000)
    t0 = time.monotonic()
    run = org.ended(org.post(), timeout=30)
    took = time.monotonic() - t0
    assert run["status"] == "failed" and took < 12, (took, run)
    assert "deadline" in run["error"] and "OpenAI" in run["error"] and "HTTP 429" in run["error"]
    assert len(org.stub.requests) <= 5


# -- fair workers --------------------------------------------------------------------------------------


def test_one_orgs_slow_provider_does_not_delay_another_org(rt, acme, server):
    slow = Org(rt, "acme", server)
    create_org(rt.warehouse, "globex")
    other = Org(rt, "globex", server)
    try:
        slow.stub.hold(USAGE_PATH)
        slow_runs = [slow.post({"start_date": (START + dt.timedelta(days=7 * i)).isoformat(),
                                "end_date": (START + dt.timedelta(days=7 * i + 2)).isoformat()}) for i in range(4)]
        assert slow.stub.wait_held() and slow.stub.wait_held()  # two of acme's runs wait on its provider
        t0 = time.monotonic()
        done = other.ended(other.post(), timeout=20)  # while they wait, globex's run goes through
        assert done["status"] == "succeeded"
        print(f"\nglobex run while acme's provider stalls: {time.monotonic() - t0:.1f} s")
        statuses = sorted(slow.get(r)["status"] for r in slow_runs)
        assert statuses == ["queued", "queued", "running", "running"]  # acme's share is two at a time
        assert not slow.stub.wait_held(timeout=0.5)
        slow.stub.release()
        assert all(slow.ended(r)["status"] == "succeeded" for r in slow_runs)
    finally:
        slow.close()
        other.close()
