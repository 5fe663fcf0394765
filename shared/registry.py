"""The provider registry (providers.yml): pipeline path -> job, raw tables, procedures, credential."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "providers.yml"


class UnknownPipeline(LookupError):
    pass


class PipelineNotAvailable(LookupError):
    pass


@dataclass(frozen=True)
class Pipeline:
    path: str
    provider: str
    category: str
    job: str
    job_family: str
    raw_tables: tuple[str, ...]
    date_column: str
    procedures: tuple[str, ...]
    credential: str
    status: str
    # Observations of the run itself, not of the slice's dates (a balance sampled when the run reads
    # it): each run keeps its own rows, so they add up to a history rather than replacing each other.
    run_tables: tuple[str, ...] = ()
    # Whose names the rows carry: the provider's facts (procedures/provider_facts.yml), or the input's own
    # (`file`: a vendor's FOCUS file names its provider, publisher and invoice issuer itself).
    names_from: str = "facts"

    @property
    def available(self) -> bool:
        return self.status == "available"

    @property
    def needs_credential(self) -> bool:
        return self.credential != "none"


@lru_cache(maxsize=None)
def pipelines() -> dict[str, Pipeline]:
    doc = yaml.safe_load(REGISTRY_PATH.read_text())
    out = {}
    for path, e in doc["pipelines"].items():
        out[path] = Pipeline(
            path=path,
            provider=e["provider"],
            category=e["category"],
            job=e["job"],
            job_family=e["job_family"],
            raw_tables=tuple(e["raw_tables"]),
            date_column=e["date_column"],
            procedures=tuple(e["procedures"]),
            credential=e["credential"],
            status=e.get("status", "available"),
            run_tables=tuple(e.get("run_tables", ())),
            names_from=e.get("names_from", "facts"),
        )
    return out


def get(path: str, *, require_available: bool = True) -> Pipeline:
    """Look a pipeline up by path; unknown or not-yet-built paths raise with a readable message."""
    p = pipelines().get(path)
    if p is None:
        known = ", ".join(sorted(pipelines()))
        raise UnknownPipeline(f"unknown pipeline {path!r}; known pipelines: {known}")
    if require_available and not p.available:
        built = ", ".join(sorted(k for k, v in pipelines().items() if v.available))
        raise PipelineNotAvailable(
            f"pipeline {path!r} is registered but its extractor is not built yet; available now: {built}"
        )
    return p
