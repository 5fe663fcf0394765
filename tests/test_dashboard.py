"""The web dashboard at /ui/ in a real headless Chromium (Debian's chromium + chromium-driver, via selenium).

The org is the demo's (`cloudact demo`: every provider, USD and EUR, real runs over the HTTP API) plus a second
org, globex, with one subscription of its own. Every number the browser shows is read from the page's tables
and compared with SQL over the warehouse written here (or the fixture files, or the JSON API), never with
the dashboard's own code. A screenshot of each page is kept under test-artifacts/dashboard/.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import re
import shutil
import stat
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

from tests.costs_demo import build_demo

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
FOCUS = "`acme_prod.cost_data_standard_1_3`"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
SUBSCRIPTION = "subscription/costs/subscription_cost"
GLOBEX_SUB = {"provider": "figma", "plan": "organization", "seats": 7, "unit_price": "45.00", "currency": "USD",
              "billing_cycle": "monthly", "start_date": "2026-10-01"}
AWS_SAMPLE = ROOT / "data" / "samples" / "aws" / "sample-anonymous-aws-export-dataset.csv"


def aws_sample_total() -> Decimal:
    """The bundled CUR's lineItem/UnblendedCost summed from the CSV, each value as NUMERIC holds it (9 places,
    half even: the sample has amounts with 10)."""
    with AWS_SAMPLE.open(newline="") as f:
        return sum((Decimal(r["lineItem/UnblendedCost"]).quantize(Decimal("1e-9"), ROUND_HALF_EVEN)
                    for r in csv.DictReader(f)), Decimal(0))


# -- the site: the demo org and globex in one warehouse, served by `cloudact serve`'s app -------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from cli.remote import post_and_wait
    from cli.server import start_background
    from shared import runtime
    from shared.auth import create_key
    from shared.tenants import create_org

    home = tmp_path_factory.mktemp("dashboard")
    build_demo(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOUDACT_HOME", str(home / "demo"))
        mp.setenv("CLOUDACT_BACKEND", "embedded")
        mp.setenv("CLOUDACT_TENANCY", "single")
        previous = runtime.use(None)
        rt = runtime.get()
        acme_key = create_key(rt.warehouse, "acme")
        create_org(rt.warehouse, "globex", "Globex")
        globex_key = create_key(rt.warehouse, "globex")
        server, url = start_background()
        try:
            httpx.post(f"{url}/api/v1/subscriptions/globex", json=GLOBEX_SUB,
                       headers={"X-API-Key": globex_key}).raise_for_status()
            run = post_and_wait(url, globex_key, "globex", SUBSCRIPTION,
                                {"start_date": "2026-10-01", "end_date": "2026-10-30"})
            assert run["status"] == "succeeded", run
            yield {"url": url, "rt": rt, "wh": rt.warehouse, "home": home / "demo",
                   "keys": {"acme": acme_key, "globex": globex_key}}
        finally:
            server.shutdown()
            rt.bus.drain()
            runtime.use(previous)
            rt.close()


def api(site, org: str, path: str) -> dict:
    r = httpx.get(f"{site['url']}{path}", headers={"X-API-Key": site["keys"][org]}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


# -- the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("the dashboard's browser tests need Chromium and its driver from the OS packages "
                    "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra (pip install -e .[test])")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no network, no usage report
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture()
def browser(chrome, site):
    """The module's Chromium with no cookies: every test signs in itself."""
    chrome.get(f"{site['url']}/ui/login")
    chrome.delete_all_cookies()
    chrome.get_log("browser")  # reading empties it: each test sees its own console
    return chrome


def submit(browser, button) -> None:
    """Click a button or link and wait for the page it leads to (a click returns before the navigation)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element("tag name", "html")

    def left(_) -> bool:
        try:
            page.is_enabled()
            return False
        except WebDriverException:  # stale; or, caught mid-navigation, Chrome's "does not belong to the document"
            return True

    button.click()
    WebDriverWait(browser, 30).until(left)
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")


def sign_in(browser, site, key: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site['url']}/ui/login")
    browser.find_element(By.ID, "api_key").send_keys(key)
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def screenshot(browser, name: str) -> None:
    """The whole page (beyond the viewport, through the DevTools protocol), for people to look at."""
    import base64

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}})
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


_READ_TABLE = """
return Array.from(document.querySelectorAll('table#' + arguments[0] + ' tbody tr')).map(tr =>
  Object.fromEntries(Array.from(tr.children).map(c => [c.dataset.key, [c.dataset.value, c.textContent.trim()]])));
"""


def table(browser, table_id: str) -> list[dict[str, tuple[str, str]]]:
    """Each row as {column key: (exact value, text shown)}."""
    return [{k: tuple(v) for k, v in row.items()} for row in browser.execute_script(_READ_TABLE, table_id)]


def shown(d: Decimal | None) -> str:
    """How an amount must read: to the cent, half up, thousands grouped (the exact value is in data-value)."""
    if d is None:
        return "—"
    cents = d.quantize(Decimal("0.01"), ROUND_HALF_UP)
    if cents == 0 and d != 0:
        return "< 0.01" if d > 0 else "> −0.01"
    return f"{cents:,}".replace("-", "−")


def money_cells(row, key) -> Decimal | None:
    value, text = row[key]
    if value == "":
        assert text == "—"
        return None
    assert text == shown(Decimal(value)), (key, value, text)
    return Decimal(value)


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def charts_drawn(browser) -> int:
    """Charts Chart.js has drawn, each on a canvas with pixels painted."""
    return browser.execute_script("""
      return Array.from(document.querySelectorAll('canvas[data-chart]')).filter(c => {
        if (c.dataset.drawn !== '1' || !c.width) return false;
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < px.length; i += 4) if (px[i]) return true;
        return false; }).length;""")


def accessibility_problems(browser) -> list[str]:
    """What a screen reader or keyboard user would miss: unlabelled fields, charts without a text
    alternative, tables without headers or a caption, a page without a language or a main landmark."""
    return browser.execute_script("""
      const out = [];
      if (!document.documentElement.lang) out.push('no lang');
      if (!document.querySelector('main')) out.push('no main');
      document.querySelectorAll('input:not([type=hidden]), select').forEach(e => {
        if (!e.labels || !e.labels.length) out.push('unlabelled ' + (e.id || e.name)); });
      document.querySelectorAll('canvas').forEach(c => {
        if (c.getAttribute('role') !== 'img' || !c.getAttribute('aria-label')) out.push('chart ' + c.id); });
      document.querySelectorAll('table').forEach(t => {
        if (!t.caption || !t.caption.textContent.trim()) out.push('no caption ' + t.id);
        if (t.querySelectorAll('thead th[scope=col]').length !== t.rows[0].cells.length) out.push('headers ' + t.id); });
      return out;""")


def q(site, sql: str, params: dict | None = None) -> list[dict]:
    return site["wh"].query(sql, params or {})


def last_30_days(site) -> tuple[dt.date, dt.date]:
    hi = q(site, f"SELECT MAX(DATE(ChargePeriodStart)) AS hi FROM {FOCUS}")[0]["hi"]
    return hi - dt.timedelta(days=29), hi


def focus_sums(site, by: str, start: dt.date, end: dt.date, where: str = "TRUE", org: str = "acme") -> dict:
    """{(group, currency): SUM(BilledCost)} with `by` one FOCUS column, over [start, end] (UTC days)."""
    rows = q(site, f"SELECT {by} AS g, BillingCurrency AS c, SUM(BilledCost) AS s "
                   f"FROM `{org}_prod.cost_data_standard_1_3` WHERE x_org_slug = @org AND {where} "
                   "AND DATE(ChargePeriodStart) BETWEEN @a AND @b GROUP BY 1, 2",
             {"org": org, "a": start, "b": end})
    return {(r["g"], r["c"]): r["s"] for r in rows}


def pivot_cells(browser, table_id: str) -> dict[tuple[str, str], Decimal]:
    """{(period, provider column label): amount} of a cost-over-time table, checking each row's total."""
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('table#' + arguments[0] + ' thead th')).map("
        "th => [th.dataset.key, th.textContent.trim()])", table_id)
    label = dict(labels)
    cells = {}
    for row in table(browser, table_id):
        period = row["period"][0]
        amounts = {k: money_cells(row, k) for k in row if k.startswith("s")}
        assert money_cells(row, "total") == sum((a for a in amounts.values() if a is not None), Decimal(0))
        cells.update({(period, label[k]): a for k, a in amounts.items() if a is not None})
    return cells


# -- sign-in --------------------------------------------------------------------------------------
def test_pages_need_a_sign_in_and_a_wrong_key_is_refused(browser, site):
    from selenium.webdriver.common.by import By

    for page in ("", "genai", "subscriptions", "reconciliation", "runs"):
        browser.get(f"{site['url']}/ui/{page}")
        assert browser.current_url == f"{site['url']}/ui/login", page
    assert accessibility_problems(browser) == []
    screenshot(browser, "login")
    acme_id = site["keys"]["acme"].split("_")[1]
    for wrong in ("not-a-key", "cak_000000000000_nope", f"cak_{acme_id}_{'x' * 43}", site["keys"]["acme"][:-1]):
        sign_in(browser, site, wrong)
        assert "That API key is not valid." in browser.find_element(By.ID, "login-error").text
        browser.get(f"{site['url']}/ui/runs")
        assert browser.current_url == f"{site['url']}/ui/login"
    assert browser.get_cookie("cloudact_ui") is None or "org" not in _session_of(site, browser)


def _session_of(site, browser) -> dict:
    """The signed cookie's payload, read with the server's own secret (to check what it carries)."""
    from itsdangerous import URLSafeTimedSerializer
    from flask.sessions import TaggedJSONSerializer

    secret = (site["home"] / "ui-session.key").read_bytes().strip()
    s = URLSafeTimedSerializer(secret, salt="cookie-session", serializer=TaggedJSONSerializer(),
                               signer_kwargs={"key_derivation": "hmac", "digest_method": "sha1"})
    return s.loads(browser.get_cookie("cloudact_ui")["value"])


def test_sign_in_sets_a_strict_httponly_cookie_without_the_key(browser, site):
    sign_in(browser, site, site["keys"]["acme"])
    assert browser.current_url == f"{site['url']}/ui/"
    cookie = browser.get_cookie("cloudact_ui")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert cookie["secure"] is False  # plain http on loopback; https: see test_cookie_is_secure_over_https
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script reads it
    payload = _session_of(site, browser)
    assert payload["org"] == "acme" and payload["key_id"] == site["keys"]["acme"].split("_")[1]
    assert site["keys"]["acme"] not in cookie["value"] and site["keys"]["acme"] not in str(payload)
    mode = stat.S_IMODE((site["home"] / "ui-session.key").stat().st_mode)
    assert mode == 0o600, oct(mode)


# -- the pages: numbers equal SQL over the warehouse ------------------------------------------------
def test_costs_page_equals_sql_over_the_focus_table(browser, site):
    from selenium.webdriver.common.by import By

    sign_in(browser, site, site["keys"]["acme"])
    start, end = last_30_days(site)
    assert browser.find_element(By.ID, "range").text.startswith(f"{start} to {end}")
    assert browser.find_element(By.ID, "org-name").text == "acme"
    sums = focus_sums(site, "CONCAT(CAST(DATE(ChargePeriodStart) AS STRING), '|', ServiceProviderName)", start, end)
    currencies = sorted({c for _, c in sums})
    assert len(currencies) >= 2, "the demo bills in several currencies"
    for currency in currencies:
        got = pivot_cells(browser, f"cost-over-time-{currency.lower()}")
        want = {tuple(g.split("|")): s for (g, c), s in sums.items() if c == currency}
        assert got == want, currency
    assert sum(len(pivot_cells(browser, f"cost-over-time-{c.lower()}")) for c in currencies) >= 100
    # and the same numbers as the HTTP API's, amounts as its exact decimal strings
    by_api = api(site, "acme", f"/api/v1/costs/acme?from={start}&to={end}&group_by=day,provider")["rows"]
    for currency in currencies:
        assert pivot_cells(browser, f"cost-over-time-{currency.lower()}") == {
            (r["day"], r["provider"]): Decimal(r["amount"]) for r in by_api if r["currency"] == currency}

    for table_id, column, key in (("top-services", "ServiceName", "service"),
                                  ("top-accounts", "SubAccountId", "account")):
        want = focus_sums(site, column, start, end)
        for currency in currencies:  # the ten largest of each currency, never ranked across currencies
            rows = table(browser, f"{table_id}-{currency.lower()}")
            got = {r[key][0] or None: money_cells(r, "amount") for r in rows}
            assert {r["currency"][0] for r in rows} == {currency}
            largest = sorted(((s, g) for (g, c), s in want.items() if c == currency), reverse=True)[:10]
            assert [money_cells(r, "amount") for r in rows] == [s for s, _ in largest]  # largest first
            assert got == {g: want[(g, currency)] for g in got}
    assert charts_drawn(browser) == 3 * len(currencies)
    assert console_errors(browser) == []  # no CSP refusal, no missing asset, no script error
    assert accessibility_problems(browser) == []
    screenshot(browser, "costs")


def test_filters_narrow_range_and_provider(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(browser, site, site["keys"]["acme"])
    # Sep..Nov 2023 (the bundled AWS, Azure and OCI samples): 91 days, shown per ISO week
    browser.execute_script("document.getElementById('from').value = '2023-09-01';"
                           "document.getElementById('to').value = '2023-11-30';")
    Select(browser.find_element(By.ID, "provider")).select_by_visible_text("Amazon Web Services")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert "provider=Amazon+Web+Services" in browser.current_url
    days = focus_sums(site, "DATE(ChargePeriodStart)", dt.date(2023, 9, 1), dt.date(2023, 11, 30),
                      where="ServiceProviderName = 'Amazon Web Services'")
    weeks: dict = defaultdict(Decimal)
    for (day, currency), s in days.items():
        weeks[((day - dt.timedelta(days=day.weekday())).isoformat(), "Amazon Web Services")] += s
    assert pivot_cells(browser, "cost-over-time") == dict(weeks)
    header = browser.find_element(By.CSS_SELECTOR, "table#cost-over-time thead th").text
    assert header == "Week"
    # the sample's own total, summed from the CSV: the filter kept every AWS row and nothing else
    assert sum(weeks.values()) == aws_sample_total()
    services = table(browser, "top-services")
    assert {r["currency"][0] for r in services} == {"USD"}
    # the filter follows the navigation to the other cost pages
    submit(browser, browser.find_element(By.LINK_TEXT, "Subscriptions"))
    assert "from=2023-09-01" in browser.current_url and "provider=Amazon+Web+Services" in browser.current_url


def test_a_bad_filter_is_a_message_not_a_page_of_wrong_numbers(browser, site):
    from selenium.webdriver.common.by import By

    sign_in(browser, site, site["keys"]["acme"])
    for query, says in (("from=2026-13-01", "from must be a date"), ("from=2026-10-05&to=2026-10-01", "after"),
                        ("provider=Nobody", "no provider 'Nobody'"), ("currency=US", "three-letter"),
                        ("currency=USD", "no EUR->USD exchange rate")):
        browser.get(f"{site['url']}/ui/?{query}")
        assert says in browser.find_element(By.ID, "page-error").text, query
        assert not browser.find_elements(By.CSS_SELECTOR, "table#top-services")


def test_genai_page_computed_vs_billed_equals_sql(browser, site):
    from cli.reports import genai_reconciliation

    sign_in(browser, site, site["keys"]["acme"])
    start, end = last_30_days(site)
    browser.get(f"{site['url']}/ui/genai")
    computed = {(r["provider"], r["model"]): r["s"] for r in q(
        site, "SELECT provider, model, SUM(cost) AS s FROM `acme_prod.genai_costs_daily` "
              "WHERE usage_date BETWEEN @a AND @b GROUP BY 1, 2", {"a": start, "b": end})}
    assert q(site, "SELECT COUNT(*) AS n FROM `acme_prod.genai_costs_daily` WHERE usage_date NOT BETWEEN @a AND @b",
             {"a": start, "b": end})[0]["n"] == 0  # the range holds all the demo's usage: whole-report totals apply
    # what "billed" is (a provider's cost API, or its share of a cloud bill) is the report's to say: per model,
    # the page's sum of the report's days equals the report's own totals over all days
    billed = {(r["provider"], r["model"]): r["billed_cost"] for r in genai_reconciliation(site["wh"], "acme")}
    rows = {(r["provider"][0], r["model"][0]): r for r in table(browser, "genai-models")}
    assert set(rows) == set(billed) and set(computed) <= set(rows)
    assert len({p for p, _ in rows}) >= 5  # the demo's GenAI providers
    for k, r in rows.items():
        c, b = money_cells(r, "computed_cost"), money_cells(r, "billed_cost")
        assert (c, b) == (computed.get(k), billed.get(k)), k
        assert money_cells(r, "difference") == (b - c if b is not None and c is not None else None)
    assert any(money_cells(r, "billed_cost") is not None for r in rows.values())
    assert any(money_cells(r, "billed_cost") is None for r in rows.values())  # nothing billed stays empty, not 0
    # sp_genai_3's SkuId is "<model>:<token class>[:batch]" on GenAI usage rows: the model is what precedes it;
    # cloud lines sp_genai_4 split over the usage name their model in AllocatedResourceName
    token_sku = re.compile(r"^(.+):(input|cached_input|cache_write|cache_write_1h|output)(:batch)?$")
    focus: dict = defaultdict(Decimal)
    for r in q(site, f"SELECT ServiceProviderName AS p, SkuId AS sku, AllocatedMethodId AS how, "
                     "AllocatedResourceName AS named, x_pipeline_id AS pipe, BillingCurrency AS c, SUM(BilledCost) AS s "
                     f"FROM {FOCUS} WHERE DATE(ChargePeriodStart) BETWEEN @a AND @b "
                     "AND (ServiceSubcategory = 'Generative AI' OR AllocatedMethodId IS NOT NULL) "
                     "GROUP BY 1, 2, 3, 4, 5, 6", {"a": start, "b": end}):
        if r["how"] == "cloudact-genai-usage":
            focus[(r["p"], r["named"], r["c"])] += r["s"]
        elif r["pipe"].startswith("genai/") and (m := token_sku.match(r["sku"] or "")):
            focus[(r["p"], m.group(1), r["c"])] += r["s"]
    got = {(r["provider"][0], r["model"][0], r["currency"][0]): money_cells(r, "amount")
           for r in table(browser, "genai-focus")}
    assert got == dict(focus) and len(got) >= 10
    assert charts_drawn(browser) == 2 and console_errors(browser) == [] and accessibility_problems(browser) == []
    screenshot(browser, "genai")


def test_subscriptions_page_equals_the_api_and_sql(browser, site):
    sign_in(browser, site, site["keys"]["acme"])
    start, end = last_30_days(site)
    browser.get(f"{site['url']}/ui/subscriptions")
    listed = api(site, "acme", "/api/v1/subscriptions/acme")["subscriptions"]
    rows = table(browser, "subscriptions")
    assert [(r["provider"][0], int(r["seats"][0]), Decimal(r["unit_price"][0]), r["currency"][0], r["status"][0])
            for r in rows] == [(s["provider"], s["seats"], Decimal(s["unit_price"]), s["currency"], s["status"])
                               for s in listed]
    assert len(rows) == 4
    want = focus_sums(site, "ServiceProviderName", start, end, where=f"x_pipeline_id = '{SUBSCRIPTION}'")
    got = {(r["provider"][0], r["currency"][0]): money_cells(r, "amount") for r in table(browser, "subscription-costs")}
    assert got == want and {c for _, c in got} == {"USD", "EUR"}
    assert console_errors(browser) == [] and accessibility_problems(browser) == []
    screenshot(browser, "subscriptions")


def test_reconciliation_page_shows_each_billing_period_against_its_source(browser, site):
    sign_in(browser, site, site["keys"]["acme"])
    browser.get(f"{site['url']}/ui/reconciliation")
    rows = {(r["pipeline"][0], r["billing_period"][0], r["currency"][0]): r for r in table(browser, "reconciliation")}
    source = {(r["p"], r["bp"].isoformat(), r["c"]): (r["n"], r["s"]) for r in q(
        site, "SELECT x_pipeline_id AS p, billing_period AS bp, currency AS c, SUM(source_rows) AS n, "
              "SUM(source_cost) AS s FROM `acme_prod.cloud_source_totals` GROUP BY 1, 2, 3")}
    focus = {(r["p"], r["bp"].isoformat(), r["c"]): (r["n"], r["s"]) for r in q(
        site, f"SELECT x_pipeline_id AS p, DATE(BillingPeriodStart) AS bp, BillingCurrency AS c, COUNT(*) AS n, "
              f"SUM(BilledCost) AS s FROM {FOCUS} WHERE x_pipeline_id LIKE 'cloud/%' GROUP BY 1, 2, 3")}
    assert set(rows) == set(source) and len({p for p, _, _ in rows}) == 4  # aws, azure, gcp, oci
    for k, r in rows.items():
        assert (int(r["source_rows"][0]), money_cells(r, "source_cost")) == source[k], k
        assert (int(r["focus_rows"][0]), money_cells(r, "billed_cost")) == focus[k], k
        assert money_cells(r, "difference") == focus[k][1] - source[k][1]
        assert r["result"][1] == "reconciled"
    assert money_cells(rows[("cloud/aws/cost/billing", "2023-11-01", "USD")], "source_cost") == aws_sample_total()
    assert accessibility_problems(browser) == []
    screenshot(browser, "reconciliation")


def test_runs_page_equals_the_runs_api(browser, site):
    sign_in(browser, site, site["keys"]["acme"])
    browser.get(f"{site['url']}/ui/runs")
    listed = api(site, "acme", "/api/v1/pipelines/runs/acme")["runs"]
    rows = table(browser, "runs")
    assert [r["run_id"][0] for r in rows] == [r["run_id"] for r in listed]
    assert len(rows) >= 12
    for row, run in zip(rows, listed):
        assert (row["pipeline"][0], row["status"][0]) == (run["pipeline"], run["status"])
        for key in ("rows_ingested", "rows_converted"):
            assert row[key][0] == ("" if run[key] is None else str(run[key]))
        started = dt.datetime.fromisoformat(run["started_at"] or run["created_at"])
        took = Decimal((dt.datetime.fromisoformat(run["finished_at"]) - started).total_seconds())
        assert abs(Decimal(row["duration_s"][0]) - took) <= Decimal("0.05")
        assert row["error"][0] == (run["error"] or "")
        assert row["warnings_text"][0] == "\n".join(run["warnings"])
    assert any(r["warnings_text"][0] for r in rows)
    assert accessibility_problems(browser) == []
    screenshot(browser, "runs")


# -- isolation -----------------------------------------------------------------------------------
def test_another_orgs_key_never_shows_this_orgs_data(browser, site):
    from selenium.webdriver.common.by import By

    acme_runs = {r["run_id"] for r in api(site, "acme", "/api/v1/pipelines/runs/acme")["runs"]}
    acme_words = {r["g"] for r in q(site, f"SELECT DISTINCT ServiceName AS g FROM {FOCUS}")} | {
        r["g"] for r in q(site, f"SELECT DISTINCT SubAccountId AS g FROM {FOCUS} WHERE SubAccountId IS NOT NULL")}
    sign_in(browser, site, site["keys"]["globex"])
    assert browser.find_element(By.ID, "org-name").text == "globex"
    seen = {}
    for page in ("", "genai", "subscriptions", "reconciliation", "runs"):
        # an org named in the query is not how a page picks its org: the session's is
        browser.get(f"{site['url']}/ui/{page}?org=acme&from=2023-01-01&to=2026-12-31")
        assert browser.find_element(By.ID, "org-name").text == "globex"
        seen[page] = browser.page_source
        assert not any(run_id in seen[page] for run_id in acme_runs), page
    everything = dt.date(2023, 1, 1), dt.date(2026, 12, 31)
    browser.get(f"{site['url']}/ui/?from=2023-01-01&to=2026-12-31")
    months: dict = defaultdict(Decimal)  # four years: one bar per month
    for (group, _), s in focus_sums(site, "CONCAT(CAST(DATE(ChargePeriodStart) AS STRING), '|', "
                                          "ServiceProviderName)", *everything, org="globex").items():
        day, provider = group.split("|")
        months[(day[:8] + "01", provider)] += s
    assert months and pivot_cells(browser, "cost-over-time") == dict(months)
    screenshot(browser, "other-org")
    services = {r["service"][0] for r in table(browser, "top-services")}
    globex_services = {g for g, _ in focus_sums(site, "ServiceName", *everything, org="globex")}
    assert services == globex_services
    acme_only = acme_words - globex_services
    assert not any(f">{w}<" in html for html in seen.values() for w in acme_only)
    browser.get(f"{site['url']}/ui/subscriptions")
    assert [r["provider"][0] for r in table(browser, "subscriptions")] == ["figma"]
    browser.get(f"{site['url']}/ui/runs")
    assert len(table(browser, "runs")) == 1
    browser.get(f"{site['url']}/ui/reconciliation")
    assert browser.find_element(By.ID, "reconciliation-empty").text.startswith("No cloud billing run")
    browser.get(f"{site['url']}/ui/genai")
    assert browser.find_element(By.ID, "genai-models-empty")


# -- sign-out and revocation ------------------------------------------------------------------------
def test_sign_out_clears_the_session(browser, site):
    from selenium.webdriver.common.by import By

    sign_in(browser, site, site["keys"]["acme"])
    browser.get(f"{site['url']}/ui/runs")
    submit(browser, browser.find_element(By.ID, "logout"))
    assert browser.current_url == f"{site['url']}/ui/login"
    assert browser.get_cookie("cloudact_ui") is None or "org" not in _session_of(site, browser)
    for page in ("", "runs"):
        browser.get(f"{site['url']}/ui/{page}")
        assert browser.current_url == f"{site['url']}/ui/login"


def test_a_revoked_key_ends_its_sessions(browser, site):
    from selenium.webdriver.common.by import By

    from shared.auth import create_key, revoke_key

    key = create_key(site["wh"], "acme")
    sign_in(browser, site, key)
    browser.get(f"{site['url']}/ui/runs")
    assert browser.current_url == f"{site['url']}/ui/runs"
    revoke_key(site["wh"], "acme", key.split("_")[1])
    browser.get(f"{site['url']}/ui/runs")
    assert browser.current_url == f"{site['url']}/ui/login?ended=1"
    assert "session has ended" in browser.find_element(By.ID, "login-error").text


# -- the session's mechanics over plain HTTP (Flask's test client; no browser needed) ---------------------
@pytest.fixture()
def ui(rt, acme):
    from cli.dashboard.app import create_app
    from shared.auth import create_key

    app = create_app()
    return {"app": app, "key": create_key(rt.warehouse, "acme"), "rt": rt}


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _signed_in(client, key: str) -> str:
    """Sign in; returns the form token of the signed-in pages."""
    token = _csrf(client.get("/ui/login").text)
    r = client.post("/ui/login", data={"api_key": key, "csrf": token})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/", r.text
    return _csrf(client.get("/ui/runs").text)


def test_login_and_logout_need_the_forms_token(ui):
    client = ui["app"].test_client()
    assert client.get("/ui/runs").status_code == 303  # nothing yet
    token = _csrf(client.get("/ui/login").text)
    for data in ({"api_key": ui["key"]}, {"api_key": ui["key"], "csrf": token + "x"}):
        r = client.post("/ui/login", data=data)
        assert r.status_code == 400 and "expired" in r.text
        assert client.get("/ui/runs").status_code == 303
    page_token = _signed_in(client, ui["key"])
    assert page_token != token  # a new session at sign-in: a token planted before it is worth nothing
    for data in ({}, {"csrf": token}):
        assert client.post("/ui/logout", data=data).status_code == 400
        assert client.get("/ui/runs").status_code == 200  # still signed in: a forged sign-out changes nothing
    r = client.post("/ui/logout", data={"csrf": page_token})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/login"
    assert "cloudact_ui=;" in r.headers["Set-Cookie"] and "Expires=Thu, 01 Jan 1970" in r.headers["Set-Cookie"]
    assert client.get("/ui/runs").status_code == 303


PAGES = ("/ui/", "/ui/genai", "/ui/subscriptions", "/ui/reconciliation", "/ui/runs")


@pytest.mark.parametrize("ending", ["key revoked", "org deleted"])
def test_a_session_ends_with_its_key_or_its_org_and_says_so(ui, ending):
    """Every page of an ended session sends the user to sign in again, with the reason; none answers 500."""
    from shared.auth import revoke_key

    wh, org, key_id = ui["rt"].warehouse, "acme", ui["key"].split("_")[1]
    clients = {page: ui["app"].test_client() for page in PAGES}  # one session per page, all signed in before
    for page, client in clients.items():
        _signed_in(client, ui["key"])
        assert client.get(page).status_code == 200
    if ending == "key revoked":
        revoke_key(wh, org, key_id)
    else:  # what an operator's removal leaves: the key row, no org
        wh.query("DELETE FROM `organizations.organizations` WHERE org_slug = @org", {"org": org})
    for page, client in clients.items():
        r = client.get(page)
        assert r.status_code == 303 and r.headers["Location"] == "/ui/login?ended=1", (page, r.status_code)
        assert "cloudact_ui=;" in r.headers["Set-Cookie"]  # the cookie itself is dropped, not just refused
    login = client.get("/ui/login?ended=1")
    assert login.status_code == 200 and "session has ended" in login.text
    assert client.get("/ui/runs").headers["Location"] == "/ui/login"  # signed out: no reason left to give


def test_cookie_is_secure_over_https(ui):
    for base, secure in (("https://cloudact.example", True), ("http://127.0.0.1", False)):
        client = ui["app"].test_client()
        token = _csrf(client.get("/ui/login", base_url=base).text)
        r = client.post("/ui/login", data={"api_key": ui["key"], "csrf": token}, base_url=base)
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
        assert ("; Secure" in cookie) is secure, cookie


def test_a_forged_or_foreign_cookie_is_refused(ui, rt):
    from flask.sessions import SecureCookieSessionInterface
    from shared.auth import create_key
    from shared.tenants import create_org

    create_org(rt.warehouse, "globex")
    globex_key_id = create_key(rt.warehouse, "globex").split("_")[1]
    forger = __import__("flask").Flask("forger")
    forger.secret_key = b"not-the-servers-secret"
    forged = SecureCookieSessionInterface().get_signing_serializer(forger).dumps(
        {"org": "acme", "key_id": ui["key"].split("_")[1], "csrf": "x"})
    client = ui["app"].test_client()
    client.set_cookie("cloudact_ui", forged, path="/ui")
    assert client.get("/ui/runs").status_code == 303
    # signed with the real secret, but naming another org's key for this org: the key must be this org's
    real = SecureCookieSessionInterface().get_signing_serializer(ui["app"]).dumps(
        {"org": "acme", "key_id": globex_key_id, "csrf": "x"})
    client.set_cookie("cloudact_ui", real, path="/ui")
    assert client.get("/ui/runs").status_code == 303


def test_the_key_is_never_logged(ui, caplog, monkeypatch):
    import logging

    # the console setup (run by any earlier test that ran the CLI) stops "cloudact" records at its own handler
    monkeypatch.setattr(logging.getLogger("cloudact"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="cloudact")
    _signed_in(ui["app"].test_client(), ui["key"])
    wrong = ui["key"][:-4] + "AAAA"
    client = ui["app"].test_client()
    assert client.post("/ui/login", data={"api_key": wrong, "csrf": _csrf(client.get("/ui/login").text)}
                       ).status_code == 401
    assert "dashboard sign-in to org acme" in caplog.text and "sign-in refused" in caplog.text
    for key in (ui["key"], wrong):
        assert key.split("_", 2)[2] not in caplog.text


def test_pages_load_nothing_from_elsewhere(ui):
    """Offline: every script, style and link is the dashboard's own, under /ui/; the CSP says the same."""
    client = ui["app"].test_client()
    _signed_in(client, ui["key"])
    for page in ("/ui/login", "/ui/", "/ui/genai", "/ui/subscriptions", "/ui/reconciliation", "/ui/runs"):
        r = client.get(page, follow_redirects=True)
        assert r.status_code == 200, page
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
        assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
        refs = re.findall(r'(?:src|href|action)="([^"]*)"', r.text)
        assert refs and all(u.startswith(("/ui/", "#")) for u in refs), (page, refs)
        assert "<script>" not in r.text  # no inline script: data travels as application/json
        for ref in refs:
            if "/static/" in ref:
                assert client.get(ref).status_code == 200, ref


def test_the_vendored_chartjs_is_the_version_noted_and_packaged():
    import fnmatch
    import tomllib

    static = ROOT / "cli" / "dashboard" / "static"
    js = (static / "vendor" / "chartjs" / "chart.umd.min.js").read_text()
    version = re.search(r"chart\.js (\d+\.\d+\.\d+)", (static / "vendor" / "chartjs" / "VERSION").read_text()).group(1)
    assert js.startswith(f"/*!\n * Chart.js v{version}\n") and "MIT" in js[:200]
    assert "MIT License" in (static / "vendor" / "chartjs" / "LICENSE.md").read_text()
    # every file the pages need is matched by the package data, so a wheel or a clean install carries it
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cli.dashboard"]
    base = ROOT / "cli" / "dashboard"
    files = [p.relative_to(base).as_posix() for d in ("static", "templates") for p in (base / d).rglob("*") if p.is_file()]
    assert len(files) >= 9
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                        for pat in patterns)] == []
