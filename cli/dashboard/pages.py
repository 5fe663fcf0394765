"""What each dashboard page shows, for one org: the signed-in one, never a name taken from the request.

Every number comes from the module that owns it: costs from shared.costs.query, GenAI computed vs billed
from cli.reports.genai_reconciliation, subscriptions from shared.subscriptions, reconciliation and runs
from the runs' records (shared.runs). A page is a list of tables, each optionally drawn as a chart; the
table is the accessible, exact view (amounts as the Decimal they are), the chart a picture of it.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared import inputs, runs
from shared.naming import org_dataset, table_ref

DEFAULT_DAYS = 30
MAX_DAYS = 3660
TOP = 10
SUBSCRIPTION_PIPELINE = "subscription/costs/subscription_cost"


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text | money | int | date | status | long | lines | id


@dataclass
class Table:
    id: str
    caption: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    chart: dict[str, Any] | None = None  # {"type", "stacked", "horizontal", "series": [column keys], "label": key}
    note: str | None = None
    empty: str = "Nothing in this range."
    scroll: bool = False  # long tables (a row per day) scroll inside their card


@dataclass(frozen=True)
class Filters:
    start: dt.date
    end: dt.date
    provider: str | None
    currency: str | None  # a display currency to convert every charge to (shared.fx rates), or each its own
    providers: tuple[str, ...]  # the org's providers over all its data: the filter's choices
    defaulted: bool  # no range was asked for: the last DEFAULT_DAYS days that have data

    def query(self) -> dict[str, str]:
        q = {"from": self.start.isoformat(), "to": self.end.isoformat(), "provider": self.provider,
             "currency": self.currency}
        return {k: v for k, v in q.items() if v}


@dataclass
class Page:
    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def extent(wh, org: str) -> tuple[dt.date, dt.date] | None:
    """The first and last charge day the org has, to pick a default range that shows something."""
    rows = wh.query(
        f"SELECT MIN(DATE(ChargePeriodStart)) AS lo, MAX(DATE(ChargePeriodStart)) AS hi "
        f"FROM {table_ref(org_dataset(org), 'cost_data_standard_1_3')} WHERE x_org_slug = @org", {"org": org})
    return (rows[0]["lo"], rows[0]["hi"]) if rows and rows[0]["hi"] else None


def _date(args, name: str) -> dt.date | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        d = dt.date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        d = None
    if d is None:
        raise BadFilter(f"{name} must be a date as YYYY-MM-DD, got {raw[:40]!r}")
    try:
        inputs.check_date(name, d)
    except inputs.DateOutOfRange as e:
        raise BadFilter(str(e)) from None
    return d


def filters(wh, org: str, args, today: dt.date) -> Filters:
    from shared import costs

    span = extent(wh, org)
    start, end = _date(args, "from"), _date(args, "to")
    defaulted = start is None and end is None
    last = span[1] if span else today
    end = end or (last if start is None else max(start, min(last, start + dt.timedelta(days=DEFAULT_DAYS - 1))))
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise BadFilter("from is after to")
    if (end - start).days >= MAX_DAYS:
        raise BadFilter(f"a range covers at most {MAX_DAYS} days")
    providers: tuple[str, ...] = ()
    if span:
        res = costs.query(wh, costs.CostQuery(org=org, start=span[0], end=span[1], group_by=("provider",)))
        providers = tuple(sorted({r["provider"] for r in res.rows if r["provider"]}))
    provider = (args.get("provider") or "").strip() or None
    if provider is not None and provider not in providers:
        raise BadFilter(f"no provider {provider[:60]!r} in this organization's costs")
    currency = (args.get("currency") or "").strip().upper() or None
    if currency is not None and not (len(currency) == 3 and currency.isalpha() and currency.isascii()):
        raise BadFilter(f"a display currency is a three-letter code such as USD, got {currency[:20]!r}")
    return Filters(start, end, provider, currency, providers, defaulted)


def grain(f: Filters) -> str:
    """Days for a month or two, weeks up to half a year, months beyond: a readable number of bars."""
    days = (f.end - f.start).days + 1
    return "day" if days <= 62 else "week" if days <= 190 else "month"


def _money(v) -> Decimal | None:
    return None if v is None else Decimal(v) if not isinstance(v, Decimal) else v


def _cost(wh, org: str, f: Filters, group_by: tuple[str, ...], **kw):
    from shared import costs

    return costs.query(wh, costs.CostQuery(org=org, start=f.start, end=f.end, group_by=group_by,
                                           providers=(f.provider,) if f.provider else (), currency=f.currency, **kw))


def _labelled(name: str) -> str:
    return {"day": "Day", "week": "Week", "month": "Month", "provider": "Provider", "service": "Service",
            "category": "Category", "account": "Account", "account_name": "Account name", "region": "Region",
            "model": "Model", "pipeline": "Pipeline", "currency": "Currency", "amount": "Billed cost"}.get(
        name, name.replace("_", " ").capitalize())


def result_table(res, id: str, caption: str, chart: dict | None = None) -> Table:
    """A CostResult as a table: its group columns, then the amount and its currency."""
    groups = [c for c in res.columns if c not in ("amount", "currency", "rate_date", "rate_date_first")]
    cols = [Column(c, _labelled(c)) for c in groups] + [Column("amount", "Billed cost", "money"),
                                                        Column("currency", "Currency")]
    if "rate_date" in res.columns:
        cols += [Column("rate_date_first", "First rate date", "date"), Column("rate_date", "Last rate date", "date")]
    if chart is not None:
        several = len({r["currency"] for r in res.rows}) > 1
        label = chart.pop("label", groups[0])
        chart = {"type": "bar", "horizontal": True, "series": ["amount"], **chart,
                 "label": [label, "currency"] if several else label}
    return Table(id, caption, cols, [dict(r) for r in res.rows], chart=chart)


def costs_page(wh, org: str, f: Filters) -> Page:
    g = grain(f)
    page = Page("Costs")
    over_time = _cost(wh, org, f, (g, "provider"))
    page.tables += pivot(over_time, g, f"Billed cost per {g} by provider")
    for grouping, title in (("service", "services"), ("account", "accounts")):
        page.tables += top_tables(wh, org, f, grouping, f"top-{title}", f"Top {TOP} {title} by billed cost",
                                  several=len(over_time.currencies) > 1)
    if over_time.total is not None:
        page.notes.append(f"Total billed cost in this range: {over_time.total} {over_time.currency or ''}".strip())
    elif over_time.message:
        page.notes.append(over_time.message[0].upper() + over_time.message[1:] + ".")
    return page


def top_tables(wh, org: str, f: Filters, grouping: str, id: str, caption: str, several: bool) -> list[Table]:
    """The largest groups. Amounts in different currencies are never ranked against each other: without a
    display currency, an org billed in several gets a list (and chart) per currency."""
    if not several or f.currency:
        res = _cost(wh, org, f, (grouping,), top=TOP)
        table = result_table(res, id, caption, chart={})
        if res.others:
            table.note = f"Everything else adds up to {res.others} {res.currency}."
        return [table]
    res = _cost(wh, org, f, (grouping,))
    by_currency: dict[str, list[dict]] = defaultdict(list)
    for r in res.rows:
        by_currency[r["currency"]].append(r)
    tables = []
    for currency in sorted(by_currency, key=lambda c: (-len(by_currency[c]), c)):
        rows = by_currency[currency]  # the query lists the largest first
        part = costs_result(res.columns, rows[:TOP])
        tables.append(result_table(part, f"{id}-{currency.lower()}", f"{caption} ({currency})", chart={}))
    return tables


def costs_result(columns: list[str], rows: list[dict]):
    from shared import costs

    currencies = sorted({r["currency"] for r in rows})
    return costs.CostResult(columns=columns, rows=rows, total=None, currency=None, currencies=currencies)


def pivot(res, g: str, caption: str) -> list[Table]:
    """Periods down, providers across, a total per period: one table (and stacked chart) per currency, since
    amounts of different currencies are never added or stacked together."""
    counts: dict[str, int] = defaultdict(int)
    for r in res.rows:
        counts[r["currency"]] += 1
    currencies = sorted(counts, key=lambda c: (-counts[c], c))  # the currency most costs are in first
    tables = []
    for currency in currencies:
        rows_in = [r for r in res.rows if r["currency"] == currency]
        providers = sorted({r["provider"] or "(none)" for r in rows_in})
        key = {p: f"s{i}" for i, p in enumerate(providers)}
        by_period: dict[Any, dict[str, Any]] = {}
        for r in rows_in:
            row = by_period.setdefault(r[g], {"period": r[g], "total": Decimal(0)})
            k = key[r["provider"] or "(none)"]
            row[k] = row.get(k, Decimal(0)) + _money(r["amount"])
            row["total"] += _money(r["amount"])
        suffix = f" ({currency})" if len(currencies) > 1 else ""
        cols = ([Column("period", _labelled(g), "date")] + [Column(key[p], p, "money") for p in providers]
                + [Column("total", f"Total ({currency})", "money")])
        tables.append(Table("cost-over-time" + (f"-{currency.lower()}" if len(currencies) > 1 else ""),
                            caption + suffix, cols, [by_period[p] for p in sorted(by_period)],
                            chart={"type": "bar", "stacked": True, "label": "period",
                                   "series": [key[p] for p in providers]}, scroll=True))
    if not tables:
        tables.append(Table("cost-over-time", caption, [Column("period", _labelled(g), "date")], []))
    return tables


def genai_page(wh, org: str, f: Filters) -> Page:
    """Computed (usage at list or negotiated prices) vs what the provider billed, per model over the range."""
    from cli.reports import genai_reconciliation

    per_model: dict[tuple[str, str], dict[str, Any]] = {}
    for r in genai_reconciliation(wh, org, by_day=True):
        if not f.start <= r["usage_date"] <= f.end:
            continue
        m = per_model.setdefault((r["provider"], r["model"]), {
            "provider": r["provider"], "model": r["model"], "computed_cost": None, "billed_cost": None,
            "billed_by": set(), "reason": set()})
        for k in ("computed_cost", "billed_cost"):
            if r.get(k) is not None:  # NULL stays NULL: a model nothing bills has no billed cost, not 0
                m[k] = (m[k] or Decimal(0)) + _money(r[k])
        for k in ("billed_by", "reason"):  # the report's explanations, where it gives them
            if r.get(k):
                m[k].add(str(r[k]))
    rows = []
    for _, m in sorted(per_model.items()):
        c, b = m["computed_cost"], m["billed_cost"]
        rows.append({**m, "difference": (b - c) if b is not None and c is not None else None,
                     "billed_by": ", ".join(sorted(m["billed_by"])), "reason": "; ".join(sorted(m["reason"]))})
    cols = [Column("provider", "Provider"), Column("model", "Model"), Column("computed_cost", "Computed", "money"),
            Column("billed_cost", "Billed", "money"), Column("difference", "Billed − computed", "money")]
    if any(r["billed_by"] for r in rows):
        cols.append(Column("billed_by", "Billed by"))
    if any(r["reason"] for r in rows):
        cols.append(Column("reason", "Why they differ", "long"))
    table = Table("genai-models", "GenAI cost by model: computed from usage vs billed by the provider", cols, rows,
                  chart={"type": "bar", "horizontal": True, "label": "model",
                         "series": ["computed_cost", "billed_cost"]},
                  note="Amounts are in each provider's billing currency (USD for all GenAI APIs read today). "
                       "Billed is empty where the provider reports no cost. The provider and currency filters "
                       "apply to the FOCUS table below.")
    focus = _cost(wh, org, f, ("provider", "model"))
    focus = costs_result(focus.columns, [r for r in focus.rows if r["model"] is not None])
    return Page("GenAI", [table, result_table(focus, "genai-focus", "GenAI FOCUS billed cost by model",
                                              chart={"label": "model"})])


def subscriptions_page(wh, org: str, f: Filters) -> Page:
    from shared import subscriptions as subs

    listed = subs.list_subscriptions(org, wh=wh)
    cols = [Column("provider", "Vendor"), Column("plan", "Plan"), Column("seats", "Seats", "int"),
            Column("unit_price", "Price per seat", "money"), Column("discount_pct", "Discount %", "int"),
            Column("currency", "Currency"), Column("billing_cycle", "Cycle"), Column("start_date", "Start", "date"),
            Column("end_date", "End", "date"), Column("status", "Status", "status"), Column("owner", "Owner"),
            Column("department", "Department")]
    page = Page("Subscriptions", [Table("subscriptions", "SaaS subscriptions (terms in effect now)", cols, listed,
                                        empty="No subscriptions yet: add them with POST /api/v1/subscriptions/ORG.")])
    res = _cost(wh, org, f, ("pipeline", "provider"))
    res = costs_result([c for c in res.columns if c != "pipeline"],
                       [r for r in res.rows if r["pipeline"] == SUBSCRIPTION_PIPELINE])
    page.tables.append(result_table(res, "subscription-costs", "Subscription cost in this range (FOCUS billed cost)",
                                    chart={"label": "provider"}))
    return page


def reconciliation_page(wh, org: str) -> Page:
    """The latest check of each cloud billing period: the source's own total vs the FOCUS rows made from it."""
    latest: dict[tuple, dict[str, Any]] = {}
    for run in runs.list_runs(wh, org, limit=1000):  # newest first: the first record of a period is its latest
        view = runs.public_view(run)
        for p in (view["quality"] or {}).get("reconciliation", []):
            k = (view["pipeline"], view["credential_id"], p["billing_period"], p["currency"])
            latest.setdefault(k, {**p, "pipeline": view["pipeline"], "run_id": view["run_id"],
                                  "checked_at": (view["quality"] or {}).get("checked_at"),
                                  "result": "reconciled" if p["ok"] else "off"})
    rows = [latest[k] for k in sorted(latest, key=lambda k: (k[2], k[0], k[3]), reverse=True)]
    cols = [Column("billing_period", "Billing period", "date"), Column("pipeline", "Pipeline"),
            Column("currency", "Currency"), Column("source_rows", "Source rows", "int"),
            Column("focus_rows", "FOCUS rows", "int"), Column("source_cost", "Source total", "money"),
            Column("billed_cost", "FOCUS billed cost", "money"), Column("difference", "Difference", "money"),
            Column("result", "Result", "status"), Column("run_id", "Run", "id")]
    return Page("Reconciliation", [Table(
        "reconciliation", "Cloud bills reconciled per billing period (latest run of each)", cols, rows,
        note="Each conversion sums the provider's export as read and the FOCUS BilledCost made from it; "
             "a difference over half a cent fails the run.", empty="No cloud billing run has finished yet.")])


def _seconds(a, b) -> Decimal | None:
    return None if a is None or b is None else Decimal((b - a).total_seconds()).quantize(Decimal("0.1"))


def runs_page(wh, org: str, limit: int = 50) -> Page:
    rows = []
    for run in runs.list_runs(wh, org, limit=limit):
        view = runs.public_view(run)
        rows.append({**view, "duration_s": _seconds(run["started_at"] or run["created_at"], run["finished_at"]),
                     "warnings_text": "\n".join(map(str, view["warnings"]))})
    cols = [Column("created_at", "Queued at (UTC)", "date"), Column("pipeline", "Pipeline"),
            Column("start_date", "From", "date"), Column("end_date", "To", "date"),
            Column("status", "Status", "status"), Column("duration_s", "Duration (s)", "int"),
            Column("rows_ingested", "Rows ingested", "int"), Column("rows_converted", "FOCUS rows", "int"),
            Column("run_id", "Run", "id"), Column("error", "Error", "long"), Column("warnings_text", "Warnings", "lines")]
    return Page("Runs", [Table("runs", f"The {limit} most recent runs", cols, rows, empty="No runs yet.")])
