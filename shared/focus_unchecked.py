"""The FOCUS 1.3 CostAndUsage requirements the gate (shared.focus) does not check, each with why:
`UNCHECKED`, (id, column, requirement, why) in the order of `focus_unchecked.yml`, where they are kept
as data (the file says how).
"""
from __future__ import annotations

from pathlib import Path

import yaml

UNCHECKED_PATH = Path(__file__).with_suffix(".yml")


def _load() -> tuple[tuple[str, str, str, str], ...]:
    doc = yaml.safe_load(UNCHECKED_PATH.read_text())
    return tuple((u["id"], u["column"], u["requirement"], u["why"].format_map(doc["reasons"]))
                 for u in doc["unchecked"])


UNCHECKED = _load()
