"""Global IDs and by-id lookups over a shop's catalogue, cached while the catalogue is unchanged."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from .world import MEDIA_TYPENAMES, SandboxMedia, SandboxProduct, SandboxShop, SandboxVariant

SHOP_GID = "gid://shopify/Shop/1"
_GID = re.compile(r"^gid://shopify/([A-Za-z0-9]+)/(\d+)(?:\?.*)?$")


def gid(resource: str, item_id: int) -> str:
    """Return Shopify's global ID for a resource name and numeric id."""
    return f"gid://shopify/{resource}/{item_id}"


def parse_gid(value: str) -> tuple[str, int] | None:
    """Split a global ID into (resource, numeric id), or None when it is not one."""
    match = _GID.match(value or "")
    return (match.group(1), int(match.group(2))) if match else None


@dataclass
class ShopIndex:
    """By-id maps over one snapshot of a shop's catalogue."""

    products: dict[int, SandboxProduct] = field(default_factory=dict)
    variants: dict[int, tuple[SandboxProduct, SandboxVariant]] = field(default_factory=dict)
    media: dict[int, tuple[SandboxProduct, SandboxMedia]] = field(default_factory=dict)

    @classmethod
    def build(cls, shop: SandboxShop) -> "ShopIndex":
        """Index every product, variant and media of the shop."""
        index = cls()
        for product in list(shop.products):
            index.products[product.id] = product
            for variant in product.variants:
                index.variants[variant.id] = (product, variant)
            for media in product.media:
                index.media[media.id] = (product, media)
        return index


def _contains(items: list, item: object) -> bool:
    # Identity, not dataclass equality: == would compare whole products field by field.
    return any(x is item for x in items)


class CatalogIndex:
    """Per-shop ShopIndex cache, rebuilt when the shop's product list is replaced or changes length."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int], ShopIndex]] = {}
        self._sorted: dict[str, tuple[tuple[int, int], tuple[list, list]]] = {}

    def index(self, shop: SandboxShop, force: bool = False) -> ShopIndex:
        """Return the shop's index, rebuilding it if stale (or if `force`)."""
        fingerprint = (id(shop.products), len(shop.products))
        with self._lock:
            cached = self._cache.get(shop.domain)
            if not force and cached and cached[0] == fingerprint:
                return cached[1]
        index = ShopIndex.build(shop)
        with self._lock:
            self._cache[shop.domain] = (fingerprint, index)
        return index

    def products_by_id(self, shop: SandboxShop) -> tuple[list[SandboxProduct], list[tuple[int, int]]]:
        """Return the shop's products in ascending id order with their paging keys, cached like the index."""
        fingerprint = (id(shop.products), len(shop.products))
        with self._lock:
            cached = self._sorted.get(shop.domain)
            if cached and cached[0] == fingerprint:
                return cached[1]
        ordered = sorted(shop.products, key=lambda p: p.id)
        value = (ordered, [(p.id, p.id) for p in ordered])
        with self._lock:
            self._sorted[shop.domain] = (fingerprint, value)
        return value

    def invalidate(self, domain: str | None = None) -> None:
        """Forget the cached index of one shop (or all shops)."""
        with self._lock:
            if domain is None:
                self._cache.clear()
                self._sorted.clear()
            else:
                self._cache.pop(domain, None)
                self._sorted.pop(domain, None)

    def lookup(self, shop: SandboxShop) -> "ShopLookup":
        """Return a lookup helper for one request against this shop."""
        return ShopLookup(self, shop)


class ShopLookup:
    """By-id lookups for one request; a miss may force one index rebuild per request.

    The cache fingerprint misses in-place edits of a product's variants or media made by
    tests, so a miss rebuilds once (seeing additions) and hits re-check membership
    (seeing removals); bounding rebuilds per request keeps `nodes(ids:)` of many deleted
    ids cheap.
    """

    def __init__(self, catalog: CatalogIndex, shop: SandboxShop) -> None:
        self.catalog = catalog
        self.shop = shop
        self._index = catalog.index(shop)
        self._rebuilt = False

    def _get(self, table: str, item_id: int, check) -> object | None:
        hit = getattr(self._index, table).get(item_id)
        if hit is not None and check(hit):
            return hit
        if self._rebuilt:
            return None
        self._index = self.catalog.index(self.shop, force=True)
        self._rebuilt = True
        hit = getattr(self._index, table).get(item_id)
        return hit if hit is not None and check(hit) else None

    def _live(self, product: SandboxProduct) -> bool:
        return self._index.products.get(product.id) is product

    def product(self, product_id: int) -> SandboxProduct | None:
        """Return the live product with this id, or None when unknown or deleted."""
        return self._get("products", product_id, self._live)

    def variant(self, variant_id: int) -> tuple[SandboxProduct, SandboxVariant] | None:
        """Return (product, variant) for a live variant id, or None."""
        return self._get("variants", variant_id, lambda h: self._live(h[0]) and _contains(h[0].variants, h[1]))

    def media(self, media_id: int) -> tuple[SandboxProduct, SandboxMedia] | None:
        """Return (product, media) for a live media id, or None."""
        return self._get("media", media_id, lambda h: self._live(h[0]) and _contains(h[0].media, h[1]))

    def node(self, global_id: str) -> tuple[str, object] | None:
        """Resolve a global ID to (typename, product | shop | (product, child)), or None."""
        if global_id == SHOP_GID:
            return "Shop", self.shop
        parsed = parse_gid(global_id)
        if parsed is None:
            return None
        resource, item_id = parsed
        if resource == "Product":
            product = self.product(item_id)
            return ("Product", product) if product else None
        if resource == "ProductVariant":
            hit = self.variant(item_id)
            return ("ProductVariant", hit) if hit else None
        if resource in MEDIA_TYPENAMES.values():
            hit = self.media(item_id)
            # A media answers only to the GID of its own type, as in Shopify.
            return (resource, hit) if hit and hit[1].typename == resource else None
        return None
