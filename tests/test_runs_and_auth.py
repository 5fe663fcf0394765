"""Run records under concurrency, the run state machine, API key storage."""
from __future__ import annotations

import datetime as dt
import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import runs
from shared.auth import check_key, create_key


def _create(wh, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 5)):
    return runs.create_run(wh, org_slug="acme", pipeline_id="genai/payg/openai", credential_id="c1",
                           start_date=start, end_date=end, trigger="test")


def test_only_one_of_many_concurrent_requests_for_a_slice_is_queued(rt, acme):
    def attempt(_):
        try:
            return _create(rt.warehouse)
        except runs.SliceBusy:
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(16)))
    assert len([r for r in results if r]) == 1
    assert len(runs.list_runs(rt.warehouse, "acme")) == 1


def test_terminal_runs_never_change_again(rt, acme):
    run_id = _create(rt.warehouse)
    assert runs.mark_running(rt.warehouse, run_id, runs.new_token(), 60)
    assert not runs.mark_running(rt.warehouse, run_id, runs.new_token(), 60)  # duplicate dispatch
    assert runs.finish(rt.warehouse, run_id, "succeeded", rows_converted=3, warnings=["w"])
    assert not runs.finish(rt.warehouse, run_id, "failed", error="late duplicate")
    view = runs.public_view(runs.get_run(rt.warehouse, "acme", run_id))
    assert view["status"] == "succeeded" and view["warnings"] == ["w"] and view["error"] is None
    # the slice is free again once the run ended
    cancelled = _create(rt.warehouse)
    runs.cancel(rt.warehouse, "acme", cancelled, by="test")
    assert not runs.finish(rt.warehouse, cancelled, "succeeded")
    assert not runs.mark_running(rt.warehouse, cancelled, runs.new_token(), 60)
    assert runs.get_run(rt.warehouse, "acme", cancelled)["status"] == "cancelled"
    assert _create(rt.warehouse)


def test_keys_are_stored_hashed_and_bound_to_one_org(rt, acme):
    key = create_key(rt.warehouse, "acme")
    rows = rt.warehouse.query("SELECT * FROM `organizations.org_api_keys`")
    assert len(rows) == 1
    stored = rows[0]
    assert key not in str(stored.values())
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert check_key(rt.warehouse, key).org_slug == "acme"
    assert not check_key(rt.warehouse, key[:-1] + ("A" if key[-1] != "A" else "B")).ok
    assert not check_key(rt.warehouse, None).ok


def test_credentials_are_encrypted_at_rest(rt, acme):
    from shared.secrets import CredentialInvalid, CredentialStore

    store = CredentialStore(rt.warehouse, rt.settings)
    cid = store.add("acme", "openai", {"admin_key": "sk-admin-SECRET123"})
    raw = rt.warehouse.query("SELECT * FROM `organizations.org_credentials`")[0]
    assert "SECRET123" not in str(raw.values())
    assert store.load("acme", "openai", cid)["admin_key"] == "sk-admin-SECRET123"
    with pytest.raises(CredentialInvalid, match="admin_key"):
        store.add("acme", "openai", {"base_url": "https://api.openai.com/v1"})
    with pytest.raises(CredentialInvalid, match="base_url"):
        store.add("acme", "openai", {"admin_key": "k", "base_url": "ftp://x"})


@pytest.mark.parametrize("kind, doc, fragment", [
    ("aws", {"prefix": "cur/"}, "bucket"),
    ("oci", {"tenancy_ocid": "ocid1.tenancy..x", "region": "us-ashburn-1"}, "fingerprint"),
    ("azure", {}, "resource_ids"),
    ("deepseek", {"api_key": "k"}, "usage_csv_dir"),
    ("gcp", {"source": "ftp://x"}, "source must be"),
    ("aws", {"bucket": "b", "endpoint_url": "not a url"}, "endpoint_url"),
])
def test_credentials_of_every_kind_are_checked_before_they_are_stored(rt, acme, kind, doc, fragment):
    from shared.secrets import CredentialInvalid, CredentialStore

    with pytest.raises(CredentialInvalid, match=fragment):
        CredentialStore(rt.warehouse, rt.settings).add("acme", kind, doc)
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `organizations.org_credentials`") == [{"n": 0}]
