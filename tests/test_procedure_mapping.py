"""FOCUS conversions are written by column: the loader builds DELETE + INSERT from the SELECT's names and
refuses, at install, a procedure whose names do not match the FOCUS table."""
from __future__ import annotations

import re
import shutil

import pytest

from shared import focus, registry
from shared import procedures as procs
from shared.warehouse.duckdb import DuckDBWarehouse

MAPPINGS = sorted(n for n, p in procs.all_procedures().items() if p.is_focus_mapping)


def _clear_caches():
    for cached in (procs.all_procedures, procs.fact_tables, procs._macro, registry.pipelines,
                   registry.provider_facts):
        if hasattr(cached, "cache_clear"):  # a test may have put a plain function in its place
            cached.cache_clear()


@pytest.fixture
def proc_dir(tmp_path, monkeypatch):
    """Private copies of procedures/ and of the catalog (providers.yml, beside it) that the loader reads
    instead of the real ones."""
    copy = tmp_path / "procedures"
    shutil.copytree(procs.PROCEDURE_DIR, copy)
    shutil.copy(registry.REGISTRY_PATH, tmp_path / "providers.yml")
    monkeypatch.setattr(procs, "PROCEDURE_DIR", copy)
    monkeypatch.setattr(registry, "REGISTRY_PATH", tmp_path / "providers.yml")
    _clear_caches()
    yield copy
    _clear_caches()


def _install(dataset="acme_prod"):
    wh = DuckDBWarehouse(None)
    try:
        return wh.install_procedures(dataset)
    finally:
        wh.close()


def _edit(path, old, new, count=1):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))


def test_every_conversion_is_a_slice_delete_then_inserts_of_all_columns():
    assert set(MAPPINGS) == {"sp_cloud_1_convert_to_focus", "sp_genai_3_convert_to_focus",
                             "sp_subscription_3_convert_to_focus"}
    table_columns = {c.name for c in focus.ALL_COLUMNS}
    for name in MAPPINGS:
        statements = procs.get(name).statements("acme_prod")
        assert statements[0].startswith("DELETE FROM `acme_prod.cost_data_standard_1_3`")
        assert all(s.startswith("INSERT INTO `acme_prod.cost_data_standard_1_3` (") for s in statements[1:])
        for s in statements[1:]:
            listed = re.match(r"INSERT INTO `[^`]+` \(([^)]*)\)", s).group(1).split(", ")
            assert sorted(listed) == sorted(table_columns), name
            assert "FOCUS_UNIT" not in s and not re.search(r"\{\w+\.\w+\}", s)


def test_the_lineage_every_row_gets_is_the_runs(proc_dir):
    sql = procs.get("sp_subscription_3_convert_to_focus").statements("acme_prod")[1]
    for column, value in procs.GENERATED_LINEAGE.items():
        assert column in sql
    assert "@run_id AS x_run_id" in sql and "@org_slug AS x_org_slug" in sql


@pytest.mark.parametrize("old,new,expect", [
    ("AS BilledCost,", "AS BiledCost,", ["missing BilledCost", "BiledCost"]),
    ("  usage_start_time AS ChargePeriodStart,\n", "", ["missing ChargePeriodStart"]),
    ("AS ListUnitPrice,", "AS ListCost,", ["named twice ListCost", "missing ListUnitPrice"]),
    ("'cloud' AS x_cost_source", "'cloud' AS x_cost_source, @run_id AS x_run_id", ["set by the loader", "x_run_id"]),
    ("  unblended_cost AS BilledCost,", "  unblended_cost,", ["named by its FOCUS column"]),
])
def test_a_wrong_column_name_fails_at_install(proc_dir, old, new, expect):
    _install()  # the copy installs as it is
    _edit(proc_dir / "sp_cloud_1_convert_to_focus" / "10_aws.sql", old, new)
    procs.all_procedures.cache_clear()
    with pytest.raises(procs.ProcedureError) as e:
        _install()
    for part in expect:
        assert part in str(e.value)
    assert "sp_cloud_1_convert_to_focus" in str(e.value)


def test_an_unknown_provider_fact_fails_at_install(proc_dir):
    _edit(proc_dir / "sp_cloud_1_convert_to_focus" / "20_gcp.sql", "{gcp.ProviderName}", "{gcp.ProviderNme}")
    procs.all_procedures.cache_clear()
    with pytest.raises(procs.ProcedureError, match=r"\{gcp\.ProviderNme\}"):
        _install()


def test_provider_facts_and_the_unit_macro_are_read_from_their_one_place(proc_dir):
    catalog = proc_dir.parent / "providers.yml"
    _edit(catalog, "    ProviderName: Oracle\n", "    ProviderName: O'Racle\n")
    (proc_dir / "macros" / "focus_unit.sql").write_text("-- FOCUS_UNIT(unit_in): a stand-in\nCONCAT('u:', unit_in)")
    _clear_caches()
    sql = " ".join(procs.get("sp_cloud_1_convert_to_focus").statements("acme_prod"))
    # the conversion reads the fact from the synced table, never a copy of it in the SQL
    assert "(SELECT provider_name FROM `organizations.provider_facts` WHERE provider = 'oci') AS ProviderName" in sql
    assert "Oracle" not in sql and "Racle" not in sql
    assert "CONCAT('u:', pricing_unit)" in sql
    wh = DuckDBWarehouse(None)
    try:
        assert wh.install_procedures("acme_prod")  # the new macro transpiles
        from shared.tenants import bootstrap

        bootstrap(wh)
        assert registry.sync_facts(wh) == len(registry.provider_facts())
        assert wh.query("SELECT provider_name FROM `organizations.provider_facts` WHERE provider = 'oci'") == [
            {"provider_name": "O'Racle"}]
    finally:
        wh.close()


def test_the_mapping_document_is_the_sql():
    from shared import focus_mapping

    assert focus_mapping.DOC_PATH.read_text() == focus_mapping.render(), \
        "docs/focus-mapping.md is stale: run python -m shared.focus_mapping --write"


def test_the_mapping_document_names_every_column_of_every_input(proc_dir):
    from shared import focus_mapping

    _edit(proc_dir / "sp_cloud_1_convert_to_focus" / "40_oci.sql", "my_cost AS BilledCost", "my_cost + 0 AS BilledCost")
    procs.all_procedures.cache_clear()
    doc = focus_mapping.render()
    sections = doc.split("\n## ")[1:]
    assert len(sections) == len(focus_mapping._files()) == 7
    for section in sections:
        rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # after the header
        columns = [line.split(" | ")[0][2:] for line in rows]
        assert columns == [c for c in procs.focus_output_columns()], section.splitlines()[0]
    assert "| BilledCost | `my_cost + 0` |" in doc


def test_null_columns_take_their_type_from_the_focus_table_and_must_be_focus_columns(proc_dir):
    sql = procs.get("sp_genai_3_convert_to_focus").statements("acme_prod")[1]
    assert "CAST(NULL AS JSON) AS AllocatedTags" in sql and "CAST(NULL AS NUMERIC) AS CommitmentDiscountQuantity" in sql
    _edit(proc_dir / "sp_genai_3_convert_to_focus.sql", "{null:RegionId,", "{null:RegionIdd,")
    procs.all_procedures.cache_clear()
    with pytest.raises(procs.ProcedureError, match="sp_genai_3_convert_to_focus.*'RegionIdd', not a FOCUS column"):
        _install()


def _with_pipeline(monkeypatch, **changes):
    """providers.yml plus one available GenAI pipeline (openai's, with `changes`)."""
    import dataclasses

    from shared import registry

    real = registry.pipelines()
    extra = dataclasses.replace(real["genai/payg/openai"], **changes)
    monkeypatch.setattr(registry, "pipelines", lambda: {**real, extra.path: extra})
    procs.all_procedures.cache_clear()


def test_a_genai_provider_without_facts_fails_at_install_naming_it(proc_dir, monkeypatch):
    _with_pipeline(monkeypatch, path="genai/payg/mistral", provider="mistral", job="genai.mistral")
    with pytest.raises(procs.ProcedureError) as e:
        _install()
    assert "genai provider 'mistral' (pipeline genai/payg/mistral) has no ProviderName" in str(e.value)
    assert "ServiceName" in str(e.value)
    # with its facts it installs, and its row is in the conversion's provider table
    facts = proc_dir.parent / "providers.yml"
    facts.write_text(facts.read_text() + "  mistral:\n    ProviderName: Mistral AI\n    HostProviderName: Mistral AI\n"
                     "    InvoiceIssuerName: Mistral AI\n    ServiceProviderName: Mistral AI\n"
                     "    ServiceName: La Plateforme\n")
    registry.provider_facts.cache_clear()
    assert _install()
    sql = procs.get("sp_genai_3_convert_to_focus").statements("acme_prod")[1]
    assert re.search(r"FROM `organizations\.provider_facts` WHERE provider IN \([^)]*'mistral'\)", sql)


def test_each_provider_missing_a_fact_is_named(proc_dir, monkeypatch):
    _edit(proc_dir.parent / "providers.yml", "    ServiceName: DeepSeek API\n", "")
    registry.provider_facts.cache_clear()
    with pytest.raises(procs.ProcedureError, match=r"'deepseek' \(pipeline genai/payg/deepseek\) has no ServiceName \("):
        procs.all_procedures()
    _edit(proc_dir.parent / "providers.yml", "    PublisherName: Oracle\n", "")
    registry.provider_facts.cache_clear()
    with pytest.raises(procs.ProcedureError, match=r"cloud provider 'oci' \(pipeline cloud/oci/cost/billing\) has no "
                                                   r"PublisherName; genai provider 'deepseek'"):
        procs.all_procedures()


def test_a_planned_pipeline_needs_no_facts_yet(proc_dir, monkeypatch, planned_pipeline):
    procs.all_procedures.cache_clear()
    assert _install()
    assert "'future'" not in procs.get("sp_genai_3_convert_to_focus").statements("acme_prod")[1]


def test_a_macro_binds_its_named_parameters_and_counts_its_arguments(proc_dir):
    sql = " ".join(procs.get("sp_genai_4_allocate_cloud_model_spend").statements("acme_prod"))
    assert "MODEL_SPEND_ROW" not in sql and "pipeline_in" not in sql
    assert sql.count("WHERE p.genai_pipeline = f.x_pipeline_id OR (p.cloud_pipeline = f.x_pipeline_id "
                     "AND f.ChargeCategory = 'Usage'") == 2
    _edit(proc_dir / "sp_genai_4_allocate_cloud_model_spend.sql", ", f.SkuMeter, f.ChargeDescription)", ", f.SkuMeter)")
    procs.all_procedures.cache_clear()
    with pytest.raises(procs.ProcedureError, match=r"MODEL_SPEND_ROW takes 5 argument\(s\) .*not 4"):
        _install()
