"""Serve the functions-framework app for `run_pipeline` on a local port."""
from __future__ import annotations

import threading
from pathlib import Path

from werkzeug.serving import make_server

MAIN = str(Path(__file__).resolve().parent.parent / "functions" / "main.py")


def app():
    import logging

    from functions_framework import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # our own JSON logs say what matters

    return create_app(target="run_pipeline", source=MAIN, signature_type="http")


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


def serve_forever(host: str, port: int) -> None:
    stop = threading.Event()
    threading.Thread(target=fire_schedules, args=(stop,), name="cloudact-schedules", daemon=True).start()
    try:
        make_server(host, port, app(), threaded=True).serve_forever()
    finally:
        stop.set()
