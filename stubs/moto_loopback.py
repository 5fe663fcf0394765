"""moto's server on loopback with a clean state for each user.

Every ThreadedMotoServer in one process shares moto's in-memory backends, so metrics or objects a
previous test put stay visible to the next server (the same CloudWatch series then sums twice).
Resetting on the way in and on the way out gives each fixture only what it put.
"""
from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator

KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _reset(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """Yield the endpoint URL of a fresh moto server on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        _reset(endpoint)
        yield endpoint
    finally:
        with contextlib.suppress(OSError):
            _reset(endpoint)
        server.stop()
