"""BigQueryWarehouse.stream_arrow: the result read page by page (tabledata.list pages of `batch_rows`), one Arrow
batch per page as it is consumed; an empty result keeps the query's schema, typed as the tables are."""
from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
from google.cloud import bigquery

from shared.warehouse.bigquery import BigQueryWarehouse
from tests.test_bigquery_backend import PROJECT, FakeClient, FakeQueryJob


class PagedRows(list):
    """A RowIterator's paging surface: pages fetched only when iterated."""

    def __init__(self, pages, schema, fetched):
        super().__init__()
        self.pages, self.schema, self.fetched = pages, schema, fetched

    def to_arrow_iterable(self, bqstorage_client=None):
        assert bqstorage_client is None
        for page in self.pages:
            self.fetched.append(page.num_rows)
            yield page


class PagedJob(FakeQueryJob):
    def __init__(self, sql, config, pages, schema, fetched):
        super().__init__(sql, config)
        self.pages, self.schema, self.fetched, self.page_size = pages, schema, fetched, None

    def result(self, **kwargs):
        super().result(**kwargs)  # the bounded-wait checks
        self.page_size = kwargs.get("page_size")
        return PagedRows(self.pages, self.schema, self.fetched)


SCHEMA = [bigquery.SchemaField("BilledCost", "NUMERIC"), bigquery.SchemaField("ChargePeriodStart", "TIMESTAMP"),
          bigquery.SchemaField("n", "INTEGER", mode="REQUIRED")]


def _wh(pages):
    fake, fetched = FakeClient(), []
    fake.responder = lambda sql, config: PagedJob(sql, config, pages, SCHEMA, fetched)
    return BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30), fake, fetched


def test_pages_are_fetched_as_the_reader_is_consumed():
    pages = [pa.record_batch({"BilledCost": pa.array([Decimal(i)] * 3, pa.decimal128(38, 9))}) for i in range(4)]
    wh, fake, fetched = _wh(pages)
    reader = wh.stream_arrow("SELECT BilledCost FROM `acme_prod.cost_data_standard_1_3` WHERE x_org_slug = @org",
                             {"org": "acme"}, batch_rows=3)
    assert fake.queries[0].page_size == 3
    assert fetched == [3]  # only the first page, for the schema
    first = reader.read_next_batch()
    assert first.column(0).to_pylist() == [Decimal(0)] * 3 and fetched == [3]
    assert [b.column(0)[0].as_py() for b in reader] == [Decimal(1), Decimal(2), Decimal(3)]
    assert fetched == [3, 3, 3, 3]


def test_an_empty_result_has_the_querys_schema_typed_as_the_tables():
    wh, _, _ = _wh([])
    reader = wh.stream_arrow("SELECT BilledCost, ChargePeriodStart, n FROM t")
    assert reader.schema == pa.schema([pa.field("BilledCost", pa.decimal128(38, 9)),
                                       pa.field("ChargePeriodStart", pa.timestamp("us", tz="UTC")),
                                       pa.field("n", pa.int64(), nullable=False)])
    assert reader.read_all().num_rows == 0
