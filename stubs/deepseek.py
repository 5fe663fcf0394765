"""A loopback stand-in for DeepSeek's `GET /user/balance` over real HTTP.

    with DeepSeekStub(api_key="sk-test") as api:
        api.base_url                      # http://127.0.0.1:PORT  (the real one: https://api.deepseek.com)
        api.balance = {...}               # change what the next call returns (e.g. after spending)
        api.fail_next(status=500)
        api.requests                      # [{"method", "path", "params", "status"}, ...]

Serves `GET /user/balance` in the documented shape (amounts are strings):
    {"is_available": true, "balance_infos": [{"currency": "USD", "total_balance": "48.20",
                                              "granted_balance": "0.00", "topped_up_balance": "48.20"}]}
Needs `Authorization: Bearer <api_key>`; anything else gets 401 with DeepSeek's OpenAI-style error body
(`{"error": {"message", "type": "authentication_error", "param": null, "code": "invalid_request_error"}}`).
Other paths are 404. DeepSeek has no usage endpoint, so there is nothing else to serve.
"""
from __future__ import annotations

import copy
from typing import Mapping

from stubs.genai_data import DEEPSEEK_DEMO_BALANCE
from stubs.http_stub import LoopbackStub

BALANCE_PATH = "/user/balance"
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_balance",
                404: "not_found", 429: "rate_limit_error", 500: "server_error", 503: "server_overloaded"}


class DeepSeekStub(LoopbackStub):
    name = "deepseek-stub"

    def __init__(self, api_key: str = "sk-deepseek-stub-key", balance: dict | None = None, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.balance = copy.deepcopy(balance if balance is not None else DEEPSEEK_DEMO_BALANCE)

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "api_error"), "param": None,
                          "code": "invalid_request_error"}}

    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        auth = headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            tail = auth[-4:] if len(auth) > 12 else ""
            return 401, self.error_body(401, f"Authentication Fails, Your api key: ****{tail} is invalid")
        return None

    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        if path == BALANCE_PATH:
            return 200, copy.deepcopy(self.balance)
        return 404, self.error_body(404, f"Not found: GET {path}")
