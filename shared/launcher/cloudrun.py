"""The GCP launcher: starts the pipeline's Cloud Run job with per-run overrides.

One image, one Cloud Run job per job family (`{job_prefix}{job_family}`, e.g. `cloudact-genai`); the
run's arguments (`python -m jobs run ...`, see shared.launcher.base.job_args) and a few identifying
environment variables are passed as overrides. The launcher returns as soon as the execution is
created: the job reports its outcome itself (run record + completion event).
"""
from __future__ import annotations

from typing import Any

from google.cloud import run_v2

from shared import registry
from shared.launcher.base import Launcher, job_args


class CloudRunLauncher(Launcher):
    def __init__(self, project: str, region: str, client=None, job_prefix: str = "cloudact-",
                 timeout: float = 60.0):
        if not project or not region:
            raise ValueError("the Cloud Run launcher needs a project and a region")
        self.project = project
        self.region = region
        self.job_prefix = job_prefix
        self.timeout = timeout
        self.client = client if client is not None else run_v2.JobsClient()

    def job_name(self, pipeline_id: str) -> str:
        family = registry.get(pipeline_id).job_family
        return f"projects/{self.project}/locations/{self.region}/jobs/{self.job_prefix}{family}"

    def run_job_request(self, request: dict[str, Any]) -> run_v2.RunJobRequest:
        env = [
            run_v2.EnvVar(name="CLOUDACT_ORG_SLUG", value=str(request["org_slug"])),
            run_v2.EnvVar(name="CLOUDACT_PIPELINE_ID", value=str(request["pipeline_id"])),
            run_v2.EnvVar(name="CLOUDACT_RUN_ID", value=str(request["run_id"])),
        ]
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(args=job_args(request), env=env)],
            task_count=1,
        )
        return run_v2.RunJobRequest(name=self.job_name(request["pipeline_id"]), overrides=overrides)

    def launch(self, request: dict[str, Any]) -> str:
        operation = self.client.run_job(request=self.run_job_request(request), timeout=self.timeout)
        # Do not wait for the execution: its metadata already names it when the API answers.
        try:
            metadata = operation.metadata
        except Exception:  # noqa: BLE001 - metadata is a convenience; the operation name is enough
            metadata = None
        name = getattr(metadata, "name", "") if metadata is not None else ""
        if name:
            return name
        op = getattr(operation, "operation", None)
        return getattr(op, "name", "") or str(getattr(operation, "name", "") or "")
