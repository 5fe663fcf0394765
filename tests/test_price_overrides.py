"""Negotiated prices: per-org overrides priced by sp_genai_1/sp_genai_3, through the HTTP API and the CLI.

Expected money is computed here from the fixture's tokens and the list prices read straight from
genai_pricing.yml's text (tests/genai_prices.py), with Decimal, never with the project's pricing code."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared import price_overrides as po
from shared import runs
from shared.auth import create_key
from shared.tenants import create_org
from tests.genai_prices import cost, list_price, off
from tests.test_genai_procedures import convert, land, usage

CLASSES = (("input", "input_tokens"), ("cached_input", "cached_input_tokens"), ("cache_write", "cache_write_tokens"),
           ("output", "output_tokens"))


def focus_rows(wh, org="acme"):
    rows = wh.query(f"SELECT DATE(ChargePeriodStart) AS day, SkuId, SubAccountId, ChargeDescription, ListUnitPrice, "
                    f"ListCost, ContractedUnitPrice, ContractedCost, BilledCost, EffectiveCost, x_cost_source, x_run_id "
                    f"FROM `{org}_prod.cost_data_standard_1_3` WHERE ChargeCategory = 'Usage'")
    return {(r["day"], r["SkuId"], r["SubAccountId"]): r for r in rows}


DAYS = [dt.date(2025, 9, 1) + dt.timedelta(days=i) for i in range(4)]
FROM = DAYS[2]  # the discount applies from the third day


def fixture_usage():
    rows = []
    for i, d in enumerate(DAYS):
        rows.append(usage(d, "gpt-4o-2024-08-06", "gpt-4o", 1_234_567 + i, 333_333, 0, 98_765 + 7 * i))
        rows.append(usage(d, "gpt-4o-2024-08-06", "gpt-4o", 777_777, 0, 0, 55_555, batch=True, project="proj_b"))
        rows.append(usage(d, "gpt-4o-mini", "gpt-4o-mini", 2_000_001, 10, 0, 300_003))
    return rows


def expected(rows, price_of):
    """(day, SkuId, project) -> (list unit price, list cost, contracted unit price, contracted cost)."""
    out = {}
    for r in rows:
        family = r["model_family"]
        for token_class, column in CLASSES:
            if r[column]:
                lp = list_price("openai", family, token_class, r["usage_date"], r["is_batch"])
                cp = price_of(r, token_class, lp)
                sku = f"{family}:{token_class}" + (":batch" if r["is_batch"] else "")
                out[(r["usage_date"], sku, r["project_id"])] = (lp, cost(r[column], lp), cp, cost(r[column], cp))
    return out


def check(wh, want):
    got = focus_rows(wh)
    assert set(got) == set(want)
    for key, (lp, lc, cp, cc) in want.items():
        r = got[key]
        assert (r["ListUnitPrice"], r["ListCost"], r["ContractedUnitPrice"], r["ContractedCost"]) == (lp, lc, cp, cc), key
        assert r["BilledCost"] == r["EffectiveCost"] == cc and r["x_cost_source"] == "computed", key
    total = wh.query("SELECT SUM(BilledCost) AS b, SUM(ListCost) AS l FROM `acme_prod.cost_data_standard_1_3`")[0]
    assert total == {"b": sum(v[3] for v in want.values()), "l": sum(v[1] for v in want.values())}


def test_twenty_percent_off_one_family_from_a_date_changes_only_its_later_computed_cost(rt, acme):
    wh = rt.warehouse
    rows = fixture_usage()
    land(wh, acme, rows, DAYS[0], DAYS[-1])
    made = po.add(acme, {"provider": "openai", "model_family": "gpt-4o", "discount_pct": "20",
                         "effective_from": FROM.isoformat()}, wh=wh)
    convert(wh, acme, DAYS[0], DAYS[-1])

    def price_of(r, token_class, lp):
        return off(lp, "20") if r["model_family"] == "gpt-4o" and r["usage_date"] >= FROM else lp

    want = expected(rows, price_of)
    check(wh, want)
    changed = {k for k, (lp, lc, cp, cc) in want.items() if cc != lc}
    assert changed and all(day >= FROM and sku.startswith("gpt-4o:") for day, sku, _ in changed)
    assert {r["override_id"] for r in wh.query("SELECT DISTINCT override_id FROM `acme_prod.genai_costs_daily` "
                                               "WHERE usage_date >= @d AND model_family = 'gpt-4o'", {"d": FROM})} \
        == {made["override_id"]}


def test_precedence_explicit_price_then_family_then_provider(rt, acme):
    wh = rt.warehouse
    rows = fixture_usage()
    land(wh, acme, rows, DAYS[0], DAYS[-1])
    start = DAYS[0].isoformat()
    po.add(acme, {"provider": "openai", "discount_pct": "10", "effective_from": start}, wh=wh)
    po.add(acme, {"provider": "openai", "model_family": "gpt-4o", "discount_pct": "12.5", "effective_from": start}, wh=wh)
    po.add(acme, {"provider": "openai", "model_family": "gpt-4o", "prices": {"input": "2.000000001", "batch_output": "3"},
                  "effective_from": start}, wh=wh)
    # other providers and orgs are not touched by any of them
    create_org(wh, "globex")
    po.add("globex", {"provider": "openai", "discount_pct": "99", "effective_from": start}, wh=wh)
    po.add(acme, {"provider": "anthropic", "discount_pct": "50", "effective_from": start}, wh=wh)
    convert(wh, acme, DAYS[0], DAYS[-1])

    def price_of(r, token_class, lp):
        explicit = {(False, "input"): Decimal("2.000000001"), (True, "output"): Decimal("3")}
        if r["model_family"] == "gpt-4o":
            return explicit.get((r["is_batch"], token_class), off(lp, "12.5"))
        return off(lp, "10")

    check(wh, expected(rows, price_of))


def test_an_override_never_prices_a_model_without_a_list_price(rt, acme):
    wh = rt.warehouse
    d = DAYS[0]
    land(wh, acme, [usage(d, "mystery-9", "mystery-9", 1000, 0, 0, 10)], d, d)
    po.add(acme, {"provider": "openai", "model_family": "mystery-9", "prices": {"input": "1", "output": "1"},
                  "effective_from": d.isoformat()}, wh=wh)
    convert(wh, acme, d, d)
    assert wh.query("SELECT DISTINCT price_status, cost, contracted_cost, override_id "
                    "FROM `acme_prod.genai_costs_daily`") == [
        {"price_status": "unpriced", "cost": None, "contracted_cost": None, "override_id": None}]


def test_an_end_is_a_new_version_and_earlier_dates_reprice_the_same(rt, acme):
    wh = rt.warehouse
    rows = fixture_usage()
    land(wh, acme, rows, DAYS[0], DAYS[-1])
    made = po.add(acme, {"provider": "openai", "model_family": "gpt-4o", "discount_pct": "20",
                         "effective_from": DAYS[1].isoformat()}, wh=wh)
    ended = po.end(acme, made["override_id"], DAYS[3].isoformat(), wh=wh)
    assert ended["version"] == 2 and ended["effective_to"] == DAYS[3].isoformat()
    history = po.get(acme, made["override_id"], history=True, wh=wh)["history"]
    assert [(h["version"], h["effective_to"]) for h in history] == [(1, None), (2, DAYS[3].isoformat())]
    convert(wh, acme, DAYS[0], DAYS[-1])
    check(wh, expected(rows, lambda r, c, lp: off(lp, "20") if r["model_family"] == "gpt-4o"
                       and DAYS[1] <= r["usage_date"] < DAYS[3] else lp))
    with pytest.raises(po.OverrideInvalid, match="only move earlier"):
        po.end(acme, made["override_id"], DAYS[3].isoformat(), wh=wh)
    # an end on its first day: it never applied
    po.end(acme, made["override_id"], DAYS[1].isoformat(), wh=wh)
    convert(wh, acme, DAYS[0], DAYS[-1])
    check(wh, expected(rows, lambda r, c, lp: lp))


def test_overlapping_overrides_of_one_kind_and_scope_are_refused(rt, acme):
    wh = rt.warehouse
    base = {"provider": "openai", "model_family": "gpt-4o", "discount_pct": "20", "effective_from": "2025-09-01",
            "effective_to": "2025-10-01"}
    first = po.add(acme, base, wh=wh)
    with pytest.raises(po.OverrideConflict, match=first["override_id"]):
        po.add(acme, {**base, "effective_from": "2025-09-30", "effective_to": None}, wh=wh)
    # the day it ends is free, as are another kind, another scope and another org
    po.add(acme, {**base, "effective_from": "2025-10-01", "effective_to": None}, wh=wh)
    po.add(acme, {**base, "discount_pct": None, "prices": {"input": "1"}}, wh=wh)
    po.add(acme, {**base, "model_family": None}, wh=wh)
    create_org(wh, "globex")
    po.add("globex", base, wh=wh)
    assert len(po.list_overrides(acme, wh=wh)) == 4


# -- the pipeline: a re-run re-prices, nothing else does ------------------------------------------

DS_START = dt.date(2025, 10, 1)
DS_DAYS = 8
DS_FROM = DS_START + dt.timedelta(days=5)
DS_CLASSES = (("input", "input_cache_miss_tokens"), ("cached_input", "input_cache_hit_tokens"),
              ("output", "output_tokens"))


@pytest.fixture()
def deepseek_org(rt, acme, tmp_path):
    from cli.server import app
    from shared.secrets import CredentialStore
    from stubs.deepseek import DeepSeekStub
    from stubs.genai_data import deepseek_demo_csv, deepseek_demo_usage

    records = deepseek_demo_usage(DS_START, DS_DAYS, seed=5)
    folder = tmp_path / "deepseek"
    folder.mkdir()
    (folder / "export.csv").write_text(deepseek_demo_csv(records))
    with DeepSeekStub(api_key="sk-ds-test") as stub:
        CredentialStore(rt.warehouse, rt.settings).add(
            "acme", "deepseek", {"api_key": "sk-ds-test", "base_url": stub.base_url, "usage_csv_dir": f"file://{folder}"})
        client = app().test_client()
        key = create_key(rt.warehouse, "acme")
        yield {"rt": rt, "client": client, "h": {"X-API-Key": key}, "records": records, "stub": stub}


def run_deepseek(s, start=DS_START, days=DS_DAYS) -> dict:
    end = start + dt.timedelta(days=days - 1)
    r = s["client"].post("/api/v1/pipelines/run/acme/genai/payg/deepseek", headers=s["h"],
                         json={"start_date": start.isoformat(), "end_date": end.isoformat()})
    assert r.status_code == 202, r.json
    s["rt"].bus.drain()
    run = runs.public_view(runs.get_run(s["rt"].warehouse, "acme", r.json["run_id"]))
    assert run["status"] == "succeeded", run
    return run


def stored(wh):
    money = ("ListCost", "ContractedCost", "ContractedUnitPrice", "BilledCost", "EffectiveCost", "x_run_id")
    return sorted((str(k), tuple(v[m] for m in money if m in v)) for k, v in focus_rows(wh).items()), \
        wh.query("SELECT * FROM `acme_prod.genai_costs_daily` ORDER BY usage_date, model, project_id, token_class")


def deepseek_expected(records, discounted):
    out = {}
    for r in records:
        for token_class, field in DS_CLASSES:
            if r[field]:
                lp = list_price("deepseek", r["model"], token_class, r["date"])
                cp = off(lp, "20") if discounted(r) else lp
                out[(r["date"], f"{r['model']}:{token_class}", r["api_key_name"])] = (lp, cost(r[field], lp), cp,
                                                                                       cost(r[field], cp))
    return out


def test_adding_an_override_changes_stored_rows_only_when_the_slice_is_run_again(deepseek_org):
    s = deepseek_org
    wh, records = s["rt"].warehouse, s["records"]
    first = run_deepseek(s)
    assert first["quality"]["price_overrides"] == []
    check(wh, deepseek_expected(records, lambda r: False))
    before = stored(wh)

    made = s["client"].post("/api/v1/price-overrides/acme", headers=s["h"], json={
        "provider": "deepseek", "model_family": "deepseek-chat", "discount_pct": "20",
        "effective_from": DS_FROM.isoformat(), "note": "2025 enterprise agreement"})
    assert made.status_code == 201, made.json
    oid = made.json["override_id"]
    assert stored(wh) == before  # nothing is edited in place

    again = run_deepseek(s)
    discounted = lambda r: r["model"] == "deepseek-chat" and r["date"] >= DS_FROM  # noqa: E731
    want = deepseek_expected(records, discounted)
    check(wh, want)
    hit = {k: v for k, v in want.items() if k[0] >= DS_FROM and k[1].startswith("deepseek-chat:")}
    assert again["quality"]["price_overrides"] == [{
        "override_id": oid, "provider": "deepseek", "model_family": "deepseek-chat", "cost_rows": len(hit),
        "tokens": sum(r[f] for r in records if discounted(r) for _, f in DS_CLASSES),
        "list_cost": str(sum(v[1] for v in hit.values())), "contracted_cost": str(sum(v[3] for v in hit.values()))}]

    # ending it is a dated version: stored rows stay until re-run, then the later days go back to list
    discounted_rows = stored(wh)
    ended = s["client"].post(f"/api/v1/price-overrides/acme/{oid}/end", headers=s["h"],
                             json={"effective_to": (DS_FROM + dt.timedelta(days=2)).isoformat()})
    assert ended.status_code == 200 and ended.json["version"] == 2
    assert stored(wh) == discounted_rows
    run_deepseek(s)
    check(wh, deepseek_expected(records, lambda r: discounted(r) and r["date"] < DS_FROM + dt.timedelta(days=2)))
    # re-running only the early days leaves the rest as they were
    snapshot = {k: v for k, v in focus_rows(wh).items() if k[0] >= DS_START + dt.timedelta(days=2)}
    run_deepseek(s, DS_START, 2)
    assert {k: v for k, v in focus_rows(wh).items() if k[0] >= DS_START + dt.timedelta(days=2)} == snapshot


# -- HTTP API --------------------------------------------------------------------------------------

@pytest.fixture()
def api(rt, acme):
    from cli.server import app

    create_org(rt.warehouse, "globex")
    return app().test_client(), {"acme": create_key(rt.warehouse, "acme"), "globex": create_key(rt.warehouse, "globex")}


GOOD = {"provider": "openai", "model_family": "gpt-4o", "discount_pct": "20", "effective_from": "2025-09-03"}


def count(rt):
    return rt.warehouse.query("SELECT COUNT(*) AS n FROM `organizations.genai_price_overrides`")[0]["n"]


def test_api_adds_lists_reads_and_ends(rt, api):
    client, keys = api
    h = {"X-API-Key": keys["acme"]}
    r = client.post("/api/v1/price-overrides/acme", headers=h, json={**GOOD, "discount_pct": 12.5})
    assert r.status_code == 201, r.json
    made = r.json
    assert made["discount_pct"] == "12.5" and made["kind"] == "discount" and made["effective_to"] is None
    explicit = client.post("/api/v1/price-overrides/acme", headers=h, json={
        "provider": "openai", "model_family": "gpt-4o", "prices": {"input": "2.25", "batch_output": 4},
        "effective_from": "2025-09-03", "effective_to": "2026-01-01"})
    assert explicit.status_code == 201 and explicit.json["prices"] == {"input": "2.25", "batch_output": "4"}
    listed = client.get("/api/v1/price-overrides/acme", headers=h)
    assert listed.status_code == 200
    assert {o["override_id"] for o in listed.json["price_overrides"]} == {made["override_id"],
                                                                         explicit.json["override_id"]}
    one = client.get(f"/api/v1/price-overrides/acme/{made['override_id']}?history=1", headers=h)
    assert one.status_code == 200 and len(one.json["history"]) == 1
    ended = client.post(f"/api/v1/price-overrides/acme/{made['override_id']}/end", headers=h,
                        json={"effective_to": "2025-12-01"})
    assert ended.status_code == 200 and ended.json["effective_to"] == "2025-12-01"
    assert client.post("/api/v1/price-overrides/acme", headers=h, json=GOOD).status_code == 409
    assert client.get("/api/v1/price-overrides/acme/ovr_nope", headers=h).status_code == 404
    assert client.post("/api/v1/price-overrides/acme/ovr_nope/end", headers=h,
                       json={"effective_to": "2025-12-01"}).status_code == 404
    assert client.delete("/api/v1/price-overrides/acme", headers=h).status_code == 405
    assert count(rt) == 3  # two adds and one end, nothing rewritten


@pytest.mark.parametrize("body, field", [
    ({**GOOD, "discount": "20"}, "discount"),
    ({**GOOD, "provider": "slack"}, "provider"),
    ({**GOOD, "discount_pct": "0"}, "discount_pct"),
    ({**GOOD, "discount_pct": "100.5"}, "discount_pct"),
    ({**GOOD, "discount_pct": "12.34567"}, "discount_pct"),
    ({**GOOD, "discount_pct": "NaN"}, "discount_pct"),
    ({**GOOD, "discount_pct": True}, "discount_pct"),
    ({**GOOD, "prices": {"input": "1"}}, "discount_pct"),
    ({k: v for k, v in GOOD.items() if k != "discount_pct"}, "discount_pct"),
    ({**{k: v for k, v in GOOD.items() if k != "discount_pct"}, "prices": {"inputs": "1"}}, "prices.inputs"),
    ({**{k: v for k, v in GOOD.items() if k != "discount_pct"}, "prices": {"input": "-1"}}, "prices.input"),
    ({**{k: v for k, v in GOOD.items() if k != "discount_pct"}, "prices": {}}, "prices"),
    ({"provider": "openai", "prices": {"input": "1"}, "effective_from": "2025-09-03"}, "model_family"),
    ({**GOOD, "model_family": "gpt-4o-2024-08-06"}, "model_family"),
    ({**GOOD, "model_family": "gpt\u00004o"}, "model_family"),
    ({**GOOD, "model_family": 7}, "model_family"),
    ({**GOOD, "effective_from": "2025-02-30"}, "effective_from"),
    ({**GOOD, "effective_from": None}, "effective_from"),
    ({**GOOD, "effective_to": "2025-09-03"}, "effective_to"),
    ({**GOOD, "effective_to": "99999-01-01"}, "effective_to"),
    ({**GOOD, "note": {"x": 1}}, "note"),
    ([GOOD], "body"),
    ("20%", "body"),
])
def test_api_bad_input_is_400_naming_the_field_and_stores_nothing(rt, api, body, field):
    client, keys = api
    r = client.post("/api/v1/price-overrides/acme", headers={"X-API-Key": keys["acme"]}, json=body)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.json["field"] == field and r.json["error"] == "invalid_override"
    assert count(rt) == 0


def test_api_bad_json_and_bad_ends_are_400(rt, api):
    client, keys = api
    h = {"X-API-Key": keys["acme"]}
    r = client.post("/api/v1/price-overrides/acme", headers=h, data=b"{not json", content_type="application/json")
    assert r.status_code == 400 and r.json["error"] == "bad_body"
    oid = client.post("/api/v1/price-overrides/acme", headers=h, json=GOOD).json["override_id"]
    for body in ({"effective_to": "2025-09-02"}, {"effective_to": "not a date"}, {}, {"end": "2025-10-01"}, [1]):
        r = client.post(f"/api/v1/price-overrides/acme/{oid}/end", headers=h, json=body)
        assert r.status_code == 400, (body, r.json)
    assert count(rt) == 1


@pytest.mark.parametrize("method, route, body", [
    ("GET", "/api/v1/price-overrides/acme", None),
    ("POST", "/api/v1/price-overrides/acme", GOOD),
    ("GET", "/api/v1/price-overrides/acme/{oid}", None),
    ("POST", "/api/v1/price-overrides/acme/{oid}/end", {"effective_to": "2025-10-01"}),
])
def test_api_refuses_no_key_and_another_orgs_key_and_changes_nothing(rt, api, method, route, body):
    client, keys = api
    oid = po.add("acme", GOOD, wh=rt.warehouse)["override_id"]
    before = rt.warehouse.query("SELECT * FROM `organizations.genai_price_overrides`")
    path = route.format(oid=oid)
    assert client.open(path, method=method, json=body).status_code == 401
    assert client.open(path, method=method, json=body, headers={"X-API-Key": "cak_nothere_x"}).status_code == 401
    r = client.open(path, method=method, json=body, headers={"X-API-Key": keys["globex"]})
    assert r.status_code == 403 and "acme" in r.json["message"]
    assert rt.warehouse.query("SELECT * FROM `organizations.genai_price_overrides`") == before
    # globex's own key sees none of acme's overrides
    assert client.get("/api/v1/price-overrides/globex", headers={"X-API-Key": keys["globex"]}).json == {
        "price_overrides": []}
    assert client.get(f"/api/v1/price-overrides/globex/{oid}", headers={"X-API-Key": keys["globex"]}).status_code == 404


# -- CLI -------------------------------------------------------------------------------------------

@pytest.fixture()
def cloudact_logging():
    """`cloudact` sets up the cloudact logger for the process (JSON to stderr, no propagation); put it
    back so later tests' caplog still sees the job logs."""
    import logging

    log = logging.getLogger("cloudact")
    saved = log.handlers[:], log.level, log.propagate
    yield
    log.handlers[:], log.level, log.propagate = saved


def test_cli_add_list_remove(rt, acme, cloudact_logging):
    from click.testing import CliRunner

    from cli.main import cli

    runner = CliRunner()
    added = runner.invoke(cli, ["prices", "override", "add", "acme", "--provider", "openai", "--model-family",
                                "gpt-4o", "--price", "input=2.10", "--price", "output=8", "--from", "2025-09-03",
                                "--note", "EA 2025"])
    assert added.exit_code == 0, added.output
    oid = added.stdout.strip().splitlines()[-1]
    assert oid.startswith("ovr_") and "cloudact run acme genai/payg/openai --start 2025-09-03" in " ".join(added.stderr.split())
    stored_row = po.get("acme", oid, wh=rt.warehouse)
    assert stored_row["prices"] == {"input": "2.1", "output": "8"} and stored_row["note"] == "EA 2025"
    listed = runner.invoke(cli, ["prices", "override", "list", "acme"])
    assert listed.exit_code == 0 and oid in listed.output and "input=2.1, output=8" in listed.output
    removed = runner.invoke(cli, ["prices", "override", "remove", "acme", oid, "--from", "2025-10-01"])
    assert removed.exit_code == 0, removed.output
    assert po.get("acme", oid, wh=rt.warehouse)["effective_to"] == "2025-10-01"
    for args, message in (
            (["add", "acme", "--provider", "openai", "--discount-pct", "150", "--from", "2025-09-01"], "discount_pct"),
            (["add", "acme", "--provider", "openai", "--price", "input", "--from", "2025-09-01"], "CLASS=PRICE"),
            (["add", "nobody", "--provider", "openai", "--discount-pct", "5", "--from", "2025-09-01"], "nobody"),
            (["remove", "acme", oid, "--from", "2025-12-01"], "only move earlier"),
            (["remove", "acme", "ovr_nope", "--from", "2025-12-01"], "no price override")):
        bad = runner.invoke(cli, ["prices", "override", *args])
        assert bad.exit_code == 1 and message in bad.output, (args, bad.output)
    assert count(rt) == 2
