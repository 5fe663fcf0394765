"""FOCUS Unit Format units: the one normaliser, `procedures/macros/focus_unit.sql`, for every path.

Procedure SQL calls it as `FOCUS_UNIT(x)` (expanded by shared/procedures.py). Extractors that build their own
DuckDB SQL (Azure cost details, OCI reports) splice in `duckdb_sql(expr)`, the same expression transpiled, and
Python gets `focus_unit(text)`: the same expression evaluated by DuckDB, so no path has a normaliser of its own.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache

from shared import procedures
from shared.warehouse.dialect import parse_bigquery, to_duckdb

# The macro's argument name, kept through transpiling so it can be bound to a DuckDB expression.
_ARG = "unit_in"
_ARG_RE = re.compile(rf"\b{_ARG}\b")
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _duckdb_template() -> str:
    tree = procedures.expand_macros(parse_bigquery(f"SELECT FOCUS_UNIT({_ARG}) AS u")[0])
    ((sql, _),) = to_duckdb(tree.sql(dialect="bigquery"))
    expr = sql.removeprefix("SELECT ").removesuffix(" AS u")
    if len(_ARG_RE.findall(expr)) != 1:  # bound once: an argument is evaluated once per row
        raise procedures.ProcedureError(f"FOCUS_UNIT must use {_ARG} exactly once")
    return expr


def duckdb_sql(expr: str) -> str:
    """FOCUS_UNIT over the DuckDB expression `expr` (NULL where the text cannot be a FOCUS unit)."""
    return _ARG_RE.sub(lambda _: f"({expr})", _duckdb_template())


@lru_cache(maxsize=1)
def _connection():
    import duckdb

    return duckdb.connect()


def focus_units(texts: Iterable[str | None]) -> dict[str | None, str | None]:
    """{text: FOCUS unit or None} for several texts in one query."""
    values = list(dict.fromkeys(texts))
    if not values:
        return {}
    with _lock:
        rows = _connection().execute(
            f"SELECT t.v, {duckdb_sql('t.v')} FROM (SELECT UNNEST($1::VARCHAR[]) AS v) AS t", [values]).fetchall()
    return dict(rows)


@lru_cache(maxsize=4096)
def focus_unit(text: str | None) -> str | None:
    """A provider's unit as a FOCUS Unit Format unit ('Hrs' -> 'Hours', 'gibibyte month' -> 'GiB-Months'),
    None when it cannot be one (the caller picks the fallback, usually 'Units')."""
    if text is None:
        return None
    return focus_units([text])[text]
