"""The DeepSeek extractor: console usage exports from a folder, and the balance over real loopback HTTP."""
from __future__ import annotations

import datetime as dt
import logging
import os
import zipfile
from decimal import Decimal

import httpx
import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai import deepseek as deepseek_job
from shared import schemas
from stubs.deepseek import BALANCE_PATH, DeepSeekStub
from stubs.genai_data import deepseek_demo_csv, deepseek_demo_usage, sum_fields

KEY = "sk-deepseek-test-0123456789abcdef"
JULY = dt.date(2026, 7, 1)
AUG = dt.date(2026, 8, 1)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture()
def stub():
    with DeepSeekStub(api_key=KEY) as s:
        yield s


@pytest.fixture()
def july():
    return deepseek_demo_usage(JULY, 31, seed=3)


@pytest.fixture()
def folder(tmp_path, july):
    d = tmp_path / "deepseek"
    d.mkdir()
    (d / "usage-2026-07.csv").write_text(deepseek_demo_csv(july))
    return d


def _ctx(stub, folder, start=JULY, end=JULY + dt.timedelta(days=30), key=KEY, **cred) -> ExtractContext:
    credential = {"api_key": key, "base_url": stub.base_url, "usage_csv_dir": f"file://{folder}", **cred}
    return ExtractContext(org_slug="acme", pipeline_id="genai/payg/deepseek", credential_id="cred-1",
                          run_id="run-1", start_date=start, end_date=end, credential=credential)


def _rows(out: dict) -> list[dict]:
    return [r for b in out["genai_usage_daily"] for r in b.to_pylist()]


TOKENS = ("input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens", "request_count")


def test_exact_totals_and_mapping(stub, folder, july, caplog):
    ctx = _ctx(stub, folder)
    with caplog.at_level(logging.INFO):
        out = deepseek_job.extract(ctx)
    rows = _rows(out)
    assert len(rows) == len(july)
    by_key = {(r["usage_date"], r["model"], r["project_id"]): r for r in rows}
    for rec in july:
        row = by_key[(rec["date"], rec["model"], rec["api_key_name"])]
        assert row["input_tokens"] == rec["input_cache_miss_tokens"]
        assert row["cached_input_tokens"] == rec["input_cache_hit_tokens"]
        assert row["output_tokens"] == rec["output_tokens"]
        assert row["request_count"] == rec["request_count"]
        assert row["cache_write_tokens"] == 0 and row["reasoning_tokens"] is None
        assert row["provider"] == "deepseek" and row["is_batch"] is False and row["service_tier"] is None
    totals = sum_fields(july, *TOKENS)
    assert sum(r["input_tokens"] for r in rows) == totals["input_cache_miss_tokens"]
    assert sum(r["cached_input_tokens"] for r in rows) == totals["input_cache_hit_tokens"]
    assert {r["model_family"] for r in rows} == {"deepseek-chat", "deepseek-reasoner"}
    assert out["genai_usage_daily"][0].schema.equals(
        schemas.get("genai_usage_daily").arrow_schema(include_lineage=False))
    # the balance is logged, not warned, and the key never appears
    assert ctx.warnings == []
    assert "USD 48.20 (granted 0.00, topped up 48.20)" in caplog.text and KEY not in caplog.text
    req = stub.requests
    assert [(r["path"], r["status"]) for r in req] == [(BALANCE_PATH, 200)]


def test_day_boundaries(stub, folder, july):
    day = JULY + dt.timedelta(days=9)
    rows = _rows(deepseek_job.extract(_ctx(stub, folder, day, day + dt.timedelta(days=1))))
    assert {r["usage_date"] for r in rows} == {day, day + dt.timedelta(days=1)}
    want = [r for r in july if day <= r["date"] <= day + dt.timedelta(days=1)]
    assert sum(r["output_tokens"] for r in rows) == sum(r["output_tokens"] for r in want)


def test_datetimes_are_converted_to_utc_days(stub, tmp_path):
    d = tmp_path / "dt"
    d.mkdir()
    (d / "hourly.csv").write_text(
        "Date,Model,Input Tokens (Cache Hit),Input Tokens (Cache Miss),Output Tokens,Requests\n"
        "2026-07-01T23:30:00Z,deepseek-chat,1,10,100,1\n"
        "2026-07-02 00:00:00,deepseek-chat,2,20,200,1\n"           # naive: taken as UTC
        "2026-07-02T07:59:59+08:00,deepseek-chat,4,40,400,1\n"     # = 2026-07-01 23:59:59 UTC
        "2026/07/02,deepseek-chat,\"1,000\",0,0,1\n")
    rows = _rows(deepseek_job.extract(_ctx(stub, d, JULY, JULY)))
    assert [(r["usage_date"], r["cached_input_tokens"], r["input_tokens"], r["output_tokens"], r["request_count"])
            for r in rows] == [(JULY, 5, 50, 500, 2)]
    rows = _rows(deepseek_job.extract(_ctx(stub, d, JULY + dt.timedelta(days=1), JULY + dt.timedelta(days=1))))
    assert [(r["cached_input_tokens"], r["input_tokens"], r["request_count"]) for r in rows] == [(1002, 20, 2)]
    assert rows[0]["project_id"] is None  # no API key column


def test_long_layout_and_zip(stub, tmp_path, july):
    d = tmp_path / "long"
    d.mkdir()
    with zipfile.ZipFile(d / "export-2026-07.zip", "w") as zf:
        first = [r for r in july if r["date"].day <= 15]
        rest = [r for r in july if r["date"].day > 15]
        zf.writestr("usage_1.csv", deepseek_demo_csv(first, layout="long"))
        zf.writestr("usage_2.csv", deepseek_demo_csv(rest, layout="long"))
    rows = _rows(deepseek_job.extract(_ctx(stub, d)))
    assert len(rows) == len(july)
    totals = sum_fields(july, *TOKENS)
    assert sum(r["cached_input_tokens"] for r in rows) == totals["input_cache_hit_tokens"]
    assert sum(r["input_tokens"] for r in rows) == totals["input_cache_miss_tokens"]
    assert sum(r["output_tokens"] for r in rows) == totals["output_tokens"]
    assert sum(r["request_count"] for r in rows) == totals["request_count"]


def test_overlapping_exports_never_double_count(stub, folder, july, tmp_path):
    # an earlier, partial export of July (days 1-14) with different numbers, imported *after* the full one
    partial = [{**r, "output_tokens": r["output_tokens"] + 1} for r in july if r["date"].day < 15]
    aug = deepseek_demo_usage(AUG, 10, seed=3)
    (folder / "aug.csv").write_text(deepseek_demo_csv(aug))
    late = folder / "usage-2026-07-partial.csv"
    late.write_text(deepseek_demo_csv(partial))
    os.utime(late, (2_000_000_000, 2_000_000_000))  # newest file, but its data ends earlier
    rows = _rows(deepseek_job.extract(_ctx(stub, folder, JULY, AUG + dt.timedelta(days=9))))
    assert len(rows) == len(july) + len(aug)
    assert sum(r["output_tokens"] for r in rows) == sum_fields(july + aug, "output_tokens")["output_tokens"]


def test_same_reach_newest_file_wins(stub, folder, july):
    corrected = [{**r, "output_tokens": 7} for r in july]
    newer = folder / "usage-2026-07-reexport.csv"
    newer.write_text(deepseek_demo_csv(corrected))
    old = folder / "usage-2026-07.csv"
    os.utime(old, (1_000_000_000, 1_000_000_000))
    rows = _rows(deepseek_job.extract(_ctx(stub, folder)))
    assert len(rows) == len(july) and {r["output_tokens"] for r in rows} == {7}


def test_bad_csv_is_named_with_the_missing_columns(stub, folder):
    (folder / "broken-export.csv").write_text("day,model_name,hits,output_tokens\n2026-07-01,deepseek-chat,1,2\n")
    with pytest.raises(ExtractError) as err:
        deepseek_job.extract(_ctx(stub, folder))
    msg = str(err.value)
    assert msg.startswith("broken-export.csv:")
    assert "input_cache_hit_tokens (one of:" in msg and "input_cache_miss_tokens (one of:" in msg
    assert "output_tokens (one of" not in msg and "date (one of" not in msg
    assert "header has 4 columns" in msg and "model_name, hits" not in msg  # the file's text is not repeated


@pytest.mark.parametrize("body,fragment", [
    ("date,model,input_cache_hit_tokens,input_cache_miss_tokens,output_tokens\n2026-07-01,deepseek-chat,1,2,3\n"
     "2026-13-01,deepseek-chat,1,2,3\n", "bad.csv row 2, column date: not a date"),
    ("date,model,input_cache_hit_tokens,input_cache_miss_tokens,output_tokens\n2026-07-01,deepseek-chat,1,-2,3\n",
     "bad.csv row 1, column input_cache_miss_tokens: not a whole, non-negative count"),
    ("date,model,input_cache_hit_tokens,input_cache_miss_tokens,output_tokens\n2026-07-01,,1,2,3\n",
     "bad.csv row 1, column model: the model is empty"),
    ("utc_date,model,api_key_name,type,price,amount\n2026-07-01,deepseek-chat,k,image_tokens,1,5\n",
     "bad.csv row 1, column type: not a usage type this importer knows"),
    ("", "the file is empty"),
])
def test_bad_lines_are_named(tmp_path, body, fragment):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(ExtractError, match="bad.csv") as err:
        deepseek_job.import_usage_csv(p)
    assert fragment in str(err.value)
    assert not any(cell in str(err.value) for cell in ("2026-13-01", "-2", "image_tokens"))  # never the value


def test_wrong_key_is_a_credential_error(stub, folder, caplog):
    wrong = "sk-WRONG-9876543210fedcba"
    sleeps = Sleeps()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(CredentialError) as err:
            deepseek_job.extract(_ctx(stub, folder, key=wrong), sleep=sleeps)
    msg = str(err.value)
    assert "DeepSeek refused the API key (HTTP 401)" in msg
    assert "cloudact credentials add acme deepseek --from-json FILE" in msg
    assert wrong not in msg and wrong not in caplog.text
    assert sleeps == [] and len(stub.requests) == 1


def test_balance_outage_does_not_block_usage(stub, folder, july, caplog):
    stub.fail_next(status=503, times=3)
    sleeps = Sleeps()
    ctx = _ctx(stub, folder)
    with caplog.at_level(logging.INFO):
        rows = _rows(deepseek_job.extract(ctx, sleep=sleeps, max_attempts=2))
    assert len(rows) == len(july) and len(sleeps) == 1
    assert "balance check failed" in caplog.text and ctx.warnings == []


def test_balance_values_are_exact(stub, folder):
    stub.balance = {"is_available": False, "balance_infos": [
        {"currency": "CNY", "total_balance": "110.10", "granted_balance": "10.00", "topped_up_balance": "100.10"},
        {"currency": "usd", "total_balance": "0.000001", "granted_balance": "0", "topped_up_balance": "0.000001"}]}
    bal = deepseek_job.fetch_balance(_ctx(stub, folder))
    assert bal == {"is_available": False, "balance_infos": [
        {"currency": "CNY", "total_balance": Decimal("110.10"), "granted_balance": Decimal("10.00"),
         "topped_up_balance": Decimal("100.10")},
        {"currency": "USD", "total_balance": Decimal("0.000001"), "granted_balance": Decimal("0"),
         "topped_up_balance": Decimal("0.000001")}]}


def test_without_api_key_balance_is_skipped(stub, folder, july):
    ctx = _ctx(stub, folder)
    del ctx.credential["api_key"]
    assert len(_rows(deepseek_job.extract(ctx))) == len(july)
    assert stub.requests == []


def test_missing_folder_setting_and_empty_folder(stub, tmp_path):
    ctx = _ctx(stub, tmp_path)
    del ctx.credential["usage_csv_dir"]
    with pytest.raises(CredentialError, match="no usage_csv_dir"):
        deepseek_job.extract(ctx)
    with pytest.raises(ExtractError, match="does not exist"):
        deepseek_job.extract(_ctx(stub, tmp_path / "nope"))
    ctx = _ctx(stub, tmp_path)
    out = deepseek_job.extract(ctx)
    assert out["genai_usage_daily"] == [] and set(out) == {"genai_usage_daily", "genai_balance_samples"}
    assert any("cloudact usage import acme deepseek FILE" in w for w in ctx.warnings)


def test_range_outside_the_exports_warns(stub, folder):
    ctx = _ctx(stub, folder, AUG, AUG)
    assert deepseek_job.extract(ctx)["genai_usage_daily"] == []
    assert any("cover 2026-07-01..2026-07-31" in w for w in ctx.warnings)


def test_import_usage_file(tmp_path, july):
    src = tmp_path / "export.csv"
    src.write_text(deepseek_demo_csv(july))
    os.utime(src, (1_000_000_000, 1_000_000_000))
    cred = {"usage_csv_dir": f"file://{tmp_path / 'store' / 'acme'}"}
    dest, records = deepseek_job.import_usage_file(cred, src)
    assert dest.parent == tmp_path / "store" / "acme" and dest.name.endswith("-export.csv")
    assert dest.read_bytes() == src.read_bytes() and dest.stat().st_mtime > 1_000_000_000
    assert records == deepseek_job.import_usage_csv(src) and len(records) == len(july)
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temp file left behind
    bad = tmp_path / "bad.csv"
    bad.write_text("date,model\n")
    with pytest.raises(ExtractError, match="bad.csv.*input_cache_hit_tokens"):
        deepseek_job.import_usage_file(cred, bad)
    assert len(list(dest.parent.iterdir())) == 1


def test_stub_on_its_own(stub):
    url = f"{stub.base_url}{BALANCE_PATH}"
    r = httpx.get(url)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["balance_infos"][0]["total_balance"] == "48.20"
    assert httpx.get(f"{stub.base_url}/v1/usage", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404


def test_demo_data_is_deterministic():
    a = deepseek_demo_usage(JULY, 5, seed=1)
    assert a == deepseek_demo_usage(JULY, 5, seed=1) != deepseek_demo_usage(JULY, 5, seed=2)
    with pytest.raises(ValueError):
        deepseek_demo_csv(a, layout="xml")


# -- time-of-day windows ---------------------------------------------------------------------------
# DeepSeek's 2025 off-peak discount as DeepSeek announced it: 16:30-00:30 UTC daily, from 2025-02-26
# 16:30 UTC until the price change at 2025-09-05 16:00 UTC. Written here as the fact, not read from the code.
OFF_PEAK_START = dt.datetime(2025, 2, 26, 16, 30, tzinfo=dt.timezone.utc)
OFF_PEAK_END = dt.datetime(2025, 9, 5, 16, 0, tzinfo=dt.timezone.utc)


def off_peak(t: dt.datetime) -> bool:
    return OFF_PEAK_START <= t < OFF_PEAK_END and (t.time() >= dt.time(16, 30) or t.time() < dt.time(0, 30))


def timed_lines(starts: list[dt.datetime], hours: int, step_minutes: int = 15) -> list[tuple]:
    """Lines every `step_minutes` from each start: (instant, model, key, hit, miss, output, requests)."""
    import random

    rng = random.Random(7)
    out = []
    for start in starts:
        for i in range(hours * 60 // step_minutes):
            t = start + dt.timedelta(minutes=step_minutes * i)
            for model in ("deepseek-chat", "deepseek-reasoner"):
                out.append((t, model, "prod", rng.randint(0, 5000), rng.randint(1, 9000), rng.randint(1, 3000), 1))
    return out


def lines_csv(lines, fmt=lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")) -> str:
    head = "utc_time,model,api_key_name,input_cache_hit_tokens,input_cache_miss_tokens,output_tokens,request_count\n"
    return head + "".join(f"{fmt(t)},{m},{k},{h},{mi},{o},{r}\n" for t, m, k, h, mi, o, r in lines)


WINDOW_EDGES = [dt.datetime(2025, 2, 26, tzinfo=dt.timezone.utc), dt.datetime(2025, 9, 4, tzinfo=dt.timezone.utc)]


def test_timed_lines_are_put_in_the_window_they_fall_in(stub, tmp_path):
    lines = timed_lines(WINDOW_EDGES, 48)  # two days across the window's first and last instants
    d = tmp_path / "timed"
    d.mkdir()
    (d / "requests.csv").write_text(lines_csv(lines))
    first, last = dt.date(2025, 2, 26), dt.date(2025, 9, 5)
    ctx = _ctx(stub, d, first, last)
    rows = _rows(deepseek_job.extract(ctx))
    want: dict[tuple, list[int]] = {}
    for t, model, _, hit, miss, out, _ in lines:
        key = (t.date(), model, "off_peak" if off_peak(t) else None)
        acc = want.setdefault(key, [0, 0, 0])
        acc[0], acc[1], acc[2] = acc[0] + hit, acc[1] + miss, acc[2] + out
    got = {(r["usage_date"], r["model"], r["service_tier"]): [r["cached_input_tokens"], r["input_tokens"],
                                                             r["output_tokens"]] for r in rows}
    assert got == want
    # both tiers on the window's edge days: 02-26 off-peak only from 16:30, 09-05 only until 00:30
    assert {k[2] for k in got if k[0] == first} == {None, "off_peak"}
    assert {k[2] for k in got if k[0] == dt.date(2025, 9, 6)} == set()
    assert {k[2] for k in got if k[0] == last} == {None, "off_peak"}
    assert ctx.warnings == []  # every line has its time: nothing priced at an upper bound


def test_offsets_are_read_in_utc_before_the_window(stub, tmp_path):
    d = tmp_path / "offsets"
    d.mkdir()
    (d / "logs.csv").write_text(
        "utc_time,model,input_cache_hit_tokens,input_cache_miss_tokens,output_tokens\n"
        "2025-03-01T08:15:00+08:00,deepseek-chat,1,10,100\n"     # 00:15 UTC: off-peak
        "2025-03-01T08:45:00+08:00,deepseek-chat,2,20,200\n"     # 00:45 UTC: standard
        "2025-03-01T16:30:00,deepseek-chat,4,40,400\n")          # naive: UTC, off-peak from 16:30
    rows = _rows(deepseek_job.extract(_ctx(stub, d, dt.date(2025, 3, 1), dt.date(2025, 3, 1))))
    assert sorted((str(r["service_tier"]), r["input_tokens"]) for r in rows) == [("None", 20), ("off_peak", 50)]


def test_daily_usage_in_a_window_period_stays_at_the_standard_rate_and_says_so(stub, tmp_path):
    march = deepseek_demo_usage(dt.date(2025, 3, 1), 3, seed=1)
    d = tmp_path / "daily"
    d.mkdir()
    (d / "export.csv").write_text(deepseek_demo_csv(march, layout="long"))
    ctx = _ctx(stub, d, dt.date(2025, 3, 1), dt.date(2025, 3, 3))
    rows = _rows(deepseek_job.extract(ctx))
    assert len(rows) == len(march) and {r["service_tier"] for r in rows} == {None}
    [warning] = ctx.warnings
    assert "3 day(s)" in warning and "2025-03-01..2025-03-03" in warning and "upper bound" in warning
    # a file whose date-times are all midnight is a daily export, not usage at 00:00 (an off-peak time)
    midnights = [(dt.datetime.combine(r["date"], dt.time(0), dt.timezone.utc), r["model"], r["api_key_name"],
                  r["input_cache_hit_tokens"], r["input_cache_miss_tokens"], r["output_tokens"], r["request_count"])
                 for r in march]
    (d / "export.csv").write_text(lines_csv(midnights, fmt=lambda t: t.strftime("%Y-%m-%d %H:%M:%S")))
    ctx = _ctx(stub, d, dt.date(2025, 3, 1), dt.date(2025, 3, 3))
    assert {r["service_tier"] for r in _rows(deepseek_job.extract(ctx))} == {None} and len(ctx.warnings) == 1


def test_balance_is_kept_as_the_runs_samples(stub, folder, monkeypatch):
    at = dt.datetime(2026, 8, 2, 3, 0, 5, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(deepseek_job, "_now", lambda: at)
    stub.balance = {"is_available": True, "balance_infos": [
        {"currency": "USD", "total_balance": "41.123456789", "granted_balance": "1.5", "topped_up_balance": "39.623456789"},
        {"currency": "CNY", "total_balance": "7", "granted_balance": "0", "topped_up_balance": "7"}]}
    out = deepseek_job.extract(_ctx(stub, folder))
    assert [r for b in out["genai_balance_samples"] for r in b.to_pylist()] == [
        {"sampled_at": at, "sample_date": at.date(), "provider": "deepseek", "currency": "USD",
         "total_balance": Decimal("41.123456789"), "granted_balance": Decimal("1.5"),
         "topped_up_balance": Decimal("39.623456789"), "is_available": True},
        {"sampled_at": at, "sample_date": at.date(), "provider": "deepseek", "currency": "CNY",
         "total_balance": Decimal("7"), "granted_balance": Decimal("0"), "topped_up_balance": Decimal("7"),
         "is_available": True}]
    ctx = _ctx(stub, folder)
    del ctx.credential["api_key"]
    assert "genai_balance_samples" not in deepseek_job.extract(ctx)
