"""BigQuery SQL -> DuckDB SQL, with the type traps fixed.

sqlglot does the translation; this module fixes what it gets silently wrong for money and counts:
- bare NUMERIC/DECIMAL would become DuckDB DECIMAL(18,3) and drop digits: we emit DECIMAL(38, 9),
  BigQuery's NUMERIC;
- COUNTIF over no matching rows must be 0 as in BigQuery, never NULL.
"""
from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

# BigQuery type names as written in schemas/*.json -> DuckDB column types.
DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
    "NUMERIC": "DECIMAL(38, 9)",
    "JSON": "JSON",
}


def _fix(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL):
        if not node.expressions:
            return exp.DataType.build("DECIMAL(38, 9)", dialect="duckdb")
    if isinstance(node, exp.CountIf):
        cond = node.this
        return exp.Coalesce(
            this=exp.Sum(this=exp.If(this=cond, true=exp.Literal.number(1), false=exp.Literal.number(0))),
            expressions=[exp.Literal.number(0)],
        )
    return node


@lru_cache(maxsize=1024)
def to_duckdb(sql: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Translate one or more BigQuery statements; return (duckdb_sql, parameter names) per statement."""
    out = []
    for tree in sqlglot.parse(sql, read="bigquery", error_level=ErrorLevel.RAISE):
        if tree is None:
            continue
        tree = tree.transform(_fix)
        names = frozenset(p.name for p in tree.find_all(exp.Parameter, exp.Placeholder) if p.name)
        out.append((tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE), names))
    return tuple(out)


def parse_bigquery(sql: str) -> list[exp.Expression]:
    """Parse BigQuery SQL strictly (used by tests and the BigQuery backend)."""
    return [t for t in sqlglot.parse(sql, read="bigquery", error_level=ErrorLevel.RAISE) if t is not None]
