"""A provider's answer reaches a run's error only as status, error code and a short scrubbed message."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from jobs.base import CredentialError, ExtractError
from shared.http import MESSAGE_MAX, ApiClient

ADMIN_KEY = "sk-admin-Zq8y/Top+Secret=Value42"  # URL-encoding changes it


@pytest.fixture()
def answer():
    """A loopback service that answers every GET with the (status, content type, body) set by the test."""
    state = {"reply": (200, "application/json", b"{}")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            status, ctype, body = state["reply"]
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()


def error_of(state, headers=None) -> str:
    with ApiClient(state["url"], headers or {"Authorization": f"Bearer {ADMIN_KEY}"}, max_attempts=1,
                   provider="OpenAI") as client:
        with pytest.raises(ExtractError) as e:
            client.get_json("/v1/organization/usage")
    return str(e.value)


def test_a_body_that_is_not_the_providers_json_error_is_not_repeated(answer):
    answer["reply"] = (400, "text/plain", b"internal config: db_password=hunter2 host=10.0.0.7 user=admin")
    msg = error_of(answer)
    assert "HTTP 400" in msg
    assert "hunter2" not in msg and "10.0.0.7" not in msg and "internal config" not in msg
    answer["reply"] = (404, "text/html", b"<html><body>secret admin panel</body></html>")
    assert "admin panel" not in error_of(answer)


def test_the_providers_code_and_a_short_message_are_kept(answer):
    long_tail = "x" * 2000
    doc = {"error": {"code": "invalid_request", "message": f"Unknown parameter 'group_by'. {long_tail}"}}
    answer["reply"] = (400, "application/json", json.dumps(doc).encode())
    msg = error_of(answer)
    assert "invalid_request" in msg and "Unknown parameter 'group_by'" in msg
    assert "x" * (MESSAGE_MAX + 1) not in msg and len(msg) < MESSAGE_MAX + 300


@pytest.mark.parametrize("echo", [
    ADMIN_KEY,
    quote(ADMIN_KEY, safe=""),
    base64.b64encode(ADMIN_KEY.encode()).decode(),
])
def test_secrets_are_scrubbed_in_the_forms_they_take_in_transit(answer, echo):
    doc = {"error": {"type": "invalid_request_error", "message": f"bad key {echo} for org"}}
    answer["reply"] = (400, "application/json", json.dumps(doc).encode())
    msg = error_of(answer)
    assert echo not in msg and "Secret" not in msg and "***" in msg


def test_basic_auth_parts_are_scrubbed(answer):
    user, password = "tenant-user", "pa55word-Very-Private"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    doc = {"message": f"login {user} with {password} refused"}
    answer["reply"] = (403, "application/json", json.dumps(doc).encode())
    with ApiClient(answer["url"], {"Authorization": f"Basic {token}"}, max_attempts=1) as client:
        with pytest.raises(CredentialError) as e:
            client.get_json("/x")
    assert password not in str(e.value) and user not in str(e.value)


def test_named_secrets_in_a_providers_message_are_cut(answer):
    doc = {"error": {"code": "bad", "message": "connect failed: password=hunter2; api_key: abc123def"}}
    answer["reply"] = (400, "application/json", json.dumps(doc).encode())
    msg = error_of(answer)
    assert "hunter2" not in msg and "abc123def" not in msg and "password=***" in msg


def test_a_runs_error_and_warnings_never_carry_its_credentials_secrets(rt, acme, monkeypatch):
    """Whatever a library puts in an exception, the secrets of the run's credential are cut from what the
    tenant reads (the error and the warnings)."""
    import jobs.genai.openai as openai_job
    from shared import runs
    from shared.api import request_run
    from shared.secrets import CredentialStore

    secret = "sk-admin-Leaky/Secret+Value-0042"
    CredentialStore(rt.warehouse, rt.settings).add("acme", "openai", {"admin_key": secret})

    def leaky(ctx):
        ctx.warn(f"retrying with key {ctx.credential['admin_key']}")
        raise RuntimeError(f"client said: bad header Authorization: Bearer {quote(secret, safe='')}")

    monkeypatch.setattr(openai_job, "extract", leaky)
    queued = request_run(rt, "acme", "genai/payg/openai", {}, trigger="test")
    rt.bus.drain()
    run = runs.get_run(rt.warehouse, "acme", queued["run_id"])
    assert run["status"] == "failed" and "client said" in run["error"]
    assert "Secret" not in run["error"] and "Secret" not in str(run["warnings"])
