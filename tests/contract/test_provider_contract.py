"""The provider contract: the same checks for every available pipeline in providers.yml.

The parametrization comes from the registry, so a newly declared pipeline gets the whole suite; one with no
entry in tests/contract/providers.py fails here (never skips) and says what to declare.
"""
from __future__ import annotations

import dataclasses
import importlib
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.runner import land
from shared import convert, credential_specs, focus, registry, runtime, schemas, service_map, source_totals
from shared.config import settings
from shared.naming import org_dataset
from shared.tenants import bootstrap, create_org, sync_reference_data
from tests import cloud_kit as kit
from tests.contract.providers import CONTRACTS, GZIP_NAMES, Source, contract_for

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


def test_the_file_providers_declare_their_gzip_name():
    assert sorted(GZIP_NAMES) == ["cloud/aws/cost/billing", "cloud/azure/cost/billing", "cloud/oci/cost/billing"]


@pytest.mark.parametrize("path", sorted(GZIP_NAMES))
def test_a_truncated_gzip_export_fails_naming_the_file(path, tmp_path):
    """The sample gzipped and cut midway (a download that stopped) is an ExtractError naming the file."""
    pipeline, contract = registry.get(path), CONTRACTS[path]
    with ExitStack() as stack:
        source = contract.source(tmp_path, stack, None)
    (sample,) = Path(source.credential["source"].removeprefix("file://")).glob("*.csv")
    (tmp_path / "gz").mkdir()

    def run_extract(credential):
        ctx = ExtractContext("acme", path, "cred_contract", "run_a", source.start, source.end, credential)
        return kit.extracted(ctx, pipeline.raw_tables[0])

    kit.assert_truncated_gzip_named(run_extract, tmp_path / "gz" / GZIP_NAMES[path], sample)


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


# -- one run per provider, shared by the checks below ---------------------------------------------
@dataclasses.dataclass
class World:
    pipeline: registry.Pipeline
    wh: object
    source: Source
    counts: dict[str, int]
    landed: dict  # raw rows and FOCUS totals after the first run
    credential_id: str = "cred_contract"

    def ctx(self, run_id: str, credential: dict | None = None) -> ExtractContext:
        return ExtractContext("acme", self.pipeline.path, self.credential_id, run_id, self.source.start,
                              self.source.end, credential or self.source.credential)

    def params(self, run_id: str) -> dict:
        return {"org_slug": "acme", "pipeline_id": self.pipeline.path, "credential_id": self.credential_id,
                "run_id": run_id, "start_date": self.source.start, "end_date": self.source.end}

    def run(self, run_id: str) -> dict[str, int]:
        """Land the slice through the runner's own landing step, then the pipeline's procedure chain."""
        return kit.land_and_convert(self.wh, self.pipeline.path, self.credential_id, self.source.credential,
                                    self.source.start, self.source.end, run_id)

    def snapshot(self) -> dict:
        raw = {t: self.wh.query(f"SELECT COUNT(*) AS n FROM `acme_prod.{t}` WHERE x_pipeline_id = @p",
                                {"p": self.pipeline.path})[0]["n"] for t in self.pipeline.raw_tables}
        return {"raw": raw, "focus": kit.focus_by_period(self.wh, self.pipeline.path)}


@pytest.fixture(scope="module")
def world(pipeline, contract, tmp_path_factory):
    assert contract.source is not None, f"declare how to run {pipeline.path}: Contract(..., source=...)"
    tmp = tmp_path_factory.mktemp(pipeline.provider)
    with pytest.MonkeyPatch.context() as mp, ExitStack() as stack:
        mp.setenv("CLOUDACT_HOME", str(tmp / "home"))
        mp.setenv("CLOUDACT_BACKEND", "embedded")
        rt = runtime.embedded(settings())
        previous = runtime.use(rt)
        stack.callback(rt.close)
        stack.callback(runtime.use, previous)
        bootstrap(rt.warehouse)
        sync_reference_data(rt.warehouse)
        service_map.sync(rt.warehouse)
        create_org(rt.warehouse, "acme")
        source = contract.source(tmp, stack, rt.warehouse)
        w = World(pipeline, rt.warehouse, source, {}, {})
        w.counts = w.run("run_a")
        w.landed = w.snapshot()
        yield w


def test_a_run_lands_rows_in_its_first_raw_table(world):
    assert world.counts[world.pipeline.raw_tables[0]] > 0, world.counts
    summed = {source_totals.TABLE} if source_totals.fed_by(world.pipeline.raw_tables) else set()
    assert set(world.counts) == set(world.pipeline.raw_tables + world.pipeline.run_tables) | summed
    assert all(world.counts[t] > 0 for t in summed), world.counts  # rows landed: their totals too


def test_a_run_converts_rows_to_focus(world):
    assert world.landed["focus"], f"{world.pipeline.path}: rows landed but none converted to FOCUS"


def test_the_stub_answered_every_request_of_the_run(world):
    if world.source.stub is None:
        return
    statuses = {r["status"] for r in world.source.stub.requests}
    assert statuses == {200}, statuses  # the stub answers 400 to a request off the documented shape


def test_the_stub_refuses_a_request_without_credentials(world):
    if world.source.stub is None:
        return
    r = httpx.get(world.source.stub.base_url.rstrip("/") + world.source.rate_limited)
    assert r.status_code in (401, 403), r.text


def test_a_wrong_secret_is_a_credential_error_that_shows_no_secret(world):
    secret = sorted(credential_specs.spec(world.pipeline.credential).secret) if world.pipeline.needs_credential else []
    present = [f for f in secret if world.source.credential.get(f)]
    if world.source.stub is None or not present:
        return
    wrong = {**world.source.credential, present[0]: "WRONG-" + str(world.source.credential[present[0]])[::-1]}
    with pytest.raises(CredentialError) as err:
        land(world.wh, world.pipeline, world.ctx("run_wrong", wrong))
    assert "401" in str(err.value) or "403" in str(err.value) or "refused" in str(err.value)
    assert wrong[present[0]] not in str(err.value)


def test_the_same_slice_twice_gives_the_same_rows(world):
    assert world.run("run_b") == world.counts
    assert world.snapshot() == world.landed


def test_focus_gate_passes(world):
    report = focus.check(world.wh, org_dataset("acme"), "x_pipeline_id = @p", {"p": world.pipeline.path})
    assert report.rows_checked > 0 and report.ok, report.summary()


def test_reconciliation_holds(world):
    p = world.pipeline
    if p.category == "cloud":
        periods = convert.reconcile_cloud(world.wh, org_dataset("acme"), world.params("run_a"))
        assert periods and all(r["ok"] for r in periods), periods
        return
    if p.category == "genai":
        # per day: the provider's own bill where it reports one, else the priced usage at the contracted price
        source = _per_day(world, "SELECT usage_date AS d, SUM(contracted_cost) AS c FROM `acme_prod.genai_costs_daily`"
                                 " WHERE x_pipeline_id = @p AND price_status = 'priced' GROUP BY 1")
        if "genai_provider_costs_daily" in p.raw_tables:
            source.update(_per_day(world, "SELECT usage_date AS d, SUM(amount) AS c FROM "
                                          "`acme_prod.genai_provider_costs_daily` WHERE x_pipeline_id = @p GROUP BY 1"))
    else:
        source = _per_day(world, "SELECT cost_date AS d, SUM(daily_amount) AS c FROM "
                                 "`acme_prod.subscription_costs_daily` WHERE x_pipeline_id = @p GROUP BY 1")
    billed = _per_day(world, "SELECT DATE(ChargePeriodStart) AS d, SUM(BilledCost) AS c FROM "
                             "`acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p GROUP BY 1")
    assert source and billed == source


def _per_day(world, sql: str) -> dict:
    return {r["d"]: r["c"] for r in world.wh.query(sql, {"p": world.pipeline.path})}


def _http(world) -> Source:
    src = world.source
    if src.stub is not None:
        assert src.rate_limited, f"declare the path the 429 checks refuse for {world.pipeline.path}"
    return src


def test_a_429_then_success_is_retried(world):
    src = _http(world)
    if src.stub is None:
        return
    src.stub.fail_next(status=429, retry_after="0", times=2, path=src.rate_limited)
    assert land(world.wh, world.pipeline, world.ctx("run_429")) == world.counts
    statuses = [r["status"] for r in src.stub.requests if src.rate_limited in r["path"]]
    assert statuses[-3:] == [429, 429, 200] or statuses.count(429) == 2, statuses


def test_a_persistent_429_fails_the_run_with_a_readable_message(world, monkeypatch, caplog):
    src = _http(world)
    if src.stub is None:
        return
    monkeypatch.setenv("CLOUDACT_HTTP_MAX_ATTEMPTS", "3")
    src.stub.fail_next(status=429, retry_after="0", times=50, path=src.rate_limited)
    try:
        ctx = world.ctx("run_429s")
        if src.optional:  # the data comes from elsewhere: the run lands it and says what it could not read
            counts = land(world.wh, world.pipeline, ctx)
            assert counts[world.pipeline.raw_tables[0]] == world.counts[world.pipeline.raw_tables[0]]
            assert "HTTP 429 after 3 attempts" in caplog.text
            return
        with pytest.raises(ExtractError) as err:
            land(world.wh, world.pipeline, ctx)
        msg = str(err.value)
        assert not isinstance(err.value, CredentialError)
        assert "HTTP 429" in msg and "3 attempts" in msg and "Traceback" not in msg, msg
        for secret in credential_specs.secret_values(world.pipeline.credential, src.credential):
            assert secret not in msg
    finally:
        src.stub.clear_faults() if hasattr(src.stub, "clear_faults") else src.stub._faults.clear()


def test_procedures_parse_as_bigquery(pipeline):
    import sqlglot

    from shared import procedures

    ddls = [procedures.get(proc).bigquery_ddl("proj", "acme_prod") for proc in pipeline.procedures]
    assert any(f"acme_prod.{pipeline.raw_tables[0]}" in ddl for ddl in ddls), "no procedure reads the raw table"
    for ddl in ddls:
        body = ddl.split("BEGIN TRANSACTION;", 1)[-1].rsplit("COMMIT TRANSACTION;", 1)[0]
        assert all(s is not None for s in sqlglot.parse(body, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE))
