"""The floor F: what the store, Shopify's throttle and the image downloads allow, measured in the same run.

(a) the export's PUTs (same count, same sizes) written through the leanest client, obstore's async API
with 64 requests in flight, to the same store (through the same latency proxy, if any); (b) the Shopify
cost the export was charged divided by the restore rate; (c) the images the export copied, downloaded
again from the sandbox's CDN (same latency) with as many in flight as the export (batch processes x
STATISTICS_EXPORT_IMAGE_IN_FLIGHT), bytes read and dropped. F is the largest.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import obstore
import psycopg
import requests
from botocore.config import Config
from requests.adapters import HTTPAdapter

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


def put_floor(sizes: list[int], concurrency: int = FLOOR_CONNECTIONS) -> float:
    """Write one object per size through obstore's async API, ``concurrency`` at once; return the seconds.

    The store is the R2 hook's own obstore client, built from the ``r2_default`` connection in the environment.
    """
    from export_hooks.r2 import R2Hook

    store = R2Hook(max_pool_connections=concurrency).store
    bodies = {size: b"x" * size for size in set(sizes)}

    async def put_all() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def put(n: int, size: int) -> None:
            async with gate:
                await obstore.put_async(store, f"bench-floor/{n:07d}", bodies[size])

        await asyncio.gather(*(put(n, size) for n, size in enumerate(sizes)))

    obstore.put(store, "bench-floor/warm-up", b"x")  # the first connection, outside the timing
    started = time.monotonic()
    asyncio.run(put_all())
    return time.monotonic() - started


def boto3_put_floor(endpoint: str, bucket: str, sizes: list[int], connections: int = FLOOR_CONNECTIONS) -> float:
    """Write one object per size through boto3 with ``connections`` threads and pooled connections; return the seconds.

    The floor of the bench before obstore (issue 3), kept for comparison on the same store.
    """
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


def image_floor(app_db_url: str, shop_id: str, threads: int) -> tuple[float, int]:
    """Download every image the export backed up again from the sandbox's CDN with ``threads`` threads.

    Return the seconds and the bytes read: the time the export's image copies cannot go below at its concurrency.
    """
    with psycopg.connect(app_db_url) as conn:
        urls = [
            row[0] for row in conn.execute('SELECT "shopifyUrl" FROM "ProductImageBackup" WHERE shop = %s', (shop_id,))
        ]
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=threads))
    session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=threads))

    def fetch(url: str) -> int:
        response = session.get(url, timeout=30)
        response.raise_for_status()
        return len(response.content)

    started = time.monotonic()
    with session, ThreadPoolExecutor(threads) as pool:
        read = sum(pool.map(fetch, urls))
    return time.monotonic() - started, read
