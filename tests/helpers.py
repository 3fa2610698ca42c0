"""Small builders shared by the integration tests."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timezone

from export_hooks import image_cdn
from export_hooks.image_cdn import ImageClient, ImageRules
from include.statistics_export import tasks
from include.statistics_export.day_claims import DayWriter
from include.statistics_export.handoffs import BatchPlan, BatchResult, CatalogRead
from include.statistics_export.settings import IMAGE_HOSTS, IMAGE_MAX_BYTES, Settings
from include.statistics_export.settings import load as load_settings
from include.statistics_export.shops import shop_credentials
from local_stack.demo_world import client_of, insert_shop
from local_stack.services import read_bucket
from shopify_sandbox.world import SandboxMedia, SandboxProduct, SandboxShop, SandboxVariant

DAY = date(2026, 11, 21)
# The run id the tests export under: tasks called outside a DAG run claim their day for it first.
TEST_RUN = "tests"


def current_settings(**changes) -> Settings:
    """Return what a task would read from the environment now, with the small thread pool a test needs."""
    return replace(load_settings(), concurrency=4, **changes)


OLD = datetime(2025, 1, 1, tzinfo=timezone.utc)


def product(
    pid: int,
    variants: int = 1,
    images: int = 1,
    *,
    own_media: dict[int, list[int]] | None = None,
    created_at: datetime = OLD,
    extra_media: list[SandboxMedia] | None = None,
) -> SandboxProduct:
    """Build a product with ``variants`` variants (ids pid*1000+n) and ``images`` images (ids pid*100+n)."""
    media = [SandboxMedia(id=pid * 100 + n, filename=f"img{n}.jpeg") for n in range(1, images + 1)]
    media += extra_media or []
    own_media = own_media or {}
    return SandboxProduct(
        id=pid,
        title=f"Product {pid}",
        created_at=created_at,
        media=media,
        variants=[
            SandboxVariant(id=pid * 1000 + n, title=f"V{n}", sku=f"SKU-{pid}-{n}", media_ids=own_media.get(n, []))
            for n in range(1, variants + 1)
        ],
    )


def register_shop(
    db,
    sandbox,
    shop_id: str,
    products: list[SandboxProduct],
    *,
    domain: str | None = None,
    token: str | None = None,
    active: bool = True,
    linked: bool = True,
    restore_rate: float = 100.0,
    primary_domain: str | None = None,
    currency: str = "USD",
    expires: datetime | None = None,
    refresh_token: str | None = None,
    mode: str = "PUBLIC",
) -> SandboxShop:
    """Put a shop in the sandbox and in the app database (credential + offline session).

    With ``expires`` (aware UTC) the shop is on expiring offline tokens: its stored access token expires then (in the
    past: it has expired) and it holds a refresh token; without, its token never expires.
    """
    client_id, client_secret = client_of(shop_id)
    shop = SandboxShop(
        domain=api_domain(shop_id),
        access_token=token or f"shpat_secret_{shop_id}",
        products=products,
        restore_rate=restore_rate,
        primary_domain=primary_domain,
        currency=currency,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=(refresh_token or f"shprt_secret_{shop_id}") if expires else None,
        access_token_expires=expires,
    )
    sandbox.add_shop(shop)
    with db.cursor() as cur:
        insert_shop(
            cur,
            shop_id,
            domain or shop.domain,
            shop.domain,
            shop.access_token,
            active=active,
            linked=linked,
            refresh_token=shop.refresh_token,
            expires=expires,
            mode=mode,
        )
        cur.execute(
            'INSERT INTO "ABTest" (id, shop, name, "productId") VALUES (%s, %s, %s, %s)',
            (f"test_{shop_id}", shop_id, "test", "0"),
        )
    db.commit()
    return shop


def fast_shopify_retries(monkeypatch, attempts: int) -> None:
    """Make the Shopify hooks (and the token endpoint) give up after ``attempts`` tries, quickly."""
    shopify = json.loads(os.environ["AIRFLOW_CONN_SHOPIFY_DEFAULT"])
    shopify["extra"].update({"max_attempts": attempts, "retry_wait_base": 0.01, "retry_wait_max": 0.02})
    monkeypatch.setenv("AIRFLOW_CONN_SHOPIFY_DEFAULT", json.dumps(shopify))


def api_domain(shop_id: str) -> str:
    """Return the myshopify domain ``register_shop`` serves a shop on."""
    return f"{shop_id.replace('_', '-')}.myshopify.com"


def session_row(db, shop_id: str) -> dict:
    """Return the shop's linked session, every column, as the app reads it (JSON of the row)."""
    with db.cursor() as cur:
        cur.execute('SELECT row_to_json(s)::text FROM "Session" s WHERE "shopId" = %s', (shop_id,))
        (text,) = cur.fetchone()
    db.commit()
    return json.loads(text)


def register_fleet(db, sandbox, count: int, *, prefix: str = "fleet") -> list[str]:
    """Put ``count`` small shops (one product of one variant each, no image) in the sandbox and the app
    database at once; returns their ids."""
    shop_ids = [f"{prefix}_{n:05d}" for n in range(count)]
    with db.cursor() as cur:
        for n, shop_id in enumerate(shop_ids):
            api_domain = f"{shop_id.replace('_', '-')}.myshopify.com"
            shop = SandboxShop(
                domain=api_domain,
                access_token=f"shpat_{shop_id}",
                products=[product(n + 1, variants=1, images=0)],
            )
            sandbox.add_shop(shop)
            insert_shop(cur, shop_id, api_domain, api_domain, shop.access_token)
        cur.executemany(
            'INSERT INTO "ABTest" (id, shop, name, "productId") VALUES (%s, %s, %s, %s)',
            [(f"test_{shop_id}", shop_id, "test", "0") for shop_id in shop_ids],
        )
    db.commit()
    return shop_ids


def add_event(db, shop_id: str, variant_id: str, event_type: str, at: datetime, revenue=None, event_id=None) -> None:
    """Insert one event of the shop's test."""
    with db.cursor() as cur:
        cur.execute(
            'INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId", revenue, "createdAt") '
            "VALUES (%s, %s, 's', %s, '0', %s, %s, %s)",
            (event_id or uuid.uuid4().hex, f"test_{shop_id}", event_type, variant_id, revenue, at),
        )
    db.commit()


def writer_for(day: date = DAY, run_id: str = TEST_RUN) -> DayWriter:
    """Claim ``day`` for ``run_id`` (taking it over from any run, as no DAG run is going) and return the writer."""
    writer = DayWriter(day, run_id)
    assert tasks.claim_export_day(writer, lambda other: False).held
    return writer


def plan(shop_id: str, day: date = DAY, batch_variants: int = 500, product_ids=None) -> list[BatchPlan]:
    """Plan a shop's batches page by page, through the task the DAG runs (connections from the environment)."""
    with tasks.app_db() as conn:
        shop_domain = shop_credentials(conn, shop_id).shop_domain
    read = CatalogRead(shop_id, shop_domain)
    settings = current_settings(batch_variants=batch_variants)
    return tasks.plan_shop_batches(read, writer_for(day), settings, product_ids).batches


def run_batch(batch: BatchPlan) -> BatchResult:
    """Export one batch through the task the DAG runs."""
    writer_for(date.fromisoformat(batch.date))
    return tasks.export_product_batch(batch, current_settings(), TEST_RUN)


def run_shop(shop_id: str, **kwargs) -> list[BatchResult]:
    """Plan and export every batch of a shop."""
    return [run_batch(b) for b in plan(shop_id, **kwargs)]


def image_downloads(sandbox, shop_id: str) -> int:
    """Return how many image downloads the sandbox's CDN has served the shop so far."""
    return sandbox.stats(f"{shop_id.replace('_', '-')}.myshopify.com")["cdn_requests"]


def listed_days(output: str) -> list[date]:
    """Return the days an `airflow backfill create --dry-run` lists under "Runs to be attempted"."""
    listed = output.split("Runs to be attempted:", 1)[1]
    return [date.fromisoformat(found) for found in re.findall(r"(\d{4}-\d{2}-\d{2})[ T]00:00:00", listed)]


def bucket_objects(s3, bucket: str) -> dict[str, bytes]:
    """Read every object of a bucket."""
    return dict(read_bucket(s3, bucket))


NOON_ON_DAY = datetime(2026, 11, 21, 12)


def download_image(
    client: ImageClient,
    url: str,
    *,
    allowed_origins: Iterable[str] | None = None,
    max_bytes: int | None = None,
    timeout: float | None = None,
) -> tuple[bytes, str]:
    """Download one image the image CDN hook's way, under the settings as the environment sets them now where
    not given (``allowed_origins`` spelled as STATISTICS_EXPORT_IMAGE_HOSTS would be)."""
    config = load_settings()
    listed = None if allowed_origins is None else ",".join(allowed_origins)
    allowed = config.image_hosts if listed is None else IMAGE_HOSTS.parse(listed) if listed.strip(", ") else ()
    rules = ImageRules(
        frozenset(allowed),
        config.image_max_bytes if max_bytes is None else max_bytes,
        config.image_timeout if timeout is None else timeout,
        origins_setting=IMAGE_HOSTS.env,
        cap_setting=IMAGE_MAX_BYTES.env,
    )
    return image_cdn.download_image(client, url, rules)
