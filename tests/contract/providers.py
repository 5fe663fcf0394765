"""What the contract suite needs to know about each declared pipeline: one entry per providers.yml path.

A pipeline declared in providers.yml without an entry here fails the suite (see test_provider_contract), so a
new provider is one entry: a credential document its spec must refuse for its shape, and (once it has a stub)
how to run it over loopback.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Contract:
    # A credential document of the right fields but the wrong shape: add/validate must refuse it by name.
    wrong_shape: dict | None
    # The field the refusal names (the message a user reads must point at it).
    names: str | None = None


CONTRACTS: dict[str, Contract] = {
    "cloud/gcp/cost/billing": Contract({"service_account_json": {"type": "authorized_user"}}, "service_account_json"),
    "cloud/aws/cost/billing": Contract({"bucket": "b", "aws_access_key_id": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
                                        "aws_secret_access_key": "x"}, "aws_access_key_id"),
    "cloud/azure/cost/billing": Contract({"account_url": "https://a.blob.core.windows.net",
                                          "connection_string": "AccountName=a"}, "connection_string"),
    "cloud/oci/cost/billing": Contract({"tenancy_ocid": "t", "user_ocid": "u", "fingerprint": "f",
                                        "private_key": "not a pem", "region": "r"}, "private_key"),
    "genai/payg/openai": Contract({"admin_key": "sk-proj-0123456789abcdef0123456789abcdef0123"}, "admin_key"),
    "genai/payg/anthropic": Contract({"admin_key": "sk-ant-api03-0123456789"}, "admin_key"),
    "genai/payg/gemini": Contract({"service_account_json": "{not json"}, "service_account_json"),
    "genai/payg/deepseek": Contract({"api_key": "k"}, "usage_csv_dir"),
    "genai/payg/azure_openai": Contract({"tenant_id": "t", "resource_ids": ["/subscriptions/s"]}, "client_id"),
    "genai/payg/bedrock": Contract({"region": "us-east-1", "account_id": "12345"}, "account_id"),
    "genai/payg/vertex": Contract({"project": "p", "dataset": "d; DROP", "table": "t"}, "dataset"),
    # No credential: nothing to refuse.
    "subscription/costs/subscription_cost": Contract(None),
}


def contract_for(path: str) -> Contract:
    """The entry of a declared pipeline; a missing one fails the test (a skip would hide an untested provider)."""
    import pytest

    entry = CONTRACTS.get(path)
    if entry is None:
        pytest.fail(f"pipeline {path!r} is declared in providers.yml but has no contract entry: add "
                    f"CONTRACTS[{path!r}] = Contract(...) to tests/contract/providers.py", pytrace=False)
    return entry
