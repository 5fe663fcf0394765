"""Dated exchange rates (`organizations.fx_rates`) and the conversion of costs to a display currency.

A rate row says 1 `from_currency` = `rate` `to_currency` on `rate_date`. Rates come from files:
- the ECB euro reference rates: `eurofxref-hist.csv` (or its .zip, or the one-day `eurofxref.csv`):
  a `Date` column then one column per currency holding units per 1 EUR, `N/A` where the ECB published
  none that day, and a trailing comma on every line;
- a plain CSV with the header `date,from,to,rate`.

Who writes which rates: rows with `org_slug` NULL are platform-wide (the operator imports them with
`cloudact fx import FILE`, e.g. the ECB file, and they serve every org); an org may post its own rates
with its key (`POST /api/v1/fx-rates/{org}` or `cloudact fx import FILE --org ORG`), which only that
org sees and which take precedence over the platform's for the same date and pair. An org key never
writes platform-wide rates: one tenant must not change another tenant's reports.

Conversion (`RateBook.convert`): a charge of day D uses the latest rate dated on or before D. A pair
with no row of its own is derived from the inverse pair (amount / rate) or from two rows of one common
base on the same date (ECB: EUR->USD and EUR->JPY give USD->JPY); among these the latest rate date wins
(the direct pair on a tie). Arithmetic is Decimal at 60 digits; callers round once, at the end.
"""
from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path

from shared import schemas
from shared.inputs import FieldInvalid, check_date

TABLE = "fx_rates"
_CODE = re.compile(r"^[A-Z]{3}$")
PRECISION = 60
# Rates are NUMERIC: at most 29 digits before the point and 9 after.
_MAX_RATE = Decimal("1e29")


class MissingRate(FieldInvalid):
    """No rate converts some currency to the display currency for some charge days; the message names each
    pair and the first day without a rate."""

    def __init__(self, to_currency: str, missing: dict[str, list[dt.date]]):
        parts = []
        for code, days in sorted(missing.items()):
            days = sorted(set(days))
            more = f" (and {len(days) - 1} later charge day(s))" if len(days) > 1 else ""
            parts.append(f"no {code}->{to_currency} exchange rate dated on or before {days[0].isoformat()}{more}")
        super().__init__("currency", "; ".join(parts) + "; import rates with `cloudact fx import FILE` (ECB "
                         "reference rates or date,from,to,rate)")
        self.to_currency, self.missing = to_currency, missing


def currency_code(field: str, value) -> str:
    if not isinstance(value, str) or not _CODE.match(value.strip().upper()):
        raise FieldInvalid(field, f"must be a three-letter ISO 4217 currency code such as USD, got {value!r}")
    return value.strip().upper()


def _rate(field: str, value) -> Decimal:
    try:
        r = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise FieldInvalid(field, f"must be a positive decimal number, got {value!r}") from None
    if not r.is_finite() or r <= 0 or r >= _MAX_RATE:
        raise FieldInvalid(field, f"must be a positive decimal number below 1e29, got {value!r}")
    if r != r.quantize(Decimal("1e-9"), rounding="ROUND_DOWN"):
        raise FieldInvalid(field, f"has more than 9 decimal places (NUMERIC keeps 9), got {value!r}")
    return r


def _day(field: str, value) -> dt.date:
    text = str(value).strip()
    try:
        d = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.strptime(text, "%d %B %Y").date()
    except ValueError:
        raise FieldInvalid(field, f"must be a date as YYYY-MM-DD, got {value!r}") from None
    return check_date(field, d)


@dataclass(frozen=True)
class Rate:
    rate_date: dt.date
    from_currency: str
    to_currency: str
    rate: Decimal


def validate_rate(doc, where: str = "rate") -> Rate:
    """One rate from a JSON object or CSV row with the fields date, from, to, rate."""
    if not isinstance(doc, dict):
        raise FieldInvalid(where, 'must be an object {"date", "from", "to", "rate"}')
    unknown = set(doc) - {"date", "from", "to", "rate"}
    missing = {"date", "from", "to", "rate"} - set(doc)
    if unknown or missing:
        raise FieldInvalid(where, "needs exactly the fields date, from, to, rate"
                           + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
                           + (f"; missing: {', '.join(sorted(missing))}" if missing else ""))
    r = Rate(_day(f"{where}.date", doc["date"]), currency_code(f"{where}.from", doc["from"]),
             currency_code(f"{where}.to", doc["to"]), _rate(f"{where}.rate", doc["rate"]))
    if r.from_currency == r.to_currency:
        raise FieldInvalid(f"{where}.to", "must differ from from")
    return r


def parse_ecb(text: str) -> list[Rate]:
    """The ECB reference-rate CSV (units per 1 EUR), `N/A` and empty cells skipped."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if not header or header[0] != "Date":
        raise FieldInvalid("file", "not the ECB layout: the first column must be Date")
    codes = [(i, currency_code(f"column {i + 1}", h)) for i, h in enumerate(header) if i and h]
    out = []
    for n, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        day = _day(f"line {n} Date", row[0])
        for i, code in codes:
            cell = row[i].strip() if i < len(row) else ""
            if cell in ("", "N/A") or code == "EUR":
                continue
            out.append(Rate(day, "EUR", code, _rate(f"line {n} {code}", cell)))
    return out


def parse_plain(text: str) -> list[Rate]:
    reader = csv.DictReader(io.StringIO(text))
    if [f.strip().lower() for f in reader.fieldnames or []] != ["date", "from", "to", "rate"]:
        raise FieldInvalid("file", "a plain rates CSV has exactly the header date,from,to,rate")
    return [validate_rate({k.strip().lower(): v for k, v in row.items()}, f"line {n}")
            for n, row in enumerate(reader, start=2)]


def read_file(path: Path) -> list[Rate]:
    """Rates from an ECB file (.csv or the .zip the ECB serves) or a plain date,from,to,rate CSV."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise FieldInvalid("file", f"{path.name} must hold exactly one .csv, it holds {len(names)}")
            text = z.read(names[0]).decode("utf-8-sig")
    else:
        text = path.read_text(encoding="utf-8-sig")
    first = text.lstrip().split(",", 1)[0].strip()
    return parse_ecb(text) if first == "Date" else parse_plain(text)


def ensure_table(wh) -> None:
    wh.ensure_dataset(wh.meta_dataset)
    wh.ensure_table(wh.meta_dataset, schemas.get(TABLE))


def store(wh, rates: Iterable[Rate], *, org: str | None, source: str) -> tuple[int, int]:
    """Insert rates (org None: platform-wide); (stored, unchanged). A rate equal to the one in force for
    its date and pair is skipped, so importing the whole ECB history again each day adds only the new days;
    a different one supersedes it."""
    rates = list(rates)
    ensure_table(wh)
    if not rates:
        return 0, 0
    scope = "org_slug = @org" if org else "org_slug IS NULL"
    current = wh.query(
        f"""SELECT rate_date, from_currency, to_currency, rate FROM `organizations.fx_rates`
            WHERE {scope} AND rate_date BETWEEN @first AND @last AND from_currency IN UNNEST(@froms)
            QUALIFY ROW_NUMBER() OVER (PARTITION BY rate_date, from_currency, to_currency
                                       ORDER BY imported_at DESC) = 1""",
        {"org": org or "", "first": min(r.rate_date for r in rates), "last": max(r.rate_date for r in rates),
         "froms": sorted({r.from_currency for r in rates})})
    have = {(c["rate_date"], c["from_currency"], c["to_currency"], Decimal(c["rate"])) for c in current}
    new = [r for r in rates if (r.rate_date, r.from_currency, r.to_currency, r.rate) not in have]
    now = dt.datetime.now(dt.timezone.utc)
    wh.insert_rows(wh.meta_dataset, TABLE, [
        {"org_slug": org, "rate_date": r.rate_date, "from_currency": r.from_currency, "to_currency": r.to_currency,
         "rate": r.rate, "source": source[:200], "imported_at": now} for r in new])
    return len(new), len(rates) - len(new)


class RateBook:
    """The rates one org sees for some currency pairs, indexed by pair and date."""

    def __init__(self, rows: Iterable[tuple[str, str, dt.date, Decimal]]):
        self._pairs: dict[tuple[str, str], tuple[list[dt.date], list[Decimal]]] = {}
        for f, t, d, r in sorted(rows, key=lambda x: (x[0], x[1], x[2])):
            days, values = self._pairs.setdefault((f, t), ([], []))
            days.append(d)
            values.append(Decimal(r))

    def _latest(self, f: str, t: str, day: dt.date) -> tuple[dt.date, Decimal] | None:
        days, values = self._pairs.get((f, t), ((), ()))
        i = bisect.bisect_right(days, day)
        return (days[i - 1], values[i - 1]) if i else None

    def _on(self, f: str, t: str, day: dt.date) -> Decimal | None:
        days, values = self._pairs.get((f, t), ((), ()))
        i = bisect.bisect_left(days, day)
        return values[i] if i < len(days) and days[i] == day else None

    def factor(self, f: str, t: str, day: dt.date) -> tuple[Decimal, dt.date] | None:
        """(multiplier from f to t, the rate date used) for a charge of `day`, or None."""
        if f == t:
            return Decimal(1), day
        with localcontext() as ctx:
            ctx.prec = PRECISION
            best: tuple[dt.date, int, Decimal] | None = None  # (rate date, preference, factor)
            direct = self._latest(f, t, day)
            if direct:
                best = (direct[0], 2, direct[1])
            inverse = self._latest(t, f, day)
            if inverse and (best is None or inverse[0] > best[0]):
                best = (inverse[0], 1, Decimal(1) / inverse[1])
            for base in {b for (b, to) in self._pairs if to == f and (b, t) in self._pairs}:
                # both legs from the same publication day: the latest day on or before `day` having both
                days = self._pairs[(base, f)][0]
                i = bisect.bisect_right(days, day)
                while i:
                    d = days[i - 1]
                    if best is not None and d <= best[0]:
                        break
                    to_rate = self._on(base, t, d)
                    if to_rate is not None:
                        best = (d, 0, to_rate / self._on(base, f, d))
                        break
                    i -= 1
            return (best[2], best[0]) if best else None


def load(wh, org: str, currencies: Iterable[str], target: str, until: dt.date) -> RateBook:
    """Every rate that may convert `currencies` to `target` for charges up to `until`: the org's own rows
    and the platform's, the org's winning on the same date and pair, the last import winning after that.
    Direct, inverse and cross pairs all end in one of the currencies, so rows are selected by to_currency."""
    if not wh.table_exists(wh.meta_dataset, TABLE):
        return RateBook(())
    codes = sorted(set(currencies) | {target})
    rows = wh.query(
        """SELECT from_currency, to_currency, rate_date, rate FROM (
             SELECT from_currency, to_currency, rate_date, rate,
                    ROW_NUMBER() OVER (PARTITION BY from_currency, to_currency, rate_date
                                       ORDER BY IF(org_slug IS NULL, 1, 0), imported_at DESC) AS pick
             FROM `organizations.fx_rates`
             WHERE (org_slug = @org OR org_slug IS NULL) AND rate_date <= @until
               AND to_currency IN UNNEST(@codes))
           WHERE pick = 1""",
        {"org": org, "until": until, "codes": codes},
    )
    return RateBook((r["from_currency"], r["to_currency"], r["rate_date"], r["rate"]) for r in rows)


def list_rates(wh, org: str | None, limit: int = 1000) -> list[dict]:
    """The latest rates an org sees (org None: the platform's), newest first."""
    if not wh.table_exists(wh.meta_dataset, TABLE):
        return []
    scope = "(org_slug = @org OR org_slug IS NULL)" if org else "org_slug IS NULL"
    return wh.query(
        f"""SELECT rate_date, from_currency, to_currency, rate, source, IF(org_slug IS NULL, 'platform', 'org') AS scope
            FROM `organizations.fx_rates` WHERE {scope}
            QUALIFY ROW_NUMBER() OVER (PARTITION BY from_currency, to_currency, rate_date
                                       ORDER BY IF(org_slug IS NULL, 1, 0), imported_at DESC) = 1
            ORDER BY rate_date DESC, from_currency, to_currency LIMIT @limit""",
        {"org": org or "", "limit": limit},
    )
