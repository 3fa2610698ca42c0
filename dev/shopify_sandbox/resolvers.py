"""The sandbox's GraphQL schema and the views that resolve it over the world's data classes."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from graphql import GraphQLSchema, build_schema

from .catalog import SHOP_GID, ShopLookup, gid
from .images import image_dimensions
from .paging import Page, check_page_args, paginate, product_filter
from .world import SandboxMedia, SandboxProduct, SandboxShop, SandboxVariant, format_datetime

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")


@lru_cache(maxsize=1)
def sandbox_schema() -> GraphQLSchema:
    """Build (once) the executable schema from schema.graphql with abstract-type resolution."""
    schema = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    for name in ("Node", "Media"):
        # Every view carries its GraphQL type name.
        schema.get_type(name).resolve_type = lambda value, _info, _abstract: value.typename
    return schema


@dataclass
class RequestContext:
    """What resolvers need for one request: the shop, its lookups and the public base URL."""

    shop: SandboxShop
    lookup: ShopLookup
    base_url: str
    api_version: str = "2026-07"
    bulk: Any = None  # the sandbox's BulkOperations, for the bulk fields
    unpaged: bool = False  # True while a bulk operation runs its query


def _page(ctx: "RequestContext", items, sort_key, args: dict[str, Any], field_name: str, wrap, presorted=None) -> Page:
    if ctx.unpaged:
        # A bulk operation reads whole connections: paging arguments are ignored.
        args = {"reverse": args.get("reverse")}
    else:
        check_page_args(field_name, args)
    page = paginate(
        items,
        sort_key,
        presorted=presorted,
        first=args.get("first"),
        after=args.get("after"),
        last=args.get("last"),
        before=args.get("before"),
        reverse=bool(args.get("reverse")),
    )
    page.items = [wrap(item) for item in page.items]
    return page


def _count(n: int) -> dict[str, Any]:
    return {"count": n, "precision": "EXACT"}


class QueryRootView:
    """Resolves QueryRoot over one shop."""

    def __init__(self, ctx: RequestContext):
        self.ctx = ctx

    _PRODUCT_SORTS = {
        "ID": lambda p: p.id,
        "TITLE": lambda p: p.title.lower(),
        "VENDOR": lambda p: p.vendor.lower(),
        "CREATED_AT": lambda p: format_datetime(p.created_at),
        "UPDATED_AT": lambda p: format_datetime(p.effective_updated_at),
    }

    def products(self, _info, **args) -> Page:
        """Resolve `products(...)`: filter by `query`, order by `sortKey`, then paginate."""
        sort_name = args.get("sortKey") or "ID"
        wrap = lambda p: ProductView(p, self.ctx)  # noqa: E731
        if sort_name not in self._PRODUCT_SORTS or sort_name == "ID":
            # The common export path: id order, cached per catalogue, then filtered in order.
            ordered, keys = self.ctx.lookup.catalog.products_by_id(self.ctx.shop)
            if args.get("query"):
                keep = product_filter(args["query"])
                chosen = [i for i, p in enumerate(ordered) if keep(p)]
                ordered, keys = [ordered[i] for i in chosen], [keys[i] for i in chosen]
            return _page(self.ctx, None, None, args, "products", wrap, presorted=(ordered, keys))
        keep = product_filter(args.get("query"))
        items = [p for p in list(self.ctx.shop.products) if keep(p)]
        return _page(self.ctx, items, self._PRODUCT_SORTS[sort_name], args, "products", wrap)

    def productsCount(self, _info, query: str | None = None, limit: int | None = 10000):  # noqa: N802
        """Resolve `productsCount(query:, limit:)`: exact up to `limit` (null: no limit), else AT_LEAST."""
        keep = product_filter(query)
        count = sum(1 for p in list(self.ctx.shop.products) if keep(p))
        if limit is not None and count > limit:
            return {"count": limit, "precision": "AT_LEAST"}
        return _count(count)

    def product(self, _info, id: str):  # noqa: A002 - the GraphQL argument is named id
        """Resolve `product(id:)`: null for unknown or deleted products."""
        hit = self.ctx.lookup.node(id)
        return ProductView(hit[1], self.ctx) if hit and hit[0] == "Product" else None

    def node(self, _info, id: str):  # noqa: A002
        """Resolve `node(id:)` for products, variants, media and the shop."""
        return _view(self.ctx, self.ctx.lookup.node(id))

    def nodes(self, _info, ids: list[str]):
        """Resolve `nodes(ids:)`: one entry per id, null for unknown or deleted ones."""
        return [_view(self.ctx, self.ctx.lookup.node(i)) for i in ids]

    @property
    def shop(self) -> "ShopView":
        """Resolve `shop`."""
        return ShopView(self.ctx.shop)

    # Bulk operations: the same root value serves QueryRoot and Mutation, as graphql-core passes one.

    def bulkOperation(self, _info, id: str):  # noqa: A002, N802
        """Resolve `bulkOperation(id:)`: counts as one poll of the operation."""
        return self.ctx.bulk.poll(self.ctx, id)

    def bulkOperationRunQuery(self, _info, query: str, groupObjects: bool = False):  # noqa: N802, N803
        """Resolve the `bulkOperationRunQuery` mutation."""
        return self.ctx.bulk.run_query(self.ctx, query, groupObjects)

    def bulkOperationCancel(self, _info, id: str):  # noqa: A002, N802
        """Resolve the `bulkOperationCancel` mutation."""
        return self.ctx.bulk.cancel(self.ctx, id)


def _view(ctx: RequestContext, hit: tuple[str, Any] | None):
    if hit is None:
        return None
    typename, obj = hit
    if typename == "Shop":
        return ShopView(obj)
    if typename == "Product":
        return ProductView(obj, ctx)
    if typename == "ProductVariant":
        return VariantView(obj[1], obj[0], ctx)
    return media_view(obj[1], ctx)


class ShopView:
    """Resolves Shop."""

    typename = "Shop"

    def __init__(self, shop: SandboxShop):
        self.id = SHOP_GID
        self.name = shop.display_name
        self.myshopifyDomain = shop.domain
        self.currencyCode = shop.currency
        self.primaryDomain = DomainView(shop.primary_domain or shop.domain)


class DomainView:
    """Resolves Domain: the host the storefront is served on (the myshopify domain when none is set)."""

    typename = "Domain"

    def __init__(self, host: str):
        self.id = "gid://shopify/Domain/1"
        self.host = host


class ProductView:
    """Resolves Product over a SandboxProduct."""

    typename = "Product"

    def __init__(self, product: SandboxProduct, ctx: RequestContext):
        self.p = product
        self.ctx = ctx

    id = property(lambda self: gid("Product", self.p.id))
    legacyResourceId = property(lambda self: str(self.p.id))
    title = property(lambda self: self.p.title)
    handle = property(lambda self: self.p.effective_handle)
    status = property(lambda self: self.p.status)
    vendor = property(lambda self: self.p.vendor)
    createdAt = property(lambda self: format_datetime(self.p.created_at))
    updatedAt = property(lambda self: format_datetime(self.p.effective_updated_at))
    variantsCount = property(lambda self: _count(len(self.p.variants)))
    mediaCount = property(lambda self: _count(len(self.p.media)))

    def variants(self, _info, **args) -> Page:
        """Resolve `variants(...)`, ordered by POSITION unless sortKey says ID, TITLE or SKU."""
        variants = list(self.p.variants)
        position = {id(v): i for i, v in enumerate(variants)}
        sort_key = {
            "ID": lambda v: v.id,
            "TITLE": lambda v: v.title.lower(),
            "SKU": lambda v: v.sku or "",
        }.get(args.get("sortKey") or "POSITION", lambda v: position[id(v)])
        product = self.p
        return _page(
            self.ctx,
            variants,
            sort_key,
            args,
            "variants",
            lambda v: VariantView(v, product, self.ctx, position[id(v)] + 1),
        )

    def media(self, _info, **args) -> Page:
        """Resolve `media(...)`, ordered by POSITION unless sortKey says ID."""
        media = list(self.p.media)
        position = {id(m): i for i, m in enumerate(media)}
        sort_key = (lambda m: m.id) if args.get("sortKey") == "ID" else (lambda m: position[id(m)])
        return _page(self.ctx, media, sort_key, args, "media", lambda m: media_view(m, self.ctx))


class VariantView:
    """Resolves ProductVariant over a SandboxVariant and its product."""

    typename = "ProductVariant"

    def __init__(
        self, variant: SandboxVariant, product: SandboxProduct, ctx: RequestContext, position: int | None = None
    ):
        self.v = variant
        self.parent = product
        self.ctx = ctx
        self._position = position

    id = property(lambda self: gid("ProductVariant", self.v.id))
    legacyResourceId = property(lambda self: str(self.v.id))
    title = property(lambda self: self.v.title)
    sku = property(lambda self: self.v.sku)
    price = property(lambda self: self.v.price)
    createdAt = property(lambda self: format_datetime(self.v.created_at or self.parent.created_at))
    updatedAt = property(lambda self: format_datetime(self.v.created_at or self.parent.effective_updated_at))

    @property
    def position(self) -> int:
        """Resolve `position` (1-based order among the product's variants)."""
        if self._position is None:
            self._position = next(i for i, v in enumerate(self.parent.variants) if v is self.v) + 1
        return self._position

    @property
    def product(self) -> ProductView:
        """Resolve `product`."""
        return ProductView(self.parent, self.ctx)

    def media(self, _info, **args) -> Page:
        """Resolve `media(...)`: the variant's media among its product's, in the variant's order."""
        by_id = {m.id: m for m in self.parent.media}
        chosen = [by_id[i] for i in dict.fromkeys(self.v.media_ids) if i in by_id]
        position = {m.id: i for i, m in enumerate(chosen)}
        return _page(self.ctx, chosen, lambda m: position[m.id], args, "media", lambda m: media_view(m, self.ctx))


class MediaView:
    """Resolves the Media interface fields shared by MediaImage, Video, ExternalVideo and Model3d."""

    def __init__(self, media: SandboxMedia, ctx: RequestContext):
        self.m = media
        self.ctx = ctx
        self.typename = media.typename

    id = property(lambda self: gid(self.m.typename, self.m.id))
    alt = property(lambda self: self.m.alt)
    mediaContentType = property(lambda self: self.m.content_type)
    status = property(lambda self: "PROCESSING" if self.m.processing else "READY")


class MediaImageView(MediaView):
    """Resolves MediaImage; `image` is null while the upload is processing."""

    @property
    def image(self) -> "ImageView | None":
        """Resolve `image`."""
        return None if self.m.processing else ImageView(self.m, self.ctx)

    @property
    def mimeType(self) -> str | None:
        """Resolve `mimeType` from the file name."""
        return None if self.m.processing else mimetypes.guess_type(self.m.filename)[0]


def media_view(media: SandboxMedia, ctx: RequestContext) -> MediaView:
    """Wrap a SandboxMedia in the view of its concrete GraphQL type."""
    return MediaImageView(media, ctx) if media.content_type == "IMAGE" else MediaView(media, ctx)


class ImageView:
    """Resolves Image for a ready MediaImage, pointing at the sandbox CDN."""

    def __init__(self, media: SandboxMedia, ctx: RequestContext):
        self.m = media
        self.ctx = ctx
        self.id = gid("ImageSource", media.id)
        self.altText = media.alt
        self.width, self.height = image_dimensions(media.id)

    def url(self, _info, transform: dict[str, Any] | None = None) -> str:
        """Resolve `url(transform:)`: the CDN URL, with resize/format parameters as Shopify's CDN takes them
        (a media's foreign `url` as it is)."""
        if self.m.url:
            return self.m.url
        base = f"{self.ctx.base_url}/cdn/{self.ctx.shop.domain}/{self.m.id}/{quote(self.m.filename)}"
        if not transform:
            return base
        scale = transform.get("scale") or 1
        params = {}
        if transform.get("maxWidth"):
            params["width"] = transform["maxWidth"] * scale
        if transform.get("maxHeight"):
            params["height"] = transform["maxHeight"] * scale
        if transform.get("crop"):
            params["crop"] = transform["crop"].lower()
        if transform.get("preferredContentType"):
            params["format"] = {"JPG": "jpg", "PNG": "png", "WEBP": "webp"}[transform["preferredContentType"]]
        return f"{base}?{urlencode(params)}" if params else base
