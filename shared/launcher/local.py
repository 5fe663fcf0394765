"""Runs the job code in this process (the embedded default)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.launcher.base import Launcher


class LocalLauncher(Launcher):
    def __init__(self, run_job: Callable[[dict[str, Any]], Any]):
        # the job's entry point is handed in by whoever wires the runtime: the library never imports jobs/
        self.run_job = run_job

    def launch(self, request: dict[str, Any]) -> str:
        self.run_job(request)
        return f"local-{request['run_id']}"
