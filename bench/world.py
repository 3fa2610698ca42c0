"""The synthetic world: one shop of N variants in the sandbox, its row in the app database, and the events."""

from __future__ import annotations

import io
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from local_stack.demo_world import insert_shop
from shopify_sandbox import SandboxMedia, SandboxProduct, SandboxShop, SandboxVariant

SHOP_ID = "shop_bench"
SHOP_DOMAIN = "bench.myshopify.com"
EVENT_DAYS = 30
FIRST_PRODUCT_ID = 7_000_000_000
# Weights of 1..10 variants for the ordinary products (mean about 3).
SMALL_VARIANT_WEIGHTS = (30, 25, 15, 10, 6, 5, 3, 2, 2, 2)
BIG_PRODUCT_VARIANTS = 300


@dataclass
class BenchWorld:
    """The shop as Shopify serves it, the export day, and the variant ids in catalog order."""

    shop: SandboxShop
    day: date
    variant_ids: list[int]

    @property
    def products(self) -> int:
        return len(self.shop.products)

    @property
    def variants(self) -> int:
        return len(self.variant_ids)


def variant_counts(variants: int, products: int, rng: random.Random) -> list[int]:
    """Split ``variants`` over ``products``: a few with hundreds of variants, the rest with 1 to 10."""
    big = products // 600 if variants >= 2 * products else 0
    big_sizes = [BIG_PRODUCT_VARIANTS] * big
    small = products - big
    remaining = variants - sum(big_sizes)
    if small < 1 or not small <= remaining <= 10 * small:
        raise ValueError(f"cannot spread {variants} variants over {products} products (1-10 each, {big} big)")
    sizes = rng.choices(range(1, 11), weights=SMALL_VARIANT_WEIGHTS, k=small)
    # Nudge random products up or down one variant at a time until the total is exact.
    while (gap := remaining - sum(sizes)) != 0:
        n = rng.randrange(small)
        if gap > 0 and sizes[n] < 10:
            sizes[n] += 1
        elif gap < 0 and sizes[n] > 1:
            sizes[n] -= 1
    counts = sizes + big_sizes
    rng.shuffle(counts)
    return counts


def build_world(variants: int, products: int, day: date, seed: int) -> BenchWorld:
    """Build the shop: products created before ``day``, one image each, ``variants`` variants in all."""
    rng = random.Random(seed)
    created_before = datetime.combine(day, time.min, tzinfo=timezone.utc)
    catalog, variant_ids = [], []
    next_variant = FIRST_PRODUCT_ID * 10
    for n, count in enumerate(variant_counts(variants, products, rng)):
        product_id = FIRST_PRODUCT_ID + n
        image = SandboxMedia(id=product_id * 10 + 1, filename=f"product-{n}.jpg")
        product_variants = []
        for v in range(count):
            next_variant += 1
            variant_ids.append(next_variant)
            product_variants.append(
                SandboxVariant(
                    id=next_variant, title=f"Option {v + 1}", sku=f"SKU-{n}-{v + 1}", price=f"{rng.randint(5, 300)}.00"
                )
            )
        catalog.append(
            SandboxProduct(
                id=product_id,
                title=f"Bench product {n + 1}",
                status="ACTIVE",
                created_at=created_before - timedelta(days=rng.randint(2, 900)),
                variants=product_variants,
                media=[image],
            )
        )
    shop = SandboxShop(domain=SHOP_DOMAIN, access_token=f"shpat_{uuid.uuid4().hex}", name="Bench", products=catalog)
    return BenchWorld(shop, day, variant_ids)


def seed_shop(conn, world: BenchWorld) -> None:
    """Insert the shop, its session and one A/B test per product."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with conn.cursor() as cur:
        insert_shop(cur, SHOP_ID, SHOP_DOMAIN, SHOP_DOMAIN, world.shop.access_token)
        cur.executemany(
            'INSERT INTO "ABTest" (id, shop, name, "productId", status, "createdAt", "updatedAt") '
            "VALUES (%s, %s, %s, %s, 'ACTIVE', %s, %s)",
            [(test_id(p.id), SHOP_ID, f"Test of {p.id}", str(p.id), now, now) for p in world.shop.products],
        )
    conn.commit()


def test_id(product_id: int) -> str:
    """Return the id of a product's A/B test."""
    return f"test_{product_id}"


def seed_events(
    conn,
    world: BenchWorld,
    events: int,
    seed: int,
    *,
    last_day: date | None = None,
    days: int = EVENT_DAYS,
    chunk: int = 50_000,
) -> None:
    """COPY ``events`` events spread over the ``days`` days ending with ``last_day`` (the export day), then ANALYZE.

    A later day's events are seeded the same way with another ``seed``: other numbers for the same variants.
    """
    rng = random.Random(seed + 1)
    owners = [(p.id, v.id) for p in world.shop.products for v in p.variants]
    start = datetime.combine((last_day or world.day) - timedelta(days=days - 1), time.min)
    span = days * 86_400
    kinds = ("IMPRESSION",) * 14 + ("ADD_TO_CART",) * 4 + ("PURCHASE",) * 2
    columns = '(id, "testId", "sessionId", "eventType", "productId", "variantId", revenue, "createdAt")'
    with conn.cursor() as cur, cur.copy(f'COPY "ABTestEvent" {columns} FROM STDIN') as copy:
        written = 0
        while written < events:
            lines = io.StringIO()
            for _ in range(min(chunk, events - written)):
                product_id, variant_id = owners[rng.randrange(len(owners))]
                kind = kinds[rng.randrange(20)]
                # Both spellings of a variant id occur in real data.
                vid = f"gid://shopify/ProductVariant/{variant_id}" if rng.random() < 0.5 else str(variant_id)
                revenue = f"{rng.randint(500, 25_000) / 100:.2f}" if kind == "PURCHASE" else "\\N"
                at = start + timedelta(seconds=rng.randrange(span))
                lines.write(
                    f"{uuid.UUID(int=rng.getrandbits(128)).hex}\t{test_id(product_id)}\ts{rng.randrange(99_999)}\t"
                    f"{kind}\t{product_id}\t{vid}\t{revenue}\t{at.isoformat(sep=' ')}\n"
                )
            copy.write(lines.getvalue())
            written += min(chunk, events - written)
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("ANALYZE")  # as autovacuum would have: the planner needs the tests' and events' statistics
    conn.commit()
