"""`cloudact demo`: the whole flow on this machine, with a loopback OpenAI-shaped server.

Fresh warehouse under $CLOUDACT_HOME/demo, org `acme` with an API key, ~30 days of generated usage
served over real HTTP, a real POST to the pipelines API, then the verify table and cost by model.
The data and date window are fixed, so running it twice gives the same rows.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import shutil
import time

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

DEMO_ORG = "acme"
DEMO_START = dt.date(2026, 10, 1)
DEMO_DAYS = 30
DEMO_SEED = 7
DEMO_ADMIN_KEY = "sk-admin-demo-not-a-real-key"
DEMO_TOKEN = "demo-access-token"
DEMO_AWS_ACCOUNT = "111122223333"  # the account of the Bedrock usage (its application profile's ARN) and its CUR lines
# The bundled anonymized billing samples (MIT, data/samples/) and the month each one covers.
SAMPLE_WINDOWS = {
    "aws": {"start_date": "2023-11-01", "end_date": "2023-11-30"},
    "azure": {"start_date": "2023-09-01", "end_date": "2023-09-30"},
    "oci": {"start_date": "2023-11-01", "end_date": "2023-11-30"},
}


class _NoStubServerLines:
    """A console filter: no werkzeug records (the loopback servers' request log)."""

    def filter(self, record) -> bool:
        return record.name != "werkzeug"


class _CloudWatch:
    def __init__(self, server, credential):
        self.server, self.credential = server, credential


def _bedrock_cloudwatch(start: dt.date, days: int, seed: int) -> _CloudWatch | None:
    """A loopback CloudWatch (moto's server) holding Bedrock token metrics, or None without moto."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    from stubs import genai_data as gd

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    with contextlib.redirect_stdout(io.StringIO()):  # moto announces its thread on stdout
        server.start()
    host, port = server.get_host_and_port()
    keys = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo"}
    records = gd.bedrock_demo_usage(start, days, seed)
    for region, data in gd.bedrock_metric_data(records).items():
        cw = boto3.client("cloudwatch", region_name=region, endpoint_url=f"http://{host}:{port}", **keys)
        for i in range(0, len(data), 1000):
            cw.put_metric_data(Namespace="AWS/Bedrock", MetricData=data[i:i + 1000])
    regions = sorted({r["region"] for r in records})
    return _CloudWatch(server, {"regions": regions, "endpoint_url": f"http://{host}:{port}",
                                "model_ids": sorted({r["model_id"] for r in records}), **keys})


def run_demo(console: Console) -> int:
    from cli.main import _table, print_run
    from cli.remote import post_and_wait
    from cli.reports import genai_reconciliation, provider_totals, verify_rows
    from cli.server import start_background
    from shared import logs, runtime
    from shared.auth import create_key
    from shared.config import ROOT, settings
    from shared.secrets import CredentialStore
    from shared.subscriptions import DEMO_SUBSCRIPTIONS
    from shared.tenants import bootstrap, create_org, sync_reference_data
    from stubs import gcp_billing_data
    from stubs import genai_data as gd
    from stubs.anthropic import AnthropicStub
    from stubs.deepseek import DeepSeekStub
    from stubs.azure_monitor import AzureMonitorStub
    from stubs.gcp_monitoring import GcpMonitoringStub
    from stubs.genai_data import anthropic_demo_usage, openai_demo_usage
    from stubs.openai import OpenAIStub
    from stubs import model_spend_data as spend

    started = time.monotonic()
    # The loopback stand-ins (moto's CloudWatch) log each request they serve, with a traceback for the calls moto
    # does not implement (GetInferenceProfile) that the Bedrock job handles: the log file keeps them, the console not.
    shown = logs.console_handler()
    if shown is not None:
        shown.addFilter(_NoStubServerLines())
    base = settings()
    home = base.home / "demo"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["CLOUDACT_HOME"] = str(home)
    # The demo's providers are loopback servers and local folders of this machine: one operator, its own home.
    os.environ["CLOUDACT_TENANCY"] = "single"
    runtime.use(None)
    rt = runtime.get()
    runs_done: list[dict] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        step = progress.add_task("creating warehouse, org acme and its API key", total=None)
        bootstrap(rt.warehouse)
        sync_reference_data(rt.warehouse)
        create_org(rt.warehouse, DEMO_ORG, "Acme Corp")
        key = create_key(rt.warehouse, DEMO_ORG)
        progress.update(step, description="starting loopback provider APIs with 30 days of usage")
        end = DEMO_START + dt.timedelta(days=DEMO_DAYS - 1)
        window = {"start_date": DEMO_START.isoformat(), "end_date": end.isoformat()}
        gcp_export = home / "gcp-billing-export"
        gcp_billing_data.write_parquet(gcp_billing_data.generate(DEMO_START, end, seed=DEMO_SEED), gcp_export)
        # The clouds bill the models the GenAI usage ran on: the export, a CUR and cost details hold their lines
        # (the bundled samples hold none), so the money is counted once, from the bills.
        gemini_usage = gd.gemini_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)
        vertex_usage = gd.vertex_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)
        azure_usage = gd.azure_openai_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)
        gcp_billing_data.write_parquet(spend.gcp_export_rows(gemini_usage, vertex_usage), gcp_export,
                                       "export-000000000001.parquet")
        samples = ROOT / "data" / "samples"
        aws_cur, azure_details = home / "aws-cur", home / "azure-cost-details"
        shutil.copytree(samples / "aws", aws_cur, ignore=shutil.ignore_patterns("mapping_files"))
        shutil.copytree(samples / "azure", azure_details, ignore=shutil.ignore_patterns("mapping_files"))
        spend.write_csv(spend.bedrock_cur_rows(gd.bedrock_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED),
                                               DEMO_AWS_ACCOUNT), spend.CUR_HEADER, aws_cur / "bedrock-cur.csv")
        spend.write_csv(spend.azure_cost_details_rows(azure_usage), spend.MCA_HEADER,
                        azure_details / "aoai-cost-details.csv")
        stubs = {
            "openai": OpenAIStub(admin_key=DEMO_ADMIN_KEY, usage=openai_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)),
            "anthropic": AnthropicStub(admin_key=DEMO_ADMIN_KEY,
                                       usage=anthropic_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)),
            "gcp": GcpMonitoringStub(access_token=DEMO_TOKEN, points=(
                gd.gemini_metric_points(gemini_usage) + gd.vertex_metric_points(vertex_usage))),
            "azure": AzureMonitorStub(access_token=DEMO_TOKEN, cost_scope=gd.AZURE_DEMO_SUBSCRIPTION,
                                      usage=azure_usage),
        }
        stubs["deepseek"] = DeepSeekStub(api_key=DEMO_ADMIN_KEY, balance=gd.DEEPSEEK_DEMO_BALANCE)
        for stub in stubs.values():
            stub.start()
        deepseek_dir = home / "deepseek-usage"
        deepseek_dir.mkdir(parents=True)
        (deepseek_dir / "usage-export.csv").write_text(
            gd.deepseek_demo_csv(gd.deepseek_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)))
        bedrock = _bedrock_cloudwatch(DEMO_START, DEMO_DAYS, DEMO_SEED)  # None when moto is not installed
        # One credential per kind; the cloud billing and GenAI pipelines of a cloud share it.
        credentials = {
            "openai": {"admin_key": DEMO_ADMIN_KEY, "base_url": stubs["openai"].base_url},
            "anthropic": {"admin_key": DEMO_ADMIN_KEY, "base_url": stubs["anthropic"].base_url},
            "aws": {"source": aws_cur.as_uri(), "account_id": DEMO_AWS_ACCOUNT, **(bedrock.credential if bedrock else {})},
            "deepseek": {"api_key": DEMO_ADMIN_KEY, "base_url": stubs["deepseek"].base_url,
                         "usage_csv_dir": deepseek_dir.as_uri()},
            "oci": {"source": (samples / "oci").as_uri()},
            "gcp": {"source": gcp_export.as_uri(), "access_token": DEMO_TOKEN, "base_url": stubs["gcp"].base_url,
                    "monitoring_projects": [gd.GEMINI_DEMO_PROJECT, gd.VERTEX_DEMO_PROJECT]},
            "azure": {"source": azure_details.as_uri(), "access_token": DEMO_TOKEN,
                      "base_url": stubs["azure"].base_url, "resource_ids": list(gd.AZURE_DEMO_RESOURCES),
                      "cost_scope": gd.AZURE_DEMO_SUBSCRIPTION},
        }
        for kind, doc in credentials.items():
            CredentialStore(rt.warehouse, rt.settings).add(DEMO_ORG, kind, doc, label="demo")
        server, api_url = start_background()
        try:
            for pipeline, body in [
                *((f"genai/payg/{p}", window) for p in ("openai", "anthropic", "gemini", "vertex", "azure_openai",
                                                         "deepseek", *(["bedrock"] if bedrock else []))),
                *((f"cloud/{c}/cost/billing", window) for c in ("gcp", "aws", "azure")),
                *((f"cloud/{c}/cost/billing", w) for c, w in SAMPLE_WINDOWS.items()),
            ]:
                progress.update(step, description=f"POST {api_url}/api/v1/pipelines/run/acme/{pipeline}")
                runs_done.append(post_and_wait(api_url, key, DEMO_ORG, pipeline, body))
            progress.update(step, description="adding Slack, Canva, ChatGPT Plus and Notion subscriptions over HTTP")
            with httpx.Client(base_url=api_url, headers={"X-API-Key": key}, timeout=30) as http:
                for doc in DEMO_SUBSCRIPTIONS:
                    http.post(f"/api/v1/subscriptions/{DEMO_ORG}", json=doc).raise_for_status()
            progress.update(step, description="POST .../run/acme/subscription/costs/subscription_cost")
            runs_done.append(post_and_wait(api_url, key, DEMO_ORG, "subscription/costs/subscription_cost", window))
        finally:
            server.shutdown()
            for stub in stubs.values():
                stub.stop()
            if bedrock:
                bedrock.server.stop()
        progress.update(step, description="done")
    for run in runs_done:
        print_run(run)
    console.print(_table("verify: FOCUS rows per pipeline", verify_rows(rt.warehouse, DEMO_ORG)))
    console.print(_table("FOCUS totals by provider", provider_totals(rt.warehouse, DEMO_ORG)))
    console.print(_table("GenAI cost by model: computed from list prices vs billed (cloud bill or provider)",
                         genai_reconciliation(rt.warehouse, DEMO_ORG)))
    console.print(f"demo finished in {time.monotonic() - started:.1f}s; warehouse: {rt.settings.warehouse_path}")
    console.print(f"explore it: CLOUDACT_HOME={home} cloudact runs {DEMO_ORG}   (or: verify {DEMO_ORG})")
    if logs.log_file() is not None:
        console.print(f"log (JSON lines, tracebacks included): {logs.log_file()}")
    ok = all(r["status"] == "succeeded" for r in runs_done)
    if not ok:
        console.print("[red]a demo run failed; see the errors above[/]")
    runtime.use(None)
    rt.close()
    return 0 if ok else 1
