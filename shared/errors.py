"""The errors a user sees, and the text a failed run shows them.

Extractors raise `ExtractError` (and `CredentialError` for a refused key) with a message that says what to do next;
`readable` turns any exception into the run's error text. Both the jobs and the library's own layers (HTTP client,
run lifecycle, conversion) use them, so they live here, below every entry point.
"""
from __future__ import annotations

from shared.warehouse.base import WarehouseError


class ExtractError(RuntimeError):
    """A provider or source problem, with a message that tells the user what to do next."""


class CredentialError(ExtractError):
    """The credential was refused (expired, revoked, wrong kind of key)."""


def readable(e: BaseException, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """The message a user sees for a failed run: what went wrong, never a secret or a traceback. `secrets`
    (the run's credential material) are cut out whichever library put them in the message."""
    # imported here: shared.http raises these errors, so it imports this module first
    from shared.http import scrub_text

    if isinstance(e, (ExtractError, WarehouseError, LookupError, ValueError)):
        text = str(e)
    else:
        text = f"internal error ({type(e).__name__}): {e}. The job log has the details."
    return scrub_text(text, list(secrets)) if secrets else text
