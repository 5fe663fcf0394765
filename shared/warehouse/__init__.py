"""Warehouse backends. `open_warehouse()` picks one from the settings; backends import lazily."""
from __future__ import annotations

from shared.warehouse.base import Slice, Warehouse, WarehouseError

__all__ = ["Slice", "Warehouse", "WarehouseError", "open_warehouse"]


def open_warehouse(settings=None) -> Warehouse:
    from shared.config import settings as current

    s = settings or current()
    if s.backend == "gcp":
        from shared.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse(project=s.project, location=s.bigquery_location)
    from shared.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(s.warehouse_path)
