"""The provider contract: the same checks for every available pipeline in providers.yml.

The parametrization comes from the registry, so a newly declared pipeline gets the whole suite; one with no
entry in tests/contract/providers.py fails here (never skips) and says what to declare.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from shared import credential_specs, registry, schemas
from tests.contract.providers import CONTRACTS, contract_for

ROOT = Path(__file__).resolve().parents[2]
AVAILABLE = sorted(p for p, v in registry.pipelines().items() if v.available)


@pytest.fixture(params=AVAILABLE, scope="module")
def pipeline(request) -> registry.Pipeline:
    return registry.get(request.param)


@pytest.fixture(scope="module")
def contract(pipeline):
    return contract_for(pipeline.path)


def test_every_declared_pipeline_has_a_contract_entry(pipeline, contract):
    assert contract is CONTRACTS[pipeline.path]


def test_a_pipeline_without_an_entry_fails_and_says_what_to_declare():
    with pytest.raises(pytest.fail.Exception, match=r"add CONTRACTS\['vendor/x/y'\] = Contract"):
        contract_for("vendor/x/y")


def test_no_contract_entry_for_an_undeclared_pipeline():
    assert set(CONTRACTS) <= set(registry.pipelines()), sorted(set(CONTRACTS) - set(registry.pipelines()))


# -- registration ---------------------------------------------------------------------------------

def test_job_module_importable_with_extract(pipeline):
    module = importlib.import_module(f"jobs.{pipeline.job}")
    assert callable(module.extract), pipeline.job


def test_raw_and_run_tables_have_schemas(pipeline):
    for table in pipeline.raw_tables + pipeline.run_tables:
        assert schemas.get(table).arrow_schema(include_lineage=False), table


def test_date_column_is_in_the_first_raw_table(pipeline):
    assert pipeline.date_column in schemas.get(pipeline.raw_tables[0]).arrow_schema(include_lineage=False).names


def test_procedures_exist(pipeline):
    assert pipeline.procedures
    for proc in pipeline.procedures:
        assert (ROOT / "procedures" / f"{proc}.sql").is_file() or (ROOT / "procedures" / proc).is_dir(), proc


def test_credential_kind_has_a_typed_spec(pipeline):
    if not pipeline.needs_credential:
        return
    assert credential_specs.spec(pipeline.credential).kind == pipeline.credential


# -- credential spec ------------------------------------------------------------------------------

def test_credential_of_the_wrong_shape_is_refused_by_name(pipeline, contract):
    if not pipeline.needs_credential:
        assert contract.wrong_shape is None
        return
    assert contract.wrong_shape is not None, f"declare a wrong-shape credential for {pipeline.path}"
    with pytest.raises(credential_specs.CredentialInvalid, match=contract.names):
        credential_specs.validate(pipeline.credential, contract.wrong_shape, "acme")


def test_credential_with_an_unknown_field_is_refused(pipeline):
    if not pipeline.needs_credential:
        return
    with pytest.raises(credential_specs.CredentialInvalid, match="unknown field"):
        credential_specs.validate(pipeline.credential, {"no_such_field": "x"}, "acme")
