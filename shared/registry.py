"""The provider catalog (providers.yml): pipeline path -> job, raw tables, procedures, credential; and per
provider the constant FOCUS names its conversions write (`providers:`), synced to organizations.provider_facts."""
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
    # Whose names the rows carry: the provider's facts (providers.yml `providers:`), or the input's own
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


# A provider fact (the FOCUS column it fills) -> its column in organizations.provider_facts.
FACT_COLUMNS = {"ProviderName": "provider_name", "HostProviderName": "host_provider_name",
                "ServiceProviderName": "service_provider_name", "InvoiceIssuerName": "invoice_issuer_name",
                "PublisherName": "publisher_name", "ServiceName": "service_name"}
FACTS_TABLE = "provider_facts"


@lru_cache(maxsize=None)
def provider_facts() -> dict[str, dict[str, str]]:
    """provider -> {fact: value} from providers.yml `providers:`."""
    doc = yaml.safe_load(REGISTRY_PATH.read_text())
    return {name: dict(facts or {}) for name, facts in (doc.get("providers") or {}).items()}


def sync_facts(wh) -> int:
    """Replace organizations.provider_facts with the catalog's facts. Returns rows written."""
    from shared import schemas

    unknown = sorted({k for facts in provider_facts().values() for k in facts} - set(FACT_COLUMNS))
    if unknown:
        raise ValueError(f"providers.yml: unknown provider fact(s) {', '.join(unknown)}; known: "
                         f"{', '.join(FACT_COLUMNS)}")
    rows = [{"provider": name, **{col: facts.get(fact) for fact, col in FACT_COLUMNS.items()}}
            for name, facts in provider_facts().items()]
    wh.ensure_table(wh.meta_dataset, schemas.get(FACTS_TABLE))
    wh.execute(f"DELETE FROM `{wh.meta_dataset}.{FACTS_TABLE}` WHERE TRUE")
    wh.insert_rows(wh.meta_dataset, FACTS_TABLE, rows)
    return len(rows)


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
