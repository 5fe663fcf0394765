"""GenAI prices: genai_pricing.yml -> organizations.genai_model_pricing.

Prices are read as Decimal straight from the YAML text (never through float) and validated: every
entry has input and output rates, and the effective ranges of one model never overlap.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import yaml

from shared.warehouse.base import Slice, Warehouse

PRICING_PATH = Path(__file__).resolve().parent.parent / "genai_pricing.yml"
RATE_FIELDS = {
    "input": "input_per_1m", "cached_input": "cached_input_per_1m", "cache_write": "cache_write_per_1m",
    "cache_write_1h": "cache_write_1h_per_1m", "output": "output_per_1m", "batch_input": "batch_input_per_1m",
    "batch_cached_input": "batch_cached_input_per_1m", "batch_cache_write": "batch_cache_write_per_1m",
    "batch_cache_write_1h": "batch_cache_write_1h_per_1m", "batch_output": "batch_output_per_1m",
}
_KNOWN_KEYS = set(RATE_FIELDS) | {"effective_from", "effective_to", "source"}


class PricingError(ValueError):
    pass


class _DecimalLoader(yaml.SafeLoader):
    pass


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)


def load(path: Path = PRICING_PATH) -> list[dict]:
    """Parse and validate the pricing file into genai_model_pricing rows."""
    doc = yaml.load(path.read_text(), Loader=_DecimalLoader)
    currency = doc.get("currency", "USD")
    rows: list[dict] = []
    for provider, models in (doc.get("providers") or {}).items():
        for model, entries in models.items():
            spans = []
            for e in entries:
                where = f"{path.name}: {provider}/{model}"
                unknown = set(e) - _KNOWN_KEYS
                if unknown:
                    raise PricingError(f"{where}: unknown keys {sorted(unknown)}")
                if "input" not in e or "output" not in e:
                    raise PricingError(f"{where}: every price needs input and output rates")
                start, end = e["effective_from"], e.get("effective_to")
                if not isinstance(start, dt.date) or (end is not None and not isinstance(end, dt.date)):
                    raise PricingError(f"{where}: effective dates must be YYYY-MM-DD")
                if end is not None and end <= start:
                    raise PricingError(f"{where}: effective_to {end} is not after effective_from {start}")
                for key in RATE_FIELDS:
                    if key in e and (not isinstance(e[key], (Decimal, int)) or e[key] < 0):
                        raise PricingError(f"{where}: {key} must be a non-negative number")
                spans.append((start, end or dt.date.max))
                rows.append({
                    "provider": provider, "model": str(model), "effective_from": start, "effective_to": end,
                    "currency": currency, "source": e.get("source"),
                    **{col: (Decimal(e[key]) if key in e else None) for key, col in RATE_FIELDS.items()},
                })
            spans.sort()
            for (s1, e1), (s2, _) in zip(spans, spans[1:]):
                if s2 < e1:
                    raise PricingError(f"{path.name}: {provider}/{model} has overlapping prices from {s2}")
    return rows


def sync(wh: Warehouse, path: Path = PRICING_PATH) -> int:
    """Replace the pricing table with the file's contents, atomically. Returns rows written."""
    import pyarrow as pa

    from shared import schemas

    rows = load(path)
    table = pa.Table.from_pylist(rows, schema=schemas.get("genai_model_pricing").arrow_schema())
    everything = Slice(equals={}, date_column="effective_from", start_date=dt.date(1900, 1, 1), end_date=dt.date(9999, 12, 31))
    return wh.replace_slices("organizations", {"genai_model_pricing": (everything, table.to_batches())})["genai_model_pricing"]
