"""DeepSeek pay-as-you-go: daily token usage from the console's usage export (CSV), plus a balance check.

DeepSeek has no usage or cost API. The documented API only has `GET /user/balance`; usage comes from
platform.deepseek.com -> Usage -> Export (a CSV, or a ZIP of CSVs, per month), which the user drops
into a folder (`cloudact usage import ORG deepseek FILE` copies it there via `import_usage_file`).

Credential (`cloudact credentials add ORG deepseek --from-json FILE`):
    {"api_key": "sk-...",                           # optional: only used for the balance check
     "base_url": "https://api.deepseek.com",       # optional
     "usage_csv_dir": "file:///var/cloudact/deepseek/acme"}   # required (file:// URL or plain path)

extract():
1. `GET {base_url}/user/balance` (Bearer key). The balance is logged and kept as this run's
   `genai_balance_samples` rows (one per currency), which the conversion sets beside the computed cost
   (shared/balance.py); a refused key (401/403) is a CredentialError. Without an api_key the check is
   skipped.
2. Every `*.csv` / `*.zip` in usage_csv_dir is parsed with `import_usage_csv`; rows whose UTC date is
   in ctx.start_date..ctx.end_date become `genai_usage_daily` rows, one per (day, model, API key name,
   time-of-day tier):
   cache-miss input -> input_tokens, cache-hit input -> cached_input_tokens, output -> output_tokens
   (reasoning tokens are billed and reported as output), requests -> request_count (null when the
   file has no request column), API key name -> project_id (null when absent).
   Exports overlap (a mid-month export, then the full month): **each day is taken from one file
   only**, the one whose data reaches furthest (latest date), newest modification time breaking ties,
   so re-exports never double count.

CSV layouts (column names are not documented by DeepSeek; matching is case-insensitive and ignores
punctuation, so `Input Tokens (Cache Hit)` reads as `input_tokens_cache_hit`):
- wide: one line per day (and model, key) with a column per token class;
- long: `utc_date, model, api_key_name, type, price, amount` with one line per token class, `type` in
  input_cache_hit_tokens / input_cache_miss_tokens / output_tokens / request_count (the shape seen in
  public tooling). `price` is ignored (list prices come from genai_pricing.yml).
Accepted header aliases are in COLUMN_ALIASES / LONG_ALIASES. Dates may be `YYYY-MM-DD`, `YYYY/MM/DD`
or date-times; a date-time with an offset is converted to UTC, one without is taken as UTC.

Time of day: DeepSeek priced some hours apart (2025: 16:30-00:30 UTC off-peak; the windows are in
genai_pricing.yml under time_of_day). A line with a date-time is put in the tier of its instant
(`service_tier` 'off_peak', or NULL for the standard rate), so it is priced by the tier's rate; a
per-request log is exact, an hourly line counts at its stated time. A file whose times are all midnight
is read as daily. The console export is daily (`utc_date`): daily usage on a day a window touches cannot
be split, so it stays at the standard rate, an upper bound, and the run says so in a warning.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import shutil
import tempfile
import time
import zipfile
import zlib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai.common import USAGE_TABLE, to_batches, usage_row
from jobs.source_folder import SourceFolder
from shared import pricing, tenancy
from shared.http import ApiClient, retry_settings

PROVIDER = "deepseek"
DEFAULT_BASE_URL = "https://api.deepseek.com"
BALANCE_PATH = "/user/balance"
BALANCE_TABLE = "genai_balance_samples"
TOKEN_FIELDS = ("input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens")
# canonical field -> accepted (normalised) header names
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("utc_date", "date", "usage_date", "day", "utc_time", "time", "datetime", "timestamp"),
    "model": ("model", "model_name", "model_id"),
    "api_key_name": ("api_key_name", "api_key", "key_name", "api_key_id"),
    "input_cache_hit_tokens": ("input_cache_hit_tokens", "prompt_cache_hit_tokens", "cache_hit_tokens",
                               "input_tokens_cache_hit", "cache_hit_input_tokens", "input_cache_hit"),
    "input_cache_miss_tokens": ("input_cache_miss_tokens", "prompt_cache_miss_tokens", "cache_miss_tokens",
                                "input_tokens_cache_miss", "cache_miss_input_tokens", "input_cache_miss"),
    "output_tokens": ("output_tokens", "completion_tokens", "output_token", "output"),
    "request_count": ("request_count", "requests", "num_requests", "request_num", "api_requests", "calls"),
}
REQUIRED_WIDE = ("date", "model") + TOKEN_FIELDS
# long layout: the column naming the token class and the one holding the quantity
LONG_ALIASES: dict[str, tuple[str, ...]] = {
    "type": ("type", "usage_type", "token_type", "metric"),
    "amount": ("amount", "quantity", "usage", "count", "value", "tokens"),
}
_LONG_VALUES = ("input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens", "request_count")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (name or "").replace("\ufeff", "").strip().lower()).strip("_")


def _find(headers: list[str], aliases: Iterable[str]) -> int | None:
    normed = [_norm(h) for h in headers]
    for alias in aliases:
        if alias in normed:
            return normed.index(alias)
    return None


def _parse_when(raw: str, where: str) -> tuple[dt.date, dt.datetime | None]:
    """The UTC day of a date or date-time cell, and its UTC instant when it is a date-time.
    `where`: the file, the row and the column, for messages (which never quote the value)."""
    s = (raw or "").strip()
    if not s:
        raise ExtractError(f"{where}: the date is empty")
    m = re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", s)
    try:
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3])), None
        when = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("/", "-"))
    except ValueError:
        raise ExtractError(f"{where}: not a date (expected YYYY-MM-DD or an ISO date-time)") from None
    when = when.astimezone(dt.timezone.utc) if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
    return when.date(), when


def _parse_count(raw: str, where: str) -> int:
    s = (raw or "").strip().replace(",", "").replace("_", "")
    if not s:
        return 0
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise ExtractError(f"{where}: not a number") from None
    if not d.is_finite() or d < 0 or d != d.to_integral_value():
        raise ExtractError(f"{where}: not a whole, non-negative count")
    return int(d)


def _missing_message(name: str, missing: list[str], headers: list[str]) -> str:
    # the file's own header is not repeated: a file that is no export at all has content there
    wanted = "; ".join(f"{m} (one of: {', '.join(COLUMN_ALIASES[m])})" for m in missing)
    return (f"{name}: not a DeepSeek usage export this importer understands: missing column(s) {wanted} "
            f"(its header has {len(headers)} columns). A long-format export needs "
            f"date, model, {LONG_ALIASES['type'][0]} and {LONG_ALIASES['amount'][0]} columns instead.")


def _parse_text(text: str, name: str) -> dict[tuple, dict]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    headers = next(reader, None)
    if not headers or not any(h.strip() for h in headers):
        raise ExtractError(f"{name}: the file is empty (no header line)")
    col = {field: _find(headers, aliases) for field, aliases in COLUMN_ALIASES.items()}
    type_col, amount_col = _find(headers, LONG_ALIASES["type"]), _find(headers, LONG_ALIASES["amount"])
    long = (type_col is not None and amount_col is not None
            and all(col[f] is None for f in TOKEN_FIELDS))
    missing = [f for f in (("date", "model") if long else REQUIRED_WIDE) if col[f] is None]
    if missing:
        raise ExtractError(_missing_message(name, missing, headers))
    lines = []  # (day, instant, model, key name, {field: count})
    for row_no, cells in enumerate(reader, start=1):  # data rows, the header excluded
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len(headers):
            cells = cells + [""] * (len(headers) - len(cells))

        def cell(i: int | None, cells: list[str] = cells) -> str:
            return cells[i] if i is not None else ""

        def where(i: int, row_no: int = row_no) -> str:
            return f"{name} row {row_no}, column {headers[i].strip()}"

        day, instant = _parse_when(cell(col["date"]), where(col["date"]))
        model = cell(col["model"]).strip()
        if not model:
            raise ExtractError(f"{where(col['model'])}: the model is empty")
        if long:
            kind = _norm(cell(type_col))
            field = next((f for f in _LONG_VALUES if kind == f or kind in COLUMN_ALIASES[f]), None)
            if field is None:
                raise ExtractError(f"{where(type_col)}: not a usage type this importer knows (expected one of "
                                   f"{', '.join(_LONG_VALUES)})")
            values = {field: _parse_count(cell(amount_col), where(amount_col))}
        else:
            values = {f: _parse_count(cell(col[f]), where(col[f])) for f in TOKEN_FIELDS}
            if col["request_count"] is not None:
                values["request_count"] = _parse_count(cell(col["request_count"]), where(col["request_count"]))
        lines.append((day, instant, model, cell(col["api_key_name"]).strip() or None, values))
    # a file of midnights is a daily export written with times, not usage at 00:00
    timed = any(instant is not None and instant.timetz().replace(tzinfo=None) != dt.time(0)
                for _, instant, *_ in lines)
    records: dict[tuple, dict] = {}
    for day, instant, model, key_name, values in lines:
        instant = instant if timed else None
        tier = pricing.tier_at(PROVIDER, model, instant) if instant is not None else None
        rec = records.get((day, model, key_name, tier))
        if rec is None:
            rec = records[(day, model, key_name, tier)] = {
                "date": day, "model": model, "api_key_name": key_name, "service_tier": tier,
                "timed": True, "input_cache_hit_tokens": 0, "input_cache_miss_tokens": 0, "output_tokens": 0,
                "request_count": None}
        rec["timed"] = rec["timed"] and instant is not None
        for f, v in values.items():
            rec[f] = (rec[f] or 0) + v
    return records


def import_usage_csv(path: str | os.PathLike) -> list[dict]:
    """The usage in one console export (a `.csv`, or a `.zip` of them), summed per (date, model, key, tier):

        {"date": date (UTC), "model": str, "api_key_name": str | None, "service_tier": str | None,
         "timed": bool, "input_cache_hit_tokens": int, "input_cache_miss_tokens": int, "output_tokens": int,
         "request_count": int | None}

    `service_tier` is the time-of-day tier of lines with a time (genai_pricing.yml time_of_day), None at
    the standard rate; `timed` is False when some of the usage is known by day only.

    Raises ExtractError naming the file (and row and column) for a missing column, a bad date or a bad number.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ExtractError(f"{p.name}: cannot be read ({e.strerror or type(e).__name__})") from None
    return _read_export(data, p.name)


def _read_export(data: bytes, name: str) -> list[dict]:
    """`import_usage_csv` of a file's bytes; `name` is shown in messages."""
    try:
        if name.lower().endswith(".zip"):
            records: dict[tuple, dict] = {}
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = sorted(n for n in zf.namelist() if n.lower().endswith(".csv") and not n.endswith("/"))
                if not members:
                    raise ExtractError(f"{name}: the ZIP holds no .csv file")
                for member in members:
                    for key, rec in _parse_text(zf.read(member).decode("utf-8-sig"), f"{name}:{member}").items():
                        if key in records:
                            for f in TOKEN_FIELDS + ("request_count",):
                                if rec[f] is not None:
                                    records[key][f] = (records[key][f] or 0) + rec[f]
                            records[key]["timed"] = records[key]["timed"] and rec["timed"]
                        else:
                            records[key] = rec
        else:
            records = _parse_text(data.decode("utf-8-sig"), name)
    except UnicodeDecodeError:
        raise ExtractError(f"{name}: not UTF-8 text; export the usage as CSV again") from None
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise ExtractError(f"{name}: not a readable ZIP file") from None
    return [records[k] for k in sorted(records, key=lambda k: (k[0], k[1], str(k[2]), str(k[3])))]


def usage_folder(credential: dict, org_slug: str, must_exist: bool = True) -> SourceFolder:
    """The credential's usage_csv_dir (`file:///dir` or a plain path); in multi tenancy inside the org's
    source root (jobs.source_folder)."""
    raw = str((credential or {}).get("usage_csv_dir") or "").strip()
    if not raw:
        raise CredentialError(
            'The DeepSeek credential has no usage_csv_dir. Add one with `cloudact credentials add ORG deepseek '
            '--from-json FILE` (FILE: {"api_key": "sk-...", "usage_csv_dir": "file:///path/to/folder"}).')
    u = urlparse(raw)
    if u.scheme != "file" and u.scheme and len(u.scheme) > 1:
        raise ExtractError(f"usage_csv_dir must be a file:// URL or a local path, not {u.scheme}://")
    return SourceFolder(raw, org_slug, what="The DeepSeek usage folder", must_exist=must_exist)


def usage_files(folder: SourceFolder) -> list[Path]:
    return [p for p in folder.files(recursive=False)
            if not p.name.startswith(".") and p.suffix.lower() in (".csv", ".zip")]


def import_usage_file(credential: dict, source: str | os.PathLike,
                      org_slug: str | None = None) -> tuple[Path, list[dict]]:
    """Validate a console export and copy it into the credential's usage folder.

    For `cloudact usage import ORG deepseek FILE`: parses FILE first (so a bad file is refused with the
    missing columns named, before anything is copied), then writes it atomically as
    `deepseek-usage-<UTC yyyymmddThhmmss>-<original name>` with the current time as its modification
    time. Returns the destination path and the parsed records (for a summary line). FILE is the operator's
    and may be anywhere; the folder written to is the org's (multi tenancy: inside its source root, so
    `org_slug` is required there).
    """
    if org_slug is None and tenancy.is_multi():
        raise tenancy.TrustViolation("importing a usage file in multi tenancy needs the organization "
                                     "(its source folder is the only place written to)")
    src = Path(source)
    records = import_usage_csv(src)
    folder = usage_folder(credential, org_slug or "", must_exist=False)
    folder.path.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    dest = folder.path / f"deepseek-usage-{stamp}-{src.name}"
    fd, tmp = tempfile.mkstemp(dir=folder.path, prefix=".import-", suffix=src.suffix)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.replace(tmp, dest)  # replaces a link of that name, never writes through it
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    now = time.time()
    os.utime(dest, (now, now))
    return dest, records


# -- balance -------------------------------------------------------------------------------------------

def fetch_balance(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep,
                  max_attempts: int | None = None) -> dict | None:
    """`GET /user/balance` as `{"is_available": bool, "balance_infos": [{currency, total_balance: Decimal,
    granted_balance, topped_up_balance}]}`, or None when the credential has no api_key.
    A refused key raises CredentialError (via ApiClient)."""
    cred = ctx.credential or {}
    key = cred.get("api_key")
    if not key:
        return None
    if not isinstance(key, str):
        raise CredentialError("The DeepSeek credential's api_key must be a string")
    retry = retry_settings()
    if max_attempts is not None:
        retry["max_attempts"] = max_attempts
    base = str(cred.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    with ApiClient(base, {"Authorization": f"Bearer {key}", "Accept": "application/json"}, provider="DeepSeek",
                   credential_kind="deepseek", key_label="API key", org_slug=ctx.org_slug, log=ctx.log,
                   sleep=sleep, **retry) as client:
        doc = client.get_json(BALANCE_PATH)
    if not isinstance(doc, dict) or not isinstance(doc.get("balance_infos"), list):
        raise ExtractError("DeepSeek answered GET /user/balance with an unexpected shape (no 'balance_infos' list)")
    infos = []
    for info in doc["balance_infos"]:
        row = {"currency": str(info.get("currency") or "").upper()}
        for f in ("total_balance", "granted_balance", "topped_up_balance"):
            try:
                row[f] = Decimal(str(info.get(f))) if info.get(f) is not None else None
            except InvalidOperation:
                raise ExtractError(f"DeepSeek returned a {f} that is not a number: {info.get(f)!r}") from None
        infos.append(row)
    return {"is_available": bool(doc.get("is_available")), "balance_infos": infos}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def balance_rows(balance: dict, sampled_at: dt.datetime) -> list[dict]:
    """`fetch_balance`'s answer as genai_balance_samples rows, one per currency."""
    return [{"sampled_at": sampled_at, "sample_date": sampled_at.date(), "provider": PROVIDER,
             "currency": b["currency"], "total_balance": b["total_balance"], "granted_balance": b["granted_balance"],
             "topped_up_balance": b["topped_up_balance"], "is_available": balance["is_available"]}
            for b in balance["balance_infos"] if b["currency"]]


def _log_balance(ctx: ExtractContext, balance: dict | None) -> None:
    if balance is None:
        ctx.log.info("deepseek: no api_key in the credential; balance not checked")
        return
    parts = [f"{b['currency']} {b['total_balance']} (granted {b['granted_balance']}, topped up "
             f"{b['topped_up_balance']})" for b in balance["balance_infos"]]
    ctx.log.info("deepseek: balance %s; is_available=%s", "; ".join(parts) or "none reported",
                 balance["is_available"])
    if not balance["is_available"]:
        ctx.log.warning("deepseek: the account balance is not sufficient for API calls (is_available=false)")


# -- extract -------------------------------------------------------------------------------------------

def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep,
            max_attempts: int | None = None) -> dict[str, list[pa.RecordBatch]]:
    """DeepSeek usage for ctx.start_date..ctx.end_date (inclusive, UTC days) from the export folder."""
    folder = usage_folder(ctx.credential, ctx.org_slug)
    try:
        balance = fetch_balance(ctx, sleep=sleep, max_attempts=max_attempts)
        sampled_at = _now()
    except CredentialError:
        raise
    except ExtractError as e:  # the balance is informational; usage still loads
        ctx.log.warning("deepseek: balance check failed: %s", e)
        balance = None
    _log_balance(ctx, balance)
    samples = {BALANCE_TABLE: to_batches(BALANCE_TABLE, balance_rows(balance, sampled_at))} if balance else {}
    files = usage_files(folder)
    if not files:
        ctx.warn(f"No DeepSeek usage export in {folder.shown(folder.path)}. Export it from platform.deepseek.com "
                 f"(Usage -> Export) "
                 f"and add it with `cloudact usage import {ctx.org_slug} deepseek FILE`.")
        return {USAGE_TABLE: [], **samples}
    if ctx.end_date < ctx.start_date:
        return {USAGE_TABLE: [], **samples}

    parsed = []
    for f in files:
        records = _read_export(folder.read_bytes(f), f.name)
        last_day = max((r["date"] for r in records), default=dt.date.min)
        parsed.append(((last_day, f.stat().st_mtime_ns, f.name), f, records))
    parsed.sort(key=lambda t: t[0])
    owner: dict[dt.date, Path] = {}  # each day comes from the file that reaches furthest (then newest)
    for _, f, records in parsed:
        for r in records:
            owner[r["date"]] = f
    superseded = 0
    rows = []
    daily_in_window: set[tuple[dt.date, str]] = set()
    for _, f, records in parsed:
        for r in records:
            if not ctx.start_date <= r["date"] <= ctx.end_date:
                continue
            if owner[r["date"]] != f:
                superseded += 1
                continue
            if not r["timed"] and pricing.windows_on(PROVIDER, r["model"], r["date"]):
                daily_in_window.add((r["date"], r["model"]))
            rows.append(usage_row(r["date"], PROVIDER, r["model"], r["api_key_name"],
                                  service_tier=r["service_tier"], request_count=r["request_count"],
                                  input_tokens=r["input_cache_miss_tokens"],
                                  cached_input_tokens=r["input_cache_hit_tokens"], output_tokens=r["output_tokens"]))
    rows.sort(key=lambda r: (r["usage_date"], r["model"], str(r["project_id"]), str(r["service_tier"])))
    if daily_in_window:
        days = sorted({d for d, _ in daily_in_window})
        models = ", ".join(sorted({m for _, m in daily_in_window}))
        ctx.warn(f"DeepSeek priced some hours apart on {len(days)} day(s) of this range ({days[0]}..{days[-1]}; "
                 f"{models}), but the export gives those days' usage by day only, so it is priced at the "
                 "standard rate, an upper bound; an export or log with the time of each line prices the "
                 "off-peak hours exactly")
    if superseded:
        ctx.log.info("deepseek: %d usage line(s) in older exports were superseded by newer exports of the same day",
                     superseded)
    if not rows:
        covered = sorted(owner)
        shown = folder.shown(folder.path)
        ctx.warn(f"The DeepSeek usage exports in {shown} cover {covered[0]}..{covered[-1]}, nothing in "
                 f"{ctx.start_date}..{ctx.end_date}; import a newer export with "
                 f"`cloudact usage import {ctx.org_slug} deepseek FILE`" if covered else
                 f"The DeepSeek usage exports in {shown} hold no usage lines")
    ctx.log.info("deepseek: %d usage rows from %d export file(s)", len(rows), len(files))
    return {USAGE_TABLE: to_batches(USAGE_TABLE, rows), **samples}
