"""Cloud Functions entry points. Thin: parse, authorize, delegate to shared/.

run_pipeline          HTTP     the pipelines API (POST run, GET run status)
dispatch_run          Pub/Sub  pipeline-run-requests -> start the provider's job
schedule_tick         Pub/Sub  pipeline-schedule-ticks -> queue the schedule's run (org, pipeline, quota checks)
convert_on_completion Pub/Sub  pipeline-run-completed -> procedure chain, run result
stripe_webhook        HTTP     Stripe events -> plans, org subscriptions (signature checked, idempotent)
sync_schedules        HTTP     org_schedules -> Cloud Scheduler jobs (create/update/delete to match)
sweep_runs            HTTP     end runs whose job is gone (lease expired, queued too long); Cloud Scheduler calls it
"""
from __future__ import annotations

import functions_framework

from shared.bus.base import TOPIC_RUN_COMPLETED, TOPIC_RUN_REQUESTS, TOPIC_SCHEDULE_TICKS


@functions_framework.http
def run_pipeline(request):
    from shared import api, inputs, runtime

    # The body is read (at most to the size limit) only when a route asks for it, after the key check.
    # The query string stays a MultiDict: a parameter may be repeated (?group_by=day&group_by=provider).
    status, body = api.handle(runtime.get(), request.method, request.path, request.headers,
                              lambda: inputs.read_bounded(request.stream), request.args)
    if isinstance(body, api.Stream):
        from flask import Response

        return Response(body.chunks, status=status, headers={"Content-Type": body.content_type, **body.headers})
    return body, status, {"Content-Type": "application/json"}


@functions_framework.cloud_event
def dispatch_run(cloud_event):
    from shared import runtime
    from shared.bus.base import decode

    request, _, _ = decode(cloud_event)
    from shared import schedules

    if schedules.is_schedule_message(request):
        # a Cloud Scheduler job made before ticks had their own topic, until sync_schedules moves it
        schedules.handle_message(runtime.get(), request)
        return
    runtime.get().launcher.launch(request)


@functions_framework.cloud_event
def schedule_tick(cloud_event):
    from shared import runtime, schedules
    from shared.bus.base import decode

    tick, _, _ = decode(cloud_event)
    schedules.handle_message(runtime.get(), tick)


@functions_framework.cloud_event
def convert_on_completion(cloud_event):
    from shared.bus.base import decode
    from shared.convert import convert

    event, _, _ = decode(cloud_event)
    convert(event)


@functions_framework.http
def stripe_webhook(request):
    """Stripe -> plans and org subscriptions. 400 unless the Stripe-Signature verifies."""
    import os

    from shared import inputs, runtime, stripe_events

    headers = {"Content-Type": "application/json"}
    if request.method != "POST":
        return {"error": "method_not_allowed", "message": "Stripe posts events"}, 405, headers
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        return {"error": "not_configured", "message": "STRIPE_WEBHOOK_SECRET is not set"}, 500, headers
    try:
        inputs.check_length(request.headers.get("Content-Length"))
        raw = inputs.read_bounded(request.stream)
    except inputs.BodyTooLarge as e:
        return {"error": "body_too_large", "message": str(e)}, 413, headers
    try:
        event = stripe_events.verify(raw, request.headers.get("Stripe-Signature"), secret)
        outcome = stripe_events.handle_event(runtime.get().warehouse, event)
    except stripe_events.BadSignature as e:
        return {"error": "bad_signature", "message": str(e)}, 400, headers
    except stripe_events.BadEvent as e:
        return {"error": "bad_event", "message": str(e)}, 400, headers
    return {"received": True, "outcome": outcome}, 200, headers


@functions_framework.http
def sync_schedules(request):
    """Make Cloud Scheduler match organizations.org_schedules (invoke with an IAM identity, not publicly)."""
    from shared import runtime, schedules

    rt = runtime.get()
    summary = schedules.sync_to_cloud_scheduler(rt.warehouse, schedules.scheduler_client(), rt.settings.project,
                                                rt.settings.region, schedules.topic_path(rt.settings.project))
    return summary, 200, {"Content-Type": "application/json"}


@functions_framework.http
def sweep_runs(request):
    """End runs whose job stopped without finishing (invoke with an IAM identity, not publicly)."""
    from shared import runs, runtime

    ended = runs.sweep(runtime.get().warehouse)
    return {"ended": ended}, 200, {"Content-Type": "application/json"}


# What the embedded runtime's in-process bus delivers each topic to (GCP: Eventarc triggers, terraform/functions.tf).
HANDLERS = {TOPIC_RUN_REQUESTS: dispatch_run, TOPIC_RUN_COMPLETED: convert_on_completion,
            TOPIC_SCHEDULE_TICKS: schedule_tick}
