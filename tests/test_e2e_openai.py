"""The whole flow over real HTTP: POST with a key -> bus -> job -> loopback OpenAI -> procedures -> FOCUS."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest

from cli.remote import post_and_wait
from shared.auth import create_key
from shared.secrets import CredentialStore
from shared.tenants import create_org
from stubs.genai_data import openai_demo_usage
from stubs.openai import OpenAIStub

START, DAYS = dt.date(2026, 10, 1), 12
END = START + dt.timedelta(days=DAYS - 1)
ADMIN_KEY = "sk-admin-test-key"


@pytest.fixture()
def stack(rt, acme):
    from cli.server import start_background

    stub = OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(START, DAYS, seed=3))
    stub.start()
    server, url = start_background()
    key = create_key(rt.warehouse, "acme")
    cred = CredentialStore(rt.warehouse, rt.settings).add("acme", "openai", {"admin_key": ADMIN_KEY, "base_url": stub.base_url})
    yield {"rt": rt, "stub": stub, "url": url, "key": key, "cred": cred}
    server.shutdown()
    stub.stop()


def run_over_http(stack, body, org="acme") -> dict:
    return post_and_wait(stack["url"], stack["key"], org, "genai/payg/openai", body, timeout=60)


def snapshot(wh):
    q = lambda t, c: wh.query(f"SELECT COUNT(*) AS n, SUM({c}) AS s FROM `acme_prod.{t}`")[0]  # noqa: E731
    return {"usage": q("genai_usage_daily", "input_tokens + output_tokens + cached_input_tokens"),
            "billed": q("genai_provider_costs_daily", "amount"),
            "costs": q("genai_costs_daily", "cost"),
            "focus": q("cost_data_standard_1_3", "BilledCost")}


BODY = {"start_date": START.isoformat(), "end_date": END.isoformat()}


def test_request_to_focus_rows_and_idempotent_rerun(stack):
    wh = stack["rt"].warehouse
    run = run_over_http(stack, BODY)
    assert run["status"] == "succeeded", run
    assert run["rows_ingested"] > 0 and run["rows_converted"] > 0 and run["error"] is None
    first = snapshot(wh)
    assert first["focus"]["n"] == run["rows_converted"]
    # BilledCost is what OpenAI billed wherever a cost line matches; usage the bill has no line for
    # (a line that rounded to $0.00) keeps its list-price cost and says so, and the day's Adjustment row
    # makes the FOCUS total the bill exactly
    by_source = {r["x_cost_source"]: r for r in wh.query(
        "SELECT x_cost_source, COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3` "
        "GROUP BY x_cost_source")}
    assert first["focus"]["s"] == first["billed"]["s"] and isinstance(first["focus"]["s"], Decimal)
    assert by_source["billed"]["n"] > 0.9 * first["focus"]["n"]
    assert set(by_source) <= {"billed", "computed"}
    lineage = wh.query("SELECT COUNT(*) AS n FROM `acme_prod.genai_usage_daily` WHERE x_org_slug = 'acme' "
                       "AND x_pipeline_id = 'genai/payg/openai' AND x_credential_id = @c AND x_run_id = @r "
                       "AND x_pipeline_run_date = usage_date AND x_ingestion_date IS NOT NULL", {"c": stack["cred"], "r": run["run_id"]})
    assert lineage[0]["n"] == first["usage"]["n"]
    again = run_over_http(stack, BODY)
    assert again["status"] == "succeeded"
    assert snapshot(wh) == first


def test_overlapping_smaller_rerun_replaces_only_its_slice(stack):
    wh = stack["rt"].warehouse
    run_over_http(stack, BODY)
    first = snapshot(wh)
    inner = {"start_date": (START + dt.timedelta(days=3)).isoformat(), "end_date": (START + dt.timedelta(days=5)).isoformat()}
    assert run_over_http(stack, inner)["status"] == "succeeded"
    assert snapshot(wh) == first


def test_redelivered_completion_changes_nothing(stack):
    rt = stack["rt"]
    run = run_over_http(stack, BODY)
    before = snapshot(rt.warehouse)
    event = {"run_id": run["run_id"], "org_slug": "acme", "pipeline_id": "genai/payg/openai",
             "credential_id": stack["cred"], "start_date": BODY["start_date"], "end_date": BODY["end_date"],
             "status": "ingested"}
    rt.bus.redeliver("pipeline-run-completed", event, "dup-1")
    rt.bus.drain()
    from shared.convert import convert

    assert convert(event) == "ignored"
    assert snapshot(rt.warehouse) == before


def test_provider_failure_ends_failed_and_keeps_earlier_data(stack, monkeypatch):
    monkeypatch.setenv("CLOUDACT_HTTP_BACKOFF_MAX", "0.01")
    monkeypatch.setenv("CLOUDACT_HTTP_MAX_ATTEMPTS", "3")
    wh = stack["rt"].warehouse
    run_over_http(stack, BODY)
    before = snapshot(wh)
    stack["stub"].fail_next(status=500, times=50)
    failed = run_over_http(stack, BODY)
    assert failed["status"] == "failed"
    assert "500" in failed["error"] and ADMIN_KEY not in failed["error"]
    assert snapshot(wh) == before


def test_other_orgs_never_see_acme_rows(stack):
    rt = stack["rt"]
    create_org(rt.warehouse, "globex")
    run_over_http(stack, BODY)
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `globex_prod.cost_data_standard_1_3`")[0]["n"] == 0
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `globex_prod.genai_usage_daily`")[0]["n"] == 0
    globex_key = create_key(rt.warehouse, "globex")
    with httpx.Client(base_url=stack["url"], headers={"X-API-Key": globex_key}) as http:
        assert http.post("/api/v1/pipelines/run/acme/genai/payg/openai", json=BODY).status_code == 403
