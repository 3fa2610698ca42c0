"""Whether a stored Parquet part already holds a batch's bytes (its listing's ETag alone), and its codec."""

import datetime
import decimal
import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq

from include.statistics_export.parquet import SCHEMA, render_parquet, same_bytes

BODY = b"PAR1 rows PAR1"
MD5 = hashlib.md5(BODY).hexdigest()


def test_a_single_put_etag_is_the_md5_of_the_bytes_quoted_or_not():
    assert same_bytes(f'"{MD5}"', BODY) and same_bytes(MD5, BODY)


def test_other_bytes_a_multipart_etag_or_no_object_mean_the_part_is_written():
    assert not same_bytes(f'"{MD5}"', BODY + b" ")
    assert not same_bytes(f'"{MD5}-2"', BODY)
    assert not same_bytes(None, BODY) and not same_bytes("", BODY)


def small_and_large_tables():
    def table(rows: int) -> pa.Table:
        def column(field) -> list:
            kind = field.type
            if pa.types.is_list(kind):
                return [[f"gid://shopify/MediaImage/{n}"] for n in range(rows)]
            if pa.types.is_string(kind):
                return [f"{field.name}-{n}" for n in range(rows)]
            if pa.types.is_date(kind):
                return [datetime.date(2026, 12, 2)] * rows
            if pa.types.is_decimal(kind):
                return [decimal.Decimal(n) / 100 for n in range(rows)]
            if pa.types.is_floating(kind):
                return [n / 100 for n in range(rows)]
            return list(range(rows))

        return pa.table({field.name: column(field) for field in SCHEMA}, schema=SCHEMA)

    return table(31), table(32)


def test_a_small_shops_part_is_snappy_a_batch_zstd_and_both_read_back_the_same_rows():
    for table, codec in zip(small_and_large_tables(), ("SNAPPY", "ZSTD")):
        body = render_parquet(table)
        assert body == render_parquet(table)  # the same rows, the same bytes: a rerun skips the part
        metadata = pq.ParquetFile(io.BytesIO(body)).metadata
        assert {metadata.row_group(0).column(c).compression for c in range(metadata.num_columns)} == {codec}
        assert pq.read_table(io.BytesIO(body)).equals(table)
