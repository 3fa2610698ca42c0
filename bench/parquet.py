"""The Parquet copy measured on the bench's world: bytes per variant against the CSV and JSON, the peak RSS
of a 100,000-variant shop's Parquet write, and reading one shop's 30 days from Parquet against one GET per
variant and day of the CSVs on the local S3 server.

    .venv/bin/python -m bench.parquet                       # 100,000 variants; the read test on 300 x 30 days
    .venv/bin/python -m bench.parquet --variants 10000 --read-variants 100

Prints its figures, the last line one JSON object. The RSS figures come from a fresh child process each
(ru_maxrss), so the world's own memory is measured apart from what the write adds.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import random
import resource
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bench.world import SHOP_DOMAIN, SHOP_ID, build_world
from include.statistics_export.catalog import ImageBackup, Product, Variant
from include.statistics_export.formats import VariantExport, render_files
from include.statistics_export.keys import PARQUET_ROOT, export_key, parquet_part_key
from include.statistics_export.metrics import VariantMetrics
from include.statistics_export.parquet import SCHEMA, parquet_table, render_parquet
from local_stack.services import S3_KEY_ID, S3_REGION, S3_SECRET, create_bucket, s3_client, s3_server

BATCH = 500
DAY = date(2026, 11, 21)


def exports_of(variants: int, day: date, seed: int = 3) -> Iterator[list[VariantExport]]:
    """Yield the bench world's variants as export records, one batch of about BATCH variants at a time."""
    world = build_world(variants, max(1, round(variants * 0.3)), day, seed)
    rng = random.Random(seed)
    batch: list[VariantExport] = []
    for sandbox_product in world.shop.products:
        product = Product(
            gid=f"gid://shopify/Product/{sandbox_product.id}",
            product_id=str(sandbox_product.id),
            title=sandbox_product.title,
            handle=f"product-{sandbox_product.id}",
            status="ACTIVE",
        )
        media = sandbox_product.media[0]
        key = f"{SHOP_ID}/products/{sandbox_product.id}/media/{media.id}.jpg"
        image = ImageBackup(
            f"gid://shopify/MediaImage/{media.id}",
            f"https://cdn.shopify.com/s/files/1/{media.id}/{media.filename}",
            key,
            f"https://files.example.com/{key}",
            datetime(2026, 11, 1, tzinfo=timezone.utc),
        )
        for v in sandbox_product.variants:
            impressions = rng.choice([0, 0, 3, 8, 20, 45])
            carts = rng.randint(0, impressions)
            orders = rng.randint(0, carts)
            metrics = VariantMetrics(
                impressions, carts, orders, Decimal(rng.randint(0, 20000)) / 100 if orders else Decimal("0.00")
            )
            variant = Variant(f"gid://shopify/ProductVariant/{v.id}", str(v.id), v.title, v.sku, v.price)
            batch.append(VariantExport(day, SHOP_ID, SHOP_DOMAIN, product, variant, metrics, (image,), "USD"))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure_write(args: tuple[int, str]) -> dict[str, Any]:
    """In a fresh process: the peak RSS of building the world, then of writing its Parquet as `mode` does."""
    variants, mode = args
    batches = exports_of(variants, DAY)
    first = next(batches)  # the world is built by now
    world_rss = peak_rss_mb()
    started = time.monotonic()
    written = rows = 0
    if mode == "part-per-batch":  # what the export does: one part per batch task
        for batch in _chain(first, batches):
            body = render_parquet(parquet_table(batch))
            written += len(body)
            rows += len(batch)
    else:  # the alternative: one file per shop and day, streaming a row group per batch
        sink = io.BytesIO()
        with pq.ParquetWriter(sink, SCHEMA, compression="zstd") as writer:
            for batch in _chain(first, batches):
                writer.write_table(parquet_table(batch))
                rows += len(batch)
        written = len(sink.getvalue())
    return {
        "mode": mode,
        "rows": rows,
        "bytes": written,
        "seconds": round(time.monotonic() - started, 2),
        "world_rss_mb": round(world_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _chain(first: list[VariantExport], rest: Iterator[list[VariantExport]]) -> Iterator[list[VariantExport]]:
    yield first
    yield from rest


def sizes(variants: int) -> dict[str, float]:
    """Bytes per variant of the CSV, the JSON and the Parquet parts (batches of BATCH)."""
    csv_bytes = json_bytes = parquet_bytes = count = 0
    for batch in exports_of(variants, DAY):
        for record in batch:
            files = render_files(record)
            csv_bytes += len(files.csv)
            json_bytes += len(files.json)
        parquet_bytes += len(render_parquet(parquet_table(batch)))
        count += len(batch)
    return {
        "csv_bytes_per_variant": round(csv_bytes / count, 1),
        "json_bytes_per_variant": round(json_bytes / count, 1),
        "parquet_bytes_per_variant": round(parquet_bytes / count, 1),
        "csv_json_over_parquet": round((csv_bytes + json_bytes) / parquet_bytes, 1),
    }


def read_test(variants: int, days: int, threads: int) -> dict[str, float]:
    """Upload one shop's `days` days (CSV per variant, Parquet per batch), then time reading them back."""
    with s3_server() as endpoint:
        bucket = "bench-parquet"
        create_bucket(endpoint, bucket)
        client = s3_client(endpoint)
        csv_keys: list[str] = []
        uploads: list[tuple[str, bytes]] = []
        for n in range(days):
            day = DAY - timedelta(days=n)
            batches = list(exports_of(variants, day))
            for index, batch in enumerate(batches, 1):
                uploads.append(
                    (parquet_part_key(SHOP_ID, day, index, len(batches)), render_parquet(parquet_table(batch)))
                )
                for record in batch:
                    key = export_key(SHOP_ID, record.product.product_id, record.variant.variant_id, day, "csv")
                    uploads.append((key, render_files(record).csv))
                    csv_keys.append(key)
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=bucket, Key=item[0], Body=item[1]), uploads))

        started = time.monotonic()
        csv_total = sum(len(client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in csv_keys)
        csv_sequential = time.monotonic() - started
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda k: client.get_object(Bucket=bucket, Key=k)["Body"].read(), csv_keys))
        csv_parallel = time.monotonic() - started

        scheme, _, address = endpoint.partition("://")
        fs = pafs.S3FileSystem(
            access_key=S3_KEY_ID, secret_key=S3_SECRET, region=S3_REGION, endpoint_override=address, scheme=scheme
        )
        started = time.monotonic()
        dataset = ds.dataset(f"{bucket}/{PARQUET_ROOT}", filesystem=fs, format="parquet", partitioning="hive")
        table = dataset.to_table(filter=ds.field("shop") == SHOP_ID)
        parquet_seconds = time.monotonic() - started
        assert table.num_rows == len(csv_keys), (table.num_rows, len(csv_keys))
    return {
        "read_variants": variants,
        "read_days": days,
        "csv_gets": len(csv_keys),
        "csv_bytes_read": csv_total,
        "csv_read_seconds_sequential": round(csv_sequential, 2),
        f"csv_read_seconds_{threads}_threads": round(csv_parallel, 2),
        "parquet_read_seconds": round(parquet_seconds, 2),
        "parquet_rows": table.num_rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.parquet", description=__doc__)
    p.add_argument("--variants", type=int, default=100_000, help="the shop written to Parquet (RSS, sizes)")
    p.add_argument("--read-variants", type=int, default=300, help="the shop read back over --days days")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--threads", type=int, default=16, help="threads of the parallel CSV GETs")
    args = p.parse_args(argv)

    report: dict[str, Any] = {"variants": args.variants, "batch_variants": BATCH}
    report.update(sizes(min(args.variants, 10_000)))
    print(json.dumps(report))
    context = multiprocessing.get_context("spawn")
    for mode in ("part-per-batch", "single-file-row-groups"):
        with context.Pool(1) as pool:
            figures = pool.map(_measure_write, [(args.variants, mode)])[0]
        print(json.dumps(figures))
        report[mode] = figures
    report.update(read_test(args.read_variants, args.days, args.threads))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
