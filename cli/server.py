"""Serve the HTTP functions on a local port: `run_pipeline` at /, `stripe_webhook` at /webhooks/stripe, and
the web dashboard at /ui/ (cli/dashboard)."""
from __future__ import annotations

import threading
from pathlib import Path

from werkzeug.serving import make_server

MAIN = str(Path(__file__).resolve().parent.parent / "functions" / "main.py")


STRIPE_PATH = "/webhooks/stripe"
UI_PREFIX = "/ui"


def app():
    """The functions-framework app of `run_pipeline`, with POST /webhooks/stripe handed to the
    `stripe_webhook` app. On GCP each is its own function; functions-framework serves one target per
    app, so the two are joined here on the exact path (werkzeug's DispatcherMiddleware would strip the
    mount point and redirect the bare path with a 308, which Stripe does not follow). The dashboard is
    its own Flask app whose routes carry the /ui prefix, joined the same way."""
    import logging

    from functions_framework import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # our own JSON logs say what matters

    api = create_app(target="run_pipeline", source=MAIN, signature_type="http")
    stripe_app = create_app(target="stripe_webhook", source=MAIN, signature_type="http")
    for a in (api, stripe_app):
        _bound_the_drain(a)
    from cli.dashboard.app import create_app as dashboard

    stripe, pipelines, ui = stripe_app.wsgi_app, api.wsgi_app, dashboard().wsgi_app

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == STRIPE_PATH:
            return stripe(environ, start_response)
        if path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
            return ui(environ, start_response)
        return pipelines(environ, start_response)

    api.wsgi_app = wsgi
    return api


def _bound_the_drain(flask_app) -> None:
    """functions-framework reads the whole request body after every response (`read_request`), so a
    client could make the server read gigabytes after its 413. Drain at most the size limit instead,
    and close the connection when more was announced or sent (the rest is never read)."""
    import flask
    import functions_framework

    from shared import inputs

    def drain(response):
        try:
            inputs.check_length(flask.request.headers.get("Content-Length"))
            inputs.read_bounded(flask.request.stream)
        except inputs.BodyTooLarge:
            response.headers["Connection"] = "close"
        return response

    hooks = flask_app.after_request_funcs.setdefault(None, [])
    hooks[:] = [drain if f is functions_framework.read_request else f for f in hooks]


def start_background(host: str = "127.0.0.1", port: int = 0):
    """Start a threaded server; returns (server, base_url). Call server.shutdown() to stop."""
    server = make_server(host, port, app(), threaded=True)
    threading.Thread(target=server.serve_forever, name="cloudact-http", daemon=True).start()
    return server, f"http://{host}:{server.server_port}"


def fire_schedules(stop: threading.Event) -> None:
    """The embedded default's Cloud Scheduler: each minute, publish the run requests of due schedules."""
    import datetime as dt
    import time

    from shared import runtime, schedules

    last = dt.datetime.now(dt.timezone.utc)
    while not stop.wait(61 - time.time() % 60):
        now = dt.datetime.now(dt.timezone.utc)
        try:
            schedules.publish_due(runtime.get(), now, since=last)
        except Exception:  # noqa: BLE001 - a bad tick must not stop the loop; it is logged
            import logging

            logging.getLogger("cloudact.schedules").exception("firing schedules failed")
        last = now


def sweep_runs(started) -> list[str]:
    """End the runs whose job is gone (shared.runs.sweep). On the embedded backend this server is the
    only dispatcher, so a run still queued from before it started will never start: it ends too."""
    import logging

    from shared import runs, runtime

    rt = runtime.get()
    ended = runs.sweep(rt.warehouse, queued_before=started if rt.settings.backend == "embedded" else None)
    if ended:
        logging.getLogger("cloudact.lifecycle").warning("ended %d run(s) whose job was gone: %s",
                                                         len(ended), ", ".join(ended))
    return ended


def sweep_periodically(stop: threading.Event, started) -> None:
    """Every third of a lease, so an expired lease ends its run within about a lease and a third."""
    import logging

    from shared import lifecycle

    while not stop.wait(lifecycle.lease_seconds() / 3):
        try:
            sweep_runs(started)
        except Exception:  # noqa: BLE001 - a failed sweep is retried next tick; it is logged
            logging.getLogger("cloudact.lifecycle").exception("sweeping runs failed")


class _Terminated(BaseException):
    """SIGTERM: leave serve_forever the way Ctrl-C does."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated


def shut_down(grace: float) -> None:
    """Let in-flight runs finish within `grace` seconds; stop the rest and end them `failed` with a
    message, so no run is left `running`. Exits the process at once if some job will not stop."""
    import logging
    import os

    from shared import lifecycle, runs, runtime

    rt = runtime.get()
    log = logging.getLogger("cloudact.lifecycle")
    try:
        getattr(rt.bus, "drain", lambda timeout: None)(timeout=grace)
        return
    except TimeoutError:
        pass
    left = sorted(lifecycle.held())
    lifecycle.stop_all("cloudact serve is shutting down")
    message = (f"cloudact serve shut down before the run finished (it had {grace:g} s, CLOUDACT_SHUTDOWN_GRACE_S); "
               "nothing more was written for it. Re-run it")

    def end_all():
        for run_id in left:
            runs.finish(rt.warehouse, run_id, "failed", error=message)

    ender = threading.Thread(target=end_all, name="cloudact-shutdown", daemon=True)
    ender.start()
    ender.join(grace)  # a job in the middle of a warehouse write holds it until its statement ends
    log.warning("shut down: %d run(s) had not finished and were ended failed: %s", len(left), ", ".join(left))
    logging.shutdown()
    os._exit(0)  # jobs stuck on a provider must not hold the process; their runs are already failed


def serve_forever(host: str, port: int) -> None:
    import datetime as dt
    import signal

    from shared import lifecycle

    stop = threading.Event()
    started = dt.datetime.now(dt.timezone.utc)
    sweep_runs(started)
    threading.Thread(target=fire_schedules, args=(stop,), name="cloudact-schedules", daemon=True).start()
    threading.Thread(target=sweep_periodically, args=(stop, started), name="cloudact-sweep", daemon=True).start()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        make_server(host, port, app(), threaded=True).serve_forever()
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the grace period bounds the shutdown already
        shut_down(lifecycle.shutdown_grace_seconds())
