"""Test helpers for runs over the HTTP API: post one, read it, wait until it ends."""
from __future__ import annotations

import time

import httpx

from shared import runs


def wait_until(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


class RunsApi:
    """Runs of one org through an httpx client that carries the org's key."""

    def __init__(self, http: httpx.Client, slug: str):
        self.http, self.slug = http, slug

    def post_run(self, pipeline: str, body: dict) -> str:
        r = self.http.post(f"/api/v1/pipelines/run/{self.slug}/{pipeline}", json=body)
        assert r.status_code == 202, r.text
        return r.json()["run_id"]

    def get(self, run_id: str) -> dict:
        return self.http.get(f"/api/v1/pipelines/runs/{self.slug}/{run_id}").json()

    def ended(self, run_id: str, timeout: float = 30) -> dict:
        return wait_until(lambda: (r := self.get(run_id))["status"] in runs.TERMINAL and r, timeout,
                          f"run {run_id} ending")
