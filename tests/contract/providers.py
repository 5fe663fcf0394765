"""What the contract suite needs to know about each declared pipeline: one entry per providers.yml path.

A pipeline declared in providers.yml without an entry here fails the suite (test_provider_contract), so a new
provider is one entry: a credential its spec must refuse for its shape, and how to run it over loopback (its
`source`: the stub or sample folder, the credential that reaches it and the slice to run).
"""
from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "samples"


@dataclass(frozen=True)
class Source:
    """One provider's data, ready to run: the run's credential and slice, and the HTTP stub behind it."""
    credential: dict
    start: dt.date
    end: dt.date
    stub: Any = None  # a stubs.http_stub.LoopbackStub where the provider is an HTTP API of ours
    rate_limited: str | None = None  # the request path the 429 checks refuse (required with a stub)
    # A path whose outage only warns (the data comes from elsewhere): a persistent 429 there lands rows anyway.
    optional: bool = False


@dataclass(frozen=True)
class Contract:
    # A credential document of the right fields but the wrong shape: add/validate must refuse it by name.
    wrong_shape: dict | None
    names: str | None  # the field the refusal names (a user must see what to fix)
    # source(tmp, stack, wh) -> Source: starts what the run reads (stubs go on `stack`, closed after the module).
    source: Callable[[Path, ExitStack, Any], Source] = field(repr=False, default=None)


# -- sources ---------------------------------------------------------------------------------------
def _folder(sample: str, start: dt.date, end: dt.date):
    return lambda tmp, stack, wh: Source({"source": f"file://{DATA / sample}"}, start, end)


def _gcp_export(tmp, stack, wh) -> Source:
    from stubs import gcp_billing_data as gen

    start, end = dt.date(2025, 1, 30), dt.date(2025, 2, 2)  # crosses an invoice month
    gen.write_parquet(gen.generate(start - dt.timedelta(days=2), end + dt.timedelta(days=2)), tmp / "export")
    return Source({"source": f"file://{tmp / 'export'}"}, start, end)


GENAI_START = dt.date(2026, 7, 1)
GENAI_END = GENAI_START + dt.timedelta(days=4)


def _openai(tmp, stack, wh) -> Source:
    from stubs.genai_data import openai_demo_usage
    from stubs.openai import OpenAIStub

    key = "sk-admin-contract-0123456789abcdef"
    stub = stack.enter_context(OpenAIStub(admin_key=key, usage=openai_demo_usage(GENAI_START, 5, seed=11)))
    return Source({"admin_key": key, "base_url": stub.base_url}, GENAI_START, GENAI_END, stub,
                  "/organization/usage/completions")


def _anthropic(tmp, stack, wh) -> Source:
    from stubs.anthropic import USAGE_PATH, AnthropicStub
    from stubs.genai_data import anthropic_demo_usage

    key = "sk-ant-admin01-contract-0123456789abcdef"
    stub = stack.enter_context(AnthropicStub(admin_key=key, usage=anthropic_demo_usage(GENAI_START, 5, seed=11)))
    return Source({"admin_key": key, "base_url": stub.base_url}, GENAI_START, GENAI_END, stub, USAGE_PATH)


def _gcp_monitoring(project: str):
    def source(tmp, stack, wh) -> Source:
        from stubs.gcp_monitoring import GcpMonitoringStub
        from stubs.genai_data import gemini_demo_usage, gemini_metric_points, vertex_demo_usage, vertex_metric_points

        token = "ya29.contract-token-0123456789abcdef"
        points = (gemini_metric_points(gemini_demo_usage(GENAI_START, 5, seed=11))
                  + vertex_metric_points(vertex_demo_usage(GENAI_START, 5, seed=11)))
        stub = stack.enter_context(GcpMonitoringStub(access_token=token, points=points))
        return Source({"project": project, "access_token": token, "base_url": stub.base_url}, GENAI_START,
                      GENAI_END, stub, f"/projects/{project}/timeSeries")
    return source


def _azure_openai(tmp, stack, wh) -> Source:
    from stubs.azure_monitor import AzureMonitorStub
    from stubs.genai_data import AZURE_DEMO_RESOURCES, AZURE_DEMO_SUBSCRIPTION, azure_openai_demo_usage

    token = "eyJ0eXAiOiJKV1Qi.contract-token-0123456789"
    stub = stack.enter_context(AzureMonitorStub(access_token=token, usage=azure_openai_demo_usage(GENAI_START, 5, 5),
                                                cost_scope=AZURE_DEMO_SUBSCRIPTION))
    return Source({"access_token": token, "resource_ids": list(AZURE_DEMO_RESOURCES),
                   "cost_scope": AZURE_DEMO_SUBSCRIPTION, "base_url": stub.base_url}, GENAI_START, GENAI_END, stub,
                  "/providers/Microsoft.CostManagement/query")


def _deepseek(tmp, stack, wh) -> Source:
    from stubs.deepseek import BALANCE_PATH, DeepSeekStub
    from stubs.genai_data import deepseek_demo_csv, deepseek_demo_usage

    key = "sk-deepseek-contract-0123456789abcdef"
    (tmp / "deepseek").mkdir()
    (tmp / "deepseek" / "usage.csv").write_text(deepseek_demo_csv(deepseek_demo_usage(GENAI_START, 5, seed=3)))
    stub = stack.enter_context(DeepSeekStub(api_key=key))
    return Source({"api_key": key, "base_url": stub.base_url, "usage_csv_dir": f"file://{tmp / 'deepseek'}"},
                  GENAI_START, GENAI_END, stub, BALANCE_PATH, optional=True)


def _bedrock(tmp, stack, wh) -> Source:
    import boto3
    from stubs.genai_data import bedrock_demo_usage, bedrock_metric_data
    from stubs.moto_loopback import KEYS, moto_endpoint

    endpoint = stack.enter_context(moto_endpoint())
    start = dt.date(2025, 3, 1)
    for region, data in bedrock_metric_data(bedrock_demo_usage(start, 3, seed=5)).items():
        cw = boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint, **KEYS)
        for i in range(0, len(data), 1000):
            cw.put_metric_data(Namespace="AWS/Bedrock", MetricData=data[i:i + 1000])
    # moto answers CloudWatch; it cannot be told to refuse with a 429, so no rate_limited path
    return Source({"region": "us-east-1", "endpoint_url": endpoint, **KEYS}, start, start + dt.timedelta(days=2))


def _focus_files(tmp, stack, wh) -> Source:
    from stubs import focus_vendor_data as vendors

    start, end = dt.date(2026, 9, 27), dt.date(2026, 9, 30)
    vendors.write_all(start, end, tmp / "focus")
    return Source({"source": f"file://{tmp / 'focus'}"}, start, end)


def _saas(tmp, stack, wh) -> Source:
    from shared import subscriptions as subs

    subs.create("acme", {"provider": "slack", "plan": "business_plus", "seats": 25, "unit_price": "15",
                         "currency": "USD", "billing_cycle": "monthly", "start_date": "2025-01-15"}, wh=wh)
    return Source({}, dt.date(2025, 2, 1), dt.date(2025, 2, 28))


CONTRACTS: dict[str, Contract] = {
    "cloud/gcp/cost/billing": Contract({"service_account_json": {"type": "authorized_user"}}, "service_account_json",
                                       _gcp_export),
    "cloud/aws/cost/billing": Contract({"bucket": "b", "aws_access_key_id": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
                                        "aws_secret_access_key": "x"}, "aws_access_key_id",
                                       _folder("aws", dt.date(2023, 11, 1), dt.date(2023, 11, 30))),
    "cloud/azure/cost/billing": Contract({"account_url": "https://a.blob.core.windows.net",
                                          "connection_string": "AccountName=a"}, "connection_string",
                                         _folder("azure", dt.date(2023, 9, 1), dt.date(2023, 9, 30))),
    "cloud/oci/cost/billing": Contract({"tenancy_ocid": "t", "user_ocid": "u", "fingerprint": "f",
                                        "private_key": "not a pem", "region": "r"}, "private_key",
                                       _folder("oci", dt.date(2023, 11, 1), dt.date(2023, 11, 30))),
    "focus/file/import": Contract({"source": "https://vendor.example/focus/"}, "source", _focus_files),
    "genai/payg/openai": Contract({"admin_key": "sk-proj-0123456789abcdef0123456789abcdef0123"}, "admin_key",
                                  _openai),
    "genai/payg/anthropic": Contract({"admin_key": "sk-ant-api03-0123456789"}, "admin_key", _anthropic),
    "genai/payg/gemini": Contract({"service_account_json": "{not json"}, "service_account_json",
                                  _gcp_monitoring("acme-genai-prod")),
    "genai/payg/deepseek": Contract({"api_key": "k"}, "usage_csv_dir", _deepseek),
    "genai/payg/azure_openai": Contract({"tenant_id": "t", "resource_ids": ["/subscriptions/s"]}, "client_id",
                                        _azure_openai),
    "genai/payg/bedrock": Contract({"region": "us-east-1", "account_id": "12345"}, "account_id", _bedrock),
    "genai/payg/vertex": Contract({"project": "p", "dataset": "d; DROP", "table": "t"}, "dataset",
                                  _gcp_monitoring("acme-vertex-prod")),
    # No credential: nothing to refuse; the subscriptions live in the warehouse.
    "subscription/costs/subscription_cost": Contract(None, None, _saas),
}


def contract_for(path: str) -> Contract:
    """The entry of a declared pipeline; a missing one fails the test (a skip would hide an untested provider)."""
    entry = CONTRACTS.get(path)
    if entry is None:
        pytest.fail(f"pipeline {path!r} is declared in providers.yml but has no contract entry: add "
                    f"CONTRACTS[{path!r}] = Contract(wrong_shape, names, source) to tests/contract/providers.py",
                    pytrace=False)
    return entry


# The pipelines whose source is a folder of sample exports that may come gzipped, and the name a gzipped file takes
# there: a copy of the sample cut midway under that name must fail the run naming the file.
GZIP_NAMES: dict[str, str] = {
    "cloud/aws/cost/billing": "report-00001.csv.gz",
    "cloud/azure/cost/billing": "part_0_0001.csv.gz",
    "cloud/oci/cost/billing": "0000000030000269-00001.csv.gz",
}
