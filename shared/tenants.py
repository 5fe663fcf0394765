"""Bootstrap the meta dataset and create organizations (one dataset per org)."""
from __future__ import annotations

import datetime as dt

from shared import schemas
from shared.naming import org_dataset, validate_org_slug
from shared.warehouse.base import Warehouse

META = "organizations"


class OrgExists(ValueError):
    pass


class UnknownOrg(LookupError):
    pass


def bootstrap(wh: Warehouse) -> None:
    """Create the `organizations` dataset and its meta tables; safe to run again."""
    wh.ensure_dataset(META)
    for s in schemas.by_scope("meta"):
        wh.ensure_table(META, s)


def sync_reference_data(wh: Warehouse) -> dict[str, int]:
    """Load the repo's reference data (GenAI prices, service category map, provider facts) into the meta
    dataset."""
    from shared import pricing, registry, service_map

    return {"prices": pricing.sync(wh), "service_categories": service_map.sync(wh),
            "provider_facts": registry.sync_facts(wh)}


def ensure_org_tables(wh: Warehouse, slug: str) -> str:
    ds = org_dataset(slug)
    wh.ensure_dataset(ds)
    for s in schemas.by_scope("org"):
        wh.ensure_table(ds, s)
    wh.install_procedures(ds)
    return ds


def create_org(wh: Warehouse, slug: str, name: str | None = None) -> str:
    validate_org_slug(slug)
    if get_org(wh, slug, missing_ok=True):
        raise OrgExists(f"organization {slug!r} already exists")
    ds = ensure_org_tables(wh, slug)
    wh.insert_rows(META, "organizations", [{
        "org_slug": slug, "org_name": name or slug, "dataset": ds, "status": "active",
        "created_at": dt.datetime.now(dt.timezone.utc),
    }])
    return ds


def get_org(wh: Warehouse, slug: str, missing_ok: bool = False) -> dict | None:
    rows = wh.query("SELECT * FROM `organizations.organizations` WHERE org_slug = @slug", {"slug": slug})
    if not rows and not missing_ok:
        raise UnknownOrg(f"no organization {slug!r}; create it with `cloudact orgs create {slug}`")
    return rows[0] if rows else None


def list_orgs(wh: Warehouse) -> list[dict]:
    return wh.query("SELECT org_slug, org_name, status, created_at FROM `organizations.organizations` ORDER BY org_slug")
