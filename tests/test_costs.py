"""shared.costs over the demo org: every grouping, metric and filter equals SQL written independently
over cost_data_standard_1_3, exact to the cent (to the last NUMERIC digit, in fact)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import duckdb
import pytest

from shared import costs
from shared.inputs import FieldInvalid
from shared.tenants import UnknownOrg
from tests.costs_demo import ALL_DAYS, INDEPENDENT, TABLE, build_demo, independent_sums


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(warehouse file, warehouse) of the demo org, installed as the process runtime for the CLI and the API."""
    from shared import runtime
    from shared.config import settings

    home = tmp_path_factory.mktemp("costs")
    path = build_demo(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOUDACT_HOME", str(home / "demo"))
        mp.setenv("CLOUDACT_BACKEND", "embedded")
        mp.setenv("CLOUDACT_TENANCY", "single")
        rt = runtime.embedded(settings())
        previous = runtime.use(rt)
        try:
            yield path, rt.warehouse
        finally:
            runtime.use(previous)
            rt.close()


def _invoke(args: list[str]):
    from click.testing import CliRunner

    from cli.main import cli

    return CliRunner().invoke(cli, args)


def _cli(*args: str):
    return _invoke(["costs", *args])


def _iso(v):
    return v.isoformat() if isinstance(v, dt.date) else v


def _q(**kw) -> costs.CostQuery:
    return costs.CostQuery(org="acme", start=kw.pop("start", ALL_DAYS[0]), end=kw.pop("end", ALL_DAYS[1]), **kw)


def _by_key(result: costs.CostResult, grouping: str) -> dict[tuple, Decimal]:
    return {(r[grouping] if grouping else None, r["currency"]): r["amount"] for r in result.rows}


def test_demo_org_has_several_currencies(demo):
    path, _ = demo
    # the rest of this file relies on it: USD bills, a CAD Azure sample and a EUR subscription
    assert {cur for _, cur in independent_sums(path, "")} == {"USD", "CAD", "EUR"}


@pytest.mark.parametrize("grouping", sorted(INDEPENDENT))
def test_every_grouping_equals_independent_sql(demo, grouping):
    path, wh = demo
    expected = independent_sums(path, grouping)
    result = costs.query(wh, _q(group_by=(grouping,)))
    assert _by_key(result, grouping) == expected
    assert len(result.rows) == len(expected)  # one row per (group, currency), none merged away
    assert result.columns[0] == grouping and result.columns[-2:] == ["amount", "currency"]
    # several currencies: no total, and the reason says which
    assert result.total is None and result.currency is None
    assert "CAD, EUR, USD" in result.message


def test_groupings_are_not_trivial(demo):
    """Each grouping splits the demo's costs into several groups with a value (a NULL-only grouping, e.g.
    a tag path or model pattern that never matches, would still sum right and prove nothing)."""
    path, _ = demo
    for grouping in INDEPENDENT:
        named = {g for g, _ in independent_sums(path, grouping) if g is not None}
        assert len(named) >= 2, grouping


def test_account_rows_carry_the_account_name(demo):
    _, wh = demo
    result = costs.query(wh, _q(group_by=("account",), providers=("Google Cloud",)))
    assert result.columns == ["account", "account_name", "amount", "currency"]
    assert any(r["account"] and r["account_name"] for r in result.rows)


@pytest.mark.parametrize("metric", costs.METRICS)
def test_each_metric_sums_its_own_column(demo, metric):
    path, wh = demo
    result = costs.query(wh, _q(group_by=("pipeline",), metric=metric))
    assert _by_key(result, "pipeline") == independent_sums(path, "pipeline", metric=metric)


def test_metrics_differ_on_the_demo(demo):
    path, _ = demo
    sums = {m: independent_sums(path, "pipeline", metric=m) for m in costs.METRICS}
    assert sums["BilledCost"] != sums["ListCost"]  # else swapping the metric columns goes unnoticed


def test_date_range_is_inclusive_utc_days(demo):
    path, wh = demo
    start, end = dt.date(2026, 10, 5), dt.date(2026, 10, 11)
    result = costs.query(wh, _q(group_by=("day",), start=start, end=end))
    expected = independent_sums(path, "day", start=start, end=end)
    assert _by_key(result, "day") == expected
    assert {d for d, _ in expected} == {start + dt.timedelta(days=i) for i in range(7)}
    assert [r["day"] for r in result.rows] == sorted(r["day"] for r in result.rows)  # time ascending


def test_single_currency_total_is_the_sum(demo):
    path, wh = demo
    where = "BillingCurrency = 'USD'"
    result = costs.query(wh, _q(group_by=("service",), start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31),
                                providers=("openai", "ANTHROPIC")))
    expected = independent_sums(path, "service", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31),
                                where=f"{where} AND ServiceProviderName IN ('OpenAI', 'Anthropic')")
    assert _by_key(result, "service") == expected
    assert result.currency == "USD" and result.message is None
    assert result.total == sum(expected.values())
    # largest first when no time grouping
    assert [r["amount"] for r in result.rows] == sorted((r["amount"] for r in result.rows), reverse=True)


def test_service_and_tag_filters(demo):
    path, wh = demo
    result = costs.query(wh, _q(group_by=("provider",), tags=(("env", "prod"),)))
    assert _by_key(result, "provider") == independent_sums(path, "provider", where="Tags->>'env' = 'prod'")
    assert result.rows
    two = costs.query(wh, _q(group_by=("provider",), tags=(("env", "prod"), ("team", "data"))))
    assert _by_key(two, "provider") == independent_sums(
        path, "provider", where="Tags->>'env' = 'prod' AND Tags->>'team' = 'data'")
    assert two.total < result.total
    services = ("Claude API", "Notion")
    by_service = costs.query(wh, _q(group_by=("service",), services=services))
    assert _by_key(by_service, "service") == independent_sums(
        path, "service", where="ServiceName IN ('Claude API', 'Notion')")


def test_top_keeps_the_largest_and_accounts_for_the_rest(demo):
    path, wh = demo
    window = {"start": dt.date(2026, 10, 1), "end": dt.date(2026, 10, 31)}
    # (the demo's Google models bill through Google Cloud, so Google itself has quantities, no cost)
    usd = costs.query(wh, _q(group_by=("service",), providers=("google cloud", "anthropic", "openai"), top=3,
                             **window))
    expected = independent_sums(path, "service",
                                where="ServiceProviderName IN ('Google Cloud', 'Anthropic', 'OpenAI')",
                                start=window["start"], end=window["end"])
    largest = sorted(expected.items(), key=lambda kv: -kv[1])[:3]
    assert [(r["service"], r["amount"]) for r in usd.rows] == [(k[0], v) for k, v in largest]
    assert usd.total == sum(expected.values())
    assert usd.others == usd.total - sum(v for _, v in largest) and usd.others > 0
    with pytest.raises(FieldInvalid) as e:  # ranking amounts of several currencies would compare EUR with USD
        costs.query(wh, _q(group_by=("service",), top=3, **window))
    assert e.value.field == "top" and "EUR" in str(e.value)


def test_default_query_is_this_month_by_provider_and_service(demo):
    path, wh = demo
    q = costs.default_query("acme", dt.date(2026, 10, 20))
    assert (q.start, q.end, q.group_by, q.metric) == (dt.date(2026, 10, 1), dt.date(2026, 10, 20),
                                                       ("provider", "service"), "BilledCost")
    result = costs.query(wh, q)
    expected = independent_sums(path, "provider", start=q.start, end=q.end)
    by_provider: dict = {}
    for r in result.rows:
        by_provider[(r["provider"], r["currency"])] = by_provider.get((r["provider"], r["currency"]), 0) + r["amount"]
    assert by_provider == expected


@pytest.mark.parametrize("change, field", [
    ({"group_by": ("color",)}, "group_by"),
    ({"group_by": ("provider", "provider")}, "group_by"),
    ({"group_by": ('tag:a"b',)}, "group_by"),
    ({"metric": "Cost; DROP TABLE x"}, "metric"),
    ({"currency": "usd$"}, "currency"),
    ({"start": dt.date(2026, 2, 1), "end": dt.date(2026, 1, 1)}, "start"),
    ({"top": 0}, "top"),
    ({"tags": (("x\\", "y"),)}, "tags"),
    ({"org": "Not A Slug"}, "org"),
])
def test_bad_input_names_the_field(demo, change, field):
    _, wh = demo
    with pytest.raises(FieldInvalid) as e:
        costs.query(wh, costs.CostQuery(**{"org": "acme", "start": ALL_DAYS[0], "end": ALL_DAYS[1], **change}))
    assert e.value.field == field


def test_unknown_org_is_the_friendly_error(demo):
    _, wh = demo
    with pytest.raises(UnknownOrg, match="no organization 'globex'"):
        costs.query(wh, costs.CostQuery("globex", *ALL_DAYS))


def test_hostile_tag_values_are_data(demo):
    _, wh = demo
    result = costs.query(wh, _q(group_by=("tag:x' OR '1'='1",), tags=(("env", "' OR TRUE --"),)))
    assert result.rows == [] and result.total == 0


@pytest.mark.parametrize("grouping", sorted(INDEPENDENT))
def test_cli_json_equals_independent_sql_for_every_grouping(demo, grouping):
    path, _ = demo
    done = _cli("acme", "--from", "2023-01-01", "--to", "2026-12-31", "--by", grouping, "--format", "json")
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    got = {(r[grouping], r["currency"]): Decimal(r["amount"]) for r in body["rows"]}
    assert got == {(_iso(g), cur): v for (g, cur), v in independent_sums(path, grouping).items()}
    assert all(isinstance(r["amount"], str) for r in body["rows"])  # never a float
    assert body["total"] is None and "never added" in body["message"]


def test_cli_csv_and_table_and_comma_lists(demo):
    path, _ = demo
    done = _cli("acme", "--from", "2026-10-01", "--to", "2026-10-31", "--by", "day,provider", "--provider",
                "OpenAI,anthropic", "--format", "csv")
    assert done.exit_code == 0, done.output
    lines = list(csv.reader(io.StringIO(done.stdout)))
    assert lines[0] == ["day", "provider", "amount", "currency"]
    expected = independent_sums(path, "provider", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31),
                                where="ServiceProviderName IN ('OpenAI', 'Anthropic')")
    per_provider: dict = {}
    for day, provider, amount, cur in lines[1:]:
        per_provider[(provider, cur)] = per_provider.get((provider, cur), Decimal(0)) + Decimal(amount)
    assert per_provider == expected
    assert f"total: {sum(expected.values())} USD" in done.stderr
    table = _cli("acme", "--from", "2026-10-01", "--to", "2026-10-31", "--by", "pipeline", "--provider", "openai",
                 "--top", "2")
    assert table.exit_code == 0, table.output
    openai = independent_sums(path, "pipeline", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31),
                              where="ServiceProviderName = 'OpenAI'")
    top2 = sorted(openai.items(), key=lambda kv: -kv[1])[:2]
    shown = [line.split("│")[1].strip() for line in table.stdout.splitlines() if line.startswith("│")]
    assert shown == [pipeline for (pipeline, _), _ in top2] and len(openai) > 2
    assert f"other rows beyond the top 2: {sum(openai.values()) - sum(v for _, v in top2):f} USD" in table.stderr
    mixed = _cli("acme", "--from", "2026-10-01", "--to", "2026-10-31", "--by", "pipeline", "--top", "2")
    assert mixed.exit_code == 1 and "--top:" in mixed.stderr and "EUR, USD" in mixed.stderr


def test_cli_defaults_answer_this_month(demo, monkeypatch):
    path, _ = demo
    done = _cli("acme", "--to", "2026-10-20", "--format", "json")
    body = json.loads(done.stdout)
    assert (body["from"], body["to"], body["group_by"], body["metric"]) == (
        "2026-10-01", "2026-10-20", ["provider", "service"], "BilledCost")
    got: dict = {}
    for r in body["rows"]:
        got[(r["provider"], r["currency"])] = got.get((r["provider"], r["currency"]), Decimal(0)) + Decimal(r["amount"])
    assert got == independent_sums(path, "provider", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 20))


@pytest.mark.parametrize("args, message", [
    (["nobody"], "no organization 'nobody'; create it with `cloudact orgs create nobody`"),
    (["acme", "--by", "colour"], "--by: unknown grouping 'colour'"),
    (["acme", "--metric", "Cost"], "--metric: unknown metric 'Cost'"),
    (["acme", "--currency", "dollars"], "--currency: must be a three-letter"),
    (["acme", "--tag", "novalue"], "--tag 'novalue': give KEY=VALUE"),
    (["acme", "--from", "2026-10-09", "--to", "2026-10-01"], "--from:"),
])
def test_cli_errors_are_one_friendly_line(demo, args, message):
    done = _cli(*args)
    assert done.exit_code == 1 and message in " ".join(done.output.split()) and "Traceback" not in done.output


# -- GET /api/v1/costs/{org} ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(demo):
    """A test client of the served app, acme's key and the key of another org."""
    from cli.server import app
    from shared.auth import create_key
    from shared.tenants import create_org, get_org

    _, wh = demo
    if get_org(wh, "globex", missing_ok=True) is None:
        create_org(wh, "globex")
    return app().test_client(), {"acme": create_key(wh, "acme"), "globex": create_key(wh, "globex")}


def _get(api, path, key="acme", **params):
    client, keys = api
    return client.get(path, query_string=params, headers={"X-API-Key": keys[key]} if key else {})


@pytest.mark.parametrize("grouping", sorted(INDEPENDENT))
def test_api_equals_independent_sql_for_every_grouping(demo, api, grouping):
    path, _ = demo
    r = _get(api, "/api/v1/costs/acme", **{"from": "2023-01-01", "to": "2026-12-31", "group_by": grouping})
    assert r.status_code == 200, r.json
    got = {(row[grouping], row["currency"]): Decimal(row["amount"]) for row in r.json["rows"]}
    assert got == {(_iso(g), cur): v for (g, cur), v in independent_sums(path, grouping).items()}
    assert all(isinstance(row["amount"], str) for row in r.json["rows"])
    assert r.json["total"] is None and r.json["currencies"] == ["CAD", "EUR", "USD"]


def test_api_keys_401_and_403(api):
    client, keys = api
    assert _get(api, "/api/v1/costs/acme", key=None).status_code == 401
    assert client.get("/api/v1/costs/acme", headers={"X-API-Key": keys["acme"] + "x"}).status_code == 401
    other = _get(api, "/api/v1/costs/acme", key="globex")
    assert other.status_code == 403 and "acme" in other.json["message"]
    # globex's own costs: none, and never acme's
    own = _get(api, "/api/v1/costs/globex", key="globex", **{"from": "2023-01-01", "to": "2026-12-31"})
    assert own.status_code == 200 and own.json["rows"] == [] and own.json["total"] == "0"
    assert _get(api, "/api/v1/costs/acme", method="x").status_code == 200  # unknown params are ignored
    assert client.post("/api/v1/costs/acme", headers={"X-API-Key": keys["acme"]}).status_code == 405
    assert client.post("/api/v1/costs/acme", headers={"X-API-Key": keys["globex"]}).status_code == 403
    # the group's key is checked before its routes are: no key learns nothing, the right key gets 404/405
    assert client.get("/api/v1/costs/acme/nothing/here").status_code == 401
    missing = client.get("/api/v1/costs/acme/nothing/here", headers={"X-API-Key": keys["acme"]})
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    wrong = client.delete("/api/v1/costs/acme", headers={"X-API-Key": keys["acme"]})
    assert wrong.status_code == 405 and wrong.json["message"].endswith("use GET")
    assert client.get("/api/v1/costs/acme/", headers={"X-API-Key": keys["acme"]}).status_code == 200  # no redirect
    assert client.get("/healthz").json == {"status": "ok"} and client.get("/nowhere").status_code == 404


def test_api_filters_and_repeated_groupings(demo, api):
    path, _ = demo
    client, keys = api
    r = client.get("/api/v1/costs/acme?from=2026-10-01&to=2026-10-31&group_by=day&group_by=provider"
                   "&filter=provider=google%20cloud&filter=tag:env=prod&filter=service=Compute%20Engine",
                   headers={"X-API-Key": keys["acme"]})
    assert r.status_code == 200, r.json
    assert r.json["group_by"] == ["day", "provider"] and r.json["rows"]
    expected = independent_sums(path, "day", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31),
                                where="ServiceProviderName = 'Google Cloud' AND Tags->>'env' = 'prod' "
                                      "AND ServiceName = 'Compute Engine'")
    assert {(row["day"], row["currency"]): Decimal(row["amount"]) for row in r.json["rows"]} == \
        {(_iso(d), cur): v for (d, cur), v in expected.items()}
    assert Decimal(r.json["total"]) == sum(expected.values()) and r.json["currency"] == "USD"
    comma = _get(api, "/api/v1/costs/acme", **{"from": "2026-10-01", "to": "2026-10-31", "group_by": "day,provider",
                                              "filter": ["provider=Google Cloud", "tag:env=prod", "service=Compute Engine"]})
    assert comma.json["rows"] == r.json["rows"]
    listed = _get(api, "/api/v1/costs/acme", **{"from": "2026-10-01", "to": "2026-10-31", "group_by": "",
                                               "metric": "ListCost", "filter": "provider=openai"})
    assert listed.json["columns"] == ["amount", "currency"] and Decimal(listed.json["total"]) == sum(
        independent_sums(path, "", metric="ListCost", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31),
                         where="ServiceProviderName = 'OpenAI'").values())


# The parameter a 400 names: the queries that are wrong in it.
BAD_QUERIES = {
    "group_by": [{"group_by": "colour"}, {"group_by": 'tag:a"b'}],
    "from": [{"from": "2026-13-01"}, {"from": "2026-10-09", "to": "2026-10-01"}],
    "to": [{"to": "yesterday"}],
    "metric": [{"metric": "Cost"}],
    "currency": [{"currency": "EURO"}],
    "filter": [{"filter": "region=us"}, {"filter": "provider"}],
    "top": [{"top": "-1"}],
}


@pytest.mark.parametrize("params, field", [(q, field) for field, queries in BAD_QUERIES.items() for q in queries])
def test_api_bad_query_is_400_naming_the_parameter(api, params, field):
    r = _get(api, "/api/v1/costs/acme", **params)
    assert r.status_code == 400 and r.json["field"] == field and r.json["message"].startswith(field), r.json


def test_api_defaults_are_this_month(api):
    r = _get(api, "/api/v1/costs/acme")
    today = dt.datetime.now(dt.timezone.utc).date()
    assert (r.json["from"], r.json["to"], r.json["group_by"]) == (today.replace(day=1).isoformat(), today.isoformat(),
                                                                  ["provider", "service"])


# -- display currencies ---------------------------------------------------------------------------

def _weekdays(start: dt.date, end: dt.date):
    d = start
    while d <= end:
        if d.weekday() < 5:
            yield d
        d += dt.timedelta(days=1)


@pytest.fixture(scope="module")
def ecb_file(tmp_path_factory):
    """Dated rates in the ECB eurofxref-hist layout: a different rate every publication day, GBP missing
    (N/A) on one day, nothing before 2023-10-30 (the demo's CAD charges of 2023-09 have no rate)."""
    days = sorted([*_weekdays(dt.date(2023, 10, 30), dt.date(2023, 11, 30)),
                   *_weekdays(dt.date(2026, 9, 21), dt.date(2026, 10, 30))], reverse=True)
    lines = ["Date,USD,JPY,CYP,CAD,GBP,"]
    for i, d in enumerate(days):
        gbp = "N/A" if d == dt.date(2026, 10, 14) else f"{Decimal('0.8601') + Decimal(i) * Decimal('0.00037')}"
        lines.append(f"{d},{Decimal('1.1501') + Decimal(i) * Decimal('0.0007')},{160 + i}.5,N/A,"
                     f"{Decimal('1.4503') + Decimal(i) * Decimal('0.0011')},{gbp},")
    path = tmp_path_factory.mktemp("fx") / "eurofxref-hist.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ecb_rates(path) -> dict[dt.date, dict[str, Decimal]]:
    """The file read again here: {day: {currency: units per EUR}}."""
    out = {}
    for line in path.read_text().splitlines()[1:]:
        cells = line.split(",")
        out[dt.date.fromisoformat(cells[0])] = {
            code: Decimal(v) for code, v in zip(["USD", "JPY", "CYP", "CAD", "GBP"], cells[1:]) if v != "N/A"}
    return out


def _expected_in(path, ecb, target: str, start: dt.date, end: dt.date, grouping: str = "day"):
    """{group: (amount in target, first rate date, last rate date)} from the FOCUS rows, each charge day at
    the latest ECB day on or before it that has both currencies."""
    from decimal import localcontext

    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT {INDEPENDENT[grouping]}, BillingCurrency, CAST(ChargePeriodStart AS DATE), BilledCost "
                       f"FROM {TABLE} WHERE CAST(ChargePeriodStart AS DATE) BETWEEN ? AND ?", [start, end]).fetchall()
    con.close()
    out: dict = {}
    with localcontext() as ctx:
        ctx.prec = 60
        for g, cur, day, cost in rows:
            per_eur = lambda c, d: Decimal(1) if c == "EUR" else ecb[d].get(c)  # noqa: E731
            if cur == target:
                factor, used = Decimal(1), None
            else:
                used = max(d for d in ecb if d <= day and per_eur(cur, d) and per_eur(target, d))
                factor = per_eur(target, used) / per_eur(cur, used)
            amount, first, last = out.get(g, (Decimal(0), None, None))
            out[g] = (amount + cost * factor, min(filter(None, (first, used)), default=None),
                      max(filter(None, (last, used)), default=None))
    return out


def test_two_currencies_total_in_a_third_with_dated_rates(demo, api, ecb_file):
    path, wh = demo
    done = _invoke(["fx", "import", str(ecb_file)])
    assert done.exit_code == 0 and "platform-wide" in done.output, done.output
    again = _invoke(["fx", "import", str(ecb_file)])  # the whole history again: nothing new to store
    assert again.exit_code == 0 and "imported 0 rates" in again.output and "already stored" in again.output
    start, end = dt.date(2026, 9, 1), dt.date(2026, 10, 31)
    assert {cur for _, cur in independent_sums(path, "", start=start, end=end)} == {"USD", "EUR"}
    expected = _expected_in(path, _ecb_rates(ecb_file), "GBP", start, end)
    result = costs.query(wh, _q(group_by=("day",), start=start, end=end, currency="GBP"))
    nano = Decimal("1e-9")
    exact_total = sum(a for a, _, _ in expected.values())
    assert result.currency == "GBP" and result.total == exact_total.quantize(nano) and result.message is None
    assert {r["day"]: (r["amount"], r["rate_date_first"], r["rate_date"]) for r in result.rows} == {
        d: (a.quantize(nano), f, last) for d, (a, f, last) in expected.items()}
    # the rate dates really are dated: a Sunday uses Friday's rates, the GBP-less day the day before it
    by_day = {r["day"]: r for r in result.rows}
    assert by_day[dt.date(2026, 10, 4)]["rate_date"] == dt.date(2026, 10, 2)
    assert by_day[dt.date(2026, 10, 14)]["rate_date"] == dt.date(2026, 10, 13)
    assert all(r["currency"] == "GBP" for r in result.rows)
    # the same through the API and the CLI, as strings
    r = _get(api, "/api/v1/costs/acme", **{"from": "2026-09-01", "to": "2026-10-31", "group_by": "provider",
                                         "currency": "gbp"})
    by_provider = _expected_in(path, _ecb_rates(ecb_file), "GBP", start, end, grouping="provider")
    assert {row["provider"]: row["amount"] for row in r.json["rows"]} == {
        p: f"{a.quantize(nano):f}" for p, (a, _, _) in by_provider.items()}
    assert r.json["total"] == str(exact_total.quantize(nano)) and r.json["currency"] == "GBP"
    notion = next(row for row in r.json["rows"] if row["provider"] == "Notion")  # the EUR subscription
    assert notion["rate_date"] is not None and notion["rate_date"] <= "2026-10-30"
    cli = _cli("acme", "--from", "2026-09-01", "--to", "2026-10-31", "--by", "provider", "--currency", "GBP",
               "--format", "json")
    assert json.loads(cli.stdout)["rows"] == r.json["rows"]
    # FOCUS rows keep their own currency
    assert {cur for _, cur in independent_sums(path, "", start=start, end=end)} == {"USD", "EUR"}


def test_conversion_to_a_billing_currency_and_back(demo, ecb_file):
    path, wh = demo
    start, end = dt.date(2026, 10, 1), dt.date(2026, 10, 31)
    expected = _expected_in(path, _ecb_rates(ecb_file), "EUR", start, end, grouping="pipeline")
    result = costs.query(wh, _q(group_by=("pipeline",), start=start, end=end, currency="EUR"))
    assert {r["pipeline"]: r["amount"] for r in result.rows} == {
        p: a.quantize(Decimal("1e-9")) for p, (a, _, _) in expected.items()}
    subs = next(r for r in result.rows if r["pipeline"] == "subscription/costs/subscription_cost")
    assert subs["rate_date"] is not None  # USD subscriptions were converted (inverse EUR->USD)
    eur_only = costs.query(wh, _q(group_by=("provider",), providers=("Notion",), start=start, end=end, currency="EUR"))
    assert eur_only.rows[0]["rate_date"] is None  # nothing to convert, no rate used


def test_a_missing_rate_is_named(demo, ecb_file):
    _, wh = demo
    with pytest.raises(costs.fx.MissingRate) as e:  # the CAD Azure sample of 2023-09 predates every rate
        costs.query(wh, _q(group_by=("provider",), currency="GBP"))
    assert "no CAD->GBP exchange rate dated on or before 2023-09-02" in str(e.value)
    with pytest.raises(costs.fx.MissingRate) as e:
        costs.query(wh, _q(start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 2), currency="CHF"))
    assert str(e.value).startswith("currency: no EUR->CHF exchange rate dated on or before 2026-10-01 (and 1 later "
                                   "charge day(s)); no USD->CHF exchange rate dated on or before 2026-10-01")
    done = _cli("acme", "--from", "2023-09-01", "--to", "2023-09-30", "--currency", "GBP")
    assert done.exit_code == 1 and "--currency: no CAD->GBP exchange rate" in " ".join(done.output.split())


def test_api_missing_rate_is_422(api, ecb_file):
    r = _get(api, "/api/v1/costs/acme", **{"from": "2023-09-01", "to": "2023-09-30", "currency": "GBP"})
    assert r.status_code == 422 and r.json["error"] == "missing_rate" and "CAD->GBP" in r.json["message"]


def test_model_money_on_the_cloud_bill_is_by_model(demo):
    """Bedrock, Vertex, Gemini and Azure OpenAI money is on the cloud lines sp_genai_4 split over the usage
    (their GenAI rows cost 0 on covered days): cost by model shows it under the model's name."""
    path, wh = demo
    con = duckdb.connect(str(path))
    allocated = {(m, cur): amt for m, cur, amt in con.execute(
        f"SELECT AllocatedResourceName, BillingCurrency, SUM(BilledCost) FROM {TABLE} "
        "WHERE AllocatedMethodId = 'cloudact-genai-usage' GROUP BY ALL").fetchall()}
    con.close()
    assert len(allocated) >= 4 and all(v > 0 for v in allocated.values())
    by_model = _by_key(costs.query(wh, _q(group_by=("model",))), "model")
    for key, amount in allocated.items():
        assert by_model[key] >= amount


def test_model_is_read_from_genai_rows_only(demo):
    """A cloud row whose SkuId happens to end like a token class is no model, even one of the Generative AI
    subcategory, unless sp_genai_4 split it over the usage (added last: it changes the demo)."""
    path, wh = demo
    con = duckdb.connect(str(path))
    con.execute(f"INSERT INTO {TABLE} SELECT * REPLACE ('m5.large:output' AS SkuId, "
                f"'Generative AI' AS ServiceSubcategory) FROM {TABLE} "
                "WHERE x_pipeline_id = 'cloud/aws/cost/billing' AND BilledCost > 0 AND AllocatedMethodId IS NULL LIMIT 1")
    con.close()
    result = costs.query(wh, _q(group_by=("model",)))
    assert _by_key(result, "model") == independent_sums(path, "model")
    assert "m5.large" not in {r["model"] for r in result.rows}
