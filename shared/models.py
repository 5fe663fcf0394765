"""Model id normalisation shared by every GenAI provider.

`model_family` drops a trailing *dated snapshot* suffix so usage of `gpt-4o-2024-08-06` and
`gpt-4o-2024-11-20` groups (and prices, when there is no exact entry) under `gpt-4o`:

    gpt-4o-2024-08-06            -> gpt-4o            (-YYYY-MM-DD, OpenAI)
    gpt-4-0613                   -> gpt-4             (-MMDD, older OpenAI)
    gpt-3.5-turbo-16k-0613       -> gpt-3.5-turbo-16k
    claude-3-5-sonnet-20241022   -> claude-3-5-sonnet (-YYYYMMDD, Anthropic)
    claude-3-5-sonnet-v2@20241022-> claude-3-5-sonnet-v2 (@YYYYMMDD, Vertex partner models)
    gemini-2.5-pro-preview-06-05 -> gemini-2.5-pro-preview (-MM-DD)

Only suffixes that read as a real calendar date are removed (month 01-12, day 01-31), so ids such
as `gpt-4-32k`, `o3-mini`, `gpt-4-1106-preview` (date not trailing) or `gemini-1.5-pro-002` (a
version, not a date) stay as they are. Matching is case-insensitive; the result keeps the input's
case and surrounding whitespace is trimmed.
"""
from __future__ import annotations

import re

_MM = r"(?:0[1-9]|1[0-2])"
_DD = r"(?:0[1-9]|[12][0-9]|3[01])"
_YYYY = r"(?:19|20)[0-9]{2}"

_DATED_SUFFIX = re.compile(
    rf"(?:"
    rf"[-_@]{_YYYY}-{_MM}-{_DD}"  # -2024-08-06
    rf"|[-_@]{_YYYY}{_MM}{_DD}"  # -20241022 / @20241022
    rf"|-{_MM}-{_DD}"  # -06-05
    rf"|-{_MM}{_DD}"  # -0613
    rf")$"
)


def model_family(model: str) -> str:
    """`model` without a trailing dated snapshot suffix (see module docstring)."""
    m = (model or "").strip()
    stripped = _DATED_SUFFIX.sub("", m)
    return stripped if stripped else m
