"""One cloud pipeline's slice helpers bound to its path and credential id (tests/cloud_kit.py, curried)."""
from __future__ import annotations

from functools import partial

from tests import cloud_kit as kit


def bound(pipeline_id: str, credential_id: str):
    """land_and_convert(wh, credential, start, end, run_id="run_a"), focus_by_period(wh), source_by_period(wh)."""
    def land_and_convert(wh, credential, start, end, run_id="run_a"):
        return kit.land_and_convert(wh, pipeline_id, credential_id, credential, start, end, run_id)

    return (land_and_convert, partial(kit.focus_by_period, pipeline_id=pipeline_id),
            partial(kit.source_by_period, pipeline_id=pipeline_id))
