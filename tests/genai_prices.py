"""List prices as genai_pricing.yml states them, and cost arithmetic, for tests: read from the file's
text with PyYAML and Decimal, never through the project's pricing code."""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import yaml

NINE = Decimal("0.000000001")
MILLION = Decimal(1_000_000)
PRICING = Path(__file__).resolve().parent.parent / "genai_pricing.yml"


def list_price(provider: str, model: str, token_class: str, day: dt.date, batch: bool = False,
               tier: str | None = None) -> Decimal:
    """The price per 1M tokens of the entry in effect on `day` for that tier (None: the standard entry)."""
    doc = yaml.safe_load(PRICING.read_text())
    for e in doc["providers"][provider][model]:
        if e.get("service_tier") == tier and e["effective_from"] <= day and (
                e.get("effective_to") is None or day < e["effective_to"]):
            return Decimal(str(e[("batch_" if batch else "") + token_class]))
    raise KeyError((provider, model, token_class, day, tier))


def cost(tokens: int, price: Decimal) -> Decimal:
    """tokens x price per 1M, to NUMERIC's 9 places (half away from zero, as BigQuery and DuckDB round)."""
    return (Decimal(tokens) * price / MILLION).quantize(NINE, rounding=ROUND_HALF_UP)


def off(price: Decimal, pct: str) -> Decimal:
    """`price` less `pct` percent, to 9 places."""
    return (price * (Decimal(100) - Decimal(pct)) / Decimal(100)).quantize(NINE, rounding=ROUND_HALF_UP)
