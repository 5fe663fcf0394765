"""Definitions read once from a folder (table schemas, SQL procedures), looked up by name."""
from __future__ import annotations

from pathlib import Path


class Catalog(dict):
    """name -> definition; a name that is not there is a KeyError saying what was looked for and where,
    so a typo in a table or procedure name reads as one."""

    def __init__(self, what: str, where: Path) -> None:
        super().__init__()
        self.what, self.where = what, where

    def __missing__(self, name: str):
        raise KeyError(f"no {self.what} {name!r} in {self.where}")
