"""Validated names: org slugs, datasets and SQL identifiers.

Every dataset or table name that reaches SQL passes through here; request input never does
directly.
"""
from __future__ import annotations

import re

_SLUG = re.compile(r"^[a-z][a-z0-9_]{2,29}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED_SLUGS = {"organizations", "system", "admin", "default", "information_schema"}


class InvalidName(ValueError):
    pass


def validate_org_slug(slug: str) -> str:
    if not isinstance(slug, str) or not _SLUG.match(slug) or slug in _RESERVED_SLUGS or "__" in slug:
        raise InvalidName(
            f"invalid org slug {slug!r}: use 3-30 characters, lower-case letters, digits and single "
            "underscores, starting with a letter (e.g. 'acme' or 'acme_eu')"
        )
    return slug


def org_dataset(slug: str) -> str:
    """The dataset that holds one org's tables."""
    return f"{validate_org_slug(slug)}_prod"


def identifier(name: str) -> str:
    """Check a dataset/table/column name before it is placed in SQL text."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise InvalidName(f"invalid SQL identifier {name!r}")
    return name


def table_ref(dataset: str, table: str) -> str:
    """`dataset.table` in BigQuery quoting, both parts validated."""
    return f"`{identifier(dataset)}.{identifier(table)}`"
