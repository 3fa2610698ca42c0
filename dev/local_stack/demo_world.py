"""A deterministic demo world: shops in the app database and the Shopify sandbox, and a day of events."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from local_stack.services import Endpoints, create_bucket, postgres_server, scratch_database, seaweedfs_server
from shopify_sandbox.world import SandboxMedia, SandboxProduct, SandboxShop, SandboxVariant


@dataclass
class DemoShop:
    """A shop as the app knows it (id, storefront domain, session) and as Shopify serves it."""

    shop_id: str
    shop_domain: str
    sandbox: SandboxShop
    active: bool = True
    # False: its session predates "Session"."shopId" (NULL), and the run's link_sessions task links it.
    linked: bool = True

    @property
    def api_domain(self) -> str:
        """Return the myshopify domain the Admin API answers on."""
        return self.sandbox.domain

    @property
    def token(self) -> str:
        """Return the shop's access token."""
        return self.sandbox.access_token


@dataclass
class DemoEvent:
    """One row of "ABTestEvent"."""

    test_id: str
    event_type: str
    product_id: str
    variant_id: str | None
    revenue: Decimal | None
    created_at: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class DemoWorld:
    """Shops, their A/B tests (one per product) and the events."""

    shops: list[DemoShop]
    tests: list[tuple[str, str, str]] = field(default_factory=list)  # (test id, shop id, product id)
    events: list[DemoEvent] = field(default_factory=list)


def make_shop(
    shop_id: str,
    name: str,
    products: int,
    *,
    rng: random.Random,
    first_product_id: int,
    custom_domain: str | None = None,
    created_before: datetime,
) -> DemoShop:
    """Build one shop with ``products`` products of 1 to 5 variants, a few images each."""
    api_domain = f"{name}.myshopify.com"
    catalog = []
    media_id = first_product_id * 10
    variant_id = first_product_id * 10
    for n in range(products):
        pid = first_product_id + n
        media = []
        for _ in range(rng.randint(1, 3)):
            media_id += 1
            media.append(SandboxMedia(id=media_id, filename=rng.choice(["photo.jpg", "photo.jpeg", "shot.png"])))
        if n % 17 == 0:
            media_id += 1
            media.append(SandboxMedia(id=media_id, content_type="VIDEO", filename=None))
        variants = []
        for v in range(rng.randint(1, 5)):
            variant_id += 1
            own = [media[v].id] if v < len(media) and n % 3 == 0 else []
            variants.append(
                SandboxVariant(
                    id=variant_id,
                    title=f"Size {v + 1}",
                    sku=f"{name.upper()}-{pid}-{v + 1}",
                    price=f"{rng.randint(5, 120)}.{rng.choice(['00', '50', '99'])}",
                    media_ids=own,
                )
            )
        catalog.append(
            SandboxProduct(
                id=pid,
                title=f"{name.title()} product {n + 1}",
                status=rng.choice(["ACTIVE", "ACTIVE", "DRAFT"]),
                created_at=created_before - timedelta(days=rng.randint(2, 400)),
                variants=variants,
                media=media,
            )
        )
    client_id, client_secret = client_of(shop_id)
    sandbox = SandboxShop(
        domain=api_domain,
        access_token=f"shpat_{uuid.uuid4().hex}",
        name=name.title(),
        products=catalog,
        primary_domain=custom_domain,
        client_id=client_id,
        client_secret=client_secret,
    )
    return DemoShop(shop_id=shop_id, shop_domain=custom_domain or api_domain, sandbox=sandbox)


def build_world(day: date, *, products: int = 100, seed: int = 7) -> DemoWorld:
    """Build three active shops (one on expiring tokens whose stored token has expired, one behind a custom domain
    whose session is not linked yet) and one inactive, with events around ``day``."""
    rng = random.Random(seed)
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    sizes = [products // 2, products - products // 2 - products // 5, products // 5]
    shops = [
        make_shop("shop_alpha", "alpha", sizes[0], rng=rng, first_product_id=1000, created_before=start),
        make_shop(
            "shop_boutique",
            "boutique",
            sizes[1],
            rng=rng,
            first_product_id=2000,
            custom_domain="www.boutique-example.com",
            created_before=start,
        ),
        make_shop("shop_gamma", "gamma", sizes[2], rng=rng, first_product_id=3000, created_before=start),
        make_shop("shop_dormant", "dormant", 3, rng=rng, first_product_id=4000, created_before=start),
    ]
    shops[-1].active = False
    shops[1].linked = False  # the custom-domain shop: linked through its token's primaryDomain at run start
    # On expiring offline tokens, as public apps must be from 2027-01-01: its stored token expired an hour before
    # the run, so the run refreshes it first and writes the new pair back.
    shops[0].sandbox.refresh_token = f"shprt_{uuid.uuid4().hex}"
    shops[0].sandbox.access_token_expires = datetime.now(timezone.utc) - timedelta(hours=1)
    world = DemoWorld(shops=shops)
    for shop in shops:
        for product in shop.sandbox.products:
            test_id = f"test_{shop.shop_id}_{product.id}"
            world.tests.append((test_id, shop.shop_id, str(product.id)))
            for variant in product.variants:
                world.events.extend(_variant_events(rng, test_id, product.id, variant.id, start))
    return world


def _variant_events(rng: random.Random, test_id: str, product_id: int, variant_id: int, start: datetime):
    """Yield a variant's events: most on the day, some the day before and after (which must not count)."""
    impressions = rng.choice([0, 0, 3, 8, 20, 45])
    for n in range(impressions):
        offset = timedelta(seconds=rng.randint(-3 * 3600, 27 * 3600))
        at = start + offset
        # Both spellings of the variant id occur in real data.
        vid = f"gid://shopify/ProductVariant/{variant_id}" if n % 2 else str(variant_id)
        yield DemoEvent(test_id, "IMPRESSION", str(product_id), vid, None, at)
        if rng.random() < 0.3:
            yield DemoEvent(test_id, "ADD_TO_CART", str(product_id), vid, None, at + timedelta(seconds=30))
            if rng.random() < 0.5:
                revenue = None if rng.random() < 0.1 else Decimal(rng.randint(500, 15000)) / 100
                yield DemoEvent(test_id, "PURCHASE", str(product_id), vid, revenue, at + timedelta(seconds=90))


def client_of(shop_id: str) -> tuple[str, str]:
    """Return the app's OAuth client as the fixture's credential row holds it for a shop ("apiKey", "apiSecret")."""
    return f"key_{shop_id}", f"secret_{shop_id}"


def insert_shop(
    cur: Any,
    shop_id: str,
    shop_domain: str,
    api_domain: str,
    token: str,
    *,
    active: bool = True,
    linked: bool = True,
    refresh_token: str | None = None,
    expires: datetime | None = None,
    mode: str = "PUBLIC",
) -> None:
    """Insert a shop's credential row and its offline session (linked to it by "shopId" unless ``linked`` is False).

    With ``refresh_token`` the session is on expiring tokens, its access token expiring at ``expires`` (aware UTC)
    and its refresh token in 90 days, as shopify-app-js stores them; without, it never expires (both NULL).
    """
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    api_key, api_secret = client_of(shop_id)
    cur.execute(
        'INSERT INTO "ShopCredential" (id, "shopDomain", "apiKey", "apiSecret", mode, "isActive", "createdAt", "updatedAt") '
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (shop_id, shop_domain, api_key, api_secret, mode, active, now, now),
    )
    expires_at = expires.astimezone(timezone.utc).replace(tzinfo=None) if expires else None
    refresh_expires = now + timedelta(days=90) if refresh_token else None
    cur.execute(
        'INSERT INTO "Session" (id, shop, state, "isOnline", scope, expires, "accessToken", "refreshToken", '
        "\"refreshTokenExpires\", \"shopId\") VALUES (%s, %s, '', false, 'read_products', %s, %s, %s, %s, %s)",
        (
            f"offline_{api_domain}",
            api_domain,
            expires_at,
            token,
            refresh_token,
            refresh_expires,
            shop_id if linked else None,
        ),
    )


def seed_database(conn: Any, world: DemoWorld) -> None:
    """Insert the world's shops, sessions, tests and events into the app database (one COPY for events)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with conn.cursor() as cur:
        for shop in world.shops:
            insert_shop(
                cur,
                shop.shop_id,
                shop.shop_domain,
                shop.api_domain,
                shop.token,
                active=shop.active,
                linked=shop.linked,
                refresh_token=shop.sandbox.refresh_token,
                expires=shop.sandbox.access_token_expires,
            )
        cur.executemany(
            'INSERT INTO "ABTest" (id, shop, name, "productId", status, "createdAt", "updatedAt") '
            "VALUES (%s, %s, %s, %s, 'ACTIVE', %s, %s)",
            [(test_id, shop_id, f"Test of {pid}", pid, now, now) for test_id, shop_id, pid in world.tests],
        )
        with cur.copy(
            'COPY "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId", revenue, "createdAt") FROM STDIN'
        ) as copy:
            for e in world.events:
                copy.write_row(
                    (
                        e.id,
                        e.test_id,
                        "session",
                        e.event_type,
                        e.product_id,
                        e.variant_id,
                        e.revenue,
                        e.created_at.replace(tzinfo=None),
                    )
                )
    conn.commit()


DEMO_BUCKET = "statistics-demo"


@contextmanager
def running_world(world: DemoWorld, prefix: str, bucket: str = DEMO_BUCKET) -> Iterator[tuple[str, Endpoints]]:
    """Start PostgreSQL, the S3 server (SeaweedFS) and the Shopify sandbox for a world, seeded and with its bucket;
    yield the server URL and the endpoints, and remove everything at the end."""
    from shopify_sandbox import ShopifySandbox

    with (
        postgres_server(os.environ.get("APP_DB_URL")) as server_url,
        scratch_database(server_url, prefix=prefix) as app_db_url,
        seaweedfs_server() as s3_endpoint,
        ShopifySandbox([s.sandbox for s in world.shops]) as sandbox,
    ):
        with psycopg.connect(app_db_url) as conn:
            seed_database(conn, world)
        create_bucket(s3_endpoint, bucket)
        yield server_url, Endpoints(app_db_url, s3_endpoint, bucket, sandbox.endpoint_template)
