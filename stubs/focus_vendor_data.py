"""FOCUS files as vendors outside the big clouds publish them, for focus/file/import (jobs/cloud/focus_file.py).

Three made-up vendors, each writing the columns of its FOCUS version and nothing of later ones:
  * northwind: a data platform, FOCUS 1.0, gzip CSV, one file per day; a marketplace row of a partner
    (PublisherName of its own), a credit and tax;
  * contoso:   a SaaS observability vendor, FOCUS 1.2, Parquet (costs as decimal128, tags as a map); an
    invoice issuer other than itself (its reseller) and a one-time purchase;
  * fabrikam:  an AI platform, FOCUS 1.3, CSV, with ServiceProviderName and HostProviderName but no ProviderName
    (deprecated in 1.3), hosted on another cloud.
Amounts are exact decimal text; every figure a test expects is computed from `charges`, never read back.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from decimal import Decimal
from pathlib import Path

from shared.focus import FOCUS_COLUMNS

# A version's columns: FOCUS 1.2 is 1.3 without the 8 columns 1.3 added, 1.0 is 1.2 without what 1.1 and 1.2 added.
ADDED_IN_13 = {"ServiceProviderName", "HostProviderName", "AllocatedMethodDetails", "AllocatedMethodId",
               "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags", "ContractApplied"}
ADDED_IN_11_12 = {"BillingAccountType", "SubAccountType", "InvoiceId", "CapacityReservationId",
                  "CapacityReservationStatus", "CommitmentDiscountQuantity", "CommitmentDiscountUnit",
                  "ServiceSubcategory", "SkuMeter", "SkuPriceDetails", "PricingCurrency",
                  "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice"}
FOCUS_13 = [c.name for c in FOCUS_COLUMNS]
FOCUS_12 = [c for c in FOCUS_13 if c not in ADDED_IN_13]
FOCUS_10 = [c for c in FOCUS_12 if c not in ADDED_IN_11_12]
MONEY = {c.name for c in FOCUS_COLUMNS if c.type == "NUMERIC"}

VENDORS = {
    "northwind": {"version": "1.0", "columns": FOCUS_10, "ProviderName": "Northwind Data Cloud",
                  "InvoiceIssuerName": "Northwind Data Cloud, Inc.", "BillingAccountId": "nw-org-4711",
                  "BillingCurrency": "USD", "SubAccountId": "nw-ws-analytics", "RegionId": "eu-central"},
    "contoso": {"version": "1.2", "columns": FOCUS_12, "ProviderName": "Contoso Observability",
                "InvoiceIssuerName": "Litware Reseller GmbH", "BillingAccountId": "cts-acct-88",
                "BillingCurrency": "EUR", "SubAccountId": "cts-team-platform", "RegionId": None},
    "fabrikam": {"version": "1.3", "columns": [c for c in FOCUS_13 if c != "ProviderName"],
                 "ServiceProviderName": "Fabrikam AI", "HostProviderName": "Microsoft",
                 "InvoiceIssuerName": "Fabrikam AI Ltd", "BillingAccountId": "fab-7", "BillingCurrency": "USD",
                 "SubAccountId": None, "RegionId": "westeurope"},
}


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def day_periods(day: dt.date) -> dict[str, str]:
    """A daily charge's FOCUS period columns: the day, and its calendar month as the billing period."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    month = start.replace(day=1)
    return {"ChargePeriodStart": iso(start), "ChargePeriodEnd": iso(start + dt.timedelta(days=1)),
            "BillingPeriodStart": iso(month), "BillingPeriodEnd": iso((month + dt.timedelta(days=32)).replace(day=1))}


def charges(vendor: str, day: dt.date) -> list[dict]:
    """One usage day of `vendor`, in FOCUS 1.3 names (the writer keeps its version's columns)."""
    v = VENDORS[vendor]
    base = {k: v.get(k) for k in ("ProviderName", "ServiceProviderName", "HostProviderName", "InvoiceIssuerName",
                                  "BillingAccountId", "BillingCurrency", "SubAccountId", "RegionId")}
    base.update(day_periods(day), PublisherName=v.get("ProviderName") or v.get("ServiceProviderName"),
                BillingAccountName=f"{vendor} account", BillingAccountType="Organization",
                SubAccountName=v["SubAccountId"] and f"{v['SubAccountId']} name",
                SubAccountType=v["SubAccountId"] and "Workspace", InvoiceId=f"{vendor}-{day:%Y%m}",
                PricingCurrency=v["BillingCurrency"], RegionName=v["RegionId"] and v["RegionId"].title())
    n = Decimal(day.day)

    def usage(service, category, sub, quantity, price, unit, **kw):
        cost = quantity * price
        return dict(base, ChargeCategory="Usage", ChargeFrequency="Usage-Based", ServiceName=service,
                    ServiceCategory=category, ServiceSubcategory=sub, ChargeDescription=f"{service} {day}",
                    PricingQuantity=str(quantity), PricingUnit=unit, ConsumedQuantity=str(quantity),
                    ConsumedUnit=unit, ListUnitPrice=str(price), ContractedUnitPrice=str(price),
                    BilledCost=str(cost), EffectiveCost=str(cost), ListCost=str(cost), ContractedCost=str(cost),
                    PricingCategory="Standard", SkuId=f"{vendor}-{service}", SkuPriceId=f"{vendor}-{service}-p",
                    SkuMeter=service, ResourceId=f"{vendor}:{service.lower().replace(' ', '-')}",
                    ResourceName=service, Tags=json.dumps({"team": "data", "CostCenter": f"cc-{day.day % 3}"}),
                    **kw)

    def fee(category, description, billed, **kw):
        return dict(base, ChargeCategory=category, ChargeFrequency="One-Time", ServiceName=description,
                    ServiceCategory="Other", ServiceSubcategory="Other (Other)", ChargeDescription=description,
                    BilledCost=billed, EffectiveCost=billed, ListCost=billed, ContractedCost=billed, **kw)

    if vendor == "northwind":
        rows = [usage("Warehouse Compute", "Databases", "Data Warehouses", Decimal("7.25") + n / 100,
                      Decimal("2.4"), "Hours"),
                usage("Managed Storage", "Storage", "Object Storage", Decimal("1024.5"), Decimal("0.000023"),
                      "GB-Hours"),
                # a partner's connector sold through the vendor's marketplace
                usage("Kafka Connector", "Integration", "Messaging", Decimal("3"), Decimal("0.35"), "Hours",
                      PublisherName="Tailspin Streams")]
        if day.day % 2 == 0:
            rows.append(fee("Credit", "Startup credit", "-1.5"))
        rows.append(fee("Tax", "VAT", str((n / 10).quantize(Decimal("0.01")))))
    elif vendor == "contoso":
        rows = [usage("Log Management", "Management and Governance", "Observability", Decimal("12.5") + n,
                      Decimal("0.1"), "GB"),
                usage("APM Hosts", "Management and Governance", "Observability", Decimal("4"), Decimal("1.1666"),
                      "Hours")]
        if day.day == 1:
            rows.append(fee("Purchase", "Synthetic checks bundle", "49.99", PricingQuantity="1", PricingUnit="Units",
                            PricingCategory="Standard", SkuId="contoso-bundle", SkuPriceId="contoso-bundle-p",
                            ListUnitPrice="49.99", ContractedUnitPrice="49.99"))
    else:
        rows = [usage("Inference API", "AI and Machine Learning", "Generative AI", Decimal("1500") + n * 10,
                      Decimal("0.000002"), "Tokens"),
                usage("Fine-tuning", "AI and Machine Learning", "Machine Learning", Decimal("0.5"), Decimal("8"),
                      "Hours")]
    return rows


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def write(vendor: str, first: dt.date, last: dt.date, folder: Path) -> list[Path]:
    """The vendor's export of [first, last] in its format under `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = VENDORS[vendor]["columns"]
    if vendor == "northwind":  # one gzip CSV per day
        return [_csv(folder / f"northwind-focus-{d:%Y%m%d}.csv.gz", cols, charges(vendor, d))
                for d in days(first, last)]
    rows = [r for d in days(first, last) for r in charges(vendor, d)]
    if vendor == "contoso":
        return [_parquet(folder / f"contoso-focus-{first:%Y%m}.parquet", cols, rows)]
    return [_csv(folder / "fabrikam-focus.csv", cols, rows)]


def _csv(path: Path, cols: list[str], rows: list[dict]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows({c: "" if r.get(c) is None else r[c] for c in cols} for r in rows)
    return path


def _parquet(path: Path, cols: list[str], rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in cols:
        values = [r.get(c) for r in rows]
        if c in MONEY:
            arrays[c] = pa.array([None if x is None else Decimal(x) for x in values], pa.decimal128(38, 10))
        elif c == "Tags":
            arrays[c] = pa.array([None if x is None else list(json.loads(x).items()) for x in values],
                                 pa.map_(pa.string(), pa.string()))
        elif c in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd"):
            arrays[c] = pa.array([dt.datetime.strptime(x, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
                                  for x in values], pa.timestamp("us", tz="UTC"))
        else:
            arrays[c] = pa.array([None if x is None else str(x) for x in values], pa.string())
    pq.write_table(pa.table(arrays), path)
    return path


def write_all(first: dt.date, last: dt.date, folder: Path) -> list[Path]:
    return [p for vendor in VENDORS for p in write(vendor, first, last, folder)]
