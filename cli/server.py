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


def serve_forever(host: str, port: int) -> None:
    make_server(host, port, app(), threaded=True).serve_forever()
