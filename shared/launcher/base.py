"""How a run request becomes a job execution."""
from __future__ import annotations

import abc
from typing import Any


class Launcher(abc.ABC):
    @abc.abstractmethod
    def launch(self, request: dict[str, Any]) -> str:
        """Start the job for a run request; return an execution id."""


def job_args(request: dict[str, Any]) -> list[str]:
    """The job's command-line arguments (`python -m jobs run ...`) for a run request."""
    return [
        "run",
        "--run-id", request["run_id"],
        "--org", request["org_slug"],
        "--pipeline", request["pipeline_id"],
        "--credential-id", request["credential_id"],
        "--start", str(request["start_date"]),
        "--end", str(request["end_date"]),
    ]
