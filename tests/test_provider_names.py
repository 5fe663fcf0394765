"""Issue 13, defect 3: one provider, one set of names (ProviderName, ServiceProviderName, HostProviderName,
PublisherName, InvoiceIssuerName) whatever file its rows came from.

The same AWS account goes through the CUR path (the bundled legacy CUR sample, 94 columns, plus a Marketplace
line) and through AWS's FOCUS 1.2 export of those line items, written here with the values AWS's export gives
(ProviderName and PublisherName 'AWS', the seller as PublisherName on Marketplace lines, InvoiceIssuerName the
CUR's bill/InvoicingEntity): both must name the provider alike, line by line. Azure and Google Cloud: their
raw converters and their FOCUS exports write the names of providers.yml's `providers:`, and an export's issuer that
is only the cloud's short name ('AWS', 'Microsoft', 'Google') is that cloud's name.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections import Counter
from pathlib import Path

import pytest

from shared import procedures, service_map
from tests import cloud_kit as kit
from tests.test_focus_exports import aws_shape, azure_shape, charges, csv_bytes, gcp_parquet, parquet_bytes, q

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
CUR_SAMPLE = SAMPLES / "aws" / "sample-anonymous-aws-export-dataset.csv"
AWS, AZURE, GCP = "cloud/aws/cost/billing", "cloud/azure/cost/billing", "cloud/gcp/cost/billing"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
NAMES = ("ProviderName", "ServiceProviderName", "HostProviderName", "PublisherName", "InvoiceIssuerName")
SELLER = "Acme Seller LLC"


def facts(cloud: str) -> dict[str, str]:
    return {n: procedures.provider_facts()[cloud][n] for n in NAMES}


def cur_lines() -> tuple[list[str], list[dict]]:
    """The legacy CUR sample, and one AWS Marketplace line (a copy of a usage line sold by a third party)."""
    with CUR_SAMPLE.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    usage = next(r for r in rows if r["lineItem/LineItemType"] == "Usage" and r["pricing/unit"])
    rows.append(dict(usage, **{"identity/LineItemId": "marketplace-1", "bill/BillingEntity": "AWS Marketplace",
                               "lineItem/LegalEntity": SELLER, "product/ProductName": "Acme Observability",
                               "lineItem/ProductCode": "prod-acme-obs",
                               "lineItem/LineItemDescription": "Acme Observability requests"}))
    return list(reader.fieldnames), rows


def focus_export_of(rows: list[dict]) -> list[dict]:
    """AWS's FOCUS 1.2 export of CUR line items (AWS's documented column mapping, the values it writes)."""
    out = []
    for r in rows:
        marketplace = r["bill/BillingEntity"] == "AWS Marketplace"
        tax = r["lineItem/LineItemType"] == "Tax"
        out.append({
            "BilledCost": r["lineItem/UnblendedCost"], "EffectiveCost": r["lineItem/UnblendedCost"],
            "ListCost": r["pricing/publicOnDemandCost"] or r["lineItem/UnblendedCost"],
            "ContractedCost": r["lineItem/UnblendedCost"], "BillingAccountId": r["bill/PayerAccountId"],
            "BillingAccountType": "Payer Account", "BillingCurrency": r["lineItem/CurrencyCode"],
            "BillingPeriodStart": r["bill/BillingPeriodStartDate"], "BillingPeriodEnd": r["bill/BillingPeriodEndDate"],
            "ChargePeriodStart": r["lineItem/UsageStartDate"], "ChargePeriodEnd": r["lineItem/UsageEndDate"],
            "ChargeCategory": "Tax" if tax else "Usage", "ChargeDescription": r["lineItem/LineItemDescription"],
            "ChargeFrequency": "Recurring" if tax else "Usage-Based",
            "PricingQuantity": None if tax else r["lineItem/UsageAmount"],
            "PricingUnit": None if tax else r["pricing/unit"], "ServiceName": r["product/ProductName"],
            "_service_key": r["lineItem/ProductCode"], "SubAccountId": r["lineItem/UsageAccountId"],
            "SubAccountType": "Linked Account", "RegionId": r["product/regionCode"] or None,
            "InvoiceId": r["bill/InvoiceId"] or None,
            "ProviderName": "AWS", "PublisherName": SELLER if marketplace else "AWS",
            "InvoiceIssuerName": r["bill/InvoicingEntity"],
        })
    return out


def by_line(wh, credential: str) -> Counter:
    """(the line's identity, its names) of every FOCUS row of one credential, counted."""
    rows = wh.query(f"SELECT ChargePeriodStart, SubAccountId, ServiceName, ChargeDescription, BilledCost, "
                    f"{', '.join(NAMES)} FROM `acme_prod.cost_data_standard_1_3` WHERE x_credential_id = @c",
                    {"c": credential})
    return Counter((r["ChargePeriodStart"], r["SubAccountId"], r["ServiceName"], r["ChargeDescription"],
                    r["BilledCost"], *(r[n] for n in NAMES)) for r in rows)


def test_the_cur_and_the_focus_export_of_one_account_name_the_provider_alike(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    header, lines = cur_lines()
    (tmp_path / "cur").mkdir()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(lines)
    (tmp_path / "cur" / "cur-00001.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode()))
    kit.land_and_convert(wh, AWS, "cred_cur", {"source": (tmp_path / "cur").as_uri()}, *NOV)
    export = focus_export_of(lines)
    focus_header, shaped = aws_shape(export, "1.2")
    (tmp_path / "focus").mkdir()
    (tmp_path / "focus" / "focus-00001.csv.gz").write_bytes(gzip.compress(csv_bytes(focus_header, shaped)))
    kit.land_and_convert(wh, AWS, "cred_focus", {"source": (tmp_path / "focus").as_uri()}, *NOV)

    cur, focus = by_line(wh, "cred_cur"), by_line(wh, "cred_focus")
    assert sum(cur.values()) == sum(focus.values()) == len(lines)
    assert cur == focus  # the same lines, named alike
    aws = facts("aws")
    entity = {r["bill/InvoicingEntity"] for r in lines}
    assert entity == {"Amazon Web Services Canada, Inc."}  # the sample's: every line invoiced by it
    assert {k[5:] for k in cur} == {(*(aws[n] for n in NAMES[:4]), *entity),
                                    (aws["ProviderName"], SELLER, aws["HostProviderName"], SELLER, *entity)}
    # totals as billed, on both paths: the lines' unblended cost (each rounded to NUMERIC), summed here
    total = sum(q(r["lineItem/UnblendedCost"]) for r in lines)
    for cred in ("cred_cur", "cred_focus"):
        got = wh.query("SELECT SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3` WHERE x_credential_id = @c",
                       {"c": cred})
        assert got == [{"s": total}]


FEB = (dt.date(2024, 2, 27), dt.date(2024, 3, 2))


def _land_export(wh, tmp_path, cloud: str, rows: list[dict]) -> str:
    folder = tmp_path / f"{cloud}-focus"
    folder.mkdir()
    if cloud == "aws":
        header, shaped = aws_shape(rows, "1.2")
        (folder / "focus-00001.csv.gz").write_bytes(gzip.compress(csv_bytes(header, shaped)))
    elif cloud == "azure":
        header, shaped = azure_shape(rows, "1.2-preview")
        (folder / "part_0_0001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
    else:
        gcp_parquet(folder, rows)
    pipeline = {"aws": AWS, "azure": AZURE, "gcp": GCP}[cloud]
    kit.land_and_convert(wh, pipeline, f"cred_{cloud}_focus", {"source": folder.as_uri()}, *FEB)
    return f"cred_{cloud}_focus"


def _names(wh, credential: str, third_party: bool) -> set[tuple]:
    rows = wh.query(f"SELECT ChargeDescription, {', '.join(NAMES)} FROM `acme_prod.cost_data_standard_1_3` "
                    "WHERE x_credential_id = @c", {"c": credential})
    return {tuple(r[n] for n in NAMES) for r in rows if r["ChargeDescription"].startswith("marketplace") == third_party}


@pytest.mark.parametrize(("cloud", "short"), [("aws", "AWS"), ("azure", "Microsoft"), ("gcp", "Google")])
def test_each_clouds_export_writes_the_clouds_names(rt, acme, tmp_path, cloud, short):
    """An export's own spelling of the cloud ('AWS', 'Microsoft', 'Google Cloud') and an issuer that is just the
    cloud's short name become the cloud's names; a marketplace seller stays the seller."""
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges(cloud, *FEB)
    for r in rows:
        if r.get("InvoiceIssuerName"):
            r["InvoiceIssuerName"] = short
    cred = _land_export(wh, tmp_path, cloud, rows)
    expected = facts(cloud)
    assert _names(wh, cred, third_party=False) == {tuple(expected.values())}
    seller = {"aws": "Acme Seller LLC", "azure": "Contoso Ltd", "gcp": "Observa Inc."}[cloud]
    assert _names(wh, cred, third_party=True) == {
        (expected["ProviderName"], seller, expected["HostProviderName"], seller, expected["InvoiceIssuerName"])}


def test_an_exports_invoicing_entity_is_kept(rt, acme, tmp_path):
    """A legal entity (AWS EMEA SARL) or a reseller invoicing the rows is who issued the invoice: kept."""
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("aws", *FEB)
    for i, r in enumerate(rows):
        r["InvoiceIssuerName"] = "Amazon Web Services EMEA SARL" if i % 2 else "Contoso Reseller GmbH"
    cred = _land_export(wh, tmp_path, "aws", rows)
    got = wh.query("SELECT DISTINCT InvoiceIssuerName AS i, ProviderName AS p FROM `acme_prod.cost_data_standard_1_3` "
                   "WHERE x_credential_id = @c", {"c": cred})
    assert {(r["i"], r["p"]) for r in got} == {("Amazon Web Services EMEA SARL", facts("aws")["ProviderName"]),
                                              ("Contoso Reseller GmbH", facts("aws")["ProviderName"])}


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_the_raw_converters_write_the_same_names_as_the_exports(rt, acme, tmp_path, cloud):
    """Azure's EA sample and GCP's detailed export (stub), through their raw converters: the same names as their
    FOCUS exports above."""
    wh = rt.warehouse
    service_map.sync(wh)
    if cloud == "azure":
        kit.land_and_convert(wh, AZURE, "cred_raw", {"source": (SAMPLES / "azure").as_uri()},
                             dt.date(2023, 9, 1), dt.date(2023, 9, 30))
    else:
        from stubs import gcp_billing_data

        start, end = dt.date(2025, 1, 1), dt.date(2025, 1, 3)
        gcp_billing_data.write_parquet(gcp_billing_data.generate(start, end, seed=3), tmp_path / "export")
        kit.land_and_convert(wh, GCP, "cred_raw", {"source": (tmp_path / "export").as_uri()}, start, end)
    rows = wh.query(f"SELECT DISTINCT {', '.join(NAMES)} FROM `acme_prod.cost_data_standard_1_3` "
                    "WHERE x_credential_id = 'cred_raw' AND PublisherName = @p", {"p": facts(cloud)["PublisherName"]})
    assert {tuple(r[n] for n in NAMES) for r in rows} == {tuple(facts(cloud).values())}


def test_a_renamed_provider_reaches_its_rows_with_a_sync_not_a_new_procedure(rt, acme, monkeypatch):
    """The conversions read the names from organizations.provider_facts, so `cloudact bootstrap` (which syncs
    them) renames a provider without the procedures being installed again."""
    from shared import registry

    wh, oci = rt.warehouse, {"source": (SAMPLES / "oci").as_uri()}
    names = "SELECT DISTINCT ProviderName, InvoiceIssuerName FROM `acme_prod.cost_data_standard_1_3`"
    kit.land_and_convert(wh, "cloud/oci/cost/billing", "cred_oci", oci, *NOV)
    assert {r["ProviderName"] for r in wh.query(names)} == {facts("oci")["ProviderName"]}
    catalog = registry.provider_facts()
    renamed = {**catalog, "oci": {**catalog["oci"], "ProviderName": "Oracle Corporation"}}
    monkeypatch.setattr(registry, "provider_facts", lambda: renamed)
    registry.sync_facts(wh)
    kit.land_and_convert(wh, "cloud/oci/cost/billing", "cred_oci", oci, *NOV, run_id="run_b")
    assert {r["ProviderName"] for r in wh.query(names)} == {"Oracle Corporation"}
