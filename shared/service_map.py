"""Provider service -> FOCUS 1.3 ServiceCategory / ServiceSubcategory: data/service_category_map/*.csv
(one file per provider) -> organizations.service_category_map.

The AWS file is derived from the FinOps Foundation focus_converters AWS mapping (MIT; see
data/NOTICE-focus_converters.md), keyed by lower-case service key (AWS: line_item_product_code). Converters
join on LOWER(code) = service_key and fall back to 'Other' / 'Other (Other)' when a service is not listed.
"""
from __future__ import annotations

import csv
from pathlib import Path

from shared.warehouse.base import Warehouse

MAP_DIR = Path(__file__).resolve().parent.parent / "data" / "service_category_map"
TABLE = "service_category_map"
COLUMNS = ("provider", "service_key", "service_category", "service_subcategory")


class ServiceMapError(ValueError):
    pass


def load(path: Path = MAP_DIR) -> list[dict]:
    """Read and validate the mapping (a CSV, or a folder of them): every pair must be a FOCUS 1.3
    category/subcategory, keys unique."""
    if path.is_dir():
        return [row for f in sorted(path.glob("*.csv")) for row in load(f)]
    from shared.focus import SERVICE_SUBCATEGORIES

    rows, seen = [], set()
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ServiceMapError(f"{path.name}: header must be {','.join(COLUMNS)}")
        for n, r in enumerate(reader, start=2):
            row = {k: (r[k] or "").strip() for k in COLUMNS}
            row["provider"] = row["provider"].lower()
            row["service_key"] = row["service_key"].lower()
            if not row["provider"] or not row["service_key"]:
                raise ServiceMapError(f"{path.name}:{n}: provider and service_key are required")
            cat, sub = row["service_category"], row["service_subcategory"]
            if cat not in SERVICE_SUBCATEGORIES:
                raise ServiceMapError(f"{path.name}:{n}: {cat!r} is not a FOCUS 1.3 ServiceCategory")
            if sub not in SERVICE_SUBCATEGORIES[cat]:
                raise ServiceMapError(f"{path.name}:{n}: {sub!r} is not a ServiceSubcategory of {cat!r}")
            key = (row["provider"], row["service_key"])
            if key in seen:
                raise ServiceMapError(f"{path.name}:{n}: duplicate key {key}")
            seen.add(key)
            rows.append(row)
    return rows


def sync(wh: Warehouse, path: Path = MAP_DIR) -> int:
    """Replace the providers' rows in organizations.service_category_map with the file's. Returns rows written.

    The table is ensured first, so this also works on an instance bootstrapped before the table existed.
    """
    from shared import schemas

    rows = load(path)
    wh.ensure_table(wh.meta_dataset, schemas.get(TABLE))
    providers = sorted({r["provider"] for r in rows})
    params = {f"p{i}": p for i, p in enumerate(providers)}
    in_list = ", ".join(f"@p{i}" for i in range(len(providers))) or "NULL"
    wh.execute(f"DELETE FROM `{wh.meta_dataset}.{TABLE}` WHERE provider IN ({in_list})", params)
    wh.insert_rows(wh.meta_dataset, TABLE, rows)
    return len(rows)
