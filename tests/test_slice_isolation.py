"""A slice belongs to one credential: converting one credential's billing never touches another's FOCUS rows.

Two AWS credentials of one org read two different payer accounts' CURs for the same month. Each run's
conversion (sp_cloud_1_convert_to_focus: 00_replace_slice.sql's DELETE, then the INSERT) must replace its
own credential's rows only. The expected totals are read from the CSV files here, with Decimal, not
through the extractor.
"""
from __future__ import annotations

import csv
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from tests import cloud_kit as kit

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "aws" / "sample-anonymous-aws-export-dataset.csv"
PIPELINE = "cloud/aws/cost/billing"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
NANO = Decimal("0.000000001")  # NUMERIC's scale: each cost is rounded to it, half to even, when read


def cur_total(path: Path) -> tuple[int, Decimal]:
    with path.open(newline="") as f:
        costs = [Decimal(r["lineItem/UnblendedCost"] or "0") for r in csv.DictReader(f)]
    return len(costs), sum((c.quantize(NANO, ROUND_HALF_EVEN) for c in costs), Decimal(0))


def other_payer(tmp_path: Path) -> Path:
    """Another payer account's CUR for the same month: every other row of the sample, with its costs
    tripled, under other account ids."""
    folder = tmp_path / "payer-b"
    folder.mkdir()
    with SAMPLE.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)[::2]
        header = reader.fieldnames
    for r in rows:
        r["bill/PayerAccountId"] = r["lineItem/UsageAccountId"] = "999988887777"
        r["identity/LineItemId"] = "b-" + r["identity/LineItemId"]
        r["lineItem/UnblendedCost"] = str(Decimal(r["lineItem/UnblendedCost"] or "0") * 3)
    with (folder / "cur-b.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return folder


def focus_by_credential(wh) -> dict[str, tuple[int, Decimal]]:
    rows = wh.query("SELECT x_credential_id AS c, COUNT(*) AS n, SUM(BilledCost) AS billed "
                    "FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p GROUP BY 1", {"p": PIPELINE})
    return {r["c"]: (r["n"], r["billed"]) for r in rows}


def test_one_credentials_run_keeps_another_credentials_rows_of_the_same_month(rt, acme, tmp_path):
    wh = rt.warehouse
    folder_b = other_payer(tmp_path)
    a, b = cur_total(SAMPLE), cur_total(folder_b / "cur-b.csv")
    assert a[0] == 1281 and b[0] == 641 and a[1] != b[1]

    kit.land_and_convert(wh, PIPELINE, "cred_aws_a", {"source": SAMPLE.parent.as_uri()}, *NOV, run_id="run_a1")
    assert focus_by_credential(wh) == {"cred_aws_a": a}

    kit.land_and_convert(wh, PIPELINE, "cred_aws_b", {"source": folder_b.as_uri()}, *NOV, run_id="run_b1")
    assert focus_by_credential(wh) == {"cred_aws_a": a, "cred_aws_b": b}

    # a re-run of either replaces its own slice and still leaves the other alone
    kit.land_and_convert(wh, PIPELINE, "cred_aws_a", {"source": SAMPLE.parent.as_uri()}, *NOV, run_id="run_a2")
    kit.land_and_convert(wh, PIPELINE, "cred_aws_b", {"source": folder_b.as_uri()}, *NOV, run_id="run_b2")
    assert focus_by_credential(wh) == {"cred_aws_a": a, "cred_aws_b": b}
    org = wh.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS billed FROM `acme_prod.cost_data_standard_1_3`")[0]
    assert (org["n"], org["billed"]) == (a[0] + b[0], a[1] + b[1])
    runs = wh.query("SELECT x_credential_id AS c, x_run_id AS r FROM `acme_prod.cost_data_standard_1_3` GROUP BY 1, 2")
    assert sorted((r["c"], r["r"]) for r in runs) == [("cred_aws_a", "run_a2"), ("cred_aws_b", "run_b2")]
