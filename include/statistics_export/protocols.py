"""What the logic needs of the outside world, stated in full: the Shopify catalog, the object store, the image
source, and the tokens Shopify issues.

The hooks (plugins/export_hooks) implement these; the logic never reaches past them into a client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from datetime import datetime
from typing import Any, BinaryIO, Protocol, TypeVar

T = TypeVar("T")


class Catalog(Protocol):
    """One shop's catalog, as the Shopify hook reads it page by page."""

    # The GraphQL cost Shopify charged for what was read so far (a batch's result reports it).
    cost_charged: float

    def iter_product_summaries(self) -> Iterable[dict[str, Any]]:
        """Yield every product's id, legacy id, creation time and variant count, in id order."""
        ...

    def iter_products(self, product_gids: Sequence[str]) -> Iterable[dict[str, Any] | None]:
        """Yield each requested product with all its variants and media, or None for a deleted one."""
        ...


class CatalogPage(Protocol):
    """One answer of a shop's whole-catalog read: its currency, how many products it has, and full products."""

    currency: str | None
    products_count: int
    products: list[dict[str, Any]]


class ShopCatalog(Catalog, Protocol):
    """A small shop's catalog, read whole: one request when it fits a page."""

    def shop_catalog_pages(self) -> Iterator[CatalogPage]:
        """Yield the shop's currency, product count and full products, a page of products per request."""
        ...


class ObjectStore(Protocol):
    """The one bucket the export writes (R2 in production)."""

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object."""
        ...

    def start_puts(self, objects: Sequence[tuple[str, bytes, str]]) -> Future[None]:
        """Start writing these objects, each ``(key, body, content_type)``, and return at once: a future done
        when every one has been written or has failed, raising the first failure. The store bounds how many
        writes are in flight; none holds a thread while it waits."""
        ...

    async def put_object_async(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object from a coroutine on any event loop (the store bounds the writes in flight)."""
        ...

    def object_url(self, key: str) -> str:
        """Return the URL the files and rows show for an object."""
        ...

    def open_object(self, key: str) -> BinaryIO:
        """Return a stream of an object's bytes; raise FileNotFoundError naming the key when it is absent."""
        ...

    def keys_under(self, prefix: str) -> Iterator[str]:
        """Yield the keys that start with ``prefix``."""
        ...

    def etags_under(self, prefix: str, start_after: str = "") -> dict[str, str]:
        """Return {key: ETag} of the objects under the folder ``prefix`` (after ``start_after``)."""
        ...

    def modified_under(self, prefix: str) -> dict[str, datetime]:
        """Return {key: LastModified} (aware UTC) of the objects under the folder ``prefix``."""
        ...

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete these objects."""
        ...


def finish_writes(writes: Sequence[Future[None]]) -> None:
    """Wait for every write started (each a :meth:`ObjectStore.start_puts`), then raise the first that failed (in
    the order they were started): none is left in flight behind an error."""
    wait(writes)
    for write in writes:
        write.result()


class ImageSource(Protocol):
    """Where product images are downloaded from (Shopify's CDN in production), under the origin rules."""

    def start_fetch(self, url: str) -> Future[tuple[bytes, str]]:
        """Start downloading an image and return at once: a future of its bytes and content type, raising
        ImageDownloadError (ImageURLRefused when the URL may not be fetched) naming the URL. Waiting for the
        CDN holds no thread."""
        ...

    def start_copy(self, url: str, keep: Callable[[bytes, str], Awaitable[T]]) -> Future[T]:
        """Start downloading an image and await ``keep(bytes, content_type)`` on the download's own event loop
        as soon as it arrives; return at once: a future of what ``keep`` returns, raising as start_fetch does
        or as keep does."""
        ...


class IssuedTokens(Protocol):
    """A pair Shopify's token endpoint issued (a refresh, or a token exchange): seconds each token lasts."""

    @property
    def access_token(self) -> str: ...

    @property
    def expires_in(self) -> int: ...

    @property
    def refresh_token(self) -> str: ...

    @property
    def refresh_token_expires_in(self) -> int: ...
