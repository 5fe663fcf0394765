"""Runtime settings, read from the environment once per process.

CLOUDACT_BACKEND   embedded (default) | gcp
CLOUDACT_HOME      local state for the embedded backend (default ./.cloudact)
GOOGLE_CLOUD_PROJECT / CLOUDACT_REGION   for the gcp backend
CLOUDACT_TENANCY   single (embedded default) | multi (gcp default); see shared/tenancy.py
CLOUDACT_SOURCE_ROOT   multi: the folder holding each org's file:// sources (<root>/<org_slug>/)
CLOUDACT_SOURCE_READER_SA   the service account the platform impersonates tenants' GCP service accounts
                   through (`{org}` is replaced by the org slug: one reader per org); see jobs/identity.py
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    backend: str
    home: Path
    project: str | None
    region: str
    tenancy: str = "single"
    source_root: Path | None = None
    source_reader_sa: str | None = None

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def secret_key_path(self) -> Path:
        return self.home / "secret.key"


def settings() -> Settings:
    backend = os.environ.get("CLOUDACT_BACKEND", "embedded").strip().lower()
    if backend not in {"embedded", "gcp"}:
        raise ValueError(f"CLOUDACT_BACKEND must be 'embedded' or 'gcp', not {backend!r}")
    tenancy = os.environ.get("CLOUDACT_TENANCY", "").strip().lower() or ("multi" if backend == "gcp" else "single")
    if tenancy not in {"single", "multi"}:
        raise ValueError(f"CLOUDACT_TENANCY must be 'single' or 'multi', not {tenancy!r}")
    root = os.environ.get("CLOUDACT_SOURCE_ROOT", "").strip()
    return Settings(
        backend=backend,
        home=Path(os.environ.get("CLOUDACT_HOME", ".cloudact")).resolve(),
        project=os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT"),
        region=os.environ.get("CLOUDACT_REGION", "us-central1"),
        tenancy=tenancy,
        source_root=Path(root).resolve() if root else None,
        source_reader_sa=os.environ.get("CLOUDACT_SOURCE_READER_SA", "").strip() or None,
    )
