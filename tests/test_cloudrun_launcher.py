"""CloudRunLauncher builds the real google.cloud.run_v2 RunJobRequest and does not wait for the job."""
from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import operation as ga_operation
from google.cloud import run_v2
from google.longrunning import operations_pb2

from shared import registry
from shared.launcher.base import job_args
from shared.launcher.cloudrun import CloudRunLauncher

REQUEST = {
    "run_id": "run-123",
    "org_slug": "acme",
    "pipeline_id": "genai/payg/openai",
    "credential_id": "cred-1",
    "start_date": dt.date(2026, 1, 1),
    "end_date": "2026-01-31",
}
EXECUTION = "projects/proj-1/locations/europe-west1/jobs/cloudact-genai/executions/cloudact-genai-x7k2p"


class FakeJobsClient:
    """Captures run_job requests and answers with a real (not yet done) long-running operation."""

    def __init__(self, with_metadata: bool = True):
        self.requests: list[run_v2.RunJobRequest] = []
        self.with_metadata = with_metadata

    def run_job(self, request=None, *, timeout=None, **kwargs):
        assert isinstance(request, run_v2.RunJobRequest)
        assert timeout is not None
        self.requests.append(request)
        op = operations_pb2.Operation(name="projects/proj-1/locations/europe-west1/operations/op-42", done=False)
        if self.with_metadata:
            op.metadata.Pack(run_v2.Execution.pb(run_v2.Execution(name=EXECUTION)))

        def refresh():
            raise AssertionError("the launcher must not wait for the execution")

        return ga_operation.Operation(op, refresh, cancel=lambda: None, result_type=run_v2.Execution,
                                      metadata_type=run_v2.Execution)


def test_launch_runs_the_job_family_with_run_overrides():
    client = FakeJobsClient()
    launcher = CloudRunLauncher(project="proj-1", region="europe-west1", client=client)

    assert launcher.launch(REQUEST) == EXECUTION

    (req,) = client.requests
    family = registry.get(REQUEST["pipeline_id"]).job_family
    assert family == "genai"
    assert req.name == "projects/proj-1/locations/europe-west1/jobs/cloudact-genai"
    assert req.overrides.task_count == 1
    (container,) = req.overrides.container_overrides
    assert list(container.args) == job_args(REQUEST)
    assert list(container.args)[:2] == ["run", "--run-id"] and "2026-01-01" in container.args
    assert {e.name: e.value for e in container.env} == {
        "CLOUDACT_ORG_SLUG": "acme", "CLOUDACT_PIPELINE_ID": "genai/payg/openai", "CLOUDACT_RUN_ID": "run-123"}
    # the request survives a round trip through its wire form
    assert run_v2.RunJobRequest.deserialize(run_v2.RunJobRequest.serialize(req)) == req


def test_launch_returns_operation_name_without_metadata_and_honours_prefix():
    client = FakeJobsClient(with_metadata=False)
    launcher = CloudRunLauncher(project="p", region="us-central1", client=client, job_prefix="ca-")
    assert launcher.launch(REQUEST) == "projects/proj-1/locations/europe-west1/operations/op-42"
    assert client.requests[0].name == "projects/p/locations/us-central1/jobs/ca-genai"


def test_unknown_or_planned_pipeline_is_refused_before_any_api_call(planned_pipeline):
    client = FakeJobsClient()
    launcher = CloudRunLauncher(project="p", region="r", client=client)
    with pytest.raises(registry.UnknownPipeline):
        launcher.launch({**REQUEST, "pipeline_id": "nope/nope"})
    with pytest.raises(registry.PipelineNotAvailable):
        launcher.launch({**REQUEST, "pipeline_id": planned_pipeline})
    assert client.requests == []
