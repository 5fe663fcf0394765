"""Cloud Functions entry points. Thin: parse, authorize, delegate to shared/.

run_pipeline          HTTP     the pipelines API (POST run, GET run status)
dispatch_run          Pub/Sub  pipeline-run-requests -> start the provider's job
convert_on_completion Pub/Sub  pipeline-run-completed -> procedure chain, run result
"""
from __future__ import annotations

import functions_framework


@functions_framework.http
def run_pipeline(request):
    from shared import api, runtime

    status, body = api.handle(runtime.get(), request.method, request.path, request.headers, request.get_data(),
                              request.args.to_dict())
    return body, status, {"Content-Type": "application/json"}


@functions_framework.cloud_event
def dispatch_run(cloud_event):
    from shared import runtime
    from shared.bus.base import decode

    request, _, _ = decode(cloud_event)
    runtime.get().launcher.launch(request)


@functions_framework.cloud_event
def convert_on_completion(cloud_event):
    from shared.bus.base import decode
    from shared.convert import convert

    event, _, _ = decode(cloud_event)
    convert(event)
