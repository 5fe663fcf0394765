"""Runtime settings, read from the environment once per process.

CLOUDACT_BACKEND   embedded (default) | gcp
CLOUDACT_HOME      local state for the embedded backend (default ./.cloudact)
GOOGLE_CLOUD_PROJECT / CLOUDACT_REGION   for the gcp backend
CLOUDACT_BIGQUERY_LOCATION   where the gcp backend creates datasets and runs its jobs (default US); Terraform
                   sets it from var.bigquery_location, which also places the `organizations` dataset
CLOUDACT_TENANCY   single (embedded default) | multi (gcp default); see shared/tenancy.py
CLOUDACT_SOURCE_ROOT   multi: the folder holding each org's file:// sources (<root>/<org_slug>/)
CLOUDACT_SOURCE_READER_SA   the service account the platform impersonates tenants' GCP service accounts
                   through (`{org}` is replaced by the org slug: one reader per org); see jobs/identity.py
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A BigQuery location: a multi-region (US, EU) or a region (europe-west3, us-central1).
_LOCATION = re.compile(r"^(?:[A-Za-z]{2}|[a-z]+-[a-z]+\d+)$")


@dataclass(frozen=True)
class Settings:
    backend: str
    home: Path
    project: str | None
    region: str
    tenancy: str = "single"
    source_root: Path | None = None
    source_reader_sa: str | None = None
    bigquery_location: str = "US"

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
    location = os.environ.get("CLOUDACT_BIGQUERY_LOCATION", "").strip() or "US"
    if not _LOCATION.match(location):
        raise ValueError(f"CLOUDACT_BIGQUERY_LOCATION must be a BigQuery location such as US, EU or europe-west3, "
                         f"not {location[:40]!r}")
    return Settings(
        backend=backend,
        home=Path(os.environ.get("CLOUDACT_HOME", ".cloudact")).resolve(),
        project=os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT"),
        region=os.environ.get("CLOUDACT_REGION", "us-central1"),
        tenancy=tenancy,
        source_root=Path(root).resolve() if root else None,
        source_reader_sa=os.environ.get("CLOUDACT_SOURCE_READER_SA", "").strip() or None,
        bigquery_location=location,
    )


# What CloudAct keeps in its home: a folder holding one of these (or nothing) is one we made.
STATE_FILES = ("warehouse.duckdb", "secret.key", "ui-session.key")


def private_dir(path: Path) -> Path:
    """Make `path` (the folder of the embedded state) exist and be owner-only, 0700.

    The warehouse and the credential key inside are 0600, but a folder others can list or enter still
    shows their names and sizes and lets in any file DuckDB creates later. An existing folder is
    tightened only if it is ours (empty, or holding our state: earlier versions made it 0755); a
    folder of the user's with other things in it (CLOUDACT_HOME=$HOME) keeps its mode.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        st = path.stat()
        ours = st.st_uid == os.getuid() and (
            not any(path.iterdir()) or any((path / name).exists() for name in STATE_FILES))
        if not ours or (st.st_mode & 0o777) == 0o700:
            return path
    path.chmod(0o700)  # mkdir's mode is masked by the umask; the folder's mode should not be
    return path


def env_number(name: str, default: float, cast=float, *, least: float = 0, above: bool = False) -> float:
    """A numeric setting from the environment: `default` when unset; a clear error naming the variable when it
    is not a number, below `least` (or not above it, with `above`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if value < least or (above and value == least):
        raise ValueError(f"{name} must be {'above' if above else 'at least'} {least}, not {raw!r}")
    return value
