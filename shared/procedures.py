"""Procedures: written once in BigQuery SQL under procedures/, run on both engines.

A procedure file is a sequence of plain statements (DELETE, INSERT ... SELECT, MERGE) that refer to the
standard parameters as `@name` and to the org's dataset as `{org_dataset}`. The BigQuery backend wraps
the statements in `CREATE OR REPLACE PROCEDURE ... BEGIN TRANSACTION ...`; the DuckDB backend transpiles
each statement and runs them in one transaction.

A FOCUS conversion (`sp_*_convert_to_focus`) is written by column instead: each statement is a `SELECT`
naming every FOCUS column once (`... AS BilledCost`), plus `x_pipeline_run_date` and `x_cost_source`.
The loader makes the procedure: one `DELETE` of the run's slice, then per `SELECT` an `INSERT` whose
column list is those names with the lineage columns every row gets the same way. A missing, misspelled
or repeated name fails when the procedure is loaded (so at install), not at query time.

Shared pieces, written once:
- `{aws.ProviderName}`: a constant provider fact, declared in providers.yml (`providers:`) and read from its
  synced table organizations.provider_facts (shared.registry.sync_facts) by an uncorrelated scalar subquery,
  which both engines evaluate once; the loader checks the fact is declared;
- `{provider_facts:genai}`: the facts of every provider of an available pipeline of that category, read from
  the same table (one row per provider: `provider` and the category's PROVIDER_FACT_KEYS), so a provider
  joins its facts by being declared;
- `{facts:cloud_model_spend}`: a list of facts from `procedures/fact_tables.yml`, as a subquery of literals
  (one row per entry, its keys as columns, plus `fact_rank`: the entry's position);
- `{null:AllocatedTags, ChargeClass}`: FOCUS columns a conversion leaves empty, as `CAST(NULL AS <type>) AS
  <name>` with each column's type from shared/focus.py (so every converter's empty columns have one spelling);
- `FOCUS_UNIT(x)`: the unit normalisation in `procedures/macros/focus_unit.sql`, put in place of the call;
  any `procedures/macros/<name>.sql` is a macro the same way, its parameters named on its first line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlglot import exp

from shared.catalog import Catalog
from shared.naming import identifier
from shared.warehouse.dialect import parse_bigquery

PROCEDURE_DIR = Path(__file__).resolve().parent.parent / "procedures"

# Every procedure takes the same arguments, in this order.
PARAMS: tuple[tuple[str, str], ...] = (
    ("org_slug", "STRING"),
    ("pipeline_id", "STRING"),
    ("credential_id", "STRING"),
    ("run_id", "STRING"),
    ("start_date", "DATE"),
    ("end_date", "DATE"),
)
PARAM_NAMES = tuple(n for n, _ in PARAMS)
# BigQuery procedures take one more, last: the lease token their transaction is fenced on (NULL: none).
FENCE_ARG = ("lease_token", "STRING")
BIGQUERY_ARGS = (*PARAMS, FENCE_ARG)


FOCUS_TABLE = "cost_data_standard_1_3"
# Lineage of a FOCUS row that is the same for every row a conversion writes; the SELECTs name the rest.
GENERATED_LINEAGE = {
    "x_org_slug": "@org_slug", "x_pipeline_id": "@pipeline_id", "x_credential_id": "@credential_id",
    "x_run_id": "@run_id", "x_ingested_at": "CURRENT_TIMESTAMP()", "x_ingestion_date": "CURRENT_DATE()",
}
# A conversion replaces its slice: the run's pipeline and credential, over the run's dates.
REPLACE_SLICE = f"""DELETE FROM `{{org_dataset}}.{FOCUS_TABLE}`
WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
  AND ChargePeriodStart >= TIMESTAMP(@start_date)
  AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))"""
_FACT = re.compile(r"\{([a-z0-9_]+)\.([A-Za-z]+)\}")
_FACT_TABLE = re.compile(r"\{facts:([a-z0-9_]+)\}")
_PROVIDER_TABLE = re.compile(r"\{provider_facts:([a-z]+)\}")
_NULLS = re.compile(r"\{null:([A-Za-z_, \n]+)\}")


class ProcedureError(ValueError):
    """A procedure's SQL does not fit its contract (named columns, known facts and parameters)."""


# The facts a category's procedures read per provider. The loader refuses a provider of an available pipeline
# without them, so none can lose its rows to a join on facts it lacks. A subscription pipeline is absent: its
# vendor names come from each row's provider key (sp_subscription_3), not from one pipeline-wide provider.
PROVIDER_FACT_KEYS: dict[str, tuple[str, ...]] = {
    "cloud": ("ProviderName", "HostProviderName", "ServiceProviderName", "InvoiceIssuerName", "PublisherName"),
    "genai": ("ProviderName", "HostProviderName", "InvoiceIssuerName", "ServiceProviderName", "ServiceName"),
}


def provider_facts() -> dict[str, Any]:
    from shared import registry

    return registry.provider_facts()


@lru_cache(maxsize=None)
def fact_tables() -> dict[str, Any]:
    return yaml.safe_load((PROCEDURE_DIR / "fact_tables.yml").read_text())


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_provider_facts() -> None:
    """Every provider of an available pipeline in providers.yml has its category's facts (PROVIDER_FACT_KEYS)."""
    from shared import registry

    problems = []
    for p in registry.pipelines().values():
        keys = PROVIDER_FACT_KEYS.get(p.category, ())
        if not keys or not p.available or p.names_from == "file":
            continue
        facts = provider_facts().get(p.provider)
        facts = facts if isinstance(facts, dict) else {}
        if missing := [k for k in keys if not isinstance(facts.get(k), str) or not facts[k].strip()]:
            problems.append(f"{p.category} provider {p.provider!r} (pipeline {p.path}) has no "
                            f"{', '.join(missing)}")
    if problems:
        raise ProcedureError("providers.yml misses facts of providers of its pipelines: "
                             + "; ".join(problems) + " (add them under providers: <provider>)")


def provider_fact_rows(category: str) -> list[dict[str, str]]:
    """One entry per provider of an available `category` pipeline (providers.yml order): `provider` and its facts."""
    from shared import registry

    if category not in PROVIDER_FACT_KEYS:
        raise ProcedureError(f"no provider facts of category {category!r} (known: {', '.join(PROVIDER_FACT_KEYS)})")
    check_provider_facts()
    providers = dict.fromkeys(p.provider for p in registry.pipelines().values()
                              if p.category == category and p.available and p.names_from != "file")
    return [{"provider": name, **{k: provider_facts()[name][k] for k in PROVIDER_FACT_KEYS[category]}}
            for name in providers]


def _literal_rows(entries: list[dict[str, str]]) -> str:
    rows = [", ".join([*(f"{_literal(v)} AS {k}" for k, v in e.items()), f"{i} AS fact_rank"])
            for i, e in enumerate(entries)]
    return "(" + " UNION ALL ".join(f"SELECT {r}" for r in rows) + ")"


def fact_table(key: str) -> list[dict[str, str]]:
    """A list of facts (e.g. `cloud_model_spend`): entries of the same keys, string values."""
    entries = fact_tables().get(key)
    if not isinstance(entries, list) or not entries:
        raise ProcedureError(f"no list of facts {key!r} in procedures/fact_tables.yml")
    keys = list(entries[0])
    for e in entries:
        if list(e) != keys or not all(isinstance(v, str) for v in e.values()):
            raise ProcedureError(f"facts {key!r}: every entry must have the string keys {keys}, in that order")
    return entries


def _provider_table(category: str) -> str:
    """The category's providers' facts, one row each, read from organizations.provider_facts."""
    from shared import registry

    names = [e["provider"] for e in provider_fact_rows(category)]
    columns = ", ".join(f"{registry.FACT_COLUMNS[k]} AS {k}" for k in PROVIDER_FACT_KEYS[category])
    return (f"(SELECT provider, {columns} FROM `organizations.{registry.FACTS_TABLE}` "
            f"WHERE provider IN ({', '.join(_literal(n) for n in names)}))")


def _with_facts(name: str, sql: str) -> str:
    from shared import registry

    def fact(m: re.Match) -> str:
        provider, key = m.group(1), m.group(2)
        declared = provider_facts().get(provider)
        if key not in registry.FACT_COLUMNS or not isinstance(declared, dict) or not declared.get(key):
            raise ProcedureError(f"{name}: no provider fact {m.group(0)} in providers.yml (providers: {provider})")
        return (f"(SELECT {registry.FACT_COLUMNS[key]} FROM `organizations.{registry.FACTS_TABLE}` "
                f"WHERE provider = {_literal(provider)})")

    sql = _NULLS.sub(lambda m: _null_columns(name, m.group(1)), sql)
    sql = _PROVIDER_TABLE.sub(lambda m: _provider_table(m.group(1)), sql)
    return _FACT.sub(fact, _FACT_TABLE.sub(lambda m: _literal_rows(fact_table(m.group(1))), sql))


def _null_columns(name: str, names: str) -> str:
    from shared.focus import COLUMNS_BY_NAME

    out = []
    for column in (n.strip() for n in names.split(",")):
        if column not in COLUMNS_BY_NAME:
            raise ProcedureError(f"{name}: {{null:...}} names {column!r}, not a FOCUS column")
        out.append(f"CAST(NULL AS {COLUMNS_BY_NAME[column].type}) AS {column}")
    return ", ".join(out)


_MACRO_HEAD = re.compile(r"--\s*([A-Z][A-Z0-9_]*)\(([a-z_, ]*)\)")


@lru_cache(maxsize=None)
def _macro(macro: str, org_dataset: str | None = None) -> tuple[tuple[str, ...], exp.Expression] | None:
    """`procedures/macros/<macro>.sql`: its parameters (named by its first line, `-- NAME(a, b): ...`) and
    its expression, provider facts and the org's dataset put in; None when there is no such file (an
    ordinary function)."""
    path = PROCEDURE_DIR / "macros" / f"{macro.lower()}.sql"
    if not path.is_file():
        return None
    text = path.read_text()
    head = _MACRO_HEAD.match(text)
    if not head or head.group(1) != macro.upper():
        raise ProcedureError(f"macros/{path.name}: the first line must name it and its parameters, "
                             f"`-- {macro.upper()}(a, b): ...`")
    params = tuple(a.strip() for a in head.group(2).split(",") if a.strip())
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    if "{org_dataset}" in body:
        if org_dataset is None:
            raise ProcedureError(f"{macro.upper()} reads the org's tables: it is for procedures only")
        body = body.replace("{org_dataset}", identifier(org_dataset))
    return params, parse_bigquery(_with_facts(f"macros/{path.name}", body))[0]


def _expand_macros(node: exp.Expression, org_dataset: str | None) -> exp.Expression:
    if not isinstance(node, exp.Anonymous) or (macro := _macro(node.name, org_dataset)) is None:
        return node
    params, body = macro
    if len(node.expressions) != len(params):
        raise ProcedureError(f"{node.name.upper()} takes {len(params)} argument(s) ({', '.join(params)}), "
                             f"not {len(node.expressions)}")
    args = dict(zip(params, node.expressions))
    return body.copy().transform(
        lambda n: args[n.name].copy() if isinstance(n, exp.Column) and n.name in args and not n.table else n)


def expand_macros(tree: exp.Expression, org_dataset: str | None = None) -> exp.Expression:
    """`tree` with every macro call (FOCUS_UNIT(x), any file in procedures/macros/) replaced by the macro's
    expression."""
    return tree.transform(lambda n: _expand_macros(n, org_dataset))


def focus_output_columns() -> tuple[str, ...]:
    """The names a conversion's SELECT must give: every FOCUS column and the lineage it does not get."""
    from shared.focus import ALL_COLUMNS

    return tuple(c.name for c in ALL_COLUMNS if c.name not in GENERATED_LINEAGE)


def mapping_names(name: str, select: exp.Expression) -> list[str]:
    """The output names of a conversion's SELECT, checked against the FOCUS columns."""
    if not isinstance(select, exp.Select):
        raise ProcedureError(f"{name}: a FOCUS conversion statement must be one SELECT, not {select.key}")
    names = []
    for projection in select.expressions:
        if not isinstance(projection, exp.Alias):
            raise ProcedureError(f"{name}: every output must be named by its FOCUS column: "
                                 f"{projection.sql(dialect='bigquery')[:80]}")
        names.append(projection.alias)
    expected = focus_output_columns()
    problems = []
    if missing := [c for c in expected if c not in names]:
        problems.append(f"missing {', '.join(missing)}")
    if extra := [c for c in names if c not in expected]:
        problems.append(f"not a FOCUS column (or set by the loader) {', '.join(extra)}")
    if repeated := sorted({c for c in names if names.count(c) > 1}):
        problems.append(f"named twice {', '.join(repeated)}")
    if problems:
        raise ProcedureError(f"{name}: {'; '.join(problems)}")
    return names


@dataclass(frozen=True)
class Procedure:
    name: str
    source: str

    @property
    def is_focus_mapping(self) -> bool:
        return self.name.endswith("_convert_to_focus")

    def trees(self, org_dataset: str, expand: bool = True) -> list[exp.Expression]:
        """The body as parsed BigQuery statements for one org's dataset (mappings made into INSERTs); with
        `expand` False the macro calls stay calls (for documents)."""
        sql = _with_facts(self.name, self.source)
        if self.is_focus_mapping:
            sql = REPLACE_SLICE + ";\n" + sql
        sql = sql.replace("{org_dataset}", identifier(org_dataset))
        trees = [expand_macros(t, org_dataset) if expand else t for t in parse_bigquery(sql)]
        if not self.is_focus_mapping:
            return trees
        lineage = [parse_bigquery(f"SELECT {v} AS {k}")[0].expressions[0] for k, v in GENERATED_LINEAGE.items()]
        out = [trees[0]]
        for select in trees[1:]:
            names = mapping_names(self.name, select)
            columns = ", ".join(names + list(GENERATED_LINEAGE))
            insert = parse_bigquery(f"INSERT INTO `{identifier(org_dataset)}.{FOCUS_TABLE}` ({columns}) SELECT 1")[0]
            insert.set("expression", select.select(*[e.copy() for e in lineage], copy=True))
            out.append(insert)
        return out

    def statements(self, org_dataset: str) -> list[str]:
        """The body as BigQuery statements for one org's dataset."""
        return [tree.sql(dialect="bigquery") for tree in self.trees(org_dataset)]

    def bigquery_ddl(self, project: str, org_dataset: str) -> str:
        """CREATE OR REPLACE PROCEDURE for BigQuery: `@x` becomes argument `p_x`, tables get the project."""

        def to_procedure_scope(node):
            if isinstance(node, exp.Parameter):
                name = node.name
                if name not in PARAM_NAMES:
                    raise ValueError(f"{self.name}: unknown parameter @{name}")
                return exp.column(f"p_{name}")
            if isinstance(node, exp.Table) and node.args.get("db") and not node.args.get("catalog"):
                node.set("catalog", exp.to_identifier(project))
            return node

        from shared.warehouse.base import Warehouse, bigquery_fence

        body = ";\n".join(t.transform(to_procedure_scope).sql(dialect="bigquery") for t in self.trees(org_dataset))
        args = ", ".join(f"p_{n} {t}" for n, t in BIGQUERY_ARGS)
        fence = bigquery_fence(f"`{project}.{Warehouse.meta_dataset}.org_pipeline_runs`", "p_run_id",
                               f"p_{FENCE_ARG[0]}")
        return (
            f"CREATE OR REPLACE PROCEDURE `{project}.{org_dataset}.{self.name}`({args})\n"
            f"BEGIN\n  BEGIN TRANSACTION;\nIF p_{FENCE_ARG[0]} IS NOT NULL THEN\n{fence}\nEND IF;\n"
            f"{body};\n  COMMIT TRANSACTION;\n"
            "EXCEPTION WHEN ERROR THEN\n  ROLLBACK TRANSACTION;\n  RAISE USING MESSAGE = @@error.message;\nEND"
        )


@lru_cache(maxsize=None)
def all_procedures() -> dict[str, Procedure]:
    """`procedures/sp_x.sql`, or a folder `procedures/sp_x/` whose *.sql files are the statements in
    name order (one file per source, so each cloud's conversion stays in its own file). Refuses a
    providers.yml provider without its facts (check_provider_facts), so that fails at install, not as a run
    that converts no rows."""
    check_provider_facts()
    out = Catalog("procedure", PROCEDURE_DIR)
    for path in sorted(PROCEDURE_DIR.glob("sp_*")):
        if path.is_dir():
            source = ";\n".join(f.read_text().rstrip().rstrip(";") for f in sorted(path.glob("*.sql")))
            out[path.name] = Procedure(path.name, source)
        elif path.suffix == ".sql":
            out[path.stem] = Procedure(path.stem, path.read_text())
    return out


def get(name: str) -> Procedure:
    return all_procedures()[name]
