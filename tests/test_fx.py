"""shared.fx: the ECB reference-rate layout, the plain CSV, rate resolution and who may write which rates."""
from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal

import pytest

from shared import fx
from shared.inputs import FieldInvalid

# The layout of the ECB's eurofxref-hist.csv: newest day first, units per 1 EUR, N/A where the ECB
# published nothing that day (CYP after 2007), a trailing comma on every line.
ECB_HIST = """Date,USD,JPY,BGN,CYP,GBP,
2026-10-02,1.1712,172.41,1.9558,N/A,0.87215,
2026-10-01,1.1698,171.93,1.9558,N/A,0.87110,
2026-09-30,1.1680,N/A,1.9558,N/A,0.87005,
"""
# The one-day eurofxref.csv: a space after each comma and the date written out.
ECB_DAILY = """Date, USD, JPY, GBP, 
02 October 2026, 1.1712, 172.41, 0.87215, 
"""


def test_ecb_history_layout():
    rates = fx.parse_ecb(ECB_HIST)
    by = {(r.rate_date, r.to_currency): r.rate for r in rates}
    assert all(r.from_currency == "EUR" for r in rates)
    assert by[(dt.date(2026, 10, 1), "GBP")] == Decimal("0.87110")
    assert (dt.date(2026, 9, 30), "JPY") not in by and not any(c == "CYP" for _, c in by)  # N/A is no rate
    assert len(rates) == 4 + 4 + 3


def test_ecb_daily_layout_and_zip(tmp_path):
    assert {(r.rate_date, r.to_currency, r.rate) for r in fx.parse_ecb(ECB_DAILY)} == {
        (dt.date(2026, 10, 2), "USD", Decimal("1.1712")), (dt.date(2026, 10, 2), "JPY", Decimal("172.41")),
        (dt.date(2026, 10, 2), "GBP", Decimal("0.87215"))}
    z = tmp_path / "eurofxref-hist.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("eurofxref-hist.csv", ECB_HIST)
    assert fx.read_file(z) == fx.parse_ecb(ECB_HIST)


def test_plain_csv(tmp_path):
    p = tmp_path / "rates.csv"
    p.write_text("date,from,to,rate\n2026-10-01,usd,CAD,1.3701\n2026-10-02,USD,CAD,1.37\n")
    assert fx.read_file(p) == [fx.Rate(dt.date(2026, 10, 1), "USD", "CAD", Decimal("1.3701")),
                               fx.Rate(dt.date(2026, 10, 2), "USD", "CAD", Decimal("1.37"))]


@pytest.mark.parametrize("text, fragment", [
    ("date,from,to,rate\n2026-10-01,USD,CAD,-1\n", "line 2.rate"),
    ("date,from,to,rate\n2026-10-01,USD,CAD,1e400\n", "line 2.rate"),
    ("date,from,to,rate\n2026-10-01,USD,CAD,1.0000000001\n", "9 decimal"),
    ("date,from,to,rate\n2026-10-01,USD,USD,1\n", "differ"),
    ("date,from,to,rate\n2026-31-01,USD,CAD,1\n", "line 2.date"),
    ("date,from,to,rate\n2026-10-01,US,CAD,1\n", "line 2.from"),
    ("day,from,to,rate\n", "header date,from,to,rate"),
    ("Date,USD,\n2026-10-01,abc,\n", "line 2 USD"),
])
def test_bad_rates_are_named(tmp_path, text, fragment):
    p = tmp_path / "rates.csv"
    p.write_text(text)
    with pytest.raises(FieldInvalid, match=fragment.replace(".", r"\.")):
        fx.read_file(p)


D1, D2, D5 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 5)


def test_latest_rate_on_or_before_the_charge_day():
    book = fx.RateBook([("USD", "GBP", D1, Decimal("0.74")), ("USD", "GBP", D5, Decimal("0.75"))])
    assert book.factor("USD", "GBP", dt.date(2026, 10, 4)) == (Decimal("0.74"), D1)  # the weekend: Thursday's
    assert book.factor("USD", "GBP", D5) == (Decimal("0.75"), D5)
    assert book.factor("USD", "GBP", dt.date(2026, 9, 30)) is None
    assert book.factor("GBP", "GBP", D1) == (Decimal(1), D1)


def test_inverse_and_cross_rates():
    book = fx.RateBook([("EUR", "USD", D1, Decimal("1.25")), ("EUR", "GBP", D1, Decimal("0.8")),
                        ("EUR", "USD", D2, Decimal("1.28"))])
    assert book.factor("USD", "EUR", D2) == (Decimal(1) / Decimal("1.28"), D2)
    # USD->GBP needs both legs of one day: D2 has no GBP, so D1's pair
    assert book.factor("USD", "GBP", D2) == (Decimal("0.8") / Decimal("1.25"), D1)
    assert book.factor("GBP", "USD", D1) == (Decimal("1.25") / Decimal("0.8"), D1)
    # a direct pair wins over a cross rate of the same day, a later cross rate over an older direct one
    direct = fx.RateBook([("EUR", "USD", D1, Decimal("1.25")), ("EUR", "GBP", D1, Decimal("0.8")),
                          ("USD", "GBP", D1, Decimal("0.7"))])
    assert direct.factor("USD", "GBP", D1) == (Decimal("0.7"), D1)
    stale = fx.RateBook([("USD", "GBP", D1, Decimal("0.7")), ("EUR", "USD", D5, Decimal("1.25")),
                         ("EUR", "GBP", D5, Decimal("0.8"))])
    assert stale.factor("USD", "GBP", D5) == (Decimal("0.64"), D5)


def test_org_rates_win_for_that_org_only_and_the_last_import_wins(rt, acme):
    from shared.tenants import create_org

    create_org(rt.warehouse, "globex")
    wh = rt.warehouse
    fx.store(wh, [fx.Rate(D1, "USD", "GBP", Decimal("0.70"))], org=None, source="first")
    assert fx.store(wh, [fx.Rate(D1, "USD", "GBP", Decimal("0.71"))], org=None, source="second") == (1, 0)
    # the same rate again is not stored twice; an equal rate of the org is the org's own
    assert fx.store(wh, [fx.Rate(D1, "USD", "GBP", Decimal("0.710"))], org=None, source="third") == (0, 1)
    fx.store(wh, [fx.Rate(D1, "USD", "GBP", Decimal("0.90"))], org="acme", source="acme's treasury")
    assert fx.load(wh, "acme", ["USD"], "GBP", D5).factor("USD", "GBP", D5) == (Decimal("0.90"), D1)
    assert fx.load(wh, "globex", ["USD"], "GBP", D5).factor("USD", "GBP", D5) == (Decimal("0.71"), D1)
    assert fx.load(wh, "globex", ["USD"], "GBP", dt.date(2026, 9, 30)).factor("USD", "GBP", D1) is None
    assert [r["scope"] for r in fx.list_rates(wh, "acme")] == ["org"]
    assert [(r["scope"], r["rate"]) for r in fx.list_rates(wh, "globex")] == [("platform", Decimal("0.71"))]


def test_api_posts_org_rates_never_platform_ones(rt, acme):
    from cli.server import app
    from shared.auth import create_key
    from shared.tenants import create_org

    create_org(rt.warehouse, "globex")
    keys = {o: create_key(rt.warehouse, o) for o in ("acme", "globex")}
    client = app().test_client()
    body = {"rates": [{"date": "2026-10-01", "from": "USD", "to": "GBP", "rate": "0.75"}]}
    assert client.post("/api/v1/fx-rates/acme", json=body).status_code == 401
    assert client.post("/api/v1/fx-rates/acme", json=body, headers={"X-API-Key": keys["globex"]}).status_code == 403
    r = client.post("/api/v1/fx-rates/acme", json=body, headers={"X-API-Key": keys["acme"]})
    assert r.status_code == 201 and r.json == {"stored": 1, "unchanged": 0, "scope": "org"}
    again = client.post("/api/v1/fx-rates/acme", json=body, headers={"X-API-Key": keys["acme"]})
    assert again.json == {"stored": 0, "unchanged": 1, "scope": "org"}
    listed = client.get("/api/v1/fx-rates/acme", headers={"X-API-Key": keys["acme"]}).json["rates"]
    assert [(x["rate_date"], x["from_currency"], x["to_currency"], x["rate"], x["scope"]) for x in listed] == [
        ("2026-10-01", "USD", "GBP", "0.750000000", "org")]
    assert client.get("/api/v1/fx-rates/globex", headers={"X-API-Key": keys["globex"]}).json["rates"] == []
    rows = rt.warehouse.query("SELECT org_slug, source FROM `organizations.fx_rates`")
    assert rows == [{"org_slug": "acme", "source": "api"}]
    for bad, field in (({"rates": [{"date": "2026-10-01", "from": "USD", "to": "GBP"}]}, "rates[0]"),
                       ({"rates": [{"date": "2026-10-01", "from": "USD", "to": "GBP", "rate": "x"}]}, "rates[0].rate"),
                       ({"rates": []}, "rates"), ([1], "body")):
        r = client.post("/api/v1/fx-rates/acme", json=bad, headers={"X-API-Key": keys["acme"]})
        assert r.status_code == 400 and r.json["field"] == field, (bad, r.json)
