"""The cost query behind `cloudact costs`, `GET /api/v1/costs/{org}` and the dashboard.

One question, "how much, grouped by what, over which days", asked of an org's
`cost_data_standard_1_3`. Every grouping name maps to a fixed FOCUS expression below; nothing a
client sends becomes SQL text (tag keys and filter values are bound parameters).

- Days: a charge belongs to the UTC day its ChargePeriodStart falls on; `start`..`end` are inclusive.
- Currencies: rows are summed per BillingCurrency. Without a display currency a result that holds
  several has no total (`total` None and `message` says why): amounts of different currencies are
  never added. With one, each charge day is converted at the latest rate dated on or before it
  (shared/fx.py) and every row says the rate dates it used. The FOCUS rows keep their currency.
- Amounts are exact sums of NUMERIC; converted amounts are exact products, rounded once per row
  (and once for the total) to NUMERIC's 9 decimal places.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from shared import fx
from shared.inputs import FieldInvalid, check_date
from shared.naming import InvalidName, org_dataset, table_ref, validate_org_slug
from shared.tenants import get_org

GROUPINGS = ("day", "week", "month", "provider", "service", "category", "account", "region", "model", "pipeline")
METRICS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
TIME_GROUPINGS = ("day", "week", "month")
MAX_GROUPINGS = 5
MAX_FILTER_VALUES = 50
MAX_DAYS = 3700  # ten years and change: a range check, not a product limit
_NANO = Decimal("1e-9")
_TAG_KEY = re.compile(r'^[^"\\\x00-\x1f]{1,256}$')

# The GenAI conversion (sp_genai_3) writes SkuId = "<priced model>:<token class>[:batch]" on its Usage
# rows; the model is what precedes the token class. Model ids may hold ':' (Bedrock's "...-v1:0").
# Where the cloud bill holds a model's money (sp_genai_4), the split cloud lines name the model in
# AllocatedResourceName and the GenAI rows cost 0: the model's money is on the cloud rows.
_GENAI_SKU = r"':(input|cached_input|cache_write|cache_write_1h|output)(:batch)?$'"
GENAI_ALLOCATION = "cloudact-genai-usage"  # AllocatedMethodId of sp_genai_4's split lines
_EXPRESSIONS = {
    "day": "DATE(f.ChargePeriodStart)",
    # CAST: DuckDB's DATE_TRUNC of a DATE is a TIMESTAMP; BigQuery's a DATE
    "week": "CAST(DATE_TRUNC(DATE(f.ChargePeriodStart), ISOWEEK) AS DATE)",  # the Monday
    "month": "CAST(DATE_TRUNC(DATE(f.ChargePeriodStart), MONTH) AS DATE)",
    "provider": "f.ServiceProviderName",
    "service": "f.ServiceName",
    "category": "f.ServiceCategory",
    "account": "f.SubAccountId",
    "region": "f.RegionId",
    "model": (f"CASE WHEN f.AllocatedMethodId = '{GENAI_ALLOCATION}' THEN f.AllocatedResourceName "
              f"WHEN STARTS_WITH(f.x_pipeline_id, 'genai/') AND f.ServiceSubcategory = 'Generative AI' "
              f"AND REGEXP_CONTAINS(f.SkuId, r{_GENAI_SKU}) THEN REGEXP_REPLACE(f.SkuId, r{_GENAI_SKU}, '') END"),
    "pipeline": "f.x_pipeline_id",
}


@dataclass(frozen=True)
class CostQuery:
    org: str
    start: dt.date
    end: dt.date  # inclusive
    group_by: tuple[str, ...] = ("provider",)
    metric: str = "BilledCost"
    currency: str | None = None  # display currency: convert every charge to it
    providers: tuple[str, ...] = ()  # ServiceProviderName, any case
    services: tuple[str, ...] = ()  # ServiceName, exact
    tags: tuple[tuple[str, str], ...] = ()  # (key, value): Tags[key] = value, all of them
    top: int | None = None  # keep the N largest rows (the total still covers every row)


@dataclass
class CostResult:
    columns: list[str]
    rows: list[dict]  # group values + "amount" (Decimal) + "currency" (+ "rate_date", "rate_date_first")
    total: Decimal | None
    currency: str | None
    currencies: list[str] = field(default_factory=list)  # the BillingCurrency values summed
    message: str | None = None  # why there is no total
    others: Decimal | None = None  # with `top`: what the rows left out add up to
    query: CostQuery | None = None


def default_query(org: str, today: dt.date) -> CostQuery:
    """Where did my money go this month: this month so far, by provider and service, largest first."""
    return CostQuery(org=org, start=today.replace(day=1), end=today, group_by=("provider", "service"))


def tag_key(grouping: str) -> str | None:
    return grouping[4:] if grouping.startswith("tag:") else None


def _check_tag_key(field_name: str, key: str) -> str:
    if not isinstance(key, str) or not _TAG_KEY.match(key):
        raise FieldInvalid(field_name, "a tag key is 1-256 characters without double quotes, backslashes or "
                           f"control characters, got {key!r}")
    return key


def _json_path(key: str) -> str:
    # Quoted so keys with dots or colons ("user:team", "oracle-tags.createdby") name one member.
    return f'$."{key}"'


def validate(q: CostQuery) -> CostQuery:
    """The query with normalized values, or FieldInvalid naming the field."""
    try:
        validate_org_slug(q.org)
    except InvalidName as e:
        raise FieldInvalid("org", str(e)) from None
    for name in ("start", "end"):
        value = getattr(q, name)
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise FieldInvalid(name, f"must be a date, got {value!r}")
        check_date(name, value)
    if q.start > q.end:
        raise FieldInvalid("start", f"{q.start} is after the end {q.end}")
    if (q.end - q.start).days >= MAX_DAYS:
        raise FieldInvalid("end", f"a cost query covers at most {MAX_DAYS} days")
    if isinstance(q.group_by, str) or len(q.group_by) > MAX_GROUPINGS:
        raise FieldInvalid("group_by", f"give at most {MAX_GROUPINGS} groupings")
    for g in q.group_by:
        key = tag_key(g) if isinstance(g, str) else None
        if key is not None:
            _check_tag_key("group_by", key)
        elif g not in GROUPINGS:
            raise FieldInvalid("group_by", f"unknown grouping {g!r}; use {', '.join(GROUPINGS)} or tag:KEY")
    if len(set(q.group_by)) != len(q.group_by):
        raise FieldInvalid("group_by", "a grouping is given twice")
    if q.metric not in METRICS:
        raise FieldInvalid("metric", f"unknown metric {q.metric!r}; use one of {', '.join(METRICS)}")
    currency = None if q.currency is None else fx.currency_code("currency", q.currency)
    for name in ("providers", "services"):
        values = getattr(q, name)
        if isinstance(values, str) or len(values) > MAX_FILTER_VALUES or \
                not all(isinstance(v, str) and 0 < len(v) <= 256 for v in values):
            raise FieldInvalid(name, f"give at most {MAX_FILTER_VALUES} non-empty names")
    if len(q.tags) > MAX_FILTER_VALUES:
        raise FieldInvalid("tags", f"give at most {MAX_FILTER_VALUES} tag filters")
    for pair in q.tags:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
            raise FieldInvalid("tags", "each tag filter is a (key, value) pair")
        _check_tag_key("tags", pair[0])
    if q.top is not None and (not isinstance(q.top, int) or isinstance(q.top, bool) or q.top < 1):
        raise FieldInvalid("top", f"must be a whole number of at least 1, got {q.top!r}")
    return CostQuery(org=q.org, start=q.start, end=q.end, group_by=tuple(q.group_by), metric=q.metric,
                     currency=currency, providers=tuple(p.lower() for p in q.providers),
                     services=tuple(q.services), tags=tuple(q.tags), top=q.top)


def _sql(q: CostQuery, by_day: bool) -> tuple[str, dict]:
    params: dict = {"org": q.org, "start": q.start, "end": q.end}
    select, group = [], []
    for i, g in enumerate(q.group_by):
        key = tag_key(g)
        if key is not None:
            params[f"tag_{i}"] = _json_path(key)
            expr = f"JSON_VALUE(f.Tags, @tag_{i})"
        else:
            expr = _EXPRESSIONS[g]
        select.append(f"{expr} AS g{i}")
        group.append(f"g{i}")
        if g == "account":
            select.append("MAX(f.SubAccountName) AS account_name")
    if by_day:
        select.append("DATE(f.ChargePeriodStart) AS charge_day")
        group.append("charge_day")
    where = ["f.x_org_slug = @org", "f.ChargePeriodStart >= TIMESTAMP(@start)",
             "f.ChargePeriodStart < TIMESTAMP(DATE_ADD(@end, INTERVAL 1 DAY))"]
    if q.providers:
        where.append("LOWER(f.ServiceProviderName) IN UNNEST(@providers)")
        params["providers"] = list(q.providers)
    if q.services:
        where.append("f.ServiceName IN UNNEST(@services)")
        params["services"] = list(q.services)
    for i, (key, value) in enumerate(q.tags):
        where.append(f"JSON_VALUE(f.Tags, @ftag_{i}) = @ftag_value_{i}")
        params[f"ftag_{i}"], params[f"ftag_value_{i}"] = _json_path(key), value
    metric = f"f.{q.metric}"  # a member of METRICS, checked in validate()
    sql = (f"SELECT {', '.join(select + ['f.BillingCurrency AS currency', f'SUM({metric}) AS amount'])}\n"
           f"FROM {table_ref(org_dataset(q.org), 'cost_data_standard_1_3')} AS f\n"
           f"WHERE {' AND '.join(where)}\n"
           f"GROUP BY {', '.join(group + ['currency'])}")
    return sql, params


def _names(q: CostQuery) -> list[str]:
    names = []
    for g in q.group_by:
        names.append(g)
        if g == "account":
            names.append("account_name")
    return names


def _sort_key(names_time: list[str], names: list[str]):
    def key(row):
        # time groupings ascending (None last), the largest amounts first, then by name: the same every time
        return (tuple((row[n] is None, row[n] or dt.date.min) for n in names_time), -row["amount"],
                tuple((row[n] is None, str(row[n])) for n in names), row["currency"])
    return key


def query(wh, q: CostQuery) -> CostResult:
    """Run a cost query. FieldInvalid for bad input, fx.MissingRate (a FieldInvalid on "currency")
    when a conversion lacks a rate, tenants.UnknownOrg for an org that does not exist."""
    q = validate(q)
    get_org(wh, q.org)
    sql, params = _sql(q, by_day=q.currency is not None)
    raw = wh.query(sql, params)
    group_names = _names(q)
    aliases = [f"g{i}" for i in range(len(q.group_by))]
    currencies = sorted({r["currency"] for r in raw})
    rows: list[dict] = []
    if q.currency is None:
        for r in raw:
            row = {g: r[a] for g, a in zip(q.group_by, aliases)}
            if "account" in q.group_by:
                row["account_name"] = r["account_name"]
            row["amount"], row["currency"] = r["amount"], r["currency"]
            rows.append(row)
        columns = group_names + ["amount", "currency"]
        exact_total = sum((r["amount"] for r in rows), Decimal(0)) if len(currencies) <= 1 else None
        currency = currencies[0] if len(currencies) == 1 else None
    else:
        rows, exact_total = _convert(wh, q, raw, aliases, currencies)
        columns = group_names + ["amount", "currency", "rate_date_first", "rate_date"]
        currency = q.currency
    message = None
    if exact_total is None:
        message = (f"these costs are in {len(currencies)} currencies ({', '.join(currencies)}): amounts of "
                   "different currencies are never added; give a display currency to convert them and get a total")
    time_names = [g for g in q.group_by if g in TIME_GROUPINGS]
    others = None
    if q.top is not None and len(rows) > q.top:
        if exact_total is None:
            raise FieldInvalid("top", message.replace("get a total", "rank them"))
        kept = sorted(rows, key=_sort_key([], group_names))[:q.top]
        others = exact_total - sum((r["amount"] for r in kept), Decimal(0))
        rows = kept
    rows.sort(key=_sort_key(time_names, group_names))
    total = exact_total
    if q.currency is not None:
        total = exact_total.quantize(_NANO, ROUND_HALF_EVEN)
        if others is not None:
            others = others.quantize(_NANO, ROUND_HALF_EVEN)
        for r in rows:
            r["amount"] = r["amount"].quantize(_NANO, ROUND_HALF_EVEN)
    return CostResult(columns=columns, rows=rows, total=total, currency=currency, currencies=currencies,
                      message=message, others=others, query=q)


def _convert(wh, q: CostQuery, raw: list[dict], aliases: list[str], currencies: list[str]):
    """Rows per group in q.currency: each (group, currency, day) sum times that day's rate, exactly."""
    book = fx.load(wh, q.org, currencies, q.currency, q.end)
    missing: dict[str, list[dt.date]] = {}
    groups: dict[tuple, dict] = {}
    total = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = fx.PRECISION
        for r in raw:
            found = book.factor(r["currency"], q.currency, r["charge_day"])
            if found is None:
                missing.setdefault(r["currency"], []).append(r["charge_day"])
                continue
            factor, rate_day = found
            amount = r["amount"] * factor
            key = tuple(r[a] for a in aliases)
            row = groups.get(key)
            if row is None:
                row = groups[key] = {g: r[a] for g, a in zip(q.group_by, aliases)}
                if "account" in q.group_by:
                    row["account_name"] = r["account_name"]
                row.update(amount=Decimal(0), currency=q.currency, rate_date_first=None, rate_date=None)
            elif "account" in q.group_by and (r["account_name"] or "") > (row["account_name"] or ""):
                row["account_name"] = r["account_name"]
            row["amount"] += amount
            total += amount
            if r["currency"] != q.currency:  # a rate was used
                row["rate_date_first"] = min(filter(None, (row["rate_date_first"], rate_day)))
                row["rate_date"] = max(filter(None, (row["rate_date"], rate_day)))
    if missing:
        raise fx.MissingRate(q.currency, missing)
    return list(groups.values()), total


def amount_text(value: Decimal | None) -> str | None:
    """An amount as a plain decimal string (never an exponent), for JSON and CSV."""
    return None if value is None else format(value, "f")


def _text(v):
    if isinstance(v, Decimal):
        return amount_text(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def to_json(result: CostResult) -> dict:
    """The result as JSON-ready data (the API's body and `cloudact costs --format json`): amounts and dates
    as strings, so no client reads money through a float."""
    q = result.query
    return {
        "org": q.org, "from": q.start.isoformat(), "to": q.end.isoformat(), "metric": q.metric,
        "group_by": list(q.group_by), "currency": result.currency, "currencies": result.currencies,
        "columns": result.columns,
        "rows": [{k: _text(v) for k, v in r.items()} for r in result.rows],
        "total": amount_text(result.total), "others": amount_text(result.others), "message": result.message,
    }


def to_csv(result: CostResult) -> str:
    """One header line (the columns) and one line per row, amounts exact."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for r in result.rows:
        writer.writerow(["" if r.get(c) is None else _text(r.get(c)) for c in result.columns])
    return out.getvalue()
