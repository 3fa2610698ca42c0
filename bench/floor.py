"""The floor F: what the store and Shopify's throttle allow, measured in the same run.

(a) the export's PUTs (same count, same sizes) written straight through boto3 with 64 concurrent
connections to the same store through the same latency proxy; (b) the Shopify cost the export was
charged divided by the restore rate. F is the larger.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

from local_stack.services import S3_KEY_ID, S3_REGION, S3_SECRET

FLOOR_CONNECTIONS = 64


def store_client(endpoint: str, connections: int):
    """Return a boto3 S3 client configured as the R2 hook is, with ``connections`` pooled connections."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        config=Config(
            max_pool_connections=connections,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


def object_sizes(endpoint: str, bucket: str, prefix: str = "") -> list[int]:
    """Return the size of every object under ``prefix`` (what the export wrote)."""
    client = store_client(endpoint, 4)
    sizes = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes.extend(item["Size"] for item in page.get("Contents", ()))
    return sizes


def put_floor(endpoint: str, bucket: str, sizes: list[int], connections: int = FLOOR_CONNECTIONS) -> float:
    """Write one object per size with ``connections`` threads and pooled connections; return the seconds."""
    client = store_client(endpoint, connections)
    client.head_bucket(Bucket=bucket)  # opens the client's first connection outside the timing
    bodies = {size: b"x" * size for size in set(sizes)}

    def put(item: tuple[int, int]) -> None:
        n, size = item
        client.put_object(Bucket=bucket, Key=f"bench-floor/{n:07d}", Body=bodies[size])

    started = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(put, enumerate(sizes)))
    return time.monotonic() - started


def throttle_floor(cost_charged: float, restore_rate: float) -> float:
    """Return the seconds Shopify's bucket needs to restore the points charged."""
    return cost_charged / restore_rate
