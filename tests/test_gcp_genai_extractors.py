"""Gemini and Vertex AI extractors against the loopback Cloud Monitoring stub over real HTTP."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai import gcp_monitoring, gemini, vertex
from shared.models import model_family
from stubs.gcp_monitoring import GcpMonitoringStub
from stubs.genai_data import (GEMINI_DEMO_PROJECT, GEMINI_OUTPUT_METRIC, VERTEX_DEMO_PROJECT, VERTEX_TOKEN_METRIC,
                              gemini_demo_usage, gemini_input_metric, gemini_metric_points, vertex_demo_usage,
                              vertex_metric_points)
from tests.extractor_kit import Sleeps, assert_credential_refused, refused_secret_message

TOKEN = "ya29.test-token-0123456789abcdef"
START = dt.date(2026, 7, 1)
DAYS = 40
END = START + dt.timedelta(days=DAYS - 1)
PATH_GEMINI = f"/v3/projects/{GEMINI_DEMO_PROJECT}/timeSeries"


def _ctx(stub, start=START, end=END, project=GEMINI_DEMO_PROJECT, token=TOKEN, **extra) -> ExtractContext:
    cred = {"project": project, "access_token": token, "base_url": stub.base_url, **extra}
    return ExtractContext(org_slug="acme", pipeline_id="genai/payg/gemini", credential_id="cred-1", run_id="run-1",
                          start_date=start, end_date=end, credential=cred)


def _rows(out: dict) -> list[dict]:
    return [r for b in out["genai_usage_daily"] for r in b.to_pylist()]


@pytest.fixture()
def gemini_usage():
    return gemini_demo_usage(START, DAYS, seed=11, free_tier=True)


@pytest.fixture()
def vertex_usage():
    return vertex_demo_usage(START, DAYS, seed=11)


@pytest.fixture()
def stub(gemini_usage, vertex_usage):
    points = gemini_metric_points(gemini_usage) + vertex_metric_points(vertex_usage)
    with GcpMonitoringStub(access_token=TOKEN, points=points) as s:
        yield s


def _expected_gemini(usage, start=START, end=END) -> dict[tuple, dict]:
    exp: dict[tuple, dict] = {}
    for r in usage:
        if start <= r["date"] <= end:
            e = exp.setdefault((r["date"], r["model"]), {"input_tokens": 0, "output_tokens": 0, "request_count": 0})
            e["input_tokens"] += r["input_tokens"]
            e["output_tokens"] += r["output_tokens"]
            e["request_count"] += r["requests"]
    return exp


# -- Gemini ---------------------------------------------------------------------------------------------------

def test_gemini_exact_totals_per_day_and_model(stub, gemini_usage):
    ctx = _ctx(stub)
    rows = _rows(gemini.extract(ctx))
    got = {(r["usage_date"], r["model"]): {k: r[k] for k in ("input_tokens", "output_tokens", "request_count")}
           for r in rows}
    assert got == _expected_gemini(gemini_usage)
    assert len(rows) == len(got)  # one row per (day, project, model)
    r = rows[0]
    assert r["provider"] == "gemini" and r["project_id"] == GEMINI_DEMO_PROJECT and r["is_batch"] is False
    assert r["cached_input_tokens"] == 0 and r["cache_write_tokens"] == 0 and r["reasoning_tokens"] is None
    assert any("free tier" in w for w in ctx.warnings)

    first = stub.requests[0]["params"]
    assert stub.requests[0]["path"] == PATH_GEMINI
    assert first["filter"] == [f'metric.type="{GEMINI_OUTPUT_METRIC}"']
    assert first["interval.startTime"] == ["2026-07-01T00:00:00Z"]
    assert first["interval.endTime"] == ["2026-08-10T00:00:00Z"]  # exclusive: the day after END
    assert first["aggregation.alignmentPeriod"] == ["86400s"]
    assert first["aggregation.perSeriesAligner"] == ["ALIGN_SUM"]
    assert first["aggregation.crossSeriesReducer"] == ["REDUCE_SUM"]
    assert first["aggregation.groupByFields"] == ["metric.label.model"]
    filters = [r["params"]["filter"][0] for r in stub.requests]
    for tier in gemini.INPUT_TIERS:  # every input tier is read
        assert f'metric.type="{gemini_input_metric(tier)}"' in filters


def test_gemini_without_free_tier_has_no_warning(gemini_usage):
    usage = gemini_demo_usage(START, 5, seed=3)
    with GcpMonitoringStub(access_token=TOKEN, points=gemini_metric_points(usage)) as s:
        ctx = _ctx(s, START, START + dt.timedelta(days=4))
        rows = _rows(gemini.extract(ctx))
    assert ctx.warnings == []
    assert sum(r["input_tokens"] for r in rows) == sum(r["input_tokens"] for r in usage)


def test_paging_follows_next_page_token_and_rejoins_split_series(stub, gemini_usage, monkeypatch):
    monkeypatch.setattr(gcp_monitoring, "PAGE_SIZE", 7)  # 7 points a page: series are cut across pages
    rows = _rows(gemini.extract(_ctx(stub)))
    got = {(r["usage_date"], r["model"]): {k: r[k] for k in ("input_tokens", "output_tokens", "request_count")}
           for r in rows}
    assert got == _expected_gemini(gemini_usage)
    output_requests = [r for r in stub.requests if r["params"]["filter"][0].endswith(f'{GEMINI_OUTPUT_METRIC}"')]
    points = len(_expected_gemini(gemini_usage))  # one output point per (day, model) once summed
    assert len(output_requests) == -(-points // 7)
    tokens = [r["params"].get("pageToken", [None])[0] for r in output_requests]
    assert tokens[0] is None and len(set(tokens[1:])) == len(tokens) - 1
    assert all(r["params"]["pageSize"] == ["7"] for r in output_requests)


def test_day_window_is_utc_days_inclusive(stub, gemini_usage):
    start, end = START + dt.timedelta(days=10), START + dt.timedelta(days=12)
    rows = _rows(gemini.extract(_ctx(stub, start, end)))
    assert sorted({r["usage_date"] for r in rows}) == [start, start + dt.timedelta(days=1), end]
    got = {(r["usage_date"], r["model"]): r["output_tokens"] for r in rows}
    assert got == {k: v["output_tokens"] for k, v in _expected_gemini(gemini_usage, start, end).items()}
    assert stub.requests[0]["params"]["interval.endTime"] == [f"{end + dt.timedelta(days=1)}T00:00:00Z"]


def test_points_outside_the_window_or_off_midnight_are_reported(stub):
    day = START + dt.timedelta(days=3)

    def point(start: str, end: str, value: str) -> dict:
        return {"interval": {"startTime": start, "endTime": end}, "value": {"int64Value": value}}

    body = {"timeSeries": [{"metric": {"type": GEMINI_OUTPUT_METRIC, "labels": {"model": "models/gemini-2.5-pro"}},
                            "resource": {"type": "x", "labels": {}},
                            "points": [point(f"{day}T00:00:00Z", f"{day + dt.timedelta(days=1)}T00:00:00Z", "100"),
                                       point(f"{day - dt.timedelta(days=1)}T00:00:00Z", f"{day}T00:00:00Z", "7"),
                                       point(f"{day}T08:00:00+08:00", f"{day}T23:59:00Z", "5")]}]}
    stub.enqueue(200, body, path=PATH_GEMINI)  # the output query
    stub.enqueue(200, {}, times=len(gemini.INPUT_METRICS) + 1, path=PATH_GEMINI)  # no input/request data
    ctx = _ctx(stub, day, day)
    rows = _rows(gemini.extract(ctx))
    # 08:00+08:00 is midnight UTC; the one at the day before is outside the window
    assert [(r["usage_date"], r["model"], r["output_tokens"], r["request_count"]) for r in rows] == [
        (day, "gemini-2.5-pro", 105, None)]
    assert any("outside" in w for w in ctx.warnings)


def test_off_midnight_points_warn(stub):
    body = {"timeSeries": [{"metric": {"type": GEMINI_OUTPUT_METRIC, "labels": {"model": "gemini-2.5-pro"}},
                            "points": [{"interval": {"startTime": f"{START}T06:00:00Z",
                                                     "endTime": f"{START + dt.timedelta(days=1)}T06:00:00Z"},
                                        "value": {"int64Value": "9"}}]}]}
    stub.enqueue(200, body, path=PATH_GEMINI)
    stub.enqueue(200, {}, times=len(gemini.INPUT_METRICS) + 1, path=PATH_GEMINI)
    ctx = _ctx(stub, START, START)
    assert _rows(gemini.extract(ctx))[0]["output_tokens"] == 9
    assert any("UTC midnight" in w for w in ctx.warnings)


def test_bad_point_values_are_errors(stub):
    body = {"timeSeries": [{"metric": {"type": GEMINI_OUTPUT_METRIC, "labels": {"model": "m"}},
                            "points": [{"interval": {"startTime": f"{START}T00:00:00Z"},
                                        "value": {"int64Value": "12.5"}}]}]}
    stub.enqueue(200, body, path=PATH_GEMINI)
    with pytest.raises(ExtractError, match="not a whole number"):
        gemini.extract(_ctx(stub, START, START))


def test_repeated_page_token_stops(stub):
    page = {"timeSeries": [], "nextPageToken": "same"}
    stub.enqueue(200, page, times=2, path=PATH_GEMINI)
    with pytest.raises(ExtractError, match="same nextPageToken twice"):
        gemini.extract(_ctx(stub, START, START))


# -- Vertex AI ----------------------------------------------------------------------------------------------

def test_vertex_exact_totals_by_model_and_type(stub, vertex_usage):
    ctx = _ctx(stub, project=VERTEX_DEMO_PROJECT)
    rows = _rows(vertex.extract(ctx))
    exp: dict[tuple, tuple] = {}
    for r in vertex_usage:
        exp[(r["date"], r["model_user_id"])] = (r["input_tokens"], r["output_tokens"], r["invocations"])
    got = {(r["usage_date"], r["model"]): (r["input_tokens"], r["output_tokens"], r["request_count"]) for r in rows}
    assert got == exp
    claude = next(r for r in rows if r["model"].startswith("claude"))
    assert claude["model_family"] == "claude-sonnet-4-5" and claude["provider"] == "vertex"
    assert claude["project_id"] == VERTEX_DEMO_PROJECT
    tok = next(r for r in stub.requests if r["params"]["filter"][0] == f'metric.type="{VERTEX_TOKEN_METRIC}"')
    assert tok["params"]["aggregation.groupByFields"] == ["resource.label.model_user_id", "metric.label.type"]
    assert ctx.warnings == []


def test_vertex_unknown_token_types_are_skipped_with_a_warning(stub):
    path = f"/v3/projects/{VERTEX_DEMO_PROJECT}/timeSeries"

    def series(kind: str, value: str) -> dict:
        return {"metric": {"type": VERTEX_TOKEN_METRIC, "labels": {"type": kind}},
                "resource": {"type": "aiplatform.googleapis.com/PublisherModel",
                             "labels": {"model_user_id": "gemini-2.5-flash"}},
                "points": [{"interval": {"startTime": f"{START}T00:00:00Z", "endTime": f"{START}T23:59:59Z"},
                            "value": {"int64Value": value}}]}

    stub.enqueue(200, {"timeSeries": [series("input", "10"), series("output", "4"), series("thinking", "3")]},
                 path=path)
    stub.enqueue(200, {}, path=path)  # no invocation data
    ctx = _ctx(stub, START, START, project=VERTEX_DEMO_PROJECT)
    rows = _rows(vertex.extract(ctx))
    assert [(r["input_tokens"], r["output_tokens"], r["request_count"]) for r in rows] == [(10, 4, None)]
    assert any("thinking=3" in w for w in ctx.warnings)


def test_both_projects_in_one_credential(stub, gemini_usage):
    ctx = _ctx(stub)
    ctx.credential["projects"] = [GEMINI_DEMO_PROJECT, VERTEX_DEMO_PROJECT]
    rows = _rows(gemini.extract(ctx))
    assert {r["project_id"] for r in rows} == {GEMINI_DEMO_PROJECT}  # the vertex project has no Gemini metrics
    assert {r["path"] for r in stub.requests} == {PATH_GEMINI, f"/v3/projects/{VERTEX_DEMO_PROJECT}/timeSeries"}


def test_monitoring_projects_win_over_the_billing_export_project(stub, vertex_usage):
    ctx = _ctx(stub, project="billing-export-project", monitoring_projects=[VERTEX_DEMO_PROJECT])
    rows = _rows(vertex.extract(ctx))
    assert {r["project_id"] for r in rows} == {VERTEX_DEMO_PROJECT}
    assert sum(r["input_tokens"] for r in rows) == sum(r["input_tokens"] for r in vertex_usage)


# -- retries and credentials ----------------------------------------------------------------------------------

def test_429_storm_mid_paging_is_ridden_out(stub, gemini_usage, monkeypatch):
    monkeypatch.setattr(gcp_monitoring, "PAGE_SIZE", 50)
    stub.fail_next(status=429, retry_after="2", times=4, path=PATH_GEMINI, after=1)
    stub.fail_next(status=503, path=PATH_GEMINI)
    sleeps = Sleeps()
    rows = _rows(gemini.extract(_ctx(stub), sleep=sleeps))
    assert sleeps[:4] == [2, 2, 2, 2] and len(sleeps) == 5 and sleeps[4] > 0
    statuses = [r["status"] for r in stub.requests][:7]
    assert statuses == [200, 429, 429, 429, 429, 503, 200]
    tokens = [r["params"].get("pageToken", [None])[0] for r in stub.requests[1:7]]
    assert len(set(tokens)) == 1 and tokens[0] is not None  # the same page was retried, not skipped
    got = {(r["usage_date"], r["model"]): {k: r[k] for k in ("input_tokens", "output_tokens", "request_count")}
           for r in rows}
    assert got == _expected_gemini(gemini_usage)


def test_wrong_token_is_a_credential_error(stub, caplog):
    wrong = "ya29.WRONG-token-9876543210"
    msg = refused_secret_message(vertex.extract, _ctx(stub, project=VERTEX_DEMO_PROJECT, token=wrong), stub, caplog,
                                 wrong)
    assert "HTTP 401" in msg and "cloudact credentials add acme gcp --from-json FILE" in msg
    assert "invalid authentication credentials" in msg


def test_unknown_project_is_permission_denied(stub):
    with pytest.raises(CredentialError, match=r"HTTP 403.*monitoring.timeSeries.list denied"):
        gemini.extract(_ctx(stub, project="someone-elses-project"), sleep=Sleeps())


@pytest.mark.parametrize("cred, match", [
    ({"access_token": TOKEN}, "names no project"),
    ({"project": GEMINI_DEMO_PROJECT}, "neither service_account_json nor access_token"),
    ({"project": "../../v1/other", "access_token": TOKEN}, "not valid"),
    ({"service_account_json": "not json", "access_token": TOKEN}, "not a service-account key"),
])
def test_credential_shape_errors(stub, cred, match):
    assert_credential_refused(gemini.extract, _ctx(stub), stub, cred, match)


def test_service_account_json_mints_a_token_and_names_the_project(stub, gemini_usage):
    minted = []

    def minter(info: dict) -> str:
        minted.append(info["client_email"])
        return TOKEN

    ctx = _ctx(stub)
    ctx.credential = {"service_account_json": '{"type": "service_account", "project_id": "%s", '
                                              '"client_email": "reader@x.iam.gserviceaccount.com"}' % GEMINI_DEMO_PROJECT,
                      "base_url": stub.base_url}
    rows = _rows(gemini.extract(ctx, token_minter=minter))
    assert minted == ["reader@x.iam.gserviceaccount.com"]
    assert sum(r["output_tokens"] for r in rows) == sum(r["output_tokens"] for r in gemini_usage)


def test_defaults_point_at_google():
    assert gcp_monitoring.DEFAULT_BASE_URL == "https://monitoring.googleapis.com"
    assert gcp_monitoring.SCOPE == "https://www.googleapis.com/auth/monitoring.read"
    assert model_family("claude-sonnet-4-5@20250929") == "claude-sonnet-4-5"


# -- the stub on its own ---------------------------------------------------------------------------------------

def test_stub_answers_in_the_documented_shape(stub):
    h = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{stub.base_url}{PATH_GEMINI}"
    q = {"filter": f'metric.type="{GEMINI_OUTPUT_METRIC}"', "interval.startTime": "2026-07-01T00:00:00Z",
         "interval.endTime": "2026-07-03T00:00:00Z", "aggregation.alignmentPeriod": "86400s",
         "aggregation.perSeriesAligner": "ALIGN_SUM"}
    assert httpx.get(url, params=q).status_code == 401
    raw = httpx.get(url, params=q, headers=h).json()["timeSeries"]  # no reducer: one series per method
    assert len(raw) == 8 and {s["metric"]["labels"]["method"].rsplit(".", 1)[1] for s in raw} == {
        "GenerateContent", "StreamGenerateContent"}
    point = raw[0]["points"][0]
    assert isinstance(point["value"]["int64Value"], str)
    assert point["interval"] == {"startTime": "2026-07-02T00:00:00Z", "endTime": "2026-07-03T00:00:00Z"}  # newest first
    summed = httpx.get(url, params={**q, "aggregation.crossSeriesReducer": "REDUCE_SUM",
                                    "aggregation.groupByFields": "metric.label.model"}, headers=h).json()["timeSeries"]
    assert len(summed) == 4 and all(set(s["metric"]["labels"]) == {"model"} for s in summed)
    assert sum(int(p["value"]["int64Value"]) for s in raw for p in s["points"]) == \
        sum(int(p["value"]["int64Value"]) for s in summed for p in s["points"])
    assert httpx.get(url, params={**q, "filter": 'metric.type="nothing/here"'}, headers=h).json() == {}
    bad = {**q, "interval.startTime": "2026-07-01T05:00:00Z"}
    assert httpx.get(url, params=bad, headers=h).status_code == 400
    assert httpx.get(url, params={**q, "filter": "resource.type=\"x\""}, headers=h).status_code == 400
