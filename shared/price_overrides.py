"""Negotiated GenAI prices: an organization's overrides of the list prices in genai_pricing.yml.

An override is, for dates [effective_from, effective_to):
- a percentage off (`discount_pct`) for a whole provider or one model family, applied to the list
  price of every token class (batch and tiers such as DeepSeek off_peak included); or
- explicit prices per 1M tokens (`prices`) for one model family, keyed like genai_pricing.yml
  (input, cached_input, cache_write, cache_write_1h, output, and batch_* for Batch API usage), for
  the token classes it names. Batch usage reads only the batch_* keys.

Precedence, per usage row, token class and usage date (`sp_genai_1_consolidate_usage_daily`):
  1. an explicit price for the row's model family that names the class;
  2. else a percentage off for the model family;
  3. else a percentage off for the provider;
  4. else the list price.
An explicit price beats a percentage, a model family beats the provider. An override re-prices only
usage that has a list price: ListCost stays at list, so a model with no list price stays unpriced.
The result goes to ContractedUnitPrice/ContractedCost, and to BilledCost/EffectiveCost where the cost is
computed (a provider-billed amount still wins there).

Storage (`organizations.genai_price_overrides`): one row per version, never edited or deleted.
`add` writes version 1; `end(id, effective_to)` writes version n+1 with an earlier end (an end
equal to effective_from means "never applied"). Readers take each override's highest version. Two
overrides of the same kind (percentage or explicit) and scope (provider and model family) may not
overlap in time, so on any day at most one of each applies (checked in the insert itself, under the
org's claim: shared.warehouse.base.Warehouse.claim).

Nothing already written changes when an override is added or ended: a slice is re-priced when it is
run again, and a re-run of old dates prices them with the overrides as they stand then.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from shared.inputs import FieldInvalid
from shared.naming import table_ref, validate_org_slug
from shared.pricing import RATE_FIELDS

META = "organizations"
TABLE = "genai_price_overrides"
FIELDS = ("provider", "model_family", "discount_pct", "prices", "effective_from", "effective_to", "note")
PCT_PLACES = Decimal("0.0001")  # a percentage has at most 4 decimals, so 1 - pct/100 is exact in NUMERIC
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COLUMN_TYPES = {
    "override_id": "STRING", "version": "INT64", "org_slug": "STRING", "provider": "STRING",
    "model_family": "STRING", "discount_pct": "NUMERIC",
    **{col: "NUMERIC" for col in RATE_FIELDS.values()},
    "effective_from": "DATE", "effective_to": "DATE", "note": "STRING", "created_at": "TIMESTAMP",
}
_FAR = "DATE '9999-12-31'"


class OverrideInvalid(FieldInvalid):
    """An override document or change is invalid; `field` names the offending field."""


class UnknownOverride(LookupError):
    pass


class OverrideConflict(RuntimeError):
    """Another override of the same kind and scope is in effect on some of the same days."""


# -- validation ------------------------------------------------------------------------------------
def genai_providers() -> tuple[str, ...]:
    from shared import registry

    return tuple(sorted({p.provider for p in registry.pipelines().values() if p.category == "genai"}))


def _money(field: str, value: Any) -> Decimal:
    from shared import subscriptions

    try:
        return subscriptions.parse_money(field, value)
    except subscriptions.SubscriptionInvalid as e:
        raise OverrideInvalid(e.field, e.message) from None


def _date(field: str, value: Any) -> dt.date:
    from shared import subscriptions

    try:
        return subscriptions.parse_date(field, value)
    except subscriptions.SubscriptionInvalid as e:
        raise OverrideInvalid(e.field, e.message) from None


def _family(value: Any) -> str | None:
    from shared.models import model_family

    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OverrideInvalid("model_family", "must be a model family such as \"gpt-4o\" (or absent for the provider)")
    value = value.strip()
    if len(value) > 200 or _CONTROL.search(value):
        raise OverrideInvalid("model_family", "must be at most 200 printable characters")
    if model_family(value) != value:
        raise OverrideInvalid("model_family", f"{value!r} is a dated snapshot; its family is "
                              f"{model_family(value)!r} (an override applies to a whole family)")
    return value


def validate(doc: Any) -> dict[str, Any]:
    """An add document, checked and normalized (Decimal money, date objects)."""
    if not isinstance(doc, Mapping):
        raise OverrideInvalid("body", "must be a JSON object")
    for key in doc:
        if key not in FIELDS:
            raise OverrideInvalid(str(key), f"unknown field; allowed: {', '.join(FIELDS)}")
    provider = doc.get("provider")
    if provider not in genai_providers():
        raise OverrideInvalid("provider", f"must be one of {', '.join(genai_providers())}, got {provider!r}")
    family = _family(doc.get("model_family"))
    pct, prices = doc.get("discount_pct"), doc.get("prices")
    if (pct is None) == (prices is None):
        raise OverrideInvalid("discount_pct", "give either discount_pct (a percentage off the list price) or "
                              "prices (explicit prices per 1M tokens), not both or neither")
    rates: dict[str, Decimal] = {}
    if pct is not None:
        pct = _money("discount_pct", pct)
        if not Decimal(0) < pct <= Decimal(100):
            raise OverrideInvalid("discount_pct", f"must be more than 0 and at most 100, got {pct}")
        if pct != pct.quantize(PCT_PLACES):
            raise OverrideInvalid("discount_pct", "has more than 4 decimal places")
    else:
        if family is None:
            raise OverrideInvalid("model_family", "explicit prices are for one model family; name it")
        if not isinstance(prices, Mapping) or not prices:
            raise OverrideInvalid("prices", f"must map token classes ({', '.join(RATE_FIELDS)}) to prices per 1M tokens")
        for key, value in prices.items():
            if key not in RATE_FIELDS:
                raise OverrideInvalid(f"prices.{key}", f"unknown token class; allowed: {', '.join(RATE_FIELDS)}")
            rates[key] = _money(f"prices.{key}", value)
    if doc.get("effective_from") is None:
        raise OverrideInvalid("effective_from", "is required (the first day the price applies)")
    start = _date("effective_from", doc["effective_from"])
    end = _date("effective_to", doc["effective_to"]) if doc.get("effective_to") is not None else None
    if end is not None and end <= start:
        raise OverrideInvalid("effective_to", f"{end} is not after effective_from {start} (it is exclusive)")
    note = doc.get("note")
    if note is not None:
        if not isinstance(note, str) or len(note) > 200 or _CONTROL.search(note):
            raise OverrideInvalid("note", "must be text of at most 200 printable characters")
        note = note.strip() or None
    return {"provider": provider, "model_family": family, "discount_pct": pct,
            **{col: rates.get(key) for key, col in RATE_FIELDS.items()},
            "effective_from": start, "effective_to": end, "note": note}


# -- public view -----------------------------------------------------------------------------------
def _text(d: Decimal | None) -> str | None:
    return None if d is None else format(Decimal(d).normalize(), "f")


def _iso(v):
    return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API-facing record of one version: JSON-ready, money as decimal strings."""
    prices = {key: _text(row[col]) for key, col in RATE_FIELDS.items() if row.get(col) is not None}
    return {
        "override_id": row["override_id"], "org": row["org_slug"], "provider": row["provider"],
        "model_family": row["model_family"], "kind": "discount" if row["discount_pct"] is not None else "price",
        "discount_pct": _text(row["discount_pct"]), "prices": prices or None,
        "effective_from": _iso(row["effective_from"]), "effective_to": _iso(row["effective_to"]),
        "note": row.get("note"), "version": row["version"], "created_at": _iso(row["created_at"]),
    }


# -- storage ---------------------------------------------------------------------------------------
def _warehouse(wh):
    if wh is not None:
        return wh
    from shared import runtime

    return runtime.get().warehouse


def latest_sql(alias: str = "cur") -> str:
    """Each override of @org_slug at its highest version, as a subquery named `alias`."""
    return (f"(SELECT o.*, ROW_NUMBER() OVER (PARTITION BY o.override_id ORDER BY o.version DESC) AS latest "
            f"FROM {table_ref(META, TABLE)} AS o WHERE o.org_slug = @org_slug) AS {alias}")


def _insert(wh, row: dict[str, Any], guard: str) -> bool:
    cols = [*_COLUMN_TYPES]
    values = ", ".join(f"CAST(@{c} AS {_COLUMN_TYPES[c]})" for c in cols)
    return wh.claim(row["org_slug"], f"INSERT INTO {table_ref(META, TABLE)} ({', '.join(cols)}) "
                    f"SELECT {values} FROM (SELECT 1 AS one) AS single WHERE {guard}", row)


def load_rows(wh, org: str, override_id: str | None = None, *, history: bool = False) -> list[dict[str, Any]]:
    validate_org_slug(org)
    sql = f"SELECT * FROM {latest_sql()} WHERE TRUE"
    params: dict[str, Any] = {"org_slug": org}
    if not history:
        sql += " AND cur.latest = 1"
    if override_id is not None:
        sql += " AND cur.override_id = @override_id"
        params["override_id"] = override_id
    return wh.query(sql + " ORDER BY cur.provider, cur.model_family, cur.effective_from, cur.override_id, "
                    "cur.version", params)


def _current(wh, org: str, override_id: Any) -> dict[str, Any]:
    rows = load_rows(wh, org, override_id) if isinstance(override_id, str) and override_id else []
    if not rows:
        raise UnknownOverride(f"no price override {override_id!r} for org {org!r}")
    return rows[0]


def add(org: str, doc: Any, *, wh=None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Validate `doc` and store it as version 1; return its public record."""
    from shared.tenants import get_org

    wh = _warehouse(wh)
    validate_org_slug(org)
    clean = validate(doc)
    get_org(wh, org)  # UnknownOrg when the org does not exist
    row = {"override_id": f"ovr_{uuid.uuid4().hex[:16]}", "version": 1, "org_slug": org, **clean,
           "created_at": now or dt.datetime.now(dt.timezone.utc)}
    same_scope = ("cur.latest = 1 AND cur.provider = @provider "
                  "AND IFNULL(cur.model_family, '') = IFNULL(CAST(@model_family AS STRING), '') "
                  "AND (cur.discount_pct IS NULL) = (CAST(@discount_pct AS NUMERIC) IS NULL) "
                  f"AND cur.effective_from < IFNULL(cur.effective_to, {_FAR}) "
                  f"AND cur.effective_from < IFNULL(CAST(@effective_to AS DATE), {_FAR}) "
                  f"AND CAST(@effective_from AS DATE) < IFNULL(cur.effective_to, {_FAR})")
    if not _insert(wh, row, f"NOT EXISTS (SELECT 1 FROM {latest_sql()} WHERE {same_scope})"):
        clash = wh.query(f"SELECT cur.override_id, cur.effective_from, cur.effective_to FROM {latest_sql()} "
                         f"WHERE {same_scope} ORDER BY cur.effective_from LIMIT 1", row)
        what = f"{clash[0]['override_id']} ({clash[0]['effective_from']}..{clash[0]['effective_to'] or 'open'})" \
            if clash else "another override"
        kind = "percentage" if row["discount_pct"] is not None else "explicit price"
        raise OverrideConflict(f"{what} is a {kind} override for the same provider and model family on some of "
                               "these days; end it first (`cloudact prices override remove`) or pick other dates")
    return public(row)


def list_overrides(org: str, *, wh=None) -> list[dict[str, Any]]:
    """Every override of `org` as it stands (ended ones included, with their end)."""
    return [public(r) for r in load_rows(_warehouse(wh), org)]


def get(org: str, override_id: str, *, history: bool = False, wh=None) -> dict[str, Any]:
    wh = _warehouse(wh)
    out = public(_current(wh, org, override_id))
    if history:
        out["history"] = [public(r) for r in load_rows(wh, org, override_id, history=True)]
    return out


def end(org: str, override_id: str, effective_to: Any, *, wh=None, now: dt.datetime | None = None) -> dict[str, Any]:
    """End an override: from `effective_to` (exclusive end, the first day it no longer applies) the list
    price or a lower-precedence override applies again. An end only moves earlier; an end on
    effective_from removes it from every date."""
    wh = _warehouse(wh)
    if effective_to is None:
        raise OverrideInvalid("effective_to", "is required (the first day the override no longer applies)")
    day = _date("effective_to", effective_to)
    cur = _current(wh, org, override_id)
    if day < cur["effective_from"]:
        raise OverrideInvalid("effective_to", f"{day} is before the override's effective_from {cur['effective_from']}")
    if cur["effective_to"] is not None and day >= cur["effective_to"]:
        raise OverrideInvalid("effective_to", f"{override_id} already ends on {cur['effective_to']}; an end can "
                              "only move earlier (add a new override for later dates)")
    row = {c: cur[c] for c in _COLUMN_TYPES}
    row.update(version=cur["version"] + 1, effective_to=day, created_at=now or dt.datetime.now(dt.timezone.utc))
    guard = (f"NOT EXISTS (SELECT 1 FROM {table_ref(META, TABLE)} AS v WHERE v.org_slug = @org_slug "
             "AND v.override_id = @override_id AND v.version >= @version)")
    if not _insert(wh, row, guard):
        raise OverrideConflict(f"{override_id} was changed at the same time; read it again and retry")
    return public(row)
