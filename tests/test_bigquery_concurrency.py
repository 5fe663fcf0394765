"""Concurrency on BigQuery: run claims and plan quotas that concurrent requests cannot double, and
transactions (conversions, slice replacements) that run again when BigQuery aborts them.

BigQueryWarehouse runs against tests/bigquery_fake.py: its SQL is executed on DuckDB under BigQuery's
concurrency rules (snapshot per job; INSERTs never conflict; of two transactions mutating one table,
one is aborted with BigQuery's own error). `overlap` makes two requests take their snapshots before
either writes, as two servers can.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from decimal import Decimal

import pytest

pytest.importorskip("google.cloud.bigquery")

from shared import lifecycle, registry, runs  # noqa: E402
from shared.plans import QuotaExceeded, create_run_with_quota  # noqa: E402
from shared.tenants import bootstrap, create_org, sync_reference_data  # noqa: E402
from shared.warehouse.base import WarehouseError  # noqa: E402
from shared.warehouse.bigquery import BigQueryWarehouse  # noqa: E402
from shared.warehouse.duckdb import DuckDBWarehouse  # noqa: E402
from tests.bigquery_fake import ConcurrentBigQuery  # noqa: E402
from tests.test_stripe_webhook import subscribe  # noqa: E402

PROJECT = "cloudact-test"
OPENAI, ANTHROPIC = registry.get("genai/payg/openai"), registry.get("genai/payg/anthropic")
TODAY = dt.datetime.now(dt.timezone.utc).date()
START, END = TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=2)
RUN_INSERT = "INSERT INTO `organizations.org_pipeline_runs`"


@pytest.fixture()
def engine():
    wh = DuckDBWarehouse(None)
    bootstrap(wh)
    sync_reference_data(wh)
    create_org(wh, "acme")
    yield wh
    wh.close()


@pytest.fixture()
def fake(engine):
    return ConcurrentBigQuery(engine, PROJECT)


@pytest.fixture()
def bq(fake):
    return BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30, conflict_backoff=0.02)


def together(*calls):
    """Run the calls on threads at once; their results or exceptions, in order."""
    out: list = [None] * len(calls)

    def run(i, call):
        try:
            out[i] = call()
        except Exception as e:  # noqa: BLE001 - returned for the test to look at
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a request did not end"
    return out


def active_runs(engine, org="acme"):
    return engine.query("SELECT run_id, pipeline_id, credential_id FROM `organizations.org_pipeline_runs` "
                        "WHERE org_slug = @org AND status IN ('queued', 'running')", {"org": org})


# -- the run claim ------------------------------------------------------------------------------


def test_the_fake_lets_two_overlapping_guarded_inserts_both_insert(bq, fake, engine):
    """What the claim guards against: on BigQuery the bare INSERT ... WHERE NOT EXISTS is not atomic."""
    fake.overlap(2, when=lambda sql: RUN_INSERT in sql)
    sql = (f"{RUN_INSERT} (run_id, org_slug, pipeline_id, credential_id, start_date, end_date, status, `trigger`, "
           "created_at) SELECT @run_id, 'acme', 'p', 'c', @d, @d, 'queued', 'api', CURRENT_TIMESTAMP() "
           "FROM (SELECT 1 AS one) AS single WHERE NOT EXISTS (SELECT 1 FROM `organizations.org_pipeline_runs` "
           "WHERE org_slug = 'acme' AND status = 'queued')")
    assert together(lambda: bq.execute(sql, {"run_id": "r1", "d": START}),
                    lambda: bq.execute(sql, {"run_id": "r2", "d": START})) == [1, 1]
    assert len(active_runs(engine)) == 2


def test_two_requests_for_one_slice_queue_one_run(bq, fake, engine):
    fake.overlap(2, when=lambda sql: RUN_INSERT in sql)
    kw = dict(org_slug="acme", pipeline_id=OPENAI.path, credential_id="cred_1", start_date=START, end_date=END,
              trigger="api")
    first, second = together(lambda: runs.create_run(bq, **kw), lambda: runs.create_run(bq, **kw))
    queued = [r for r in (first, second) if isinstance(r, str)]
    refused = [r for r in (first, second) if isinstance(r, runs.SliceBusy)]
    assert len(queued) == 1 and len(refused) == 1, (first, second)
    assert [r["run_id"] for r in active_runs(engine)] == queued
    assert queued[0] in str(refused[0])  # the refusal names the run that holds the slice
    assert fake.aborted and all("concurrent update" in a for a in fake.aborted)  # they did collide

    # the org's first claim created its claim row; later claims reuse it
    assert engine.query("SELECT COUNT(*) AS n FROM `acme_prod.run_claim`")[0]["n"] >= 1
    other = runs.create_run(bq, **{**kw, "credential_id": "cred_2"})
    assert {r["run_id"] for r in active_runs(engine)} == {queued[0], other}


def test_a_plans_concurrent_limit_holds_against_two_requests_at_once(bq, fake, engine):
    subscribe(engine, concurrent_runs=1)
    fake.overlap(2, when=lambda sql: RUN_INSERT in sql)

    def request(pipeline):
        return lambda: create_run_with_quota(bq, org_slug="acme", pipeline=pipeline, credential_id="cred_1",
                                             start_date=START, end_date=END, trigger="api")

    results = together(request(OPENAI), request(ANTHROPIC))  # two slices: only the quota can refuse one
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 1 and refused[0].status == 429 and refused[0].code == "concurrent_run_limit", results
    assert len(active_runs(engine)) == 1


def test_a_plans_daily_limit_holds_against_three_requests_at_once(bq, fake, engine):
    subscribe(engine, daily_runs=2)
    fake.overlap(3, when=lambda sql: RUN_INSERT in sql)
    results = together(*[
        (lambda cred=cred: create_run_with_quota(bq, org_slug="acme", pipeline=OPENAI, credential_id=cred,
                                                 start_date=START, end_date=END, trigger="api"))
        for cred in ("c1", "c2", "c3")])
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 1 and refused[0].code == "daily_run_limit", results
    assert len(active_runs(engine)) == 2


def test_claims_of_two_orgs_do_not_conflict(bq, fake, engine):
    create_org(engine, "beta")
    fake.overlap(2, when=lambda sql: RUN_INSERT in sql)
    results = together(*[
        (lambda org=org: runs.create_run(bq, org_slug=org, pipeline_id=OPENAI.path, credential_id="cred_1",
                                         start_date=START, end_date=END, trigger="api"))
        for org in ("acme", "beta")])
    assert all(isinstance(r, str) for r in results), results
    assert not fake.aborted  # each org's claim row lives in its own table


# -- conversions that run again ------------------------------------------------------------------


def _ingested_run(engine, pipeline, cred, model):
    """A running run whose raw usage has landed, as the job leaves it for the conversion."""
    run_id, token = f"run_{uuid.uuid4().hex}", uuid.uuid4().hex
    now = dt.datetime.now(dt.timezone.utc)
    engine.insert_rows("organizations", "org_pipeline_runs", [{
        "run_id": run_id, "org_slug": "acme", "pipeline_id": pipeline.path, "credential_id": cred,
        "start_date": START, "end_date": START, "status": "running", "trigger": "api", "created_at": now,
        "started_at": now, "lease_token": token, "lease_expires_at": now + dt.timedelta(minutes=5)}])
    engine.insert_rows("acme_prod", "genai_usage_daily", [{
        "usage_date": START, "provider": pipeline.provider, "model": model, "model_family": model,
        "project_id": "p1", "service_tier": None, "is_batch": False, "input_tokens": 1_000_000,
        "cached_input_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": None, "output_tokens": 0,
        "reasoning_tokens": None, "request_count": 3, "x_org_slug": "acme", "x_pipeline_id": pipeline.path,
        "x_credential_id": cred, "x_pipeline_run_date": START, "x_run_id": run_id, "x_ingested_at": now,
        "x_ingestion_date": now.date()}])
    return {"run_id": run_id, "org_slug": "acme", "pipeline_id": pipeline.path, "status": "ingested",
            "lease_token": token}


@pytest.fixture()
def gcp_runtime(bq):
    from jobs.runner import run_job
    from shared import runtime
    from shared.bus.local import LocalBus
    from shared.config import settings
    from shared.launcher.local import LocalLauncher

    previous = runtime.use(runtime.Runtime(settings(), bq, LocalBus(), LocalLauncher(run_job)))
    yield
    runtime.use(previous)


def test_two_conversions_of_one_org_at_once_both_succeed(bq, fake, engine, gcp_runtime):
    from shared.convert import convert

    events = [_ingested_run(engine, OPENAI, "cred_1", "gpt-4o"),
              _ingested_run(engine, ANTHROPIC, "cred_2", "claude-sonnet-4-5")]
    fake.overlap(2, when=lambda sql: sql.startswith("CALL"))  # both pipelines finish together
    assert together(*[lambda e=e: convert(e) for e in events]) == ["succeeded", "succeeded"]
    assert fake.aborted, "the two conversions' transactions did not collide"
    for e in events:
        run = runs.get_run(engine, "acme", e["run_id"])
        assert run["status"] == "succeeded" and run["rows_converted"] == 1, run["error"]
    focus = engine.query("SELECT x_pipeline_id, BilledCost FROM `acme_prod.cost_data_standard_1_3` "
                         "ORDER BY x_pipeline_id")
    assert [r["x_pipeline_id"] for r in focus] == sorted([OPENAI.path, ANTHROPIC.path])
    assert all(r["BilledCost"] > Decimal(0) for r in focus)


PARAMS = {"org_slug": "acme", "pipeline_id": OPENAI.path, "credential_id": "cred_1", "run_id": "r1",
          "start_date": START, "end_date": END}


def conflicting(fake, attempts: int, backoff: float) -> BigQueryWarehouse:
    """A warehouse retrying a conflict `attempts` times from a `backoff` window, against a FOCUS table that another
    transaction mutates and never ends."""
    fake.hold("acme_prod.cost_data_standard_1_3")
    return BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30, conflict_attempts=attempts,
                             conflict_backoff=backoff)


@pytest.mark.timeout(60)
def test_a_conversion_that_keeps_conflicting_ends_after_a_bounded_number_of_jittered_attempts(
        fake, engine, monkeypatch):
    from google.api_core.retry import retry_unary

    waits: list[float] = []
    monkeypatch.setattr(retry_unary.time, "sleep", waits.append)
    bq = conflicting(fake, attempts=5, backoff=0.5)
    with pytest.raises(WarehouseError, match="concurrent update") as e:
        bq.call_procedure("acme_prod", "sp_genai_3_convert_to_focus", PARAMS)
    assert "5 times" in str(e.value)
    assert sum(sql.startswith("CALL") for sql in fake.sent) == 5
    assert len(waits) == 4 and len(set(waits)) == 4  # drawn at random, not in lockstep
    assert all(0 <= w <= 0.5 * 2 ** i for i, w in enumerate(waits))  # from a doubling window


@pytest.mark.timeout(60)
def test_a_conversion_retrying_conflicts_stops_at_the_runs_deadline(fake, engine):
    bq = conflicting(fake, attempts=1000, backoff=0.2)
    scope = lifecycle.Scope("r1", "acme", "tok", lease_s=120, deadline_s=1.0)
    began = time.monotonic()
    with lifecycle.working(scope), pytest.raises(lifecycle.DeadlineExceeded, match="CLOUDACT_RUN_DEADLINE_S"):
        bq.call_procedure("acme_prod", "sp_genai_3_convert_to_focus", PARAMS)
    assert time.monotonic() - began < 15


@pytest.mark.timeout(60)
def test_a_cancelled_run_stops_retrying(fake, engine):
    bq = conflicting(fake, attempts=1000, backoff=0.05)
    scope = lifecycle.Scope("r1", "acme", "tok", lease_s=120, deadline_s=3600)
    threading.Timer(0.3, scope.stop, args=("cancelled",)).start()
    with lifecycle.working(scope), pytest.raises(lifecycle.RunStopped):
        bq.call_procedure("acme_prod", "sp_genai_3_convert_to_focus", PARAMS)
