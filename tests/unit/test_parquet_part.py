"""Whether a stored Parquet part already holds a batch's bytes, from its listing's ETag alone."""

import hashlib

from include.statistics_export.parquet import same_bytes

BODY = b"PAR1 rows PAR1"
MD5 = hashlib.md5(BODY).hexdigest()


def test_a_single_put_etag_is_the_md5_of_the_bytes_quoted_or_not():
    assert same_bytes(f'"{MD5}"', BODY) and same_bytes(MD5, BODY)


def test_other_bytes_a_multipart_etag_or_no_object_mean_the_part_is_written():
    assert not same_bytes(f'"{MD5}"', BODY + b" ")
    assert not same_bytes(f'"{MD5}-2"', BODY)
    assert not same_bytes(None, BODY) and not same_bytes("", BODY)
