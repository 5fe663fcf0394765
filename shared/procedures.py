"""Procedures: written once in BigQuery SQL under procedures/, run on both engines.

A procedure file is a sequence of plain statements (DELETE the slice, INSERT ... SELECT, MERGE) that
refer to the standard parameters as `@name` and to the org's dataset as `{org_dataset}`. The
BigQuery backend wraps the statements in `CREATE OR REPLACE PROCEDURE ... BEGIN TRANSACTION ...`;
the DuckDB backend transpiles each statement and runs them in one transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlglot import exp

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


@dataclass(frozen=True)
class Procedure:
    name: str
    source: str

    def statements(self, org_dataset: str) -> list[str]:
        """The body as BigQuery statements for one org's dataset."""
        sql = self.source.replace("{org_dataset}", identifier(org_dataset))
        return [tree.sql(dialect="bigquery") for tree in parse_bigquery(sql)]

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

        sql = self.source.replace("{org_dataset}", identifier(org_dataset))
        body = ";\n".join(t.transform(to_procedure_scope).sql(dialect="bigquery") for t in parse_bigquery(sql))
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
    name order (one file per source, so each cloud's conversion stays in its own file)."""
    out = {}
    for path in sorted(PROCEDURE_DIR.glob("sp_*")):
        if path.is_dir():
            source = ";\n".join(f.read_text().rstrip().rstrip(";") for f in sorted(path.glob("*.sql")))
            out[path.name] = Procedure(path.name, source)
        elif path.suffix == ".sql":
            out[path.stem] = Procedure(path.stem, path.read_text())
    return out


def get(name: str) -> Procedure:
    try:
        return all_procedures()[name]
    except KeyError:
        raise KeyError(f"no procedure {name!r} in {PROCEDURE_DIR}") from None
