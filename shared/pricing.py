"""GenAI prices: genai_pricing.yml -> organizations.genai_model_pricing, and its time-of-day windows.

Prices are read as Decimal straight from the YAML text (never through float) and validated: every
entry has input and output rates, and the effective ranges of one model and tier never overlap.

A price entry may name a `service_tier`: it then prices only usage of that tier (an off-peak rate);
the entry without one prices every other tier. `time_of_day` (top level) says, per provider, which
hours of the day put usage in a tier (`TimeWindow`): an extractor that knows when usage happened asks
`tier_at` and writes the tier on the usage row; the tier's price entries must cover every day a window
is in effect for each model it names, so tagged usage never falls back to a rate by accident.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import yaml

from shared.models import model_family
from shared.warehouse.base import Slice, Warehouse

PRICING_PATH = Path(__file__).resolve().parent.parent / "genai_pricing.yml"
RATE_FIELDS = {
    "input": "input_per_1m", "cached_input": "cached_input_per_1m", "cache_write": "cache_write_per_1m",
    "cache_write_1h": "cache_write_1h_per_1m", "output": "output_per_1m", "batch_input": "batch_input_per_1m",
    "batch_cached_input": "batch_cached_input_per_1m", "batch_cache_write": "batch_cache_write_per_1m",
    "batch_cache_write_1h": "batch_cache_write_1h_per_1m", "batch_output": "batch_output_per_1m",
}
_KNOWN_KEYS = set(RATE_FIELDS) | {"effective_from", "effective_to", "source", "service_tier"}
_WINDOW_KEYS = {"service_tier", "from_utc", "to_utc", "effective_from", "effective_to", "models", "source"}
_TIER = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class PricingError(ValueError):
    pass


class _DecimalLoader(yaml.SafeLoader):
    pass


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)


def _read(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_DecimalLoader)


def load(path: Path = PRICING_PATH) -> list[dict]:
    """Parse and validate the pricing file into genai_model_pricing rows."""
    doc = _read(path)
    rows = _price_rows(doc, path)
    _windows(doc, path, rows)  # a window must be priced by the file it is in
    return rows


def _price_rows(doc: dict, path: Path) -> list[dict]:
    currency = doc.get("currency", "USD")
    rows: list[dict] = []
    for provider, models in (doc.get("providers") or {}).items():
        for model, entries in models.items():
            spans: dict[str | None, list] = {}
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
                tier = e.get("service_tier")
                if tier is not None and not (isinstance(tier, str) and _TIER.match(tier)):
                    raise PricingError(f"{where}: service_tier must be a lower-case id such as off_peak")
                spans.setdefault(tier, []).append((start, end or dt.date.max))
                rows.append({
                    "provider": provider, "model": str(model), "service_tier": tier, "effective_from": start,
                    "effective_to": end, "currency": currency, "source": e.get("source"),
                    **{col: (Decimal(e[key]) if key in e else None) for key, col in RATE_FIELDS.items()},
                })
            for tier, tier_spans in spans.items():
                tier_spans.sort()
                for (s1, e1), (s2, _) in zip(tier_spans, tier_spans[1:]):
                    if s2 < e1:
                        shown = f"{provider}/{model}" + (f" ({tier})" if tier else "")
                        raise PricingError(f"{path.name}: {shown} has overlapping prices from {s2}")
    return rows


@dataclass(frozen=True)
class TimeWindow:
    """Usage of `models` between `from_utc` and `to_utc` (UTC clock time, wrapping past midnight when
    to < from) is in `service_tier`, for instants in [effective_from, effective_to)."""

    provider: str
    service_tier: str
    from_utc: dt.time
    to_utc: dt.time
    effective_from: dt.datetime
    effective_to: dt.datetime | None
    models: frozenset[str]

    def names(self, model: str) -> bool:
        return model in self.models or model_family(model) in self.models

    def contains(self, model: str, when: dt.datetime) -> bool:
        if not self.names(model) or when < self.effective_from:
            return False
        if self.effective_to is not None and when >= self.effective_to:
            return False
        clock = when.timetz().replace(tzinfo=None)
        if self.from_utc < self.to_utc:
            return self.from_utc <= clock < self.to_utc
        return clock >= self.from_utc or clock < self.to_utc

    def days(self) -> tuple[dt.date, dt.date | None]:
        """The first and last UTC day an instant of the window can fall on (None: open)."""
        last = None if self.effective_to is None else (self.effective_to - dt.timedelta(microseconds=1)).date()
        return self.effective_from.date(), last


def _instant(value, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    raise PricingError(f"{where}: effective dates must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")


def _clock(value, where: str) -> dt.time:
    m = _CLOCK.match(value) if isinstance(value, str) else None
    if m is None:  # unquoted 16:30 is a YAML 1.1 sexagesimal number
        raise PricingError(f"{where}: from_utc and to_utc must be quoted times such as \"16:30\"")
    return dt.time(int(m[1]), int(m[2]))


def _windows(doc: dict, path: Path, rows: list[dict]) -> list[TimeWindow]:
    out = []
    for provider, entries in (doc.get("time_of_day") or {}).items():
        for e in entries or []:
            where = f"{path.name}: time_of_day/{provider}"
            unknown = set(e) - _WINDOW_KEYS
            if unknown:
                raise PricingError(f"{where}: unknown keys {sorted(unknown)}")
            tier = e.get("service_tier")
            if not (isinstance(tier, str) and _TIER.match(tier)):
                raise PricingError(f"{where}: service_tier must be a lower-case id such as off_peak")
            models = e.get("models")
            if not models or not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise PricingError(f"{where}: models must list the model ids the window applies to")
            w = TimeWindow(provider, tier, _clock(e.get("from_utc"), where), _clock(e.get("to_utc"), where),
                           _instant(e.get("effective_from"), where),
                           None if e.get("effective_to") is None else _instant(e["effective_to"], where),
                           frozenset(models))
            if w.from_utc == w.to_utc or (w.effective_to is not None and w.effective_to <= w.effective_from):
                raise PricingError(f"{where}: the window is empty")
            first, last = w.days()
            for model in sorted(w.models):
                if not _covered([(r["effective_from"], r["effective_to"] or dt.date.max) for r in rows
                                 if (r["provider"], r["model"], r["service_tier"]) == (provider, model, tier)],
                                first, last or dt.date.max):
                    raise PricingError(f"{where}: {model} has no {tier} price on every day from {first} to "
                                       f"{last or 'open'}; add one under providers/{provider}/{model}")
            out.append(w)
    return out


def _covered(spans: list[tuple[dt.date, dt.date]], first: dt.date, last: dt.date) -> bool:
    """[first, last] (inclusive days) lies inside the union of [start, end) spans."""
    day = first
    for start, end in sorted(spans):
        if start > day:
            return False
        if end > day:
            if end > last or end == dt.date.max:  # date.max: an open span
                return True
            day = end
    return False


@lru_cache(maxsize=None)
def time_windows(path: Path = PRICING_PATH) -> tuple[TimeWindow, ...]:
    """The pricing file's time-of-day windows (validated against its prices)."""
    doc = _read(path)
    return tuple(_windows(doc, path, _price_rows(doc, path)))


def tier_at(provider: str, model: str, when: dt.datetime, path: Path = PRICING_PATH) -> str | None:
    """The service tier a usage instant (UTC) falls in, or None for the standard rate."""
    if when.tzinfo is None:
        raise ValueError("tier_at needs an aware UTC datetime")
    for w in time_windows(path):
        if w.provider == provider and w.contains(model, when.astimezone(dt.timezone.utc)):
            return w.service_tier
    return None


def windows_on(provider: str, model: str, day: dt.date, path: Path = PRICING_PATH) -> list[TimeWindow]:
    """The windows that can apply to `model` on UTC day `day` (usage known only by day cannot be split)."""
    out = []
    for w in time_windows(path):
        first, last = w.days()
        if w.provider == provider and w.names(model) and first <= day and (last is None or day <= last):
            out.append(w)
    return out


def sync(wh: Warehouse, path: Path = PRICING_PATH) -> int:
    """Replace the pricing table with the file's contents, atomically. Returns rows written."""
    import pyarrow as pa

    from shared import schemas

    rows = load(path)
    table = pa.Table.from_pylist(rows, schema=schemas.get("genai_model_pricing").arrow_schema())
    everything = Slice(equals={}, date_column="effective_from", start_date=dt.date(1900, 1, 1), end_date=dt.date(9999, 12, 31))
    return wh.replace_slices("organizations", {"genai_model_pricing": (everything, table.to_batches())})["genai_model_pricing"]
