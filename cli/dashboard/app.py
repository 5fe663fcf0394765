"""The dashboard's Flask app: sign-in, the pages, their assets. Mounted on /ui by cli/server.py."""
from __future__ import annotations

import datetime as dt
import functools
import logging
from decimal import ROUND_HALF_UP, Decimal

import flask

from cli.dashboard import pages, session
from shared import auth

PREFIX = "/ui"
MAX_FORM_BYTES = 16 * 1024  # a key and a token; anything larger is not a sign-in
NAV = (("costs", "Costs"), ("genai", "GenAI"), ("subscriptions", "Subscriptions"),
       ("reconciliation", "Reconciliation"), ("runs", "Runs"))
# Everything is served from here: no CDN, no inline script (page data travels as JSON in <script type=...json>).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
ENDED = ("Your session has ended: its API key was revoked or its organization no longer exists. "
         "Sign in with a current key.")
log = logging.getLogger("cloudact.ui")
bp = flask.Blueprint("ui", __name__, url_prefix=PREFIX, template_folder="templates", static_folder="static",
                     static_url_path="/static")


def _rt():
    from shared import runtime

    return runtime.get()


def create_app(settings=None) -> flask.Flask:
    from shared.config import settings as current_settings

    app = flask.Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES
    session.configure(app, settings or current_settings())
    app.jinja_env.filters.update(money=money, cell=cell, exact=exact)
    app.jinja_env.globals.update(csrf_token=session.csrf_token, nav=NAV, chart_data=chart_data,
                                default_days=pages.DEFAULT_DAYS)
    app.register_blueprint(bp)
    return app


def money(v) -> str:
    """Two decimals, thousands grouped; the exact amount is in the cell's data-value and title."""
    if v is None:
        return "—"
    d = Decimal(v)
    shown = d.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if shown == 0 and d != 0:
        return "< 0.01" if d > 0 else "> −0.01"
    return f"{shown:,}".replace("-", "−")


def cell(v, kind: str) -> str:
    if v is None or v == "":
        return "—"
    if kind == "money":
        return money(v)
    if kind == "int" and isinstance(v, (int, Decimal)):
        return f"{v:,}"
    if kind == "date" and isinstance(v, str) and "T" in v:
        return v.replace("T", " ")[:19]
    return str(v)


def exact(v) -> str:
    return "" if v is None else format(Decimal(v), "f") if isinstance(v, (Decimal, int)) else str(v)



def signed_in(view):
    """The session's org, checked on every request against its key: a revoked key ends its sessions."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        who = session.current()
        if who is None:
            return flask.redirect(flask.url_for("ui.login"), 303)
        if not auth.key_active(_rt().warehouse, *who):
            session.sign_out()
            log.info("dashboard session for org %s ended: key %s revoked or org gone", *who)
            return flask.redirect(flask.url_for("ui.login", ended=1), 303)
        return view(who[0], *args, **kwargs)
    return wrapper


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"  # an org's numbers never sit in a shared cache
    return response


@bp.get("/login")
def login():
    if session.current():
        return flask.redirect(flask.url_for("ui.costs"), 303)
    ended = ENDED if flask.request.args.get("ended") else None
    return flask.render_template("login.html", error=ended)


@bp.post("/login")
def login_post():
    if not session.csrf_ok():
        return flask.render_template("login.html", error="The sign-in form expired; please try again."), 400
    result = auth.check_key(_rt().warehouse, flask.request.form.get("api_key", "").strip())
    if not result.ok:
        log.warning("dashboard sign-in refused from %s", flask.request.remote_addr)
        return flask.render_template("login.html", error="That API key is not valid."), 401
    session.sign_in(result.org_slug, result.key_id)
    log.info("dashboard sign-in to org %s with key %s", result.org_slug, result.key_id)
    return flask.redirect(flask.url_for("ui.costs"), 303)


@bp.post("/logout")
def logout():
    if not session.csrf_ok():
        return flask.render_template("login.html", error="Sign-out needs the page's form; nothing changed."), 400
    session.sign_out()
    return flask.redirect(flask.url_for("ui.login"), 303)


def _page(org: str, name: str, build, with_filters: bool = True):
    wh = _rt().warehouse
    f, page, error = None, None, None
    try:
        if with_filters:
            f = pages.filters(wh, org, flask.request.args, dt.datetime.now(dt.timezone.utc).date())
        page = build(wh, org, f)
    except (pages.BadFilter, ValueError) as e:  # also what the cost query refuses (a total over currencies)
        error = str(e)
        if with_filters and f is None:
            f = pages.filters(wh, org, {}, dt.datetime.now(dt.timezone.utc).date())
    body = flask.render_template("page.html", org=org, active=name, f=f, error=error,
                                 page=page or pages.Page(dict(NAV)[name]))
    return body, 400 if error else 200


def chart_data(table: pages.Table) -> dict:
    """The table as Chart.js data. Floats are for the picture only; the table keeps the exact amounts."""
    spec = table.chart
    by_key = {c.key: c.label for c in table.columns}
    keys = spec["label"] if isinstance(spec["label"], list) else [spec["label"]]
    return {
        "stacked": bool(spec.get("stacked")), "horizontal": bool(spec.get("horizontal")),
        "labels": [" · ".join(cell(r.get(k), "text") for k in keys) for r in table.rows],
        "datasets": [{"label": by_key[k], "data": [float(r[k]) if r.get(k) is not None else None for r in table.rows]}
                     for k in spec["series"]],
    }


@bp.get("/")
@signed_in
def costs(org):
    return _page(org, "costs", pages.costs_page)


@bp.get("/genai")
@signed_in
def genai(org):
    return _page(org, "genai", pages.genai_page)


@bp.get("/subscriptions")
@signed_in
def subscriptions(org):
    return _page(org, "subscriptions", pages.subscriptions_page)


@bp.get("/reconciliation")
@signed_in
def reconciliation(org):
    return _page(org, "reconciliation", lambda wh, o, _: pages.reconciliation_page(wh, o), with_filters=False)


@bp.get("/runs")
@signed_in
def runs(org):
    return _page(org, "runs", lambda wh, o, _: pages.runs_page(wh, o), with_filters=False)
