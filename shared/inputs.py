"""Limits on what a client may send: body size, JSON shape and date range. Every HTTP route reads its
body through here, so a huge, deep or malformed body is a 4xx in one way everywhere.

- Size: `MAX_BODY_BYTES` (1 MiB; Stripe events and API bodies are a few KiB). A declared
  Content-Length over it is refused before anything is read (`check_length`); a chunked body is
  read at most one byte past the limit (`read_bounded`), so the refusal never costs more memory
  than the limit.
- JSON: `parse_json` refuses nesting deeper than `MAX_JSON_DEPTH` before the parser sees the text.
  Python's parser recurses once per level and fails with RecursionError near 1000 levels (how
  deep depends on the caller's stack); a fixed, small bound is the same everywhere and keeps deep
  structures away from code that walks them again (json.dumps, the warehouse's JSON columns).
- Dates: every date a client gives lies in [`MIN_DATE`, `MAX_DATE`]. Nothing here bills before
  2006 (the first cloud bill: AWS S3), and stopping at 9998-12-31 leaves room for the "next day"
  and "next cycle" arithmetic that would overflow past year 9999.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 64
MIN_DATE = dt.date(2006, 1, 1)
MAX_DATE = dt.date(9998, 12, 31)

# A JSON string (escapes included) or a bracket: brackets inside strings are not nesting.
_NESTING = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class FieldInvalid(ValueError):
    """A document's field is invalid: `field` names it, so the API answers 400 naming the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BodyTooLarge(ValueError):
    def __init__(self, limit: int = MAX_BODY_BYTES):
        super().__init__(f"the request body is larger than {limit} bytes")


class BadJson(ValueError):
    """Not JSON, or nested deeper than MAX_JSON_DEPTH."""


class DateOutOfRange(ValueError):
    def __init__(self, field: str, value: dt.date):
        super().__init__(f"{field} {value.isoformat()} is outside {MIN_DATE.isoformat()}..{MAX_DATE.isoformat()}")
        self.field = field


def check_length(content_length: Any, limit: int = MAX_BODY_BYTES) -> None:
    """Refuse a declared Content-Length over the limit (before reading the body)."""
    if content_length in (None, ""):
        return
    try:
        n = int(content_length)
    except (TypeError, ValueError):
        raise BodyTooLarge(limit) from None  # a length we cannot read is not one we will trust
    if n > limit:
        raise BodyTooLarge(limit)


def read_bounded(stream, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read a body of unknown length (chunked) up to the limit; BodyTooLarge past it."""
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)


def parse_json(raw: bytes | str, what: str = "the request body") -> Any:
    """JSON text -> Python value, refusing malformed text and nesting deeper than MAX_JSON_DEPTH."""
    data = raw.encode() if isinstance(raw, str) else raw
    depth = 0
    for m in _NESTING.finditer(data):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise BadJson(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        elif token in (b"]", b"}"):
            depth -= 1
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError cannot happen below the bound; kept as a guard
        raise BadJson(f"{what} is not valid JSON") from None


def check_date(field: str, value: dt.date) -> dt.date:
    if not MIN_DATE <= value <= MAX_DATE:
        raise DateOutOfRange(field, value)
    return value
