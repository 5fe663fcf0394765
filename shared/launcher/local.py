"""Runs the job code in this process (the embedded default)."""
from __future__ import annotations

from typing import Any

from shared.launcher.base import Launcher


class LocalLauncher(Launcher):
    def launch(self, request: dict[str, Any]) -> str:
        from jobs.runner import run_job

        run_job(request)
        return f"local-{request['run_id']}"
