"""Deterministic Google Cloud Billing *detailed* export rows (gcp_billing_export_resource_v1_<BA>) for tests.

Rows are Python dicts shaped exactly like the BigQuery export (nested STRUCTs as dicts, REPEATED fields as
lists), so `to_table(rows)` gives the Arrow form a Parquet dump of the table or `RowIterator.to_arrow()`
returns. Money is FLOAT64 as in the export, but every amount has at most 9 decimals, so `net_by_invoice_month`
(exact Decimal sums) is the invoice total a converter must reproduce to the cent (in fact exactly).

What the data holds, per usage day (4 hourly windows at 00, 06, 12 and 18 UTC):
* projects acme-prod, acme-data, acme-ml (with project labels) in one billing account;
* Compute Engine N2 cores with a SUSTAINED_USAGE_DISCOUNT credit (acme-prod) and with a
  COMMITTED_USAGE_DISCOUNT credit (acme-data), a Spot core SKU, and a daily CUD fee
  ("Commitment v1: ..." SKU, subscription.instance_id = the commitment);
* Cloud Storage (tiered price: price.tier_start_amount > 0, so list price x quantity != cost_at_list) with a
  FREE_TIER credit; BigQuery analysis at a negotiated price (effective < list) with a FREE_TIER credit;
* Vertex AI (Gemini on Vertex) and Gemini API rows, the latter with PROMOTION and FREE_TIER credits on one row;
* a Marketplace row (transaction_type THIRD_PARTY_RESELLER, seller_name) and, per project, a daily tax row
  (cost_type 'tax'); on the 1st of a month a rounding_error row and a GOODWILL adjustment (cost_type
  'adjustment').
invoice.month is the month of usage_start_time in US/Pacific, so the 00:00 and 06:00 UTC windows of the 1st of a
month belong to the previous invoice month, as in the real export. export_time = usage end + 4 h.

`restatement(day, export_time)` is a later export batch for one usage day: a complete negation of that day's
acme-prod Compute Engine rows (adjustment_info mode COMPLETE_NEGATION), corrected rows at 75 % and one
late-arriving Cloud Storage row, all with the later export_time, as Google appends corrections.
"""
from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa

BILLING_ACCOUNT = "01A2B3-C4D5E6-F7A8B9"
PACIFIC = ZoneInfo("America/Los_Angeles")
UTC = dt.UTC
HOURS = (0, 6, 12, 18)
COMMITMENT = "projects/acme-data/regions/us-central1/commitments/n2-cud-1y"

COMPUTE = {"id": "6F81-5844-456A", "description": "Compute Engine"}
STORAGE = {"id": "95FF-2EF5-5EA1", "description": "Cloud Storage"}
BIGQUERY = {"id": "24E6-581D-38E5", "description": "BigQuery"}
VERTEX = {"id": "C7E2-9256-1C43", "description": "Vertex AI"}
GEMINI = {"id": "AEFA-B6F2-2E6B", "description": "Gemini API"}
MARKET = {"id": "A1B2-C3D4-E5F6", "description": "Observa APM (Marketplace)"}
TAX_SERVICE = {"id": "0000-0000-0000", "description": "Tax"}
SUPPORT = {"id": "2062-016F-44A2", "description": "Support"}

PROJECTS = {
    "acme-prod": {"id": "acme-prod", "number": "111111111111", "name": "Acme Production",
                  "labels": [{"key": "env", "value": "prod"}, {"key": "CostCenter", "value": "cc-100"}],
                  "ancestry_numbers": "/123456789/111111111111/", "ancestors": [
                      {"resource_name": "projects/111111111111", "display_name": "Acme Production"},
                      {"resource_name": "organizations/123456789", "display_name": "acme.example"}]},
    "acme-data": {"id": "acme-data", "number": "222222222222", "name": "Acme Data",
                  "labels": [{"key": "env", "value": "prod"}, {"key": "team", "value": "data"}],
                  "ancestry_numbers": "/123456789/222222222222/", "ancestors": []},
    "acme-ml": {"id": "acme-ml", "number": "333333333333", "name": "Acme ML",
                "labels": [{"key": "env", "value": "dev"}],
                "ancestry_numbers": "/123456789/333333333333/", "ancestors": []},
}


def export_schema() -> pa.Schema:
    """The detailed export's columns as Arrow types (FLOAT64 money, NUMERIC price struct, nested records)."""
    kv = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
    ts = pa.timestamp("us", tz="UTC")
    num = pa.decimal128(38, 9)
    return pa.schema([
        ("billing_account_id", pa.string()),
        ("service", pa.struct([("id", pa.string()), ("description", pa.string())])),
        ("sku", pa.struct([("id", pa.string()), ("description", pa.string())])),
        ("usage_start_time", ts),
        ("usage_end_time", ts),
        ("project", pa.struct([
            ("id", pa.string()), ("number", pa.string()), ("name", pa.string()), ("labels", kv),
            ("ancestry_numbers", pa.string()),
            ("ancestors", pa.list_(pa.struct([("resource_name", pa.string()), ("display_name", pa.string())])))])),
        ("labels", kv),
        ("system_labels", kv),
        ("location", pa.struct([("location", pa.string()), ("country", pa.string()), ("region", pa.string()),
                                ("zone", pa.string())])),
        ("resource", pa.struct([("name", pa.string()), ("global_name", pa.string())])),
        ("tags", pa.list_(pa.struct([("key", pa.string()), ("value", pa.string()), ("inherited", pa.bool_()),
                                     ("namespace", pa.string())]))),
        ("price", pa.struct([("effective_price", num), ("tier_start_amount", num), ("unit", pa.string()),
                             ("pricing_unit_quantity", num), ("list_price", num),
                             ("effective_price_default", num), ("list_price_consumption_model", num)])),
        ("subscription", pa.struct([("instance_id", pa.string())])),
        ("transaction_type", pa.string()),
        ("seller_name", pa.string()),
        ("export_time", ts),
        ("cost", pa.float64()),
        ("currency", pa.string()),
        ("currency_conversion_rate", pa.float64()),
        ("usage", pa.struct([("amount", pa.float64()), ("unit", pa.string()),
                             ("amount_in_pricing_units", pa.float64()), ("pricing_unit", pa.string())])),
        ("credits", pa.list_(pa.struct([("name", pa.string()), ("amount", pa.float64()), ("full_name", pa.string()),
                                        ("id", pa.string()), ("type", pa.string())]))),
        ("invoice", pa.struct([("month", pa.string()), ("publisher_type", pa.string())])),
        ("cost_type", pa.string()),
        ("adjustment_info", pa.struct([("id", pa.string()), ("description", pa.string()), ("mode", pa.string()),
                                       ("type", pa.string())])),
        ("cost_at_list", pa.float64()),
    ])


def _d(x) -> Decimal:
    return Decimal(str(x))


def _f(d: Decimal, places: int = 9) -> float:
    return float(d.quantize(Decimal(1).scaleb(-places)))


def _invoice_month(start: dt.datetime) -> str:
    return start.astimezone(PACIFIC).strftime("%Y%m")


def _credit(name, amount: Decimal, ctype, cid="", full_name=None):
    return {"name": name, "amount": _f(amount), "full_name": full_name or name, "id": cid, "type": ctype}


def _row(project, service, sku_id, sku_desc, start, hours, *, amount, unit, pricing_amount, pricing_unit,
         list_price, effective_price=None, tier_start=Decimal(0), region="us-central1", zone=None,
         resource=None, labels=(), system_labels=(), credits=(), cost=None, cost_type="regular", extra=None):
    end = start + dt.timedelta(hours=hours)
    eff = list_price if effective_price is None else effective_price
    q = _d(pricing_amount)
    cost_at_list = q * list_price if tier_start == 0 else q * list_price - tier_start * list_price
    cost_d = cost if cost is not None else (q * eff if tier_start == 0 else (q - tier_start) * eff)
    p = PROJECTS[project] if project else None
    row = {
        "billing_account_id": BILLING_ACCOUNT,
        "service": dict(service),
        "sku": {"id": sku_id, "description": sku_desc},
        "usage_start_time": start,
        "usage_end_time": end,
        "project": dict(p) if p else None,
        "labels": [{"key": k, "value": v} for k, v in labels],
        "system_labels": [{"key": k, "value": v} for k, v in system_labels],
        "location": ({"location": region, "country": "US" if region.startswith("us") else None,
                      "region": region if region not in ("global", "us") else None, "zone": zone}
                     if region else None),
        "resource": ({"name": resource[0], "global_name": resource[1]} if resource else None),
        "tags": [],
        "price": {"effective_price": eff, "tier_start_amount": tier_start, "unit": pricing_unit,
                  "pricing_unit_quantity": Decimal(1), "list_price": list_price,
                  "effective_price_default": eff, "list_price_consumption_model": list_price},
        "subscription": None,
        "transaction_type": "GOOGLE",
        "seller_name": None,
        "export_time": end + dt.timedelta(hours=4),
        "cost": _f(cost_d),
        "currency": "USD",
        "currency_conversion_rate": 1.0,
        "usage": {"amount": float(amount), "unit": unit, "amount_in_pricing_units": float(pricing_amount),
                  "pricing_unit": pricing_unit},
        "credits": list(credits),
        "invoice": {"month": _invoice_month(start), "publisher_type": "GOOGLE"},
        "cost_type": cost_type,
        "adjustment_info": None,
        "cost_at_list": _f(cost_at_list),
    }
    row.update(extra or {})
    return row


export_row = _row  # one export row, for other generators (stubs/model_spend_data.py)


N2_SKU = ("BB77-5FDA-2A5E", "N2 Instance Core running in Americas")
N2_CORE_HOUR = Decimal("0.031611")


def _core_hour(project: str, sku: tuple[str, str], start: dt.datetime, cores: Decimal, list_price: Decimal, zone: str,
               instance: str, instance_id: str, **extra) -> dict:
    """An hour of Compute Engine cores on one instance: usage in core-seconds, priced per core-hour."""
    return _row(project, COMPUTE, *sku, start, 1, amount=cores * 3600, unit="seconds", pricing_amount=cores,
                pricing_unit="hour", list_price=list_price, zone=zone,
                resource=(instance,
                          f"//compute.googleapis.com/projects/{project}/zones/{zone}/instances/{instance_id}"),
                **extra)


def _day_rows(day: dt.date, rng: random.Random) -> list[dict]:
    rows: list[dict] = []
    for h in HOURS:
        start = dt.datetime(day.year, day.month, day.day, h, tzinfo=UTC)
        # Compute Engine N2 cores in acme-prod, sustained use discount of 20 %
        cores = Decimal(rng.randint(8, 32))
        cost = cores * N2_CORE_HOUR
        rows.append(_core_hour("acme-prod", N2_SKU, start, cores, N2_CORE_HOUR, "us-central1-a", "web-1",
                               "1234567890123",
                               labels=[("app", "web"), ("Env", "production")],
                               system_labels=[("compute.googleapis.com/machine_spec", "n2-standard-8")],
                               credits=[_credit("Sustained Usage Discount", -(cost * Decimal("0.2")),
                                                "SUSTAINED_USAGE_DISCOUNT", "")]))
        # acme-data cores covered by the committed use discount
        cores = Decimal(rng.randint(16, 24))
        cost = cores * N2_CORE_HOUR
        rows.append(_core_hour("acme-data", N2_SKU, start, cores, N2_CORE_HOUR, "us-central1-b", "etl-1",
                               "2234567890123",
                               labels=[("app", "etl")],
                               credits=[_credit("Committed use discount: CPU", -cost, "COMMITTED_USAGE_DISCOUNT",
                                                COMMITMENT)]))
        # Spot cores
        cores = Decimal(rng.randint(1, 4))
        rows.append(_core_hour("acme-ml", ("C2D8-40C1-7F6D", "Spot Preemptible N2 Instance Core running in Americas"),
                               start, cores, Decimal("0.007650"), "us-central1-c", "train-spot", "3234567890123"))
        # Cloud Storage, tiered: the first 5 GiB-months are free
        gib_month = Decimal(rng.randint(40_000, 90_000)) / 1000 / 30 / 4
        gib_month = gib_month.quantize(Decimal("0.000001"))
        rows.append(_row("acme-ml", STORAGE, "E5F0-6A5D-7BAD", "Standard Storage US Multi-region", start, 1,
                         amount=gib_month * Decimal(1 << 30) * 2_592_000, unit="byte-seconds",
                         pricing_amount=gib_month, pricing_unit="gibibyte month", list_price=Decimal("0.026"),
                         tier_start=Decimal("0.5"), region="us",
                         resource=("acme-ml-datasets", "//storage.googleapis.com/projects/_/buckets/acme-ml-datasets"),
                         labels=[("team", "ml")],
                         credits=[_credit("FreeTier:Cloud Storage", -Decimal("0.0013"), "FREE_TIER",
                                          "FreeTier:cloud-storage")]))
        # BigQuery analysis at a negotiated price
        tib = (Decimal(rng.randint(100, 900)) / 1000).quantize(Decimal("0.001"))
        rows.append(_row("acme-data", BIGQUERY, "3362-E469-6BEF", "Analysis", start, 1,
                         amount=tib * Decimal(1 << 40), unit="bytes", pricing_amount=tib, pricing_unit="tebibyte",
                         list_price=Decimal("6.25"), effective_price=Decimal("5.625"), region="US",
                         labels=[("dashboard", "finance")],
                         credits=[_credit("FreeTier:BigQuery", -Decimal("0.05"), "FREE_TIER", "FreeTier:bigquery")]))
        # Gemini on Vertex AI
        kchars = Decimal(rng.randint(200, 2_000))
        rows.append(_row("acme-ml", VERTEX, "FA4C-8E1D-1F7B", "Gemini 1.5 Flash Text Input - Predictions", start, 1,
                         amount=kchars * 1000, unit="count", pricing_amount=kchars, pricing_unit="1000 count",
                         list_price=Decimal("0.00001875"), labels=[("model", "gemini-1.5-flash")]))
        # Gemini API with a promotion (free trial) and a free tier credit on the same row
        mtok = (Decimal(rng.randint(1_000, 9_000)) / 1000).quantize(Decimal("0.001"))
        cost = mtok * Decimal("0.30")
        rows.append(_row("acme-ml", GEMINI, "5C4A-1C6E-9B2D", "Gemini 2.5 Flash input tokens", start, 1,
                         amount=mtok * 1_000_000, unit="token", pricing_amount=mtok, pricing_unit="1000000 token",
                         list_price=Decimal("0.30"), region="global",
                         credits=[_credit("FreeTier:Gemini API", -Decimal("0.10"), "FREE_TIER", "FreeTier:gemini"),
                                  _credit("Free Trial", -(cost - Decimal("0.10")), "PROMOTION",
                                          "promotions/free-trial-300", "Free trial credit: $300")]))
    start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
    # Daily CUD fee (a commitment fee SKU, cost_type regular) -> Purchase
    rows.append(_row("acme-data", COMPUTE, "0DFA-3D5B-C2B6", "Commitment v1: N2 Cpu in Americas for 1 Year", start, 24,
                     amount=Decimal(20 * 24 * 3600), unit="seconds", pricing_amount=Decimal(480), pricing_unit="hour",
                     list_price=Decimal("0.019915"),
                     extra={"subscription": {"instance_id": COMMITMENT}}))
    # Marketplace SaaS resold by Google
    rows.append(_row("acme-prod", MARKET, "7A1C-22D0-90F1", "Observa APM host-hour", start, 24,
                     amount=Decimal(48), unit="hour", pricing_amount=Decimal(48), pricing_unit="hour",
                     list_price=Decimal("0.05"), region=None,
                     extra={"transaction_type": "THIRD_PARTY_RESELLER", "seller_name": "Observa Inc.",
                            "invoice": {"month": _invoice_month(start), "publisher_type": "PARTNER"}}))
    # Tax per project per day: 7.5 % of that project's regular cost of the day
    by_project: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        by_project[r["project"]["id"]] += _d(r["cost"])
    for project, base in sorted(by_project.items()):
        tax = _row(project, TAX_SERVICE, "0000-TAX0-0001", "Tax: US sales tax", start, 24, amount=0, unit=None,
                   pricing_amount=0, pricing_unit=None, list_price=Decimal(0), region=None,
                   cost=(base * Decimal("0.075")).quantize(Decimal("0.000001")), cost_type="tax")
        tax.update(usage=None, price=None, cost_at_list=tax["cost"])
        rows.append(tax)
    if day.day == 1:
        rounding = _row(None, SUPPORT, "0000-RND0-0001", "Rounding error", start, 24, amount=0, unit=None,
                        pricing_amount=0, pricing_unit=None, list_price=Decimal(0), region=None,
                        cost=Decimal("-0.000003"), cost_type="rounding_error")
        rounding.update(usage=None, price=None, cost_at_list=None, project=None)
        rows.append(rounding)
        goodwill = _row("acme-prod", SUPPORT, "0000-ADJ0-0001", "Goodwill credit", start, 24, amount=0, unit=None,
                        pricing_amount=0, pricing_unit=None, list_price=Decimal(0), region=None,
                        cost=Decimal("-5.00"), cost_type="adjustment")
        goodwill.update(usage=None, price=None, cost_at_list=None,
                        adjustment_info={"id": "adj-goodwill-1", "description": "Service credit for incident 42",
                                         "mode": "MANUAL_ADJUSTMENT", "type": "GOODWILL"})
        rows.append(goodwill)
    return rows


def generate(start: dt.date, end: dt.date, seed: int = 7) -> list[dict]:
    """Every export row whose usage starts on start..end (inclusive). A day's rows do not depend on the window."""
    rows = []
    day = start
    while day <= end:
        rows.extend(_day_rows(day, random.Random(f"{seed}:{day.isoformat()}")))
        day += dt.timedelta(days=1)
    return rows


def restatement(day: dt.date, export_time: dt.datetime, seed: int = 7) -> list[dict]:
    """A later export batch for `day`: negate acme-prod's Compute Engine rows, re-add them at 75 %, add late usage."""
    out = []
    for i, r in enumerate(_day_rows(day, random.Random(f"{seed}:{day.isoformat()}"))):
        if r["service"]["id"] != COMPUTE["id"] or r["project"]["id"] != "acme-prod" or r["cost_type"] != "regular":
            continue
        for mode, factor in (("COMPLETE_NEGATION", Decimal(-1)), ("COMPLETE_NEGATION_WITH_REMONETIZATION",
                                                                   Decimal("0.75"))):
            c = dict(r)
            c["cost"] = _f(_d(r["cost"]) * factor)
            c["cost_at_list"] = _f(_d(r["cost_at_list"]) * factor)
            c["usage"] = {**r["usage"], "amount": _f(_d(r["usage"]["amount"]) * factor),
                          "amount_in_pricing_units": _f(_d(r["usage"]["amount_in_pricing_units"]) * factor)}
            c["credits"] = [{**cr, "amount": _f(_d(cr["amount"]) * factor)} for cr in r["credits"]]
            c["adjustment_info"] = {"id": f"corr-{day:%Y%m%d}-{i}", "description": "Usage correction",
                                    "mode": mode, "type": "USAGE_CORRECTION"}
            c["export_time"] = export_time
            out.append(c)
    start = dt.datetime(day.year, day.month, day.day, 20, tzinfo=UTC)
    late = _row("acme-prod", STORAGE, "E5F0-6A5D-7BAD", "Standard Storage US Multi-region", start, 1,
                amount=Decimal(1 << 30) * 2_592_000, unit="byte-seconds", pricing_amount=Decimal(1),
                pricing_unit="gibibyte month", list_price=Decimal("0.026"), region="us",
                resource=("acme-prod-logs", "//storage.googleapis.com/projects/_/buckets/acme-prod-logs"))
    late["export_time"] = export_time
    out.append(late)
    return out


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=export_schema())


def write_parquet(rows: list[dict], folder: Path, name: str = "export-000000000000.parquet") -> Path:
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(to_table(rows), path)
    return path


def net_cost(row: dict) -> Decimal:
    """cost + SUM(credits.amount): what the row adds to the invoice."""
    return _d(row["cost"]) + sum((_d(c["amount"]) for c in row["credits"]), Decimal(0))


def net_by_invoice_month(rows: list[dict]) -> dict[dt.date, Decimal]:
    out: dict[dt.date, Decimal] = defaultdict(Decimal)
    for r in rows:
        m = r["invoice"]["month"]
        out[dt.date(int(m[:4]), int(m[4:]), 1)] += net_cost(r)
    return dict(out)


def credits_by_type(rows: list[dict]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        for c in r["credits"]:
            out[c["type"]] += _d(c["amount"])
    return dict(out)
