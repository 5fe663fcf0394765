"""A small client for the pipelines HTTP API (the demo and tests use it; so can scripts)."""
from __future__ import annotations

import time

import httpx

from shared.runs import TERMINAL


class RunRefused(RuntimeError):
    def __init__(self, status: int, body: dict):
        super().__init__(f"HTTP {status}: {body.get('message', body)}")
        self.status, self.body = status, body


def post_and_wait(base_url: str, key: str, org: str, pipeline: str, body: dict, timeout: float = 300) -> dict:
    """POST a run, then poll its status until it ends; return the final run record."""
    with httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=30) as http:
        r = http.post(f"/api/v1/pipelines/run/{org}/{pipeline}", json=body)
        if r.status_code != 202:
            raise RunRefused(r.status_code, r.json())
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = http.get(f"/api/v1/pipelines/runs/{org}/{run_id}").json()
            if run["status"] in TERMINAL:
                return run
            time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s")
