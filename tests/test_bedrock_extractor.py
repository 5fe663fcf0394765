"""The Bedrock extractor against moto's CloudWatch (ThreadedMotoServer on loopback, real boto3 calls).

moto (5.2) limits, and how they are covered:
- `get_metric_data` never returns a NextToken, so paging is tested by wrapping the real moto client
  so that its answers are split over several pages (the values still come from moto).
- `bedrock:GetInferenceProfile` is not implemented, so resolving an application inference profile
  is tested with `resolve_profile` patched; the unresolved path runs against moto as is.
- `list_metrics` does not apply CloudWatch's 14-day "recently had data" filter.
"""
from __future__ import annotations

import datetime as dt
import itertools

import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai import bedrock as bedrock_job
from shared import schemas
from stubs.genai_data import (
    BEDROCK_APP_PROFILE_ARN,
    BEDROCK_APP_PROFILE_MODEL,
    bedrock_demo_usage,
    bedrock_metric_data,
)
from stubs.moto_loopback import KEYS, moto_endpoint

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

START = dt.date(2025, 3, 1)
DAYS = 10
END = START + dt.timedelta(days=DAYS - 1)
TODAY = END + dt.timedelta(days=2)  # the data is "recent" for the list_metrics window warning


@pytest.fixture(scope="module")
def server():
    with moto_endpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def usage(server):
    """Demo usage for DAYS days plus one day either side, loaded into moto's CloudWatch (two regions)."""
    records = bedrock_demo_usage(START - dt.timedelta(days=1), DAYS + 2, seed=5)
    for region, data in bedrock_metric_data(records).items():
        cw = boto3.client("cloudwatch", region_name=region, endpoint_url=server, **KEYS)
        for i in range(0, len(data), 1000):
            cw.put_metric_data(Namespace="AWS/Bedrock", MetricData=data[i:i + 1000])
        # noise the extractor must ignore: another namespace, the account-wide (no dimension) series,
        # a metric it does not read
        cw.put_metric_data(Namespace="AWS/Bedrock", MetricData=[
            {"MetricName": "InputTokenCount", "Timestamp": dt.datetime(2025, 3, 2, 5, tzinfo=dt.timezone.utc),
             "Value": 999.0},
            {"MetricName": "InvocationLatency", "Dimensions": [{"Name": "ModelId", "Value": "amazon.nova-pro-v1:0"}],
             "Timestamp": dt.datetime(2025, 3, 2, 5, tzinfo=dt.timezone.utc), "Value": 1234.0}])
    return [r for r in records if START <= r["date"] <= END]


def _ctx(server, start=START, end=END, **cred) -> ExtractContext:
    credential = {"region": "us-east-1", "endpoint_url": server, **KEYS, **cred}
    return ExtractContext(org_slug="acme", pipeline_id="genai/payg/bedrock", credential_id="cred-1",
                          run_id="run-1", start_date=start, end_date=end, credential=credential)


def _rows(out: dict) -> list[dict]:
    return [r for b in out["genai_usage_daily"] for r in b.to_pylist()]


def _expected(records, model_id_for=lambda r: r["model_id"]):
    """Expected rows keyed (day, model, project), summed over regions."""
    want: dict[tuple, dict] = {}
    for r in records:
        project = r["model_id"] if r["model_id"].startswith("arn:") else None
        key = (r["date"], model_id_for(r), project)
        row = want.setdefault(key, {"input_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0,
                                    "output_tokens": 0, "request_count": 0})
        row["input_tokens"] += r["InputTokenCount"]
        row["cached_input_tokens"] += r.get("CacheReadInputTokenCount", 0)
        row["cache_write_tokens"] += r.get("CacheWriteInputTokenCount", 0)
        row["output_tokens"] += r["OutputTokenCount"]
        row["request_count"] += r["Invocations"]
    return want


FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "request_count")


def test_exact_daily_totals_per_model(server, usage):
    ctx = _ctx(server)
    out = bedrock_job.extract(ctx, today=TODAY)
    rows = _rows(out)
    us = [r for r in usage if r["region"] == "us-east-1"]
    want = _expected(us)
    got = {(r["usage_date"], r["model"], r["project_id"]): {f: r[f] for f in FIELDS} for r in rows}
    assert got == want  # every row, every token class, exactly; nothing from the day before or after
    assert {r["usage_date"] for r in rows} == {START + dt.timedelta(days=i) for i in range(DAYS)}
    assert all(r["provider"] == "bedrock" and r["is_batch"] is False and r["service_tier"] is None
               and r["reasoning_tokens"] is None for r in rows)
    # models without caching have no cache series and report 0 cache tokens
    haiku3 = [r for r in rows if r["model"] == "anthropic.claude-3-haiku-20240307-v1:0"]
    assert haiku3 and all(r["cached_input_tokens"] == 0 == r["cache_write_tokens"] for r in haiku3)
    assert ctx.warnings == [  # moto cannot resolve the application profile
        next(w for w in ctx.warnings if "application inference profile" in w)]
    for table in out:
        assert all(b.schema.equals(schemas.get(table).arrow_schema(include_lineage=False)) for b in out[table])


def test_model_family_and_projects(server, usage):
    rows = _rows(bedrock_job.extract(_ctx(server), today=TODAY))
    fam = {r["model"]: r["model_family"] for r in rows}
    assert fam == {
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0": "anthropic.claude-sonnet-4-5",
        "anthropic.claude-3-5-sonnet-20240620-v1:0": "anthropic.claude-3-5-sonnet",
        "anthropic.claude-3-haiku-20240307-v1:0": "anthropic.claude-3-haiku",
        "us.meta.llama3-3-70b-instruct-v1:0": "meta.llama3-3-70b-instruct",
        "amazon.nova-pro-v1:0": "amazon.nova-pro",
        "amazon.nova-micro-v1:0": "amazon.nova-micro",
        BEDROCK_APP_PROFILE_ARN: BEDROCK_APP_PROFILE_ARN,  # unresolved: stays the ARN (and unpriced)
    }
    assert {r["project_id"] for r in rows} == {None, BEDROCK_APP_PROFILE_ARN}


def test_application_profile_resolved_to_its_model(server, usage, monkeypatch):
    calls = []

    def fake_resolve(session, region, endpoint, arn):
        calls.append(arn)
        return BEDROCK_APP_PROFILE_MODEL

    monkeypatch.setattr(bedrock_job, "resolve_profile", fake_resolve)
    ctx = _ctx(server)
    rows = _rows(bedrock_job.extract(ctx, today=TODAY))
    prof = [r for r in rows if r["project_id"] == BEDROCK_APP_PROFILE_ARN]
    assert len(prof) == DAYS and calls == [BEDROCK_APP_PROFILE_ARN]  # resolved once per region and run
    assert {(r["model"], r["model_family"]) for r in prof} == {(BEDROCK_APP_PROFILE_MODEL, "anthropic.claude-3-5-haiku")}
    want = _expected([r for r in usage if r["model_id"] == BEDROCK_APP_PROFILE_ARN], lambda r: BEDROCK_APP_PROFILE_MODEL)
    assert {(r["usage_date"], r["model"], r["project_id"]): {f: r[f] for f in FIELDS} for r in prof} == want
    assert ctx.warnings == []


def test_regions_are_summed(server, usage):
    rows = _rows(bedrock_job.extract(_ctx(server, regions=["us-east-1", "eu-west-1"]), today=TODAY))
    got = {(r["usage_date"], r["model"], r["project_id"]): {f: r[f] for f in FIELDS} for r in rows}
    assert got == _expected(usage)
    eu = [r for r in rows if r["model"].startswith("eu.")]
    assert eu and {r["model_family"] for r in eu} == {"anthropic.claude-sonnet-4-5"}


def test_one_day_window_has_exact_boundaries(server, usage):
    day = START + dt.timedelta(days=4)
    rows = _rows(bedrock_job.extract(_ctx(server, day, day), today=TODAY))
    want = _expected([r for r in usage if r["date"] == day and r["region"] == "us-east-1"])
    assert {(r["usage_date"], r["model"], r["project_id"]): {f: r[f] for f in FIELDS} for r in rows} == want


class PagingClient:
    """The real moto client, with GetMetricData answers cut into pages of `size` datapoints per query."""

    def __init__(self, real, size: int):
        self.real, self.size = real, size
        self.tokens: dict[str, list[dict]] = {}
        self.calls: list[dict] = []
        self.counter = itertools.count()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_metric_data(self, **kwargs):
        self.calls.append(dict(kwargs))
        token = kwargs.pop("NextToken", None)
        if token is None:
            full = self.real.get_metric_data(**kwargs)["MetricDataResults"]
            pages = []
            for n in itertools.count():
                page = []
                for r in full:
                    ts = r["Timestamps"][n * self.size:(n + 1) * self.size]
                    if ts:
                        page.append({**r, "Timestamps": ts, "Values": r["Values"][n * self.size:(n + 1) * self.size],
                                     "StatusCode": "PartialData"})
                if not page:
                    break
                pages.append(page)
            pages = pages or [[]]
        else:
            pages = self.tokens.pop(token)
        first, rest = pages[0], pages[1:]
        resp = {"MetricDataResults": first}
        if rest:
            nxt = f"tok{next(self.counter)}"
            self.tokens[nxt] = rest
            resp["NextToken"] = nxt
        else:
            for r in first:
                r["StatusCode"] = "Complete"
        return resp


def test_get_metric_data_paging_and_query_batches(server, usage, monkeypatch):
    clients = []
    real_factory = bedrock_job._cloudwatch_client

    def factory(session, region, endpoint):
        clients.append(PagingClient(real_factory(session, region, endpoint), size=3))
        return clients[-1]

    monkeypatch.setattr(bedrock_job, "_cloudwatch_client", factory)
    monkeypatch.setattr(bedrock_job, "MAX_QUERIES", 7)  # forces several query batches
    rows = _rows(bedrock_job.extract(_ctx(server), today=TODAY))
    us = [r for r in usage if r["region"] == "us-east-1"]
    assert {(r["usage_date"], r["model"], r["project_id"]): {f: r[f] for f in FIELDS} for r in rows} == _expected(us)
    calls = clients[0].calls
    assert sum("NextToken" in c for c in calls) >= 3  # 10 days at 3 points per page: 4 pages per batch
    batches = [c for c in calls if "NextToken" not in c]
    # 7 models x 3 metrics + 3 caching models x 2 cache metrics = 27 series, 7 per call
    assert len(batches) == 4 and all(len(c["MetricDataQueries"]) <= 7 for c in batches)
    q = batches[0]
    assert q["StartTime"] == dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    assert q["EndTime"] == dt.datetime(2025, 3, 11, tzinfo=dt.timezone.utc)  # exclusive: the day after END
    stat = q["MetricDataQueries"][0]["MetricStat"]
    assert stat["Period"] == 86400 and stat["Stat"] == "Sum" and stat["Metric"]["Namespace"] == "AWS/Bedrock"


def test_list_metrics_paging(server, monkeypatch):
    """More than 500 ModelId series: moto pages list_metrics at 500, the extractor follows NextToken."""
    region = "ap-southeast-2"
    cw = boto3.client("cloudwatch", region_name=region, endpoint_url=server, **KEYS)
    ts = dt.datetime(2025, 3, 3, 8, tzinfo=dt.timezone.utc)
    data = [{"MetricName": "InputTokenCount", "Dimensions": [{"Name": "ModelId", "Value": f"vendor.model-{i}-v1:0"}],
             "Timestamp": ts, "Value": float(i + 1)} for i in range(620)]
    for i in range(0, len(data), 500):
        cw.put_metric_data(Namespace="AWS/Bedrock", MetricData=data[i:i + 500])
    day = ts.date()
    rows = _rows(bedrock_job.extract(_ctx(server, day, day, region=region), today=TODAY))
    assert len(rows) == 620
    assert sum(r["input_tokens"] for r in rows) == sum(range(1, 621))
    assert all(r["request_count"] is None for r in rows)  # no Invocations series
    assert {r["model_family"] for r in rows if r["model"] == "vendor.model-7-v1:0"} == {"vendor.model-7"}


def test_model_ids_from_the_credential_and_backfill_warning(server, usage):
    ctx = _ctx(server, model_ids=["anthropic.claude-v2:1"])
    rows = _rows(bedrock_job.extract(ctx, today=END + dt.timedelta(days=40)))
    assert len(rows) == len([r for r in usage if r["region"] == "us-east-1"])  # the extra id has no data
    assert any("last 14 days" in w and "model_ids (1 listed)" in w for w in ctx.warnings)
    ctx = _ctx(server)
    bedrock_job.extract(ctx, today=END + dt.timedelta(days=500))
    assert any("455 days" in w for w in ctx.warnings)


def test_empty_and_reversed_ranges(server, usage):
    assert _rows(bedrock_job.extract(_ctx(server, dt.date(2024, 1, 1), dt.date(2024, 1, 3)), today=TODAY)) == []
    assert bedrock_job.extract(_ctx(server, END, START), today=TODAY) == {"genai_usage_daily": []}


def test_assume_role_through_sts(server, usage):
    ctx = _ctx(server, role_arn="arn:aws:iam::123456789012:role/bedrock-reader", external_id="ext-1")
    rows = _rows(bedrock_job.extract(ctx, today=TODAY))
    assert sum(r["output_tokens"] for r in rows) == sum(
        r["OutputTokenCount"] for r in usage if r["region"] == "us-east-1")


def test_missing_region_is_a_credential_error(server):
    ctx = _ctx(server)
    del ctx.credential["region"]
    with pytest.raises(CredentialError, match="no region"):
        bedrock_job.extract(ctx, today=TODAY)


class Refusing:
    def __init__(self, code, status=400):
        from botocore.exceptions import ClientError
        self.error = ClientError({"Error": {"Code": code, "Message": f"{code} from the test"},
                                  "ResponseMetadata": {"HTTPStatusCode": status}}, "ListMetrics")

    def list_metrics(self, **kwargs):
        raise self.error


@pytest.mark.parametrize("code,status", [("AccessDenied", 403), ("InvalidClientTokenId", 403),
                                         ("ExpiredToken", 400)])
def test_refused_credentials(server, monkeypatch, code, status):
    monkeypatch.setattr(bedrock_job, "_cloudwatch_client", lambda *a: Refusing(code, status))
    with pytest.raises(CredentialError, match=code) as err:
        bedrock_job.extract(_ctx(server), today=TODAY)
    assert "cloudwatch:ListMetrics" in str(err.value)


def test_other_aws_errors_are_extract_errors(server, monkeypatch):
    monkeypatch.setattr(bedrock_job, "_cloudwatch_client", lambda *a: Refusing("InvalidParameterValue"))
    with pytest.raises(ExtractError) as err:
        bedrock_job.extract(_ctx(server), today=TODAY)
    assert not isinstance(err.value, CredentialError) and "InvalidParameterValue" in str(err.value)


def test_incomplete_results_are_errors(server, usage, monkeypatch):
    real_factory = bedrock_job._cloudwatch_client

    class Partial(PagingClient):
        def get_metric_data(self, **kwargs):
            resp = self.real.get_metric_data(**kwargs)
            for r in resp["MetricDataResults"]:
                r["StatusCode"] = "InternalError"
            return resp

    monkeypatch.setattr(bedrock_job, "_cloudwatch_client", lambda *a: Partial(real_factory(*a), 1))
    with pytest.raises(ExtractError, match="did not complete"):
        bedrock_job.extract(_ctx(server), today=TODAY)


@pytest.mark.parametrize("model_id,normalized,family", [
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620", "anthropic.claude-3-5-sonnet"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-sonnet-20241022", "anthropic.claude-3-5-sonnet"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929", "anthropic.claude-sonnet-4-5"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929",
     "anthropic.claude-sonnet-4-5"),
    ("apac.amazon.nova-lite-v1:0", "amazon.nova-lite", "amazon.nova-lite"),
    ("us-gov.meta.llama3-8b-instruct-v1:0", "meta.llama3-8b-instruct", "meta.llama3-8b-instruct"),
    ("meta.llama3-1-405b-instruct-v1:0", "meta.llama3-1-405b-instruct", "meta.llama3-1-405b-instruct"),
    ("amazon.nova-pro-v1:0:300k", "amazon.nova-pro", "amazon.nova-pro"),
    ("amazon.titan-text-express-v1", "amazon.titan-text-express", "amazon.titan-text-express"),
    ("anthropic.claude-v2:1", "anthropic.claude", "anthropic.claude"),
    ("mistral.mistral-large-2407-v1:0", "mistral.mistral-large-2407", "mistral.mistral-large-2407"),
    ("mistral.mistral-7b-instruct-v0:2", "mistral.mistral-7b-instruct", "mistral.mistral-7b-instruct"),
    ("openai.gpt-oss-120b-1:0", "openai.gpt-oss-120b", "openai.gpt-oss-120b"),
    ("cohere.command-r-plus-v1:0", "cohere.command-r-plus", "cohere.command-r-plus"),
    ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
     "anthropic.claude-3-haiku-20240307", "anthropic.claude-3-haiku"),
    ("arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
     "anthropic.claude-3-5-haiku-20241022", "anthropic.claude-3-5-haiku"),
    (BEDROCK_APP_PROFILE_ARN, BEDROCK_APP_PROFILE_ARN, BEDROCK_APP_PROFILE_ARN),
    ("us.", "us.", "us."),
])
def test_normalize_model_id(model_id, normalized, family):
    assert bedrock_job.normalize_model_id(model_id) == normalized
    assert bedrock_job.bedrock_model_family(model_id) == family


def test_demo_data_is_deterministic():
    a = bedrock_demo_usage(START, 5, seed=3)
    assert a == bedrock_demo_usage(START, 5, seed=3) != bedrock_demo_usage(START, 5, seed=4)
    assert bedrock_demo_usage(START, 5, seed=3, regions=("us-east-1",)) == [r for r in a if r["region"] == "us-east-1"]
    total = sum(p["Value"] for p in bedrock_metric_data(a)["us-east-1"] if p["MetricName"] == "OutputTokenCount")
    assert total == sum(r["OutputTokenCount"] for r in a if r["region"] == "us-east-1")
