"""A run that ingests rows but converts none says so: never a quiet `succeeded` with 0 FOCUS rows."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from shared import registry, runs
from shared.secrets import CredentialStore
from stubs.genai_data import openai_demo_usage
from stubs.openai import OpenAIStub

START, DAYS = dt.date(2026, 10, 1), 3
ADMIN_KEY = "sk-admin-test-key"
PIPELINE = "genai/payg/openai"


@pytest.fixture()
def openai(rt, acme):
    stub = OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(START, DAYS, seed=5))
    stub.start()
    cred = CredentialStore(rt.warehouse, rt.settings).add("acme", "openai",
                                                          {"admin_key": ADMIN_KEY, "base_url": stub.base_url})
    yield cred
    stub.stop()


def run_once(rt, cred) -> dict:
    from jobs.runner import run_job

    end = START + dt.timedelta(days=DAYS - 1)
    run_id = runs.create_run(rt.warehouse, org_slug="acme", pipeline_id=PIPELINE, credential_id=cred,
                             start_date=START, end_date=end, trigger="test")
    run_job({"run_id": run_id, "org_slug": "acme", "pipeline_id": PIPELINE, "credential_id": cred,
             "start_date": START.isoformat(), "end_date": end.isoformat()})
    rt.bus.drain()  # the completion is converted on the bus
    return runs.public_view(runs.get_run(rt.warehouse, "acme", run_id))


def test_a_conversion_that_writes_no_focus_rows_ends_with_a_warning(rt, openai, monkeypatch):
    real = registry.pipelines()
    # the usage is consolidated but never reaches cost_data_standard_1_3, as when the FOCUS step's provider
    # facts have no row for the provider
    silent = dataclasses.replace(real[PIPELINE], procedures=("sp_genai_1_consolidate_usage_daily",))
    monkeypatch.setattr(registry, "pipelines", lambda: {**real, PIPELINE: silent})
    run = run_once(rt, openai)
    assert run["rows_ingested"] > 0 and run["rows_converted"] == 0, run
    [warning] = [w for w in run["warnings"] if "0 were converted" in w]
    assert warning.startswith(f"{run['rows_ingested']:,} raw rows were ingested for 2026-10-01..2026-10-03")
    assert "cost_data_standard_1_3" in warning and PIPELINE in warning


def test_a_run_that_converts_its_rows_has_no_such_warning(rt, openai):
    run = run_once(rt, openai)
    assert run["status"] == "succeeded" and run["rows_converted"] > 0
    assert not [w for w in run["warnings"] if "0 were converted" in w]


def test_a_run_that_landed_nothing_is_warned_once_by_the_job_not_again_by_the_conversion():
    from shared.convert import converted_none

    pipeline = registry.get(PIPELINE)
    run = {"rows_ingested": 0, "start_date": START, "end_date": START}
    assert converted_none(pipeline, run, {"genai_usage_daily": 0, "genai_provider_costs_daily": 0}, 0) is None
    assert converted_none(pipeline, run, None, 0) is None
    # rows of the run's own tables are not raw rows of the slice: the job's 0-landed warning covers them
    assert converted_none(pipeline, {**run, "rows_ingested": 4}, {"genai_usage_daily": 0, "x_other": 4}, 0) is None
    assert converted_none(pipeline, {**run, "rows_ingested": 4}, {"genai_usage_daily": 4}, 3) is None
    assert "4 raw rows" in converted_none(pipeline, {**run, "rows_ingested": 4}, {"genai_usage_daily": 4}, 0)
    # an older completion event without per-table counts falls back to the run's total
    assert "7 raw rows" in converted_none(pipeline, {**run, "rows_ingested": 7}, None, 0)
