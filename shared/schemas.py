"""Table schemas from `schemas/*.json` (BigQuery JSON schema plus table options).

Each file holds one table:
  {"table": name, "scope": "meta" | "org", "description": ...,
   "time_partitioning": {"type": "DAY", "field": col} (optional),
   "clustering": [cols] (optional),
   "fields": [{"name", "type", "mode", "description"}],
   "fields_of": table (optional): that table's fields first, then `fields` (a copy that must keep its shape)}
`scope: meta` tables live in the `organizations` dataset; `scope: org` tables in each `{org}_prod`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from shared.catalog import Catalog
from shared.lineage import LINEAGE_NAMES

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# BigQuery type -> Arrow type factory name; kept as strings so importing this module stays light.
_ARROW_TYPES = {
    "STRING": "string",
    "INT64": "int64",
    "FLOAT64": "float64",
    "BOOL": "bool_",
    "DATE": "date32",
    "JSON": "string",
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    mode: str = "NULLABLE"
    description: str = ""

    @property
    def required(self) -> bool:
        return self.mode == "REQUIRED"


@dataclass(frozen=True)
class TableSchema:
    table: str
    scope: str
    fields: tuple[Field, ...]
    description: str = ""
    time_partitioning: dict | None = None
    clustering: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def has_lineage(self) -> bool:
        return set(LINEAGE_NAMES) <= set(self.names)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.table} has no column {name!r}")

    def arrow_schema(self, include_lineage: bool = True):
        """The Arrow schema rows of this table are written with (NUMERIC is decimal128(38, 9))."""
        import pyarrow as pa

        cols = []
        for f in self.fields:
            if not include_lineage and f.name in LINEAGE_NAMES:
                continue
            if f.type == "NUMERIC":
                t = pa.decimal128(38, 9)
            elif f.type == "TIMESTAMP":
                t = pa.timestamp("us", tz="UTC")
            else:
                t = getattr(pa, _ARROW_TYPES[f.type])()
            cols.append(pa.field(f.name, t, nullable=not f.required))
        return pa.schema(cols)


def _parse(doc: dict) -> TableSchema:
    return TableSchema(
        table=doc["table"],
        scope=doc["scope"],
        description=doc.get("description", ""),
        time_partitioning=doc.get("time_partitioning"),
        clustering=tuple(doc.get("clustering", ())),
        fields=tuple(
            Field(f["name"], f["type"], f.get("mode", "NULLABLE"), f.get("description", ""))
            for f in doc["fields"]
        ),
    )


@lru_cache(maxsize=None)
def all_schemas() -> dict[str, TableSchema]:
    out, copies = Catalog("schema for table", SCHEMA_DIR), {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        schema = _parse(doc)
        if schema.table in out:
            raise ValueError(f"table {schema.table} is defined twice in {SCHEMA_DIR}")
        out[schema.table] = schema
        if doc.get("fields_of"):
            copies[schema.table] = doc["fields_of"]
    for table, source in copies.items():
        # a copy of another table's rows (SELECT * between them) is declared by name, never re-typed
        out[table] = replace(out[table], fields=out[source].fields + out[table].fields)
    return out


def get(table: str) -> TableSchema:
    return all_schemas()[table]


def by_scope(scope: str) -> list[TableSchema]:
    return [s for s in all_schemas().values() if s.scope == scope]
