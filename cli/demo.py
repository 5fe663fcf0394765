"""`cloudact demo`: the whole flow on this machine, with a loopback OpenAI-shaped server.

Fresh warehouse under $CLOUDACT_HOME/demo, org `acme` with an API key, ~30 days of generated usage
served over real HTTP, a real POST to the pipelines API, then the verify table and cost by model.
The data and date window are fixed, so running it twice gives the same rows.
"""
from __future__ import annotations

import datetime as dt
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
AWS_SAMPLE_WINDOW = {"start_date": "2023-11-01", "end_date": "2023-11-30"}  # the bundled CUR sample's month


def run_demo(console: Console) -> int:
    from cli.main import _table, print_run
    from cli.remote import post_and_wait
    from cli.reports import genai_reconciliation, provider_totals, verify_rows
    from cli.server import start_background
    from shared import runtime
    from shared.auth import create_key
    from shared.config import ROOT
    from shared.config import settings
    from shared.secrets import CredentialStore
    from shared.subscriptions import DEMO_SUBSCRIPTIONS
    from shared.tenants import bootstrap, create_org, sync_reference_data
    from stubs.anthropic import AnthropicStub
    from stubs.genai_data import anthropic_demo_usage, openai_demo_usage
    from stubs.openai import OpenAIStub

    started = time.monotonic()
    base = settings()
    home = base.home / "demo"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["CLOUDACT_HOME"] = str(home)
    runtime.use(None)
    rt = runtime.get()
    runs_done: list[dict] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        step = progress.add_task("creating warehouse, org acme and its API key", total=None)
        bootstrap(rt.warehouse)
        sync_reference_data(rt.warehouse)
        create_org(rt.warehouse, DEMO_ORG, "Acme Corp")
        key = create_key(rt.warehouse, DEMO_ORG)
        progress.update(step, description="starting loopback OpenAI and Anthropic Admin APIs with 30 days of usage")
        stubs = {
            "openai": OpenAIStub(admin_key=DEMO_ADMIN_KEY, usage=openai_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)),
            "anthropic": AnthropicStub(admin_key=DEMO_ADMIN_KEY,
                                       usage=anthropic_demo_usage(DEMO_START, DEMO_DAYS, DEMO_SEED)),
        }
        for stub in stubs.values():
            stub.start()
        server, api_url = start_background()
        try:
            end = DEMO_START + dt.timedelta(days=DEMO_DAYS - 1)
            window = {"start_date": DEMO_START.isoformat(), "end_date": end.isoformat()}
            for provider, stub in stubs.items():
                CredentialStore(rt.warehouse, rt.settings).add(
                    DEMO_ORG, provider, {"admin_key": DEMO_ADMIN_KEY, "base_url": stub.base_url}, label="demo")
                progress.update(step, description=f"POST {api_url}/api/v1/pipelines/run/acme/genai/payg/{provider}")
                runs_done.append(post_and_wait(api_url, key, DEMO_ORG, f"genai/payg/{provider}", window))
            aws_sample = ROOT / "data" / "samples" / "aws"
            CredentialStore(rt.warehouse, rt.settings).add(
                DEMO_ORG, "aws", {"source": aws_sample.as_uri()}, label="demo: anonymized CUR sample (MIT)")
            progress.update(step, description="POST .../run/acme/cloud/aws/cost/billing (bundled CUR sample)")
            runs_done.append(post_and_wait(api_url, key, DEMO_ORG, "cloud/aws/cost/billing", AWS_SAMPLE_WINDOW))
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
        progress.update(step, description="done")
    for run in runs_done:
        print_run(run)
    console.print(_table("verify: FOCUS rows per pipeline", verify_rows(rt.warehouse, DEMO_ORG)))
    console.print(_table("FOCUS totals by provider", provider_totals(rt.warehouse, DEMO_ORG)))
    console.print(_table("GenAI cost by model: computed from list prices vs billed by the provider",
                         genai_reconciliation(rt.warehouse, DEMO_ORG)))
    console.print(f"demo finished in {time.monotonic() - started:.1f}s; warehouse: {rt.settings.warehouse_path}")
    console.print(f"explore it: CLOUDACT_HOME={home} cloudact runs {DEMO_ORG}   (or: verify {DEMO_ORG})")
    ok = all(r["status"] == "succeeded" for r in runs_done)
    if not ok:
        console.print("[red]a demo run failed; see the errors above[/]")
    runtime.use(None)
    rt.close()
    return 0 if ok else 1
