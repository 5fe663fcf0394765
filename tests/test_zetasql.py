"""Every statement the BigQuery backend sends, resolved by ZetaSQL, BigQuery's reference analyzer.

DuckDB accepts what BigQuery refuses (an untyped NULL inserted into a STRING column, for one), so no
embedded test can see such errors. Here the demo runs once (its 12 pipelines, subscriptions, reports)
on a warehouse that is DuckDB and, call for call, also the real BigQueryWarehouse over a recording
client: the SQL texts and typed query parameters recorded are exactly what google-cloud-bigquery
would send. ZetaSQL then resolves each against a catalog of the tables the backend created (from
schemas/*.json, staging tables included): the procedures' DDL and bodies, their CALLs, the
slice-replacement transaction scripts and the application's queries. Every one must resolve.
"""
from __future__ import annotations

import io
import re
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.zetasql import Analyzer, Catalog, Finding, type_proto, zetasql  # noqa: F401

pytest.importorskip("google.cloud.bigquery")

from google.api_core import exceptions as gexc  # noqa: E402
from google.cloud import bigquery  # noqa: E402

from shared import procedures as procs  # noqa: E402
from shared.warehouse.base import FromQuery, NativeScan, Warehouse  # noqa: E402
from shared.warehouse.bigquery import BigQueryWarehouse  # noqa: E402
from shared.warehouse.duckdb import DuckDBWarehouse  # noqa: E402

PROJECT = "cloudact-zetasql"
REPO = Path(__file__).resolve().parent.parent


# -- what the BigQuery backend sends: a recording google.cloud.bigquery.Client --------------------------


@dataclass
class Sent:
    """One query job: its SQL, its parameters' BigQuery types, the warehouse method and call sites."""

    sql: str
    params: dict[str, str]
    method: str
    origins: set[str] = field(default_factory=set)


class _Job:
    num_dml_affected_rows = 0

    def __init__(self, sql: str = ""):
        self.sql = sql

    def result(self, **kwargs):
        if self.sql.startswith("SELECT COUNT(*) AS n FROM"):  # an empty table's count is a row
            return _Rows([bigquery.Row((0,), {"n": 0})])
        return _Rows()


class _Rows(list):
    schema = ()

    def to_arrow(self, **kwargs):
        return pa.table({})

    def to_arrow_iterable(self, **kwargs):
        return iter(())


class _LoadJob:
    def __init__(self, rows):
        self.output_rows = rows

    def result(self, **kwargs):
        return self


def _param_type(p) -> str:
    if isinstance(p, bigquery.ArrayQueryParameter):
        return f"ARRAY<{p.array_type}>"
    return p.type_


class RecordingClient:
    """Answers like an empty BigQuery; keeps the tables created and every query job sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tables: dict[str, bigquery.Table] = {}
        self.created: dict[str, bigquery.Table] = {}  # every table ever created, staging tables included
        self.sent: list[tuple[int, str, dict[str, str]]] = []  # (thread, sql, parameter types)

    @staticmethod
    def _id(ref) -> str:
        return ref if isinstance(ref, str) else f"{ref.project}.{ref.dataset_id}.{ref.table_id}"

    def create_dataset(self, dataset, **kw):
        return dataset

    def get_table(self, ref, **kw):
        try:
            return self.tables[self._id(ref)]
        except KeyError:
            raise gexc.NotFound(f"Not found: Table {self._id(ref)}") from None

    def create_table(self, table, **kw):
        with self.lock:
            self.tables[self._id(table.reference)] = self.created[self._id(table.reference)] = table
        return table

    def update_table(self, table, fields, **kw):
        with self.lock:
            self.tables[self._id(table.reference)] = self.created[self._id(table.reference)] = table
        return table

    def delete_table(self, ref, **kw):
        with self.lock:
            self.tables.pop(self._id(ref), None)

    def load_table_from_file(self, file_obj, destination, **kw):
        return _LoadJob(pq.ParquetFile(file_obj).metadata.num_rows)

    def query(self, sql, job_config=None, **kw):
        params = {p.name: _param_type(p) for p in (job_config.query_parameters if job_config else [])}
        with self.lock:
            self.sent.append((threading.get_ident(), sql, params))
        return _Job(sql)

    def close(self):
        pass


# Every operation of the interface (a new one is mirrored too); only those that send SQL are recorded.
_MIRRORED = sorted(Warehouse.__abstractmethods__)


def _call_site() -> str:
    """The first frame outside the warehouse and this module: who sent the SQL."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = Path(frame.filename)
        if REPO in path.parents and "warehouse" not in path.parts and path.name != Path(__file__).name:
            return f"{path.relative_to(REPO)}:{frame.lineno}"
    return "?"


class MirroredWarehouse(DuckDBWarehouse):
    """The embedded warehouse, each call also made on BigQueryWarehouse over a RecordingClient."""

    def __init__(self, path, client: RecordingClient, failures: list[str], sent: list[Sent]):
        super().__init__(path)
        self.client, self.failures, self.sent = client, failures, sent
        self.bigquery = BigQueryWarehouse(PROJECT, client=client, retry_deadline=5, job_timeout=30)
        self.procedure_datasets: set[str] = set()


def _teed(batches, kept: list):
    for b in batches:
        kept.append(b)
        yield b


_inside = threading.local()  # a mirrored call in progress on this thread


def _mirrored(name: str):
    def method(self: MirroredWarehouse, *args, **kwargs):
        if getattr(_inside, "call", None):  # DuckDB's implementation calling its own API: mirrored already
            return getattr(DuckDBWarehouse, name)(self, *args, **kwargs)
        _inside.call = name
        try:
            return mirror(self, *args, **kwargs)
        finally:
            _inside.call = None

    def mirror(self: MirroredWarehouse, *args, **kwargs):
        mirror_args = args
        if name == "replace_slices":
            # The mirror consumes the batches first; DuckDB gets the same batches replayed. A scan (read
            # again) and a FromQuery (SQL) are given to both.
            dataset, writes, *rest = args
            kept = {t: [] for t in writes}
            again = (NativeScan, FromQuery)
            mirror_args = (dataset, {t: (slc, b if isinstance(b, again) else _teed(b, kept[t]))
                                     for t, (slc, b) in writes.items()}, *rest)
            args = (dataset, {t: (slc, b if isinstance(b, again) else kept[t])
                              for t, (slc, b) in writes.items()}, *rest)
        if name == "install_procedures":
            self.procedure_datasets.add(args[0])
        site = _call_site()
        with self.client.lock:
            before = len(self.client.sent)
        try:
            getattr(self.bigquery, name)(*mirror_args, **kwargs)
            mirror_error = None
        except Exception as e:  # noqa: BLE001 - reported below unless DuckDB refuses the call too
            if name == "replace_slices":
                raise  # its batches are consumed: DuckDB cannot be given them
            mirror_error = e
        result = getattr(DuckDBWarehouse, name)(self, *args, **kwargs)
        if mirror_error is not None:
            self.failures.append(f"{site}: BigQueryWarehouse.{name} failed where DuckDB did not: {mirror_error}")
        with self.client.lock:
            new = [(sql, params) for thread, sql, params in self.client.sent[before:]
                   if thread == threading.get_ident()]  # other threads' calls interleave
        for sql, params in new:
            self.sent.append(Sent(sql, params, name, {site}))
        return result

    method.__name__ = name
    return method


for _name in _MIRRORED:
    setattr(MirroredWarehouse, _name, _mirrored(_name))


@dataclass
class Capture:
    sent: list[Sent]
    catalog: Catalog
    failures: list[str]

    def by_method(self, *methods: str) -> list[Sent]:
        return [s for s in self.sent if s.method in methods]


def _dedupe(sent: Iterable[Sent]) -> list[Sent]:
    out: dict[tuple, Sent] = {}
    for s in sent:
        key = (s.sql, tuple(sorted(s.params.items())), s.method)
        if key in out:
            out[key].origins |= s.origins
        else:
            out[key] = s
    return list(out.values())


@pytest.fixture(scope="session")
def capture(tmp_path_factory) -> Capture:
    """Run the demo on a MirroredWarehouse; the SQL sent and the catalog of the tables created."""
    from rich.console import Console

    from cli.demo import run_demo
    from shared import runtime

    client, failures, sent = RecordingClient(), [], []
    real_embedded = runtime.embedded
    mirrors: list[MirroredWarehouse] = []

    def embedded(s=None, warehouse=None):
        from shared.config import settings

        s = s or settings()
        if warehouse is None:
            warehouse = MirroredWarehouse(s.warehouse_path, client, failures, sent)
            mirrors.append(warehouse)
        return real_embedded(s, warehouse)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOUDACT_HOME", str(tmp_path_factory.mktemp("zetasql-demo")))
        mp.setenv("CLOUDACT_BACKEND", "embedded")
        mp.setattr(runtime, "embedded", embedded)
        previous = runtime.use(None)
        try:
            assert run_demo(Console(file=io.StringIO(), width=200)) == 0, "the demo failed"
            rt = runtime.get()  # the demo's warehouse, reopened
            try:
                _beyond_the_demo(rt)
            finally:
                rt.close()
        finally:
            runtime.use(previous)
    assert mirrors, "the demo did not open a warehouse through shared.runtime.embedded"

    catalog = Catalog(PROJECT)
    for ref, table in client.created.items():
        project, dataset, name = ref.split(".")
        catalog.add_table(dataset, name, [(f.name, f.field_type) for f in table.schema])
    for mirror in mirrors:
        for dataset in mirror.procedure_datasets:
            catalog.procedures[dataset] = {name: list(procs.BIGQUERY_ARGS) for name in procs.all_procedures()}
    return Capture(_dedupe(sent), catalog, failures)


def _beyond_the_demo(rt) -> None:
    """Flows the demo does not take, on its org: API keys, the credential lifecycle, schedules, Stripe
    plans and subscriptions with a limit that refuses a run, a SaaS subscription changed and
    cancelled, run listings over HTTP."""
    import datetime as dt

    import httpx

    from click.testing import CliRunner

    from cli.demo import DEMO_ORG as org, SAMPLE_WINDOWS
    from cli.main import cli
    from cli.server import start_background
    from shared import auth, runs, schedules
    from shared import subscriptions as saas
    from shared.secrets import CredentialStore
    from shared.stripe_events import handle_event

    wh = rt.warehouse
    key = auth.create_key(wh, org)
    spare = auth.create_key(wh, org)
    assert auth.check_key(wh, spare)
    assert auth.revoke_key(wh, org, next(k["key_id"] for k in auth.list_keys(wh, org) if k["revoked_at"] is None))

    store = CredentialStore(wh, rt.settings)
    openai = next(c for c in store.list(org) if c["provider"] == "openai")
    store.rotate(org, openai["credential_id"], {"admin_key": "sk-admin-rotated-not-a-real-key"})
    store.disable(org, openai["credential_id"])
    store.external_id(org)

    sched = schedules.create_schedule(wh, org, {"pipeline_id": "subscription/costs/subscription_cost",
                                                "cron": "0 3 * * *", "timezone": "Europe/Berlin"})
    schedules.list_schedules(wh, org)
    schedules.update_schedule(wh, org, sched["schedule_id"], {"cron": "15 4 * * *"})
    schedules.due_schedules(wh, dt.datetime(2026, 11, 2, 3, 16, tzinfo=dt.timezone.utc))
    schedules.delete_schedule(wh, org, sched["schedule_id"])

    def event(n: int, type_: str, obj: dict) -> dict:
        return {"id": f"evt_{n}", "object": "event", "type": type_, "created": 1_700_000_000 + n,
                "data": {"object": obj}}

    limits = {"daily_runs": "1", "concurrent_runs": "1", "providers_allowed": "openai,subscription",
              "backfill_days": "400"}
    handle_event(wh, event(1, "product.updated", {"id": "prod_1", "object": "product", "name": "Small",
                                                  "active": True, "metadata": limits}))
    handle_event(wh, event(2, "price.created", {"id": "price_1", "object": "price", "product": "prod_1",
                                                "active": True, "metadata": {}}))
    subscription = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
                    "metadata": {"org_slug": org}, "cancel_at_period_end": False,
                    "current_period_start": 1_700_000_000, "current_period_end": 1_702_592_000,
                    "items": {"data": [{"id": "si_1", "price": {"id": "price_1", "product": "prod_1"}}]}}
    handle_event(wh, event(3, "customer.subscription.updated", subscription))
    handle_event(wh, event(4, "invoice.payment_failed", {"id": "in_1", "object": "invoice", "subscription": "sub_1"}))
    handle_event(wh, event(5, "customer.subscription.updated", {**subscription, "status": "active"}))

    [first, *_] = saas.list_subscriptions(org, wh=wh)
    saas.update(org, first["subscription_id"], {"seats": 3}, "2026-10-15", wh=wh)
    saas.cancel(org, first["subscription_id"], "2026-10-31", wh=wh)

    from shared import price_overrides

    pct = price_overrides.add(org, {"provider": "openai", "discount_pct": "10", "effective_from": "2026-10-01"}, wh=wh)
    price_overrides.add(org, {"provider": "openai", "model_family": "gpt-4o", "prices": {"input": "2"},
                              "effective_from": "2026-10-01", "effective_to": "2026-11-01"}, wh=wh)
    with pytest.raises(price_overrides.OverrideConflict):  # the refused insert and the query naming the clash
        price_overrides.add(org, {"provider": "openai", "discount_pct": "5", "effective_from": "2026-10-05"}, wh=wh)
    price_overrides.end(org, pct["override_id"], "2026-10-20", wh=wh)
    price_overrides.get(org, pct["override_id"], history=True, wh=wh)

    # the balance comparison with an earlier sample (the demo's DeepSeek run took the first)
    from decimal import Decimal

    from shared import balance
    from shared.naming import org_dataset

    ds_run = next(r for r in runs.list_runs(wh, org, 100) if r["pipeline_id"] == "genai/payg/deepseek")
    [sample] = wh.query(f"SELECT * FROM `{org_dataset(org)}.genai_balance_samples` WHERE x_run_id = @r",
                        {"r": ds_run["run_id"]})
    earlier = sample["sampled_at"] - dt.timedelta(days=3)
    wh.insert_rows(org_dataset(org), "genai_balance_samples", [{
        **sample, "sampled_at": earlier, "sample_date": earlier.date(), "x_run_id": "run_earlier",
        "total_balance": sample["total_balance"] + Decimal("1.5")}])
    [entry] = balance.reconcile(wh, org_dataset(org), {
        "org_slug": org, "pipeline_id": ds_run["pipeline_id"], "credential_id": ds_run["credential_id"],
        "run_id": ds_run["run_id"], "start_date": ds_run["start_date"], "end_date": ds_run["end_date"]})
    assert entry["status"] == "compared" and entry["spent"] == "1.500000000", entry

    # the cost explorer: every grouping, each filter, a conversion and the rates (shared/costs.py, shared/fx.py)
    from shared import costs, fx

    fx.store(wh, [fx.Rate(dt.date(2023, 9, 1), "EUR", c, Decimal("1.1")) for c in ("USD", "CAD")], org=None,
             source="zetasql")
    fx.list_rates(wh, org)
    window = {"start": dt.date(2023, 9, 1), "end": dt.date(2026, 10, 31)}
    for group_by in (costs.GROUPINGS[:5], costs.GROUPINGS[5:], ("tag:env",)):
        costs.query(wh, costs.CostQuery(org, group_by=tuple(group_by), **window))
    costs.query(wh, costs.CostQuery(org, group_by=("account", "tag:team"), metric="ListCost", currency="EUR",
                                    providers=("openai",), services=("OpenAI API",), tags=(("env", "prod"),),
                                    **window))

    server, api = start_background()
    try:
        with httpx.Client(base_url=api, headers={"X-API-Key": key}, timeout=60) as http:
            # the demo's month succeeded: a resumed request has nothing to run
            resumed = http.post(f"/api/v1/pipelines/run/{org}/cloud/aws/cost/billing",
                                json={**SAMPLE_WINDOWS["aws"], "resume": True})
            assert resumed.status_code == 409, resumed.text
            listed = http.get(f"/api/v1/pipelines/runs/{org}").json()["runs"]
            assert http.get(f"/api/v1/pipelines/runs/{org}/{listed[0]['run_id']}").status_code == 200
            # the plan's daily limit is used up by the demo's runs: refused, and nothing queued
            refused = http.post(f"/api/v1/pipelines/run/{org}/subscription/costs/subscription_cost",
                                json={"start_date": "2026-10-01", "end_date": "2026-10-30"})
            assert refused.status_code in (402, 429), refused.text
            assert http.get(f"/api/v1/credentials/{org}").status_code == 200
    finally:
        server.shutdown()
    runs.list_runs(wh, org)
    for args in (["orgs", "list"], ["export", org, "--out", str(Path(rt.settings.home, "focus.parquet"))],
                 ["export", org, "--out", str(Path(rt.settings.home, "aws.csv")), "--provider", "aws",
                  "--from", "2023-11-01", "--to", "2023-11-30"]):
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 0, done.output


def _check(analyzer: Analyzer, capture: Capture, sent: list[Sent]) -> tuple[list[Finding], list[str]]:
    findings, errors = [], []
    for s in sent:
        params = {n: type_proto(t) for n, t in s.params.items()}
        for f in analyzer.check(s.sql, capture.catalog, params):
            findings.append(f)
            if f.error:
                where = ", ".join(sorted(s.origins))
                errors.append(f"{s.method} from {where}\n  {f.error}\n  in: {' '.join(f.text.split())[:300]}")
    return findings, errors


# -- the analyzer is not a rubber stamp ---------------------------------------------------------


def test_the_analyzer_refuses_what_bigquery_refuses(zetasql, capture):
    org = next(ds for ds, tables in capture.catalog.tables.items() if "cost_data_standard_1_3" in tables)
    focus = f"`{PROJECT}.{org}.cost_data_standard_1_3`"
    insert = f"INSERT INTO {focus} (ChargeClass) WITH x AS (SELECT 1 AS one) SELECT {{}} FROM x"
    [ok] = zetasql.check(insert.format("CAST(NULL AS STRING)"), capture.catalog)
    [bare] = zetasql.check(insert.format("NULL"), capture.catalog)
    assert ok.error is None and bare.error is not None  # BigQuery types the bare NULL INT64

    runs = "SELECT run_id FROM `organizations.org_pipeline_runs` WHERE org_slug = @org"
    assert zetasql.check(runs, capture.catalog, {"org": type_proto("STRING")})[0].error is None
    assert zetasql.check(runs, capture.catalog, {"org": type_proto("INT64")})[0].error is not None
    assert zetasql.check(runs, capture.catalog)[0].error is not None  # undeclared parameters are refused
    assert zetasql.check("SELECT 1 FROM `organizations.no_such_table`", capture.catalog)[0].error is not None
    # a script construct the walker does not know is reported, not passed over
    assert any(f.error for f in zetasql.check("DECLARE n INT64 DEFAULT 1; SELECT n", capture.catalog))


# -- what the backend sends --------------------------------------------------------------------------


def test_the_bigquery_backend_accepts_every_call_the_flows_make(capture):
    assert not capture.failures, "\n".join(capture.failures)


@pytest.mark.parametrize("name", sorted(procs.all_procedures()))
def test_procedure_ddl_and_body_resolve(zetasql, capture, name):
    ddls = [s for s in capture.by_method("install_procedures") if f".{name}`(" in s.sql.split("\n", 1)[0]]
    assert ddls, f"the demo never installed {name}"
    findings, errors = _check(zetasql, capture, ddls)
    assert not errors, f"{len(errors)} of {len(findings)} statements of {name} do not resolve:\n" + "\n".join(errors)
    kinds = {f.kind for f in findings}
    assert "astCreateProcedureStatementNode" in kinds and kinds & {"astInsertStatementNode", "astMergeStatementNode"}


def test_procedure_calls_resolve(zetasql, capture):
    calls = capture.by_method("call_procedure")
    assert {s.sql.split("`")[1].rsplit(".", 1)[1] for s in calls} == set(procs.all_procedures()), \
        "the demo calls every procedure"
    findings, errors = _check(zetasql, capture, calls)
    assert not errors, f"{len(errors)} of {len(findings)} CALLs do not resolve:\n" + "\n".join(errors)


def test_slice_replacement_scripts_resolve(zetasql, capture):
    from shared import registry, source_totals

    # every write is one transaction; a slice written from a query is counted after it commits
    scripts = [s for s in capture.by_method("replace_slices") if not s.sql.startswith("SELECT COUNT(*) AS n FROM")]
    assert scripts and all(s.sql.startswith("BEGIN TRANSACTION;") for s in scripts)
    replaced = {m for s in scripts for m in re.findall(r"DELETE FROM `[^`]+\.(\w+)`", s.sql)}
    raw = {t for p in registry.pipelines().values() for t in p.raw_tables + p.run_tables}
    assert raw <= replaced, f"no slice replaced in {sorted(raw - replaced)}"
    findings, errors = _check(zetasql, capture, scripts)
    assert not errors, f"{len(errors)} of {len(findings)} statements do not resolve:\n" + "\n".join(errors)
    kinds = {f.kind for f in findings}
    assert {"astInsertStatementNode", "astDeleteStatementNode", "astIfStatementNode.condition"} <= kinds
    # every raw table's declared source totals are summed by a statement of the script that writes it
    summed = [stmt for s in scripts for stmt in s.sql.split(";\n")
              if stmt.startswith("INSERT INTO") and f".{source_totals.TABLE}` (" in stmt]
    assert {t for t in source_totals.declared() if any(f".{t}` WHERE" in stmt for stmt in summed)} == set(
        source_totals.declared())


def test_application_queries_resolve(zetasql, capture):
    queries = capture.by_method("query", "query_arrow", "stream_arrow", "execute")
    assert queries
    findings, errors = _check(zetasql, capture, queries)
    assert not errors, f"{len(errors)} of {len(findings)} queries do not resolve:\n" + "\n".join(errors)


class _NoClaimRowYet(RecordingClient):
    """Answers the first claim transaction as BigQuery does for an org without a claim row yet."""

    def __init__(self):
        super().__init__()
        self.refused = False

    def query(self, sql, job_config=None, **kw):
        job = super().query(sql, job_config, **kw)
        if sql.startswith("BEGIN TRANSACTION;") and not self.refused:
            from shared.warehouse.bigquery import _NO_CLAIM_ROW
            from tests.bigquery_fake import bigquery_error

            self.refused, error = True, bigquery_error(f"{_NO_CLAIM_ROW}: the claim decided nothing")
            job.result = lambda **kw: (_ for _ in ()).throw(error)
        return job


def test_run_claims_resolve(zetasql, capture):
    """The run claim transaction (every run the flows queued), and the claim row an org's first claim adds."""
    import datetime as dt

    from shared import runs

    claims = capture.by_method("claim")
    assert claims and all(s.sql.startswith("BEGIN TRANSACTION;") for s in claims)
    client = _NoClaimRowYet()
    org = next(ds for ds, tables in capture.catalog.tables.items() if "run_claim" in tables).removesuffix("_prod")
    runs.create_run(BigQueryWarehouse(PROJECT, client=client, retry_deadline=5, job_timeout=30), org_slug=org,
                    pipeline_id="genai/payg/openai", credential_id="c1", start_date=dt.date(2026, 1, 1),
                    end_date=dt.date(2026, 1, 31), trigger="api")
    first = [Sent(sql, params, "claim", {"runs.create_run"}) for _, sql, params in client.sent]
    assert sum(s.sql.startswith("BEGIN TRANSACTION;") for s in first) == 2, "the claim ran again after adding its row"
    findings, errors = _check(zetasql, capture, _dedupe([*claims, *first]))
    assert not errors, f"{len(errors)} of {len(findings)} statements do not resolve:\n" + "\n".join(errors)
    kinds = {f.kind for f in findings}
    assert {"astUpdateStatementNode", "astInsertStatementNode", "astIfStatementNode.condition"} <= kinds
