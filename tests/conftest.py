"""Shared fixtures: an embedded runtime on a temporary CLOUDACT_HOME, an org with a key."""
from __future__ import annotations

import pytest

from jobs import runner
from shared import runtime
from shared.config import settings
from shared.tenants import bootstrap, create_org, sync_reference_data

runner.wire()  # as the CLI does: the embedded runtime runs the jobs and functions in this process


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDACT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDACT_BACKEND", "embedded")
    return tmp_path / "home"


@pytest.fixture()
def rt(home):
    """A fresh embedded runtime (DuckDB file, in-process bus and launcher), installed process-wide."""
    r = runtime.embedded(settings())
    previous = runtime.use(r)
    bootstrap(r.warehouse)
    sync_reference_data(r.warehouse)
    yield r
    r.bus.drain()
    runtime.use(previous)
    r.close()


@pytest.fixture()
def acme(rt):
    create_org(rt.warehouse, "acme")
    return "acme"


@pytest.fixture()
def planned_pipeline(monkeypatch):
    """A registered pipeline whose extractor is not built, for the refusal paths."""
    import dataclasses

    from shared import registry

    real = registry.pipelines()
    future = dataclasses.replace(real["genai/payg/openai"], path="genai/payg/future", provider="future",
                                 job="genai.future", status="planned")
    monkeypatch.setattr(registry, "pipelines", lambda: {**real, future.path: future})
    return future.path
