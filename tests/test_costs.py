"""shared.costs over the demo org: every grouping, metric and filter equals SQL written independently
over cost_data_standard_1_3, exact to the cent (to the last NUMERIC digit, in fact)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared import costs
from shared.inputs import FieldInvalid
from shared.tenants import UnknownOrg
from tests.costs_demo import ALL_DAYS, INDEPENDENT, build_demo, independent_sums


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from shared.warehouse.duckdb import DuckDBWarehouse

    path = build_demo(tmp_path_factory.mktemp("costs"))
    wh = DuckDBWarehouse(path)
    yield path, wh
    wh.close()


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
    usd = costs.query(wh, _q(group_by=("service",), providers=("google", "anthropic", "openai"), top=3, **window))
    expected = independent_sums(path, "service", where="ServiceProviderName IN ('Google', 'Anthropic', 'OpenAI')",
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
