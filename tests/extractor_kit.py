"""GenAI extractor test helpers (each extractor against its loopback stub): a sleep that records its waits, and the
refusals every extractor makes alike: a credential of the wrong shape, a secret the provider refuses, a 400."""
from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from shared import schemas


class Sleeps(list):
    """A `sleep` for the extractor's retries: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def admin_key_ctx(pipeline_id: str, stub, start, end, key: str) -> ExtractContext:
    """A run of `pipeline_id` for org acme over start..end with an admin `key`, against the stub."""
    return ExtractContext(org_slug="acme", pipeline_id=pipeline_id, credential_id="cred-1", run_id="run-1",
                          start_date=start, end_date=end, credential={"admin_key": key, "base_url": stub.base_url})


def rows(out: dict, table: str) -> list[dict]:
    """The rows of `table` in an extractor's output, every batch in order."""
    return [r for b in out[table] for r in b.to_pylist()]


def assert_batches_in_table_schemas(out: dict) -> None:
    """`out` has usage and provider-cost batches, every one in its table's declared Arrow schema, the money as
    NUMERIC's decimal128(38, 9)."""
    for table in ("genai_usage_daily", "genai_provider_costs_daily"):
        assert out[table], table
        want = schemas.get(table).arrow_schema(include_lineage=False)
        assert all(b.schema.equals(want) for b in out[table])
    assert out["genai_provider_costs_daily"][0].schema.field("amount").type == pa.decimal128(38, 9)


def assert_credential_refused(extract, ctx, stub, credential: dict, match: str) -> CredentialError:
    """`ctx` with `credential` (and the stub's base_url) is a CredentialError matching `match`, before any request;
    the error, for what else its message must say."""
    ctx.credential = {**credential, "base_url": stub.base_url}
    with pytest.raises(CredentialError, match=match) as err:
        extract(ctx)
    assert stub.requests == []
    return err.value


def refused_secret_message(extract, ctx, stub, caplog, secret: str) -> str:
    """`ctx` holds `secret`, which the stub refuses: a CredentialError after that one request (not retried) that
    shows the secret neither in its message nor in the log; its message, for the provider's own wording."""
    sleeps = Sleeps()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(CredentialError) as err:
            extract(ctx, sleep=sleeps)
    msg = str(err.value)
    assert secret not in msg and secret not in caplog.text
    assert sleeps == [] and len(stub.requests) == 1
    return msg


def assert_provider_message_kept(extract, ctx, stub, path: str, message: str) -> None:
    """The stub answers `path` with a 400 and `message`: an ExtractError, not a credential one, that quotes the
    provider's message; not retried."""
    stub.fail_next(status=400, message=message, path=path)
    sleeps = Sleeps()
    with pytest.raises(ExtractError) as err:
        extract(ctx, sleep=sleeps)
    assert not isinstance(err.value, CredentialError)
    assert "HTTP 400" in str(err.value) and message in str(err.value)
    assert sleeps == []
