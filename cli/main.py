"""`cloudact`: run CloudAct Pipelines on this machine (embedded DuckDB) or drive a GCP deployment."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


def _consoles(tty: bool | None = None, width: int | None = None) -> tuple[Console, Console]:
    """Piped output (CI logs, files) gets a readable width instead of rich's 80-column default. A command
    forwarded to `cloudact serve` (cli/admin.py) gets its client's terminal, never a live display."""
    if tty is None:
        return Console(width=None if sys.stdout.isatty() else 120), Console(stderr=True)
    return (Console(width=width if tty else 120, force_terminal=tty, force_interactive=False),
            Console(stderr=True, force_terminal=tty, force_interactive=False))


console, err = _consoles()


def _rt():
    """The process runtime, with the meta tables and prices in place on first use."""
    from shared import runtime
    from shared.tenants import bootstrap, sync_reference_data

    rt = runtime.get()
    if not getattr(rt, "_cli_ready", False):
        bootstrap(rt.warehouse)
        if not rt.warehouse.query("SELECT 1 AS one FROM `organizations.genai_model_pricing` LIMIT 1"):
            sync_reference_data(rt.warehouse)
        rt._cli_ready = True
    return rt


def _fail(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"[dim]{hint}[/]")
    sys.exit(1)


def _cell(v) -> str:
    import datetime as dt
    from decimal import Decimal

    if v is None:
        return ""
    if isinstance(v, Decimal):
        return f"{v.quantize(Decimal('0.01')):,}"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _table(title: str, rows: list[dict], columns: list[str] | None = None) -> Table:
    t = Table(title=title, title_justify="left")
    columns = columns or (list(rows[0]) if rows else [])
    for c in columns:
        t.add_column(c, overflow="fold", justify="right" if rows and not isinstance(rows[0].get(c), str) else "left")
    for r in rows:
        t.add_row(*[_cell(r.get(c)) for c in columns])
    return t


class _OrgCommand(click.Command):
    """A command with a SLUG argument names an organization that exists: every command answers an unknown org with
    the same error (before, some listed nothing with exit 0, some showed a DuckDB CatalogException or a plan)."""

    creates_org = False

    def invoke(self, ctx):
        slug = ctx.params.get("slug")
        if slug is not None and not self.creates_org:
            from shared.tenants import get_org

            get_org(_rt().warehouse, slug)
        return super().invoke(ctx)


class _Group(click.Group):
    """Turn the errors users can act on into one readable line instead of a traceback."""

    command_class = _OrgCommand

    def invoke(self, ctx):
        from shared.export import ExportInvalid
        from shared.naming import InvalidName
        from shared.pricing import PricingError
        from shared.secrets import CredentialConflict, CredentialInvalid, NoCredential
        from shared.tenancy import TrustViolation
        from shared.tenants import OrgExists, UnknownOrg
        from shared.warehouse.base import WarehouseError

        try:
            return super().invoke(ctx)
        except (InvalidName, OrgExists, UnknownOrg, CredentialInvalid, CredentialConflict, NoCredential, TrustViolation,
                PricingError, WarehouseError, ExportInvalid) as e:
            _fail(str(e))


_Group.group_class = _Group  # subgroups (orgs, keys, ...) and their commands alike


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show every log event of runs as they happen, not only warnings.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Console log lines: text (readable, the default) or json (for machines; the default on GCP). "
                   "The full log, tracebacks included, is kept as JSON lines in $CLOUDACT_HOME/logs/cloudact.log.")
def cli(verbose: bool, log_format: str | None) -> None:
    """CloudAct Pipelines: cloud billing, GenAI usage and SaaS costs as FOCUS 1.3 rows, per organization.

    State lives under $CLOUDACT_HOME (default ./.cloudact); the embedded warehouse is
    $CLOUDACT_HOME/warehouse.duckdb. Start with `cloudact demo`, or:

    \b
      cloudact bootstrap
      cloudact orgs create acme
      cloudact keys create acme
      cloudact credentials add acme openai --from-json openai.json
      cloudact run acme genai/payg/openai --wait
      cloudact verify acme
    """
    import logging

    from cli.admin import forwarded
    from jobs.runner import wire
    from shared.logs import setup

    wire()  # the embedded runtime runs the jobs and the functions in this process
    if not forwarded():  # a command sent to `cloudact serve` logs through the server's handlers
        setup(logging.INFO if verbose else logging.WARNING, log_format)


@cli.command()
def bootstrap() -> None:
    """Create the meta dataset and tables, load GenAI prices and the service map. Safe to run again."""
    from shared.tenants import bootstrap as do_bootstrap, ensure_org_tables, list_orgs, sync_reference_data

    rt = _rt()
    do_bootstrap(rt.warehouse)
    n = sync_reference_data(rt.warehouse)["prices"]
    orgs = list_orgs(rt.warehouse)
    for o in orgs:  # bring every org's tables and procedures up to date
        ensure_org_tables(rt.warehouse, o["org_slug"])
    console.print(f"bootstrapped: meta tables ready, {n} price rows loaded, {len(orgs)} org(s) upgraded")


@cli.group()
def orgs() -> None:
    """Organizations (tenants); each gets its own dataset {slug}_prod."""


@orgs.command("create", cls=type("_CreatesOrg", (_OrgCommand,), {"creates_org": True}))
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
def orgs_create(slug: str, name: str | None) -> None:
    """Create organization SLUG and its dataset."""
    from shared.tenants import bootstrap as do_bootstrap, create_org

    rt = _rt()
    do_bootstrap(rt.warehouse)
    ds = create_org(rt.warehouse, slug, name)
    console.print(f"created organization {slug} (dataset {ds})")


@orgs.command("list")
def orgs_list() -> None:
    """List organizations."""
    from shared.tenants import list_orgs

    console.print(_table("organizations", list_orgs(_rt().warehouse)))


@cli.group()
def keys() -> None:
    """API keys for the HTTP API (X-API-Key). Only a hash is stored."""


@keys.command("create")
@click.argument("slug")
def keys_create(slug: str) -> None:
    """Create an API key for SLUG and print it once (last line of output)."""
    from shared.auth import create_key
    from shared.tenants import get_org

    rt = _rt()
    get_org(rt.warehouse, slug)
    key = create_key(rt.warehouse, slug)
    err.print("Store this key now; it cannot be shown again.")
    click.echo(key)


@keys.command("list")
@click.argument("slug")
def keys_list(slug: str) -> None:
    """List key ids (never the keys) for SLUG."""
    from shared.auth import list_keys

    console.print(_table(f"keys of {slug}", list_keys(_rt().warehouse, slug)))


@keys.command("revoke")
@click.argument("slug")
@click.argument("key_id")
def keys_revoke(slug: str, key_id: str) -> None:
    """Revoke key KEY_ID of SLUG (the part after `cak_`, before the next `_`)."""
    from shared.auth import revoke_key

    if not revoke_key(_rt().warehouse, slug, key_id):
        _fail(f"no active key {key_id!r} for {slug}", "list them with `cloudact keys list SLUG`")
    console.print(f"revoked {key_id}")


@cli.group()
def credentials() -> None:
    """Provider credentials, encrypted at rest."""


def _credential_json(path: Path) -> dict:
    from shared.secrets import CredentialInvalid

    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CredentialInvalid(f"{path} is not valid JSON: {e}") from None


@credentials.command("add")
@click.argument("slug")
@click.argument("provider")
@click.option("--from-json", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON file, e.g. {"admin_key": "sk-admin-...", "base_url": "https://api.openai.com/v1"}.')
@click.option("--label", help="A name to recognise it by.")
def credentials_add(slug: str, provider: str, path: Path, label: str | None) -> None:
    """Store a credential for PROVIDER and print its id (last line)."""
    from shared.secrets import CredentialStore
    from shared.tenants import get_org

    rt = _rt()
    get_org(rt.warehouse, slug)
    created = CredentialStore(rt.warehouse, rt.settings).create(slug, provider, _credential_json(path), label)
    if created.get("external_id"):
        err.print(f"The role must require ExternalId [bold]{created['external_id']}[/] in its trust policy.")
    click.echo(created["credential_id"])


@credentials.command("rotate")
@click.argument("slug")
@click.argument("credential_id")
@click.option("--from-json", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON file with the fields to replace, e.g. {"admin_key": "sk-admin-new..."}.')
def credentials_rotate(slug: str, credential_id: str, path: Path) -> None:
    """Replace a credential's secrets, keeping its id (its data stays keyed the same); re-enables it."""
    from shared.secrets import CredentialStore

    rt = _rt()
    CredentialStore(rt.warehouse, rt.settings).rotate(slug, credential_id, _credential_json(path))
    console.print(f"rotated {credential_id}")


@credentials.command("disable")
@click.argument("slug")
@click.argument("credential_id")
def credentials_disable(slug: str, credential_id: str) -> None:
    """No new runs with this credential; the data it landed stays."""
    from shared.secrets import CredentialStore

    rt = _rt()
    CredentialStore(rt.warehouse, rt.settings).disable(slug, credential_id)
    console.print(f"disabled {credential_id}")


@credentials.command("list")
@click.argument("slug")
def credentials_list(slug: str) -> None:
    """List credentials of SLUG (ids, providers and status, never secrets)."""
    from shared.secrets import CredentialStore

    console.print(_table(f"credentials of {slug}", CredentialStore(_rt().warehouse).list(slug)))


@cli.group()
def subscriptions() -> None:
    """SaaS subscriptions (Slack, Canva, ChatGPT Plus, any other), amortized daily into FOCUS."""


def _subs_call(fn, *args, **kwargs):
    from shared import subscriptions as subs

    try:
        return fn(*args, wh=_rt().warehouse, **kwargs)
    except subs.SubscriptionInvalid as e:
        _fail(str(e))
    except (subs.UnknownSubscription, subs.SubscriptionConflict) as e:
        _fail(str(e))


@subscriptions.command("add")
@click.argument("slug")
@click.option("--from-json", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='e.g. {"provider": "slack", "plan": "pro", "seats": 25, "unit_price": "8.75", "currency": "USD", '
                   '"billing_cycle": "monthly", "start_date": "2026-01-01"}')
def subscriptions_add(slug: str, path: Path) -> None:
    """Add a subscription for SLUG; prints its id (last line)."""
    from shared import subscriptions as subs

    try:
        doc = json.loads(path.read_text())
    except ValueError as e:
        _fail(f"{path} is not valid JSON: {e}")
    click.echo(_subs_call(subs.create, slug, doc)["subscription_id"])


@subscriptions.command("list")
@click.argument("slug")
def subscriptions_list(slug: str) -> None:
    """List SLUG's subscriptions with their current terms."""
    from shared import subscriptions as subs

    rows = _subs_call(subs.list_subscriptions, slug)
    cols = ["subscription_id", "provider", "plan", "seats", "unit_price", "currency", "billing_cycle", "start_date",
            "end_date", "status"]
    console.print(_table(f"subscriptions of {slug}", rows, [c for c in cols if not rows or c in rows[0]]))


@subscriptions.command("update")
@click.argument("slug")
@click.argument("subscription_id")
@click.option("--effective-date", required=True, help="First day the new terms apply, YYYY-MM-DD.")
@click.option("--seats", type=int)
@click.option("--unit-price")
@click.option("--discount-pct")
@click.option("--plan")
@click.option("--owner")
@click.option("--department")
def subscriptions_update(slug, subscription_id, effective_date, **changes) -> None:
    """Change seats, price, discount, plan, owner or department from a date (prorated mid-cycle)."""
    from shared import subscriptions as subs

    changes = {k: v for k, v in changes.items() if v is not None}
    _subs_call(subs.update, slug, subscription_id, changes, effective_date)
    console.print(f"updated {subscription_id} from {effective_date}")


@subscriptions.command("cancel")
@click.argument("slug")
@click.argument("subscription_id")
@click.option("--end-date", required=True, help="Last day billed, YYYY-MM-DD.")
def subscriptions_cancel(slug: str, subscription_id: str, end_date: str) -> None:
    """Cancel a subscription after END_DATE."""
    from shared import subscriptions as subs

    _subs_call(subs.cancel, slug, subscription_id, end_date)
    console.print(f"cancelled {subscription_id} after {end_date}")


@cli.group()
def prices() -> None:
    """GenAI prices: list prices come from genai_pricing.yml (`cloudact bootstrap` loads them); negotiated
    prices are per-org overrides."""


@prices.group("override")
def prices_override() -> None:
    """Negotiated prices: a percentage off a provider or model family, or explicit prices per 1M tokens.

    \b
    Precedence per token class: an explicit price for the model family, then a percentage off the
    family, then a percentage off the provider, then the list price. Stored costs change when their
    dates are run again (`cloudact run ORG genai/payg/PROVIDER --start ... --end ...`)."""


def _overrides_call(fn, *args, **kwargs):
    from shared import price_overrides as po

    try:
        return fn(*args, wh=_rt().warehouse, **kwargs)
    except (po.OverrideInvalid, po.UnknownOverride, po.OverrideConflict) as e:
        _fail(str(e))


@prices_override.command("add")
@click.argument("slug")
@click.option("--provider", required=True, help="GenAI provider: openai, anthropic, gemini, vertex, azure_openai, "
              "bedrock, deepseek.")
@click.option("--model-family", help="One model family (e.g. gpt-4o); without it a percentage covers the provider.")
@click.option("--discount-pct", help="Percentage off the list price, e.g. 20.")
@click.option("--price", "prices_", multiple=True, metavar="CLASS=USD_PER_1M",
              help="An explicit price per 1M tokens, e.g. --price input=2.00 --price batch_output=4; classes as "
                   "in genai_pricing.yml.")
@click.option("--from", "effective_from", required=True, help="First day it applies, YYYY-MM-DD.")
@click.option("--to", "effective_to", help="First day it no longer applies, YYYY-MM-DD (default: open).")
@click.option("--note", help="e.g. the contract it comes from.")
def prices_override_add(slug, provider, model_family, discount_pct, prices_, effective_from, effective_to, note):
    """Add a negotiated price for SLUG; prints its id (last line)."""
    from shared import price_overrides as po

    rates = {}
    for item in prices_:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--price {item!r}: write CLASS=PRICE, e.g. input=2.00")
        rates[key.strip()] = value.strip()
    doc = {k: v for k, v in (("provider", provider), ("model_family", model_family), ("discount_pct", discount_pct),
                             ("prices", rates or None), ("effective_from", effective_from),
                             ("effective_to", effective_to), ("note", note)) if v is not None}
    created = _overrides_call(po.add, slug, doc)
    err.print(f"stored costs change when their dates are run again: cloudact run {slug} genai/payg/{provider} "
              f"--start {created['effective_from']} --end ... --wait")
    click.echo(created["override_id"])


def _override_row(o: dict) -> dict:
    prices = ", ".join(f"{k}={v}" for k, v in (o["prices"] or {}).items())
    return {**o, "model_family": o["model_family"] or "(all models)",
            "price": f"{o['discount_pct']}% off" if o["kind"] == "discount" else prices,
            "effective_to": o["effective_to"] or "open"}


@prices_override.command("list")
@click.argument("slug")
def prices_override_list(slug: str) -> None:
    """List SLUG's negotiated prices (ended ones with their end)."""
    from shared import price_overrides as po

    rows = [_override_row(o) for o in _overrides_call(po.list_overrides, slug)]
    console.print(_table(f"price overrides of {slug}", rows,
                         ["override_id", "provider", "model_family", "price", "effective_from", "effective_to", "note"]))


@prices_override.command("remove")
@click.argument("slug")
@click.argument("override_id")
@click.option("--from", "effective_to", required=True,
              help="First day the override no longer applies, YYYY-MM-DD (its own first day: it never applied).")
def prices_override_remove(slug: str, override_id: str, effective_to: str) -> None:
    """End a negotiated price from a date; the record stays, so earlier dates re-run the same."""
    from shared import price_overrides as po

    ended = _overrides_call(po.end, slug, override_id, effective_to)
    console.print(f"{override_id} applies {ended['effective_from']}..{ended['effective_to']} (exclusive) now; "
                  f"re-run dates from {ended['effective_to']} to re-price them")


@cli.group()
def schedules() -> None:
    """Per-org pipeline schedules (cron + time zone). `serve` fires them locally; GCP uses Cloud Scheduler."""


def _sched(fn, *args):
    from shared import schedules as sch

    try:
        return fn(_rt().warehouse, *args)
    except (sch.ScheduleInvalid, sch.UnknownSchedule) as e:
        _fail(str(e))


@schedules.command("add")
@click.argument("slug")
@click.argument("pipeline")
@click.option("--cron", required=True, help='Five cron fields, e.g. "0 3 * * *".')
@click.option("--timezone", default="Etc/UTC", show_default=True, help="IANA time zone the cron is read in.")
@click.option("--credential-id", help="Use this credential instead of the newest one for the provider.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
def schedules_add(slug, pipeline, cron, timezone, credential_id, disabled) -> None:
    """Run PIPELINE for SLUG on a schedule; prints the schedule id (last line)."""
    from shared import schedules as sch

    spec = {"pipeline_id": pipeline, "cron": cron, "timezone": timezone, "enabled": not disabled,
            "body": {"credential_id": credential_id} if credential_id else {}}
    click.echo(_sched(sch.create_schedule, slug, spec)["schedule_id"])


@schedules.command("list")
@click.argument("slug")
def schedules_list(slug: str) -> None:
    """List SLUG's schedules."""
    from shared import schedules as sch

    rows = _sched(sch.list_schedules, slug)
    console.print(_table(f"schedules of {slug}", rows, ["schedule_id", "pipeline_id", "cron", "timezone", "enabled"]))


@schedules.command("update")
@click.argument("slug")
@click.argument("schedule_id")
@click.option("--cron")
@click.option("--timezone")
@click.option("--enable/--disable", "enabled", default=None)
def schedules_update(slug, schedule_id, cron, timezone, enabled) -> None:
    """Change a schedule's cron, time zone or on/off switch."""
    from shared import schedules as sch

    changes = {k: v for k, v in (("cron", cron), ("timezone", timezone), ("enabled", enabled)) if v is not None}
    _sched(sch.update_schedule, slug, schedule_id, changes)
    console.print(f"updated {schedule_id}")


@schedules.command("rm")
@click.argument("slug")
@click.argument("schedule_id")
def schedules_rm(slug: str, schedule_id: str) -> None:
    """Delete a schedule."""
    from shared import schedules as sch

    if not _sched(sch.delete_schedule, slug, schedule_id):
        _fail(f"no schedule {schedule_id!r} for {slug}")
    console.print(f"deleted {schedule_id}")


@schedules.command("sync")
@click.option("--org", help="Only this org's jobs.")
def schedules_sync(org: str | None) -> None:
    """Make Cloud Scheduler match the schedules table (GCP backend)."""
    from shared import schedules as sch

    rt = _rt()
    if rt.settings.backend != "gcp":
        _fail("schedules sync talks to Cloud Scheduler; set CLOUDACT_BACKEND=gcp",
              "on the embedded default `cloudact serve` fires schedules itself")
    summary = sch.sync_to_cloud_scheduler(rt.warehouse, sch.scheduler_client(), rt.settings.project,
                                          rt.settings.region, sch.topic_path(rt.settings.project), org)
    console.print(summary)


@cli.group()
def plans() -> None:
    """Plans and quotas (from Stripe products via the webhook)."""


@plans.command("show")
@click.argument("slug")
def plans_show(slug: str) -> None:
    """SLUG's subscription status, plan and limits."""
    from shared import plans as pl

    e = pl.entitlement(_rt().warehouse, slug)
    console.print(f"{slug}: status {e.status} ({e.source})")
    if e.plan:
        console.print(e.plan)


@cli.group()
def usage() -> None:
    """Usage files from providers that have no usage API."""


@usage.command("import")
@click.argument("slug")
@click.argument("provider", type=click.Choice(["deepseek"]))
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--credential-id", help="The credential whose usage_csv_dir receives the file.")
def usage_import(slug: str, provider: str, path: Path, credential_id: str | None) -> None:
    """Check a console usage export (CSV or ZIP) and file it for the next DeepSeek run."""
    from jobs.base import ExtractError
    from jobs.genai.deepseek import import_usage_file
    from shared.secrets import CredentialStore

    rt = _rt()
    store = CredentialStore(rt.warehouse, rt.settings)
    row = store.find(slug, provider, credential_id)
    try:
        dest, records = import_usage_file(store.load(slug, provider, row["credential_id"]), path, org_slug=slug)
    except ExtractError as e:
        _fail(str(e))
    days = sorted({r["date"] for r in records})
    console.print(f"filed {len(records)} usage rows ({days[0]}..{days[-1]}) as {dest}" if days else f"filed {dest} (no rows)")
    if days:
        console.print(f"next: cloudact run {slug} genai/payg/{provider} --start {days[0]} --end {days[-1]} --wait")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the HTTP API (functions-framework app) with the in-process bus and jobs.

    While it runs, cloudact commands on the same CLOUDACT_HOME run inside it (cli/admin.py)."""
    from cli.admin import AdminChannel, AlreadyServing
    from cli.server import serve_forever
    from shared.config import settings

    with contextlib.ExitStack() as stack:
        try:
            channel = stack.enter_context(AdminChannel(settings().home, cli, run_forwarded))
        except (AlreadyServing, PermissionError) as e:
            _fail(str(e))
        _rt()
        channel.ready()
        console.print(f"serving on http://{host}:{port}  (POST /api/v1/pipelines/run/ORG/PIPELINE with X-API-Key)")
        serve_forever(host, port)


def run_forwarded(argv: list[str], tty: bool, width: int | None) -> int:
    """Run one command line sent by a client to `cloudact serve`, in this process; returns its exit code.
    The admin channel calls it one command at a time."""
    import traceback

    global console, err
    saved = console, err
    console, err = _consoles(tty, width)
    try:
        cli.main(args=argv, prog_name="cloudact")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - the client sees the traceback a local run would print
        traceback.print_exc()
        return 1
    finally:
        console, err = saved
    return 0


def wait_for(org: str, run_id: str, timeout: float = 600) -> dict:
    """Poll a run until it ends, showing its status."""
    from shared import runs

    rt = _rt()
    deadline = time.monotonic() + timeout
    with console.status(f"run {run_id}: queued") as status, _watching([run_id], status):
        while True:
            run = runs.public_view(runs.get_run(rt.warehouse, org, run_id))
            status.update(f"run {run_id}: {run['status']}")
            if run["status"] in runs.TERMINAL or time.monotonic() > deadline:
                return run
            time.sleep(0.2)


@contextlib.contextmanager
def _watching(run_ids: list[str], status=None):
    """The progress of these runs (jobs.runner.Progress records: phase, files, rows so far) shown as it comes: on
    `status` (a live status line) when given, else one line per record."""
    import logging

    ids = set(run_ids)

    class Shown(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "run_id", None) not in ids:
                return
            text = f"{getattr(record, 'pipeline', '')}: {record.getMessage()}"
            if status is not None:
                status.update(text)
            else:
                console.print(text, style="dim", markup=False, highlight=False)

    handler = Shown(logging.INFO)
    logger = logging.getLogger("cloudact.progress")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def cancel_interrupted(rt, slug: str, run_ids: list[str]) -> None:
    """Ctrl-C while this command waits: cancel the runs it started that have not ended, and say so."""
    from shared.api import ApiError, cancel_run

    for run_id in run_ids:
        try:
            cancel_run(rt, slug, run_id, by="Ctrl-C in cloudact run")
            err.print(f"interrupted: cancelled {run_id}")
        except ApiError as e:  # it ended meanwhile
            err.print(f"interrupted: {e.message}")


def _when(run: dict) -> str:
    """When the run was asked for (UTC) and how long it took, or has been queued or running so far."""
    import datetime as dt

    def at(v):
        return dt.datetime.fromisoformat(v) if isinstance(v, str) else v

    created, started, finished = at(run.get("created_at")), at(run.get("started_at")), at(run.get("finished_at"))
    if created is None:
        return ""
    text = created.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if started and finished:
        return f"{text}, took {_duration((finished - started).total_seconds())}"
    now = dt.datetime.now(dt.UTC)
    if started:
        return f"{text}, running for {_duration((now - started).total_seconds())}"
    if finished:  # cancelled before it started
        return text
    return f"{text}, queued for {_duration((now - created).total_seconds())}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _fixed(v) -> str:
    """A decimal amount in fixed point (`0.000000000`, never `0E-9`)."""
    from decimal import Decimal, InvalidOperation

    try:
        return format(Decimal(str(v)), "f") if v is not None else "–"
    except InvalidOperation:
        return str(v)


def _count(v) -> str:
    return "–" if v is None else f"{v:,}"


def print_run(run: dict) -> None:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "magenta"}.get(run["status"], "yellow")
    when = _when(run)
    console.print(f"[{colour}]{run['status']}[/] {run['run_id']} {run['pipeline']} {run['start_date']}..{run['end_date']}"
                  f"{f'  ({when})' if when else ''}  rows: {_count(run['rows_ingested'])} ingested, "
                  f"{_count(run['rows_converted'])} converted")
    for w in run["warnings"]:
        console.print(f"  [yellow]warning:[/] {w}")
    for o in (run.get("quality") or {}).get("price_overrides", []):
        console.print(f"  price override {o['override_id']} ({o['provider']} {o['model_family']}): {o['cost_rows']} "
                      f"cost rows, list {o['list_cost']} -> contracted {o['contracted_cost']}")
    for b in (run.get("quality") or {}).get("balance_reconciliation", []):
        if b["status"] == "compared":
            console.print(f"  balance {b['currency']} {b['days_from']}..{b['days_to']}: spent {b['spent']} (balance "
                          f"{b['previous_balance']} -> {b['balance']}), computed {b['computed']}, difference "
                          f"{b['difference']} ({b['days_with_usage']} of {b['days']} days have usage)")
        else:
            console.print(f"  balance {b['currency']} {b['balance']} at {b['sampled_at']}: {b['status']} ({b['note']})")
    for p in (run.get("quality") or {}).get("reconciliation", []):
        mark = "[green]ok[/]" if p["ok"] else "[red]MISMATCH[/]"
        console.print(f"  reconciliation {p['billing_period']} {p['currency']}: source {_fixed(p['source_cost'])} "
                      f"FOCUS {_fixed(p['billed_cost'])} difference {_fixed(p['difference'])} {mark}")
    if run["error"]:
        console.print(f"  [red]error:[/] {run['error']}")


class _RunCommand(_OrgCommand):
    """`run --help` ends with the pipelines there are, read from the registry when the help is shown."""

    def format_epilog(self, ctx, formatter) -> None:
        from shared import registry

        rows = [(path, f"{p.provider}{'' if p.available else f' ({p.status})'}")
                for path, p in sorted(registry.pipelines().items())]
        with formatter.section("Pipelines"):
            formatter.write_dl(rows)


@cli.command(cls=_RunCommand)
@click.argument("slug")
@click.argument("pipeline")
@click.option("--start", help="First date, YYYY-MM-DD (default depends on the pipeline).")
@click.option("--end", help="Last date, inclusive, YYYY-MM-DD.")
@click.option("--credential-id", help="Which credential to use (default: the newest for the provider).")
@click.option("--wait/--no-wait", default=False, help="Wait for the run to finish and show the result.")
def run(slug: str, pipeline: str, start: str | None, end: str | None, credential_id: str | None, wait: bool) -> None:
    """Run a pipeline for org SLUG in this process; PIPELINE is a path like genai/payg/openai."""
    from shared.api import ApiError, request_run

    body = {k: v for k, v in (("start_date", start), ("end_date", end), ("credential_id", credential_id)) if v}
    rt = _rt()
    try:
        queued = request_run(rt, slug, pipeline, body, trigger="cli")
    except ApiError as e:
        _fail(e.message)
    for r in queued["runs"]:
        console.print(f"queued {r['run_id']} ({r['start_date']}..{r['end_date']})")
    for r in queued["not_queued"]:
        console.print(f"[yellow]not queued[/] {r['start_date']}..{r['end_date']}: {r['reason']}")
    try:
        if not wait:
            from cli.admin import forwarded

            if forwarded():
                return  # sent to `cloudact serve`: the server runs it; `cloudact runs` shows it
            with _watching([r["run_id"] for r in queued["runs"]]):
                rt.bus.drain()  # in-process: the work happens here, so finish it before exiting
        results = [wait_for(slug, r["run_id"]) for r in queued["runs"]]
    except KeyboardInterrupt:
        cancel_interrupted(rt, slug, [r["run_id"] for r in queued["runs"]])
        sys.exit(130)
    for result in results:
        print_run(result)
    if any(r["status"] != "succeeded" for r in results):
        sys.exit(1)


class _ListByDefault(_Group):
    """`cloudact runs SLUG` still lists; `cloudact runs cancel SLUG RUN_ID` cancels."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


@cli.group("runs", cls=_ListByDefault)
def runs_group() -> None:
    """Runs: `cloudact runs SLUG` lists the recent ones; `cloudact runs cancel SLUG RUN_ID` cancels one."""


@runs_group.command("cancel")
@click.argument("slug")
@click.argument("run_id")
def runs_cancel(slug: str, run_id: str) -> None:
    """Cancel a queued or running run; its job stops at its next checkpoint without writing."""
    from shared.api import ApiError, cancel_run

    try:
        print_run(cancel_run(_rt(), slug, run_id, by="cloudact runs cancel"))
    except ApiError as e:
        _fail(e.message)


@runs_group.command("list")
@click.argument("slug")
@click.option("--limit", default=20, show_default=True)
def runs_cmd(slug: str, limit: int) -> None:
    """Recent runs of SLUG with status, counts, warnings and errors."""
    from shared import runs as r

    for item in reversed([r.public_view(x) for x in r.list_runs(_rt().warehouse, slug, limit)]):
        print_run(item)


@cli.command()
@click.argument("slug")
def verify(slug: str) -> None:
    """Rows, cost and last run per pipeline in SLUG's FOCUS table."""
    from cli.reports import verify_rows

    rows = verify_rows(_rt().warehouse, slug)
    console.print(_table(f"{slug}: cost_data_standard_1_3 by pipeline", rows))
    if not rows:
        err.print("no FOCUS rows yet: run a pipeline first (`cloudact run SLUG PIPELINE --wait`)")


@cli.command()
@click.argument("slug")
@click.option("--by-day", is_flag=True, help="One line per provider, model and day.")
def reconcile(slug: str, by_day: bool) -> None:
    """GenAI cost computed from list prices vs billed (the cloud bill or the provider), per provider and model,
    with the reason where a difference is expected."""
    from cli.reports import genai_reconciliation

    console.print(_table(f"{slug}: GenAI computed vs billed", genai_reconciliation(_rt().warehouse, slug, by_day)))


@cli.command("export")
@click.argument("slug")
@click.option("--out", required=True, metavar="FILE",
              help="Where to write; the extension picks the format: .parquet, .csv or .csv.gz. A local path, "
                   "s3://bucket/key, gs://bucket/object or az://container/blob (written with the org's aws/gcp/azure "
                   "credential).")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="First charge day (inclusive, UTC).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="Last charge day (inclusive, UTC).")
@click.option("--provider", help="One provider: a pipeline's (aws, azure, gcp, oci, openai, anthropic, saas, ...) "
              "or a ServiceProviderName (e.g. Slack).")
@click.option("--credential-id", help="For s3://, gs:// and az://: the org's credential to write with (default: its "
              "newest aws, gcp or azure credential).")
def export(slug: str, out: str, start: str | None, end: str | None, provider: str | None,
           credential_id: str | None) -> None:
    """Export SLUG's FOCUS rows (FOCUS columns and x_ columns), streamed: memory stays flat whatever the size."""
    import os
    import tempfile

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cli import export_targets as targets
    from shared import export as ex
    from shared.tenants import get_org

    try:
        target = targets.parse(out)
        fmt = ex.format_of(target.key if target else out)
        flt = ex.Filter.parse(start, end, provider)
    except ex.ExportInvalid as e:
        _fail(str(e))
    rt = _rt()
    get_org(rt.warehouse, slug)
    total = ex.count(rt.warehouse, slug, flt)
    # Written beside its destination (local) or in CLOUDACT_HOME (uploads) and renamed or uploaded when complete:
    # a failed export never leaves a truncated file where the finished one belongs.
    from cli.admin import client_path

    local = None if target else Path(client_path(targets.local_path(out)))
    folder = local.parent if local else rt.settings.home
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cloudact-export-", suffix="." + fmt, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f, Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
                                                TextColumn("rows"), TimeElapsedColumn(), console=err,
                                                transient=True) as progress:
            task = progress.add_task("export", total=total)
            rows = ex.export(rt.warehouse, slug, f, fmt, flt, progress=lambda n: progress.update(task, completed=n))
        if target:
            err.print(f"uploading {rows:,} rows to {out}")
            targets.upload(rt, slug, target, tmp, credential_id)
        else:
            os.replace(tmp, local)
    except (targets.ExportFailed, ex.ExportInvalid) as e:
        _fail(str(e))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    console.print(f"wrote {rows:,} rows ({fmt}) to {out}")
    if not rows:
        err.print(f"[yellow]warning:[/] no FOCUS rows matched; `cloudact verify {slug}` shows what the org has")


@cli.command()
def demo() -> None:
    """The whole flow locally: org acme, loopback provider APIs, every pipeline over HTTP, FOCUS totals."""
    from cli.demo import run_demo

    sys.exit(run_demo(console))


_COST_OPTIONS = {"org": "SLUG", "start": "--from", "end": "--to", "group_by": "--by", "metric": "--metric",
                 "currency": "--currency", "providers": "--provider", "services": "--service", "tags": "--tag",
                 "top": "--top"}


def _listed(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable options that also take comma lists: --by provider,service --by day."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@cli.command()
@click.argument("slug")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First day, YYYY-MM-DD (default: the 1st of "
              "the month of --to).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last day, inclusive (default: today, UTC).")
@click.option("--by", "by", multiple=True, metavar="GROUPING",
              help="Group by day, week, month, provider, service, category, account, region, model, pipeline or "
                   "tag:KEY; repeat it or give a comma list (default: provider,service).")
@click.option("--metric", default="BilledCost", show_default=True,
              help="BilledCost, EffectiveCost, ListCost or ContractedCost.")
@click.option("--currency", help="Convert to this currency (ISO code) with each charge day's rate (`cloudact fx`).")
@click.option("--provider", "providers", multiple=True, help="Only these providers (ServiceProviderName, any case).")
@click.option("--service", "services", multiple=True, help="Only these services (ServiceName).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only charges tagged KEY=VALUE.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--top", type=click.IntRange(min=1), help="Only the N largest rows (the total still covers all).")
def costs(slug, start, end, by, metric, currency, providers, services, tags, fmt, top) -> None:
    """Costs of SLUG grouped your way; without options: this month so far by provider and service.

    \b
      cloudact costs acme
      cloudact costs acme --from 2026-10-01 --to 2026-10-31 --by day,provider --format csv
      cloudact costs acme --by tag:team --currency EUR --top 10
    """
    import dataclasses
    import datetime as dt

    from shared import costs as c
    from shared.inputs import FieldInvalid

    today = dt.datetime.now(dt.timezone.utc).date()
    q = c.default_query(slug, today)
    end_day = end.date() if end else q.end
    pairs = []
    for t in tags:
        key, sep, value = t.partition("=")
        if not sep or not key:
            _fail(f"--tag {t!r}: give KEY=VALUE")
        pairs.append((key, value))
    q = dataclasses.replace(
        q, start=start.date() if start else end_day.replace(day=1), end=end_day,
        group_by=_listed(by) if by else q.group_by, metric=metric, currency=currency,
        providers=_listed(providers), services=tuple(services), tags=tuple(pairs), top=top)
    try:
        result = c.query(_rt().warehouse, q)
    except FieldInvalid as e:
        _fail(f"{_COST_OPTIONS.get(e.field, e.field)}: {e.message}")
    if fmt == "json":
        click.echo(json.dumps(c.to_json(result), indent=2))
        return
    if fmt == "csv":
        click.echo(c.to_csv(result), nl=False)
    else:
        q = result.query
        title = (f"{slug}: {q.metric} {q.start}..{q.end}" + (f" by {', '.join(q.group_by)}" if q.group_by else "")
                 + (f" in {result.currency}" if q.currency else ""))
        console.print(_table(title, result.rows, result.columns))
        if not result.rows:
            err.print("no costs in this range: try --from/--to, or `cloudact verify SLUG` for the days loaded")
    if result.others is not None:
        err.print(f"other rows beyond the top {q.top}: {c.amount_text(result.others)} {result.currency}")
    if result.total is not None and result.rows:
        err.print(f"total: {c.amount_text(result.total)} {result.currency or ''}".rstrip())
    if result.message:
        err.print(f"no total: {result.message}")


@cli.group("fx")
def fx_group() -> None:
    """Exchange rates for `costs --currency`: the ECB reference rates or your own date,from,to,rate CSV."""


@fx_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", help="Rates for this org only, winning over the platform's (default: platform-wide).")
def fx_import(file: Path, org: str | None) -> None:
    """Import FILE: the ECB's eurofxref-hist.csv (or .zip, or the one-day eurofxref.csv), or a CSV
    with the header date,from,to,rate (1 FROM = RATE TO). A later import of a date and pair wins."""
    from shared import fx
    from shared.inputs import FieldInvalid
    from shared.tenants import get_org

    try:
        rates = fx.read_file(file)
    except FieldInvalid as e:
        _fail(f"{file.name}: {e}")
    if not rates:
        _fail(f"{file.name} holds no rates")
    wh = _rt().warehouse
    if org:
        get_org(wh, org)
    stored, unchanged = fx.store(wh, rates, org=org, source=file.name)
    pairs = sorted({f"{r.from_currency}->{r.to_currency}" for r in rates})
    days = sorted({r.rate_date for r in rates})
    shown = ", ".join(pairs[:8]) + (f" and {len(pairs) - 8} more" if len(pairs) > 8 else "")
    console.print(f"imported {stored} rates ({shown}) dated {days[0]}..{days[-1]} "
                  + (f"for org {org}" if org else "platform-wide (every org)")
                  + (f"; {unchanged} already stored" if unchanged else ""))


@fx_group.command("list")
@click.option("--org", help="The rates this org sees (its own and the platform's).")
@click.option("--limit", default=40, show_default=True)
def fx_list(org: str | None, limit: int) -> None:
    """The latest rates, newest first."""
    from shared import fx
    from shared.tenants import get_org

    wh = _rt().warehouse
    if org:
        get_org(wh, org)
    rows = fx.list_rates(wh, org, limit)
    console.print(_table("exchange rates: 1 from_currency = rate to_currency",
                         [{**r, "rate": format(r["rate"], "f")} for r in rows]))
    if not rows:
        err.print("no rates yet: `cloudact fx import eurofxref-hist.csv` (from the ECB's reference-rate page)")


def main() -> None:
    from cli.admin import forward

    code = forward(sys.argv[1:])  # a live `cloudact serve` owns the warehouse: run the command there
    if code is not None:
        sys.exit(code)
    cli(prog_name="cloudact")


if __name__ == "__main__":
    main()
