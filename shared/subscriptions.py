"""SaaS subscriptions (Canva, Slack, ChatGPT Plus, any vendor): validation, history and billing cycles.

Storage model (`organizations.saas_subscriptions`, schemas/saas_subscriptions.json)
---------------------------------------------------------------------------------
A subscription is a list of *versions*, one row each, never edited in place (only the informational
`effective_to` is closed when a later version is written). A version holds the full terms (seats,
unit price, discount, plan, owner, department, status, end date) in effect from `effective_from`.

- `create` writes version 1 with `effective_from = start_date`.
- `update(..., effective_date=D)` writes version n+1 from D: the terms in effect on D with the changes
  applied. D may not be before the latest version's effective_from (no back-dating behind a change
  already recorded); D equal to it corrects that version (the higher version wins).
- `cancel(..., end_date=E)` writes a version from E + 1 day with status `cancelled` and end_date E.
  It may move an end earlier, never later.

Resolution, which is all a reader needs (`Timeline`, `timelines(wh, org)`): take the rows in version order; each row
replaces every earlier row whose effective_from is on or after its own, then applies from its
effective_from until the next remaining row's. Day d is billed when the version in effect on d is
`active`, d >= start_date, and d <= end_date (when set). `effective_to` mirrors this result for people
and SQL readers; nothing here depends on it, so a crash between the two writes of a change is harmless.

Billing cycles are anchored on start_date: monthly cycles start on the same day of each month (clamped
to the month's last day for 29-31: Jan 31, Feb 29, Mar 31, ...), annual cycles on the same date each
year (Feb 29 -> Feb 28 in common years), custom cycles every `cycle_days` days. Amortization: a
cycle of n days costs seats x unit price per seat, where the unit price per seat is
round9(unit_price x (1 - discount_pct/100)) (half away from zero). One seat's share of a day is
floor9(unit/n); the cycle's last day takes the remainder, so n days sum exactly to the unit price and
seats x shares sum exactly to the cycle amount. A cycle cut short by the end date puts the remainder
on the last billed day instead, so k of n days sum to round9(unit x k / n). A change of seats or price
inside a cycle prorates by day: each day is costed at the terms in effect that day.

Money: Decimal end to end, at most 9 decimal places (BigQuery NUMERIC). Strings and ints are parsed
exactly; a JSON number that arrives as a Python float is read through its shortest repr
(`Decimal(str(v))`, so 12.99 means 12.99, never 12.9900000000000002131628...).
"""
from __future__ import annotations

import bisect
import calendar
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from shared import inputs
from shared.naming import table_ref, validate_org_slug

META = "organizations"
TABLE = "saas_subscriptions"
BILLING_CYCLES = ("monthly", "annual", "custom")
STATUSES = ("active", "cancelled")
NINE = Decimal("0.000000001")
# Arithmetic context for amounts: wide enough that no product or quotient is rounded before the explicit
# 9-place quantize (the default context keeps 28 significant digits).
MATH = Context(prec=80)
MAX_CYCLE_DAYS = 3660
_PROVIDER = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_MAX_MONEY = Decimal(10) ** 20

# Active ISO 4217 currency codes (national and supranational currencies, plus the fund codes some
# invoices carry: BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW). Precious metals and testing codes
# (XAU, XAG, XPD, XPT, XDR, XSU, XUA, XTS, XXX, XBA-XBD) are not billing currencies and are refused.
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD
KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO
NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD
SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV
WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())

# What create accepts; what update may change (the rest define the cycles: cancel and create anew).
_REQUIRED = ("provider", "plan", "seats", "unit_price", "currency", "billing_cycle", "start_date")
_OPTIONAL = ("cycle_days", "end_date", "discount_pct", "owner", "department")
CREATE_FIELDS = _REQUIRED + _OPTIONAL
CHANGEABLE = ("seats", "unit_price", "discount_pct", "plan", "owner", "department")

# Examples for the demo and docs (create() documents).
DEMO_SUBSCRIPTIONS: tuple[dict[str, Any], ...] = (
    {"provider": "slack", "plan": "business_plus", "seats": 25, "unit_price": "15.00", "currency": "USD",
     "billing_cycle": "monthly", "start_date": "2025-01-15", "owner": "it@acme.example", "department": "engineering"},
    {"provider": "canva", "plan": "teams", "seats": 5, "unit_price": "120.00", "currency": "USD",
     "billing_cycle": "annual", "start_date": "2024-11-01", "discount_pct": "10", "owner": "brand@acme.example",
     "department": "marketing"},
    {"provider": "chatgpt_plus", "plan": "plus", "seats": 3, "unit_price": "20.00", "currency": "USD",
     "billing_cycle": "monthly", "start_date": "2025-03-31", "owner": "ceo@acme.example", "department": "leadership"},
    {"provider": "notion", "plan": "business", "seats": 40, "unit_price": "45.00", "currency": "EUR",
     "billing_cycle": "custom", "cycle_days": 90, "start_date": "2025-02-01", "department": "operations"},
)


class SubscriptionInvalid(inputs.FieldInvalid):
    """A subscription document or change is invalid; `field` names the offending field."""


class UnknownSubscription(LookupError):
    pass


class SubscriptionConflict(RuntimeError):
    """Another change to the same subscription was written at the same time; re-read and retry."""


# -- parsing -------------------------------------------------------------------------------------
def parse_money(field: str, value: Any, *, allow_negative: bool = False) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise SubscriptionInvalid(field, f"must be a decimal number such as \"12.50\", got {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(str(value))  # the number as written in JSON, not its binary expansion
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise SubscriptionInvalid(field, f"must be a decimal number such as \"12.50\", got {value!r}") from None
    else:
        raise SubscriptionInvalid(field, f"must be a decimal number, got {type(value).__name__}")
    if not d.is_finite():
        raise SubscriptionInvalid(field, f"must be a finite number, got {value!r}")
    if d < 0 and not allow_negative:
        raise SubscriptionInvalid(field, f"must not be negative, got {value!r}")
    if abs(d) >= _MAX_MONEY:
        raise SubscriptionInvalid(field, f"is too large ({value!r})")
    if d != d.quantize(NINE, rounding=ROUND_DOWN):
        raise SubscriptionInvalid(field, f"has more than 9 decimal places ({value!r})")
    return d


def parse_date(field: str, value: Any) -> dt.date:
    """A date as YYYY-MM-DD inside inputs.MIN_DATE..MAX_DATE (so "the next day" never overflows)."""
    if isinstance(value, dt.datetime):
        raise SubscriptionInvalid(field, f"must be a date as YYYY-MM-DD, not a timestamp ({value!r})")
    if isinstance(value, dt.date):
        day = value
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip(), re.ASCII):
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise SubscriptionInvalid(field, f"is not a real date: {value!r}") from None
    else:
        raise SubscriptionInvalid(field, f"must be a date as YYYY-MM-DD, got {value!r}")
    try:
        return inputs.check_date(field, day)
    except inputs.DateOutOfRange as e:
        raise SubscriptionInvalid(field, str(e).removeprefix(f"{field} ")) from None


def _int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not '²'/'٣'
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubscriptionInvalid(field, f"must be a whole number, got {value!r}")
    if value < low:
        raise SubscriptionInvalid(field, f"must be at least {low}, got {value}")
    if value > high:
        raise SubscriptionInvalid(field, f"must be at most {high}, got {value}")
    return value


def _text(field: str, value: Any, *, required: bool, max_len: int = 200) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SubscriptionInvalid(field, "is required")
        return None
    if not isinstance(value, str):
        raise SubscriptionInvalid(field, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > max_len:
        raise SubscriptionInvalid(field, f"is longer than {max_len} characters")
    return value


def _discount(value: Any) -> Decimal | None:
    if value is None:
        return None
    d = parse_money("discount_pct", value)
    if d > 100:
        raise SubscriptionInvalid("discount_pct", f"must be between 0 and 100, got {value!r}")
    return d


def _check_fields(doc: Any, allowed: Iterable[str], what: str) -> None:
    if not isinstance(doc, Mapping):
        raise SubscriptionInvalid(what, "must be a JSON object")
    allowed = tuple(allowed)
    for key in doc:
        if key not in allowed:
            raise SubscriptionInvalid(str(key), f"unknown field; allowed: {', '.join(allowed)}")


def validate(doc: Any) -> dict[str, Any]:
    """A create document, checked and normalized (Decimal money, date objects, upper-case currency)."""
    _check_fields(doc, CREATE_FIELDS, "subscription")
    for key in _REQUIRED:
        if doc.get(key) is None:
            raise SubscriptionInvalid(key, "is required")
    provider = doc["provider"]
    if not isinstance(provider, str) or not _PROVIDER.match(provider):
        raise SubscriptionInvalid("provider", "must be a lower-case id of 2-40 letters, digits and underscores "
                                  f"starting with a letter (e.g. slack, canva, chatgpt_plus), got {provider!r}")
    currency = doc["currency"]
    if not isinstance(currency, str) or currency.strip().upper() not in CURRENCIES:
        raise SubscriptionInvalid("currency", f"unknown ISO 4217 currency code {currency!r}")
    cycle = doc["billing_cycle"]
    if cycle not in BILLING_CYCLES:
        raise SubscriptionInvalid("billing_cycle", f"must be one of {', '.join(BILLING_CYCLES)}, got {cycle!r}")
    if cycle == "custom":
        if doc.get("cycle_days") is None:
            raise SubscriptionInvalid("cycle_days", "is required when billing_cycle is custom")
        cycle_days = _int("cycle_days", doc["cycle_days"], 1, MAX_CYCLE_DAYS)
    elif doc.get("cycle_days") is not None:
        raise SubscriptionInvalid("cycle_days", f"is only allowed when billing_cycle is custom (not {cycle})")
    else:
        cycle_days = None
    start = parse_date("start_date", doc["start_date"])
    end = parse_date("end_date", doc["end_date"]) if doc.get("end_date") is not None else None
    if end is not None and end < start:
        raise SubscriptionInvalid("end_date", f"{end} is before start_date {start}")
    return {
        "provider": provider,
        "plan": _text("plan", doc["plan"], required=True, max_len=100),
        "seats": _int("seats", doc["seats"], 1, 10_000_000),
        "unit_price": parse_money("unit_price", doc["unit_price"]),
        "currency": currency.strip().upper(),
        "billing_cycle": cycle,
        "cycle_days": cycle_days,
        "start_date": start,
        "end_date": end,
        "discount_pct": _discount(doc.get("discount_pct")),
        "owner": _text("owner", doc.get("owner"), required=False),
        "department": _text("department", doc.get("department"), required=False),
    }


def validate_changes(changes: Any) -> dict[str, Any]:
    """An update's changes, checked and normalized. Cycle-defining fields cannot change."""
    if not isinstance(changes, Mapping):
        raise SubscriptionInvalid("changes", "must be a JSON object")
    for key in changes:
        if key in CREATE_FIELDS and key not in CHANGEABLE:
            how = "cancel it" if key == "end_date" else "cancel this subscription and create a new one"
            raise SubscriptionInvalid(key, f"cannot be changed on an existing subscription; {how}")
    _check_fields(changes, CHANGEABLE, "changes")
    if not changes:
        raise SubscriptionInvalid("changes", f"nothing to change; give one of {', '.join(CHANGEABLE)}")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "seats":
            out[key] = _int("seats", value, 1, 10_000_000)
        elif key == "unit_price":
            out[key] = parse_money("unit_price", value)
        elif key == "discount_pct":
            out[key] = _discount(value)
        elif key == "plan":
            out[key] = _text("plan", value, required=True, max_len=100)
        else:
            out[key] = _text(key, value, required=False)
    return out


# -- versions and their resolution -----------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    subscription_id: str
    version: int
    org_slug: str
    provider: str
    plan: str
    seats: int
    unit_price: Decimal
    currency: str
    billing_cycle: str
    cycle_days: int | None
    start_date: dt.date
    end_date: dt.date | None
    discount_pct: Decimal | None
    owner: str | None
    department: str | None
    status: str
    effective_from: dt.date
    effective_to: dt.date | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Version:
        return cls(**{f: row.get(f) for f in cls.__dataclass_fields__})

    def row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @property
    def seat_price(self) -> Decimal:
        """The price of one seat for one cycle after the discount, at 9 decimal places."""
        return seat_price(self.unit_price, self.discount_pct)


def seat_price(unit_price: Decimal, discount_pct: Decimal | None) -> Decimal:
    if not discount_pct:
        return Decimal(unit_price).quantize(NINE, context=MATH)
    factor = MATH.divide(MATH.subtract(Decimal(100), Decimal(discount_pct)), Decimal(100))
    return MATH.multiply(Decimal(unit_price), factor).quantize(NINE, rounding=ROUND_HALF_UP, context=MATH)


class Timeline:
    """The resolved versions of one subscription: which terms apply on which day."""

    def __init__(self, rows: Iterable[Version]):
        rows = sorted(rows, key=lambda v: v.version)
        if not rows:
            raise ValueError("a timeline needs at least one version")
        tiles: list[Version] = []
        for v in rows:
            tiles = [t for t in tiles if t.effective_from < v.effective_from]
            tiles.append(v)
        self.rows = rows
        self.tiles = tiles
        self._starts = [t.effective_from for t in tiles]

    @property
    def subscription_id(self) -> str:
        return self.tiles[0].subscription_id

    @property
    def latest(self) -> Version:
        """The terms from the last effective_from on (the subscription as it stands)."""
        return self.tiles[-1]

    @property
    def first_day(self) -> dt.date:
        return self.tiles[0].start_date

    def effective_to(self, v: Version) -> dt.date | None:
        """The derived exclusive end of a version's terms (== effective_from when it never applied)."""
        if v not in self.tiles:
            return v.effective_from
        i = self.tiles.index(v)
        return self.tiles[i + 1].effective_from if i + 1 < len(self.tiles) else None

    def at(self, day: dt.date) -> Version | None:
        """The version in effect on `day` (None before the first)."""
        i = bisect.bisect_right(self._starts, day) - 1
        return self.tiles[i] if i >= 0 else None

    def billed(self, day: dt.date) -> Version | None:
        """The version `day` is billed under, or None when the day is not billed."""
        v = self.at(day)
        if v is None or v.status != "active" or day < v.start_date or (v.end_date is not None and day > v.end_date):
            return None
        return v

    def last_billed_day(self) -> dt.date | None:
        """The subscription's last billed day, or None while it is open-ended.

        end_date is copied into every later version, and a cancellation is always the latest version
        (it replaces everything scheduled after it), so the latest version knows.
        """
        return self.latest.end_date


# -- billing cycles ------------------------------------------------------------------------------
def add_months(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return dt.date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def cycle_for(anchor: dt.date, billing_cycle: str, cycle_days: int | None, day: dt.date) -> tuple[dt.date, dt.date]:
    """The billing cycle [start, end) holding `day` for a subscription anchored on `anchor` (day >= anchor).

    Every cycle boundary is computed from the anchor, never from the previous boundary, so a 31st
    anchor comes back to the 31st after a short month.
    """
    if day < anchor:
        raise ValueError(f"{day} is before the cycle anchor {anchor}")
    if billing_cycle == "custom":
        if not cycle_days:
            raise ValueError("custom cycles need cycle_days")
        k = (day - anchor).days // cycle_days
        start = anchor + dt.timedelta(days=k * cycle_days)
        return start, start + dt.timedelta(days=cycle_days)
    step = {"monthly": 1, "annual": 12}.get(billing_cycle)
    if step is None:
        raise ValueError(f"unknown billing_cycle {billing_cycle!r}")
    k = ((day.year - anchor.year) * 12 + day.month - anchor.month) // step
    start = add_months(anchor, k * step)
    if start > day:
        k -= 1
        start = add_months(anchor, k * step)
    return start, add_months(anchor, (k + 1) * step)


def seat_share(unit: Decimal, cycle_days: int, day_index: int, billed_days: int | None = None) -> Decimal:
    """One seat's share of `unit` (per cycle) for day `day_index` (0-based) of an n-day cycle.

    Every day but the last billed one gets floor9(unit / n); the last billed one gets the remainder,
    so the full cycle sums exactly to `unit` and a cycle cut short after k days to round9(unit x k / n).
    `billed_days` is k when the cycle is cut short, None when it runs to its end.
    """
    unit = Decimal(unit)
    k = cycle_days if billed_days is None else billed_days
    base = MATH.divide(unit, cycle_days).quantize(NINE, rounding=ROUND_DOWN, context=MATH)
    if day_index < k - 1:
        return base
    if k == cycle_days:
        return MATH.subtract(unit, MATH.multiply(base, cycle_days - 1))
    prorated = MATH.divide(MATH.multiply(unit, k), cycle_days).quantize(NINE, rounding=ROUND_HALF_UP, context=MATH)
    return MATH.subtract(prorated, MATH.multiply(base, k - 1))


# -- public view ---------------------------------------------------------------------------------
def _money_text(d: Decimal | None) -> str | None:
    if d is None:
        return None
    return format(Decimal(d).normalize(), "f")


def _iso(v):
    return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v


def public(v: Version, effective_to: dt.date | None = None) -> dict[str, Any]:
    """The API-facing record of one version: JSON-ready values, money as decimal strings."""
    return {
        "subscription_id": v.subscription_id, "org": v.org_slug, "provider": v.provider, "plan": v.plan,
        "seats": v.seats, "unit_price": _money_text(v.unit_price), "currency": v.currency,
        "billing_cycle": v.billing_cycle, "cycle_days": v.cycle_days, "start_date": _iso(v.start_date),
        "end_date": _iso(v.end_date), "discount_pct": _money_text(v.discount_pct), "owner": v.owner,
        "department": v.department, "status": v.status, "version": v.version,
        "effective_from": _iso(v.effective_from), "effective_to": _iso(effective_to),
        "created_at": _iso(v.created_at), "updated_at": _iso(v.updated_at),
    }


def _view(tl: Timeline, history: bool = False) -> dict[str, Any]:
    out = public(tl.latest, tl.effective_to(tl.latest))
    if history:
        out["history"] = [{**public(v, tl.effective_to(v)), "superseded": v not in tl.tiles} for v in tl.rows]
    return out


# -- storage -------------------------------------------------------------------------------------
_COLUMN_TYPES = {
    "subscription_id": "STRING", "version": "INT64", "org_slug": "STRING", "provider": "STRING", "plan": "STRING",
    "seats": "INT64", "unit_price": "NUMERIC", "currency": "STRING", "billing_cycle": "STRING",
    "cycle_days": "INT64", "start_date": "DATE", "end_date": "DATE", "discount_pct": "NUMERIC",
    "owner": "STRING", "department": "STRING", "status": "STRING", "effective_from": "DATE",
    "effective_to": "DATE", "created_at": "TIMESTAMP", "updated_at": "TIMESTAMP",
}


def _warehouse(wh):
    if wh is not None:
        return wh
    from shared import runtime

    return runtime.get().warehouse


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_version(wh, v: Version) -> None:
    """Insert one version unless that version (or a later one) already exists: one atomic statement."""
    ref = table_ref(META, TABLE)
    cols = [*_COLUMN_TYPES]
    values = ", ".join(f"CAST(@{c} AS {_COLUMN_TYPES[c]})" for c in cols)
    inserted = wh.execute(
        f"""INSERT INTO {ref} ({', '.join(cols)})
        SELECT {values} FROM (SELECT 1 AS one) AS single
        WHERE NOT EXISTS (SELECT 1 FROM {ref} AS s
                          WHERE s.org_slug = @org_slug AND s.subscription_id = @subscription_id
                            AND s.version >= @version)""",
        v.row(),
    )
    if inserted != 1:
        raise SubscriptionConflict(
            f"subscription {v.subscription_id} was changed by someone else at the same time; "
            "read it again and retry the change")
    if v.version > 1:
        # Informational: close the versions this one ends or replaces (see the module docstring).
        wh.execute(
            f"""UPDATE {ref}
            SET effective_to = CASE WHEN effective_from >= @from_date THEN effective_from ELSE @from_date END
            WHERE org_slug = @org_slug AND subscription_id = @subscription_id AND version < @version
              AND (effective_to IS NULL OR effective_to > @from_date OR effective_from >= @from_date)""",
            {"org_slug": v.org_slug, "subscription_id": v.subscription_id, "version": v.version,
             "from_date": v.effective_from},
        )


def load_rows(wh, org: str, subscription_id: str | None = None) -> list[Version]:
    validate_org_slug(org)
    sql = f"SELECT * FROM {table_ref(META, TABLE)} WHERE org_slug = @org"
    params: dict[str, Any] = {"org": org}
    if subscription_id is not None:
        sql += " AND subscription_id = @sid"
        params["sid"] = subscription_id
    return [Version.from_row(r) for r in wh.query(sql + " ORDER BY subscription_id, version", params)]


def timelines(wh, org: str) -> dict[str, Timeline]:
    """Every subscription of `org`, resolved, by subscription id (in id order)."""
    by_id: dict[str, list[Version]] = {}
    for v in load_rows(wh, org):
        by_id.setdefault(v.subscription_id, []).append(v)
    return {sid: Timeline(rows) for sid, rows in by_id.items()}


def _timeline(wh, org: str, subscription_id: str) -> Timeline:
    if not isinstance(subscription_id, str) or not subscription_id:
        raise UnknownSubscription(f"no subscription {subscription_id!r} for org {org!r}")
    rows = load_rows(wh, org, subscription_id)
    if not rows:
        raise UnknownSubscription(f"no subscription {subscription_id!r} for org {org!r}")
    return Timeline(rows)


# -- CRUD ----------------------------------------------------------------------------------------
def create(org: str, doc: Any, *, wh=None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Validate `doc` and store it as version 1; return the subscription's public record."""
    from shared.tenants import get_org

    wh = _warehouse(wh)
    validate_org_slug(org)
    clean = validate(doc)
    get_org(wh, org)  # UnknownOrg (LookupError) when the org does not exist
    now = now or _now()
    v = Version(subscription_id=f"sub_{uuid.uuid4().hex[:16]}", version=1, org_slug=org, status="active",
                effective_from=clean["start_date"], effective_to=None, created_at=now, updated_at=now, **clean)
    _write_version(wh, v)
    return public(v)


def list_subscriptions(org: str, *, wh=None) -> list[dict[str, Any]]:
    """Every subscription of `org` as it stands (its latest terms), in id order."""
    return [_view(tl) for tl in timelines(_warehouse(wh), org).values()]


def get(org: str, subscription_id: str, *, history: bool = False, wh=None) -> dict[str, Any]:
    """One subscription as it stands; with `history`, every version with its derived effective_to."""
    return _view(_timeline(_warehouse(wh), org, subscription_id), history)


def _dated_change(wh, org: str, subscription_id: str, field: str, value: Any, meaning: str
                  ) -> tuple[dt.date, Timeline]:
    """The day a change takes effect (`field`, required) and the subscription's timeline."""
    if value is None:
        raise SubscriptionInvalid(field, f"is required ({meaning})")
    day = parse_date(field, value)
    return day, _timeline(wh, org, subscription_id)


def _write_next(wh, org: str, tl: Timeline, day: dt.date, now: dt.datetime | None, **changes) -> dict[str, Any]:
    """The next version: the terms in effect on `day` with `changes`; return the subscription as it stands."""
    new = replace(tl.at(day), **changes, version=max(r.version for r in tl.rows) + 1, effective_to=None,
                  updated_at=now or _now())
    _write_version(wh, new)
    return get(org, new.subscription_id, wh=wh)


def update(org: str, subscription_id: str, changes: Any, effective_date: Any, *, wh=None,
           now: dt.datetime | None = None) -> dict[str, Any]:
    """Write a new version: the terms in effect on `effective_date` with `changes` applied from that day."""
    wh = _warehouse(wh)
    clean = validate_changes(changes)
    day, tl = _dated_change(wh, org, subscription_id, "effective_date", effective_date,
                            "the first day the change applies")
    latest = tl.latest
    last = tl.last_billed_day()
    if latest.status == "cancelled":
        raise SubscriptionInvalid("subscription_id", f"{subscription_id} is cancelled (ended {last}); "
                                  "it cannot be changed")
    if day < latest.start_date:
        raise SubscriptionInvalid("effective_date",
                                  f"{day} is before the subscription's start_date {latest.start_date}")
    if day < latest.effective_from:
        raise SubscriptionInvalid("effective_date", f"{day} is before the latest change (effective "
                                  f"{latest.effective_from}); changes are recorded in date order")
    if last is not None and day > last:
        raise SubscriptionInvalid("effective_date", f"{day} is after the subscription's end_date {last}")
    return _write_next(wh, org, tl, day, now, **clean, effective_from=day)


def cancel(org: str, subscription_id: str, end_date: Any, *, wh=None, now: dt.datetime | None = None) -> dict[str, Any]:
    """End billing after `end_date` (inclusive): a version from the next day with status cancelled.

    Changes scheduled after end_date are dropped. The end may move earlier, never later.
    """
    wh = _warehouse(wh)
    end, tl = _dated_change(wh, org, subscription_id, "end_date", end_date, "the last billed day")
    latest = tl.latest
    if end < latest.start_date:
        raise SubscriptionInvalid("end_date", f"{end} is before the subscription's start_date {latest.start_date}")
    last = tl.last_billed_day()
    if last is not None and end >= last:
        state = "is cancelled" if latest.status == "cancelled" else "already ends"
        raise SubscriptionInvalid("end_date", f"{subscription_id} {state} on {last}; an end can only move earlier")
    return _write_next(wh, org, tl, end, now, status="cancelled", end_date=end,
                       effective_from=end + dt.timedelta(days=1))


# `subscriptions.list(org)`. This rebinds `list` for the whole module: code here must not call the
# builtin list() (use [*x] or sorted()).
list = list_subscriptions  # noqa: A001
