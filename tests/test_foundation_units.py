"""Small pieces: names, registry, SQL dialect traps, light function imports."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from shared import registry
from shared.naming import InvalidName, org_dataset, table_ref, validate_org_slug
from shared.warehouse.duckdb import DuckDBWarehouse


def test_slugs_and_identifiers_are_validated():
    assert org_dataset("acme_eu") == "acme_eu_prod"
    for bad in ("", "ab", "Acme", "1acme", "acme-eu", "acme;x", "a" * 31, "organizations", "x__y", None):
        with pytest.raises(InvalidName):
            validate_org_slug(bad)
    with pytest.raises(InvalidName):
        table_ref("acme_prod", "t` ; DROP")


def test_registry_has_the_built_paths_and_refuses_unbuilt_ones_readably(planned_pipeline):
    # no count: a provider is added by declaring it, and nothing else should have to change
    paths = set(registry.pipelines()) - {planned_pipeline}
    assert {f"cloud/{p}/cost/billing" for p in ("gcp", "aws", "azure", "oci")} <= paths
    assert "focus/file/import" in paths
    assert {f"genai/payg/{p}" for p in ("openai", "anthropic", "gemini", "deepseek", "azure_openai", "bedrock", "vertex")} <= paths
    assert "subscription/costs/subscription_cost" in paths
    with pytest.raises(registry.UnknownPipeline, match="known pipelines"):
        registry.get("genai/payg/nope")
    with pytest.raises(registry.PipelineNotAvailable, match="not built yet"):
        registry.get(planned_pipeline)
    from shared import procedures, schemas

    for p in registry.pipelines().values():  # every chain names real procedures; built ones real tables
        if p.available:
            for proc in p.procedures:
                procedures.get(proc)
            for t in p.raw_tables:
                assert schemas.get(t).has_lineage


def test_numeric_keeps_nine_decimals_and_countif_is_zero_on_duckdb():
    wh = DuckDBWarehouse(None)
    row = wh.query("SELECT CAST('1234567.123456789' AS NUMERIC) AS v, "
                   "(SELECT COUNTIF(x > 1) FROM (SELECT 0 AS x) AS t) AS c")[0]
    assert row == {"v": Decimal("1234567.123456789"), "c": 0}


def test_query_params_are_bound_never_spliced():
    wh = DuckDBWarehouse(None)
    evil = "x' OR '1'='1"
    assert wh.query("SELECT @s AS s", {"s": evil}) == [{"s": evil}]


def test_function_module_imports_no_heavy_sdk():
    code = ("import sys, functions.main; heavy = [m for m in ('duckdb', 'pyarrow', 'google.cloud.bigquery', "
            "'google.cloud.pubsub', 'google.cloud.run_v2', 'httpx', 'sqlglot') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
