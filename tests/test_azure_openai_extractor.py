"""The Azure OpenAI extractor against the loopback Azure Monitor + Cost Management stub over real HTTP."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai import azure_openai as az
from shared.models import model_family
from stubs.azure_monitor import AzureMonitorStub
from stubs.genai_data import (AZURE_DEMO_RESOURCES, AZURE_DEMO_SUBSCRIPTION, AZURE_OPENAI_SERVICE,
                              azure_meter_names, azure_openai_demo_costs, azure_openai_demo_usage)
from tests.extractor_kit import Sleeps, assert_credential_refused, refused_secret_message
from tests.extractor_kit import rows as _rows

TOKEN = "eyJ0eXAiOiJKV1Qi.test-token-0123456789"
START = dt.date(2026, 7, 1)
DAYS = 20
END = START + dt.timedelta(days=DAYS - 1)
QUERY_PATH = f"{AZURE_DEMO_SUBSCRIPTION}/providers/Microsoft.CostManagement/query"
METRICS = "/providers/Microsoft.Insights/metrics"


def _ctx(stub, start=START, end=END, token=TOKEN, **extra) -> ExtractContext:
    cred = {"access_token": token, "resource_ids": list(AZURE_DEMO_RESOURCES), "cost_scope": AZURE_DEMO_SUBSCRIPTION,
            "base_url": stub.base_url, **extra}
    return ExtractContext(org_slug="acme", pipeline_id="genai/payg/azure_openai", credential_id="cred-1",
                          run_id="run-1", start_date=start, end_date=end, credential=cred)


@pytest.fixture()
def usage():
    return azure_openai_demo_usage(START, DAYS, seed=5)


@pytest.fixture()
def stub(usage):
    with AzureMonitorStub(access_token=TOKEN, usage=usage, cost_scope=AZURE_DEMO_SUBSCRIPTION, page_size=25) as s:
        yield s


def _expected_costs(usage, start=START, end=END) -> dict[tuple, Decimal]:
    """(day, deployment, meter) -> amount: each demo account has one deployment per model version."""
    deployment_of = {(r["date"], r["resource_id"], m): r["deployment"] for r in usage
                     for m in azure_meter_names(r["model"], r["model_version"]).values()}
    exp: dict[tuple, Decimal] = {}
    for c in azure_openai_demo_costs(usage):
        if c["service_name"] == AZURE_OPENAI_SERVICE and start <= c["date"] <= end:
            key = (c["date"], deployment_of[(c["date"], c["resource_id"], c["meter_name"])], c["meter_name"])
            exp[key] = exp.get(key, Decimal(0)) + c["amount"]
    return exp


# -- tokens ---------------------------------------------------------------------------------------------------

def test_usage_exact_totals_per_day_and_deployment(stub, usage):
    ctx = _ctx(stub)
    rows = _rows(az.extract(ctx), "genai_usage_daily")
    exp = {(r["date"], r["deployment"], r["model"]): (r["prompt_tokens"], r["generated_tokens"], r["requests"])
           for r in usage}
    got = {(r["usage_date"], r["project_id"], r["model"]): (r["input_tokens"], r["output_tokens"], r["request_count"])
           for r in rows}
    assert got == exp
    assert all(r["provider"] == "azure_openai" and r["cached_input_tokens"] == 0 and r["is_batch"] is False
               for r in rows)
    assert {r["model_family"] for r in rows} == {"gpt-4o", "gpt-4o-mini", "gpt-4.1"}
    assert ctx.warnings == []

    metric_requests = [r for r in stub.requests if r["method"] == "GET"]
    assert [r["path"] for r in metric_requests] == [f"{rid}{METRICS}" for rid in AZURE_DEMO_RESOURCES]
    p = metric_requests[0]["params"]
    assert p["api-version"] == ["2023-10-01"] and p["interval"] == ["P1D"] and p["aggregation"] == ["Total"]
    assert p["metricnames"] == ["ProcessedPromptTokens,GeneratedTokens,AzureOpenAIRequests"]
    assert p["timespan"] == ["2026-07-01T00:00:00Z/2026-07-21T00:00:00Z"]  # end exclusive
    assert p["$filter"] == ["ModelDeploymentName eq '*' and ModelName eq '*' and ModelVersion eq '*'"]
    assert p["top"] == ["1000"]


def test_day_window_is_utc_days_inclusive(stub, usage):
    start, end = START + dt.timedelta(days=5), START + dt.timedelta(days=6)
    out = az.extract(_ctx(stub, start, end))
    rows = _rows(out, "genai_usage_daily")
    assert sorted({r["usage_date"] for r in rows}) == [start, end]
    assert sum(r["output_tokens"] for r in rows) == sum(r["generated_tokens"] for r in usage
                                                        if start <= r["date"] <= end)
    costs = _rows(out, "genai_provider_costs_daily")
    assert sorted({c["usage_date"] for c in costs}) == [start, end]
    body = next(r for r in stub.requests if r["method"] == "POST")["body"]
    assert body["timePeriod"] == {"from": "2026-07-06T00:00:00Z", "to": "2026-07-07T23:59:59Z"}


def test_points_outside_the_window_and_zero_days_are_dropped(stub):
    day = START + dt.timedelta(days=2)

    def series(deployment: str, points: list[tuple[str, float | None]]) -> dict:
        return {"metadatavalues": [{"name": {"value": "modeldeploymentname"}, "value": deployment},
                                   {"name": {"value": "modelname"}, "value": "gpt-4o"}],
                "data": [{"timeStamp": ts, **({} if v is None else {"total": v})} for ts, v in points]}

    body = {"value": [{"name": {"value": "GeneratedTokens"}, "errorCode": "Success", "timeseries": [
        series("chat", [(f"{day}T00:00:00Z", 120.0), (f"{day - dt.timedelta(days=1)}T00:00:00Z", 5.0)]),
        series("idle", [(f"{day}T00:00:00Z", 0.0), (f"{day}T00:00:00Z", None)])]}]}
    stub.enqueue(200, body, path=METRICS)
    stub.enqueue(200, {"value": []}, path=METRICS)
    ctx = _ctx(stub, day, day, cost_scope=None)
    rows = _rows(az.extract(ctx), "genai_usage_daily")
    assert [(r["usage_date"], r["project_id"], r["output_tokens"], r["input_tokens"]) for r in rows] == [
        (day, "chat", 120, 0)]
    assert any("outside" in w for w in ctx.warnings)
    assert any("no cost_scope" in w for w in ctx.warnings)


def test_fractional_token_totals_are_errors(stub):
    body = {"value": [{"name": {"value": "GeneratedTokens"}, "timeseries": [
        {"metadatavalues": [], "data": [{"timeStamp": f"{START}T00:00:00Z", "total": 1.5}]}]}]}
    stub.enqueue(200, body, path=METRICS)
    with pytest.raises(ExtractError, match="not a whole number"):
        az.extract(_ctx(stub, START, START))


def test_stub_default_top_drops_series_like_azure(usage):
    first = next(r for r in usage if r["resource_id"] == AZURE_DEMO_RESOURCES[0])
    many = [{**first, "deployment": f"dep-{i:02d}"} for i in range(12)]
    with AzureMonitorStub(access_token=TOKEN, usage=many, cost_scope=AZURE_DEMO_SUBSCRIPTION) as s:
        url = f"{s.base_url}{AZURE_DEMO_RESOURCES[0]}{METRICS}"
        q = {"api-version": "2023-10-01", "metricnames": "GeneratedTokens", "interval": "P1D", "aggregation": "Total",
             "timespan": f"{START}T00:00:00Z/{START + dt.timedelta(days=1)}T00:00:00Z",
             "$filter": "ModelDeploymentName eq '*'"}
        h = {"Authorization": f"Bearer {TOKEN}"}
        assert len(httpx.get(url, params=q, headers=h).json()["value"][0]["timeseries"]) == 10
        rows = _rows(az.extract(_ctx(s, START, START, resource_ids=[AZURE_DEMO_RESOURCES[0]])), "genai_usage_daily")
    assert len(rows) == 12  # the extractor asks for top=1000


# -- money ----------------------------------------------------------------------------------------------------

def test_costs_are_exact_decimals_across_next_links(stub, usage):
    out = az.extract(_ctx(stub))
    costs = _rows(out, "genai_provider_costs_daily")
    assert all(isinstance(c["amount"], Decimal) for c in costs)
    got = {(c["usage_date"], c["project_id"], c["line_item"]): c["amount"] for c in costs}
    exp = _expected_costs(usage)
    assert got == exp  # exact to the last digit: amounts never pass through a float
    assert sum(got.values()) == sum(exp.values())
    assert "S1 Speech To Text" not in {c["line_item"] for c in costs}  # filtered to the OpenAI service
    posts = [r for r in stub.requests if r["method"] == "POST"]
    assert len(posts) == -(-len(exp) // 25) > 1
    assert "$skiptoken" not in posts[0]["params"] and all("$skiptoken" in r["params"] for r in posts[1:])
    assert all(r["params"]["api-version"] == ["2023-11-01"] for r in posts)
    assert all(r["body"] == posts[0]["body"] for r in posts)  # the same query body on every page
    body = posts[0]["body"]
    assert body["type"] == "ActualCost" and body["timeframe"] == "Custom"
    assert body["dataset"]["granularity"] == "Daily"
    assert body["dataset"]["aggregation"] == {"totalCost": {"name": "Cost", "function": "Sum"}}
    assert [g["name"] for g in body["dataset"]["grouping"]] == ["ResourceId", "MeterName"]
    # the meter's model version is the usage's ModelName; the cached-prompt meter bills the input class
    c = next(c for c in costs if c["line_item"].endswith("cached Inp glbl") and "4.1" in c["line_item"])
    assert (c["model"], c["token_class"], c["is_batch"], c["currency"], c["project_id"]) == (
        "gpt-4.1", "input", False, "USD", "eval-gpt41")


def test_cost_amounts_decode_exactly(stub):
    rows = [[0.1, 20260701, AZURE_DEMO_RESOURCES[0], "gpt-4o-0806-Inp-glbl Tokens", "USD"],
            [0.2, 20260701, AZURE_DEMO_RESOURCES[0], "gpt-4o-0806-Inp-glbl Tokens", "USD"],
            [1234567.891234, "2026-07-01T00:00:00", AZURE_DEMO_RESOURCES[1], "gpt-4-8K-Batch-Outp-glbl", "eur"],
            [None, 20260701, AZURE_DEMO_RESOURCES[1], "Broken", "USD"]]
    cols = [{"name": n, "type": t} for n, t in (("Cost", "Number"), ("UsageDate", "Number"), ("ResourceId", "String"),
                                                 ("MeterName", "String"), ("Currency", "String"))]
    stub.enqueue(200, {"properties": {"nextLink": None, "columns": cols, "rows": rows}}, path="/query")
    costs = _rows(az.extract(_ctx(stub, START, START)), "genai_provider_costs_daily")
    by = {c["line_item"]: c for c in costs}
    assert by["gpt-4o-0806-Inp-glbl Tokens"]["amount"] == Decimal("0.3")  # not 0.30000000000000004
    big = by["gpt-4-8K-Batch-Outp-glbl"]
    assert big["amount"] == Decimal("1234567.891234") and big["currency"] == "EUR"
    assert (big["model"], big["token_class"], big["is_batch"]) == ("gpt-4-8k", "output", True)
    assert big["project_id"] == "aoai-dev-swc" and "Broken" not in by


def test_next_link_to_another_host_is_not_followed(stub):
    cols = [{"name": "Cost", "type": "Number"}, {"name": "UsageDate", "type": "Number"}]
    stub.enqueue(200, {"properties": {"nextLink": "https://attacker.example/q?$skiptoken=x", "columns": cols,
                                      "rows": []}}, path="/query")
    with pytest.raises(ExtractError, match="another host"):
        az.extract(_ctx(stub, START, START))


def test_version_tags_and_meter_models_meet_the_usage():
    assert [az.version_tag(v) for v in ("2024-11-20", "0613", "turbo-2024-04-09", "1", "", None)] == [
        "1120", "0613", "0409", None, None, None]
    d = az.Deployments()
    acct = AZURE_DEMO_RESOURCES[0]
    d.add(acct, START, "chat", "gpt-4o", "2024-11-20")
    d.add(acct, START, "old", "gpt-4o", "2024-08-06")
    d.add(acct, START, "five", "gpt-5", None)
    d.add(acct, START, None, "gpt-4o", "2024-05-13")  # no deployment dimension: nothing to attribute to
    rid = acct.lower() + "/"  # Cost Management writes resource ids lower-cased
    assert d.resolve(rid, START, "gpt-4o-1120") == ("gpt-4o", "chat")
    assert d.resolve(rid, START, "gpt-4o-0806") == ("gpt-4o", "old")
    assert d.resolve(rid, START, "gpt-4o-0513") == ("gpt-4o", None)  # a version no deployment reported
    assert d.resolve(rid, START, "gpt-5") == ("gpt-5", "five")
    assert d.resolve(rid, START + dt.timedelta(days=1), "gpt-4o-1120") == ("gpt-4o", None)  # no tokens that day
    assert d.resolve(AZURE_DEMO_RESOURCES[1], START, "gpt-4-8k") == ("gpt-4-8k", None)


def test_parse_meter():
    f = az.parse_meter
    assert f("gpt-4o-mini-0718-Inp-glbl Tokens") == ("gpt-4o-mini-0718", "input", False)
    assert f("gpt 4o 1120 cached Inp glbl") == ("gpt-4o-1120", "cached_input", False)
    assert f("GPT 5 Inpt Glbl") == ("gpt-5", "input", False)
    assert f("gpt-4-8K-Batch-Inp-glbl") == ("gpt-4-8k", "input", True)
    assert f("gpt-4o-0806-Outp-regnl Tokens") == ("gpt-4o-0806", "output", False)
    assert f("S1 Speech To Text") == (None, None, None) and f(None) == (None, None, None)


# -- retries and credentials ----------------------------------------------------------------------------------

def test_429_storm_on_the_cost_query_is_ridden_out(stub, usage):
    stub.fail_next(status=429, retry_after="7", times=4, path="/query", after=1)  # storm on the second page
    stub.fail_next(status=429, retry_after="1", times=2, path=METRICS)
    sleeps = Sleeps()
    out = az.extract(_ctx(stub), sleep=sleeps)
    assert sleeps == [1, 1, 7, 7, 7, 7]
    posts = [r for r in stub.requests if r["method"] == "POST"]
    assert [r["status"] for r in posts[:6]] == [200, 429, 429, 429, 429, 200]
    assert len({r["params"]["$skiptoken"][0] for r in posts[1:6]}) == 1  # the same page was retried
    costs = _rows(out, "genai_provider_costs_daily")
    assert {(c["usage_date"], c["project_id"], c["line_item"]): c["amount"] for c in costs} == _expected_costs(usage)
    assert sum(r["output_tokens"] for r in _rows(out, "genai_usage_daily")) == sum(r["generated_tokens"] for r in usage)


def test_wrong_token_is_a_credential_error(stub, caplog):
    wrong = "eyJ-WRONG-token-9876543210abcdef"
    msg = refused_secret_message(az.extract, _ctx(stub, token=wrong), stub, caplog, wrong)
    assert "HTTP 401" in msg and "cloudact credentials add acme azure --from-json FILE" in msg
    assert "invalid or has expired" in msg


def test_scope_without_permission_is_a_credential_error(stub):
    other = "/subscriptions/00000000-0000-0000-0000-000000000000"
    with pytest.raises(CredentialError, match="HTTP 403"):
        az.extract(_ctx(stub, cost_scope=other), sleep=Sleeps())


def test_unknown_resource_is_an_extract_error(stub):
    rid = AZURE_DEMO_RESOURCES[0].replace("aoai-prod-eastus", "gone")
    with pytest.raises(ExtractError, match="HTTP 404") as err:
        az.extract(_ctx(stub, resource_ids=[rid]), sleep=Sleeps())
    assert not isinstance(err.value, CredentialError)


@pytest.mark.parametrize("cred, match", [
    ({"access_token": TOKEN}, "lists no Azure OpenAI resources"),
    ({"access_token": TOKEN, "resource_ids": ["/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/"
                                              "storageAccounts/z"]}, "Not an Azure OpenAI"),
    ({"resource_ids": list(AZURE_DEMO_RESOURCES)}, "neither tenant_id/client_id/client_secret nor access_token"),
    ({"access_token": TOKEN, "resource_ids": list(AZURE_DEMO_RESOURCES), "cost_scope": "../../evil"}, "cost_scope"),
])
def test_credential_shape_errors(stub, cred, match):
    assert_credential_refused(az.extract, _ctx(stub), stub, cred, match)


def test_service_principal_mints_a_token(stub, usage):
    seen = []

    def minter(cred: dict) -> str:
        seen.append((cred["tenant_id"], cred["client_id"]))
        return TOKEN

    ctx = _ctx(stub)
    del ctx.credential["access_token"]
    ctx.credential.update({"tenant_id": "t-1", "client_id": "c-1", "client_secret": "s3cret-value-xyz"})
    out = az.extract(ctx, token_minter=minter)
    assert seen == [("t-1", "c-1")]
    assert _rows(out, "genai_provider_costs_daily")


def test_defaults_point_at_azure():
    assert az.DEFAULT_BASE_URL == "https://management.azure.com"
    assert az.TOKEN_SCOPE == "https://management.azure.com/.default"
