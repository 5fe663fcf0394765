"""The demo org (`cloudact demo`: every provider, three billing currencies) built once per test module,
and sums over its FOCUS table written here in DuckDB's own SQL, independent of shared/costs.py."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

ALL_DAYS = (dt.date(2023, 1, 1), dt.date(2026, 12, 31))
TABLE = "acme_prod.cost_data_standard_1_3"

# Each grouping written again, in DuckDB SQL, from the FOCUS columns the issue names.
INDEPENDENT = {
    "day": "CAST(ChargePeriodStart AS DATE)",
    "week": "CAST(date_trunc('week', ChargePeriodStart) AS DATE)",
    "month": "make_date(year(ChargePeriodStart), month(ChargePeriodStart), 1)",
    "provider": "ServiceProviderName",
    "service": "ServiceName",
    "category": "ServiceCategory",
    "account": "SubAccountId",
    "region": "RegionId",
    # sp_genai_4's split cloud lines name the model they pay for; sp_genai_3's GenAI usage rows carry
    # SkuId = model ':' token class [':batch']
    "model": ("CASE WHEN AllocatedMethodId = 'cloudact-genai-usage' THEN AllocatedResourceName "
              "WHEN x_pipeline_id LIKE 'genai/%' AND ServiceSubcategory = 'Generative AI' AND regexp_matches(SkuId, "
              "':(input|output|cached_input|cache_write|cache_write_1h)(:batch)?$') "
              "THEN regexp_extract(SkuId, '^(.*?):(input|output|cached_input|cache_write|cache_write_1h)(:batch)?$', 1) END"),
    "pipeline": "x_pipeline_id",
    "tag:env": "Tags->>'env'",
    "tag:oracle-tags.createdby": "Tags->>'$.\"oracle-tags.createdby\"'",
}


def build_demo(home: Path) -> Path:
    """Run `cloudact demo` under `home`; return the warehouse file it leaves."""
    from cli.demo import run_demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOUDACT_HOME", str(home))
        mp.setenv("CLOUDACT_BACKEND", "embedded")
        mp.setenv("CLOUDACT_TENANCY", "single")  # run_demo sets it; recorded here so it is undone
        assert run_demo(Console(file=io.StringIO(), width=200)) == 0
    return home / "demo" / "warehouse.duckdb"


def independent_sums(path: Path, grouping: str, metric: str = "BilledCost",
                     start: dt.date = ALL_DAYS[0], end: dt.date = ALL_DAYS[1], where: str = "TRUE"
                     ) -> dict[tuple, Decimal]:
    """{(group value, currency): sum} straight from the FOCUS table."""
    con = duckdb.connect(str(path), read_only=False)
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            f"SELECT {INDEPENDENT[grouping] if grouping else 'NULL'} AS g, BillingCurrency, SUM({metric}) "
            f"FROM {TABLE} WHERE x_org_slug = 'acme' AND CAST(ChargePeriodStart AS DATE) BETWEEN ? AND ? "
            f"AND {where} GROUP BY ALL", [start, end]).fetchall()
    finally:
        con.close()
    return {(g, cur): amount for g, cur, amount in rows}
