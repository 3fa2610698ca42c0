"""Product image backups: each image copied to R2 once per shop, and the rules for its key.

A download that fails (HTTP 4xx, 5xx or 429 after retries, a timeout, an HTML page or any body that is
not an image, a file over the size cap) never fails the export: the image is listed with its Shopify URL
and empty R2 fields, reported in the batch's ``image_failures``, and tried again on the next run, since
no backup row is recorded for it. 5xx, 429, connection errors and timeouts are also retried within the
run; a 4xx, a page that is not an image or an oversized file is the same answer seconds later, so it
is not. A page instead of an image (a CDN's error page) and an oversized file (the merchant may replace
it, the operator may raise the cap) are retried next run too: the cost is bounded, as an oversized
file is refused from its Content-Length, or at the cap when it has none, never read whole.

Where images may come from (the URL is Shopify's answer, but nothing else stops it pointing inside our
network): a URL is fetched only when it is http or https, its origin (scheme, host and port, https's
default port 443) is one of STATISTICS_EXPORT_IMAGE_HOSTS (default ``https://cdn.shopify.com``), and its
host name resolves (``socket.getaddrinfo``) to public addresses only: none loopback, private, link-local,
multicast, reserved or unspecified, IPv4-mapped IPv6 included. An IP address listed as an origin (the
local sandbox's ``http://127.0.0.1:PORT``) is the operator's own choice and is not checked further; a
name is, whatever it is (``localhost`` is refused). Redirects are followed here, not by urllib3: at most
3, each Location checked the same way before it is requested. A refused URL raises
:class:`ImageURLRefused`, an image failure like the others: reported, not retried within the run, tried
again next run; no connection is opened for it.

DNS rebinding (a name answering a public address to the check and a private one at connect time):
the client of :func:`image_fetcher` checks the address every new connection reached, right after the
TCP handshake and before TLS or any byte of the request, and closes a connection that reached a
non-public address. What remains: that handshake itself with the address; behind an HTTP(S) proxy
(HTTPS_PROXY, ...) the proxy resolves and connects, so only the checks before each request apply.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import requests
from requests.utils import get_environ_proxies, select_proxy
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3 import exceptions as urllib3_exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from include.statistics_export import settings
from include.statistics_export.catalog import ImageRef, Product
from include.statistics_export.errors import ExportError
from include.statistics_export.keys import image_key
from include.statistics_export.utc import as_utc, now_ms

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
MAX_REDIRECTS = 3
_DEFAULTS = settings.Settings()
ImageFetch = Callable[[str], tuple[bytes, str]]
# The ipaddress properties that make an address unfit to serve images, in the order a message names them.
_NOT_PUBLIC = (
    ("a loopback", "is_loopback"),
    ("an unspecified", "is_unspecified"),
    ("a link-local", "is_link_local"),
    ("a multicast", "is_multicast"),
    ("a private", "is_private"),
    ("a reserved", "is_reserved"),
)

# The leading bytes of the formats a product image can be in (ISO BMFF "ftyp" at offset 4: AVIF, HEIC).
_IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"BM",
    b"\x00\x00\x01\x00",  # ICO
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",
)


class ImageDownloadError(ExportError):
    """An image could not be fetched; the export goes on and the next run tries again."""


class _TransientDownloadError(ImageDownloadError):
    pass


class ImageURLRefused(ImageDownloadError):
    """An image URL, or a redirect's target, that may not be fetched: not http(s), an origin not allowed, or a
    host that is not public. Never retried within the run."""


class _PeerRefused(ImageURLRefused):
    """A new connection reached a non-public address (raised from the connection, before the request)."""


def is_image(body: bytes, content_type: str) -> bool:
    """Return whether a body is an image file by its leading bytes, whatever its Content-Type says."""
    if body.startswith(_IMAGE_SIGNATURES):
        return True
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return True
    if body[4:8] == b"ftyp":
        return True
    # SVG is text: only believe it when the server says so and the document is an <svg>.
    return content_type.split(";")[0].strip().lower() == "image/svg+xml" and b"<svg" in body[:4096].lower()


@dataclass(frozen=True)
class ImageBackup:
    """Where one image lives: always its Shopify URL, and its R2 copy when the backup succeeded."""

    media_gid: str
    shopify_url: str
    r2_key: str | None = None
    r2_url: str | None = None
    backed_up_at: datetime | None = None


@dataclass(frozen=True)
class ImageOwner:
    """The product an image belongs to, and the variant when it is that variant's own media."""

    image: ImageRef
    product_id: str
    variant_id: str | None


def image_owners(products: Iterable[Product]) -> dict[str, ImageOwner]:
    """Map every image the batch exports to its owner: the first variant using it as its own
    media, else the product."""
    owners: dict[str, ImageOwner] = {}
    for product in products:
        for variant in product.variants:
            for image in variant.images:
                owners.setdefault(image.media_gid, ImageOwner(image, product.product_id, variant.variant_id))
        for image in product.images:
            owners.setdefault(image.media_gid, ImageOwner(image, product.product_id, None))
    return owners


# Joined on the natural key (shop, "mediaId"): one probe of the unique index per image, any number of shops.
_EXISTING = """
SELECT b.shop, b."mediaId", b."shopifyUrl", b."r2Key", b."r2Url", b."backedUpAt"
FROM unnest(%(shops)b::text[], %(media_ids)b::text[]) AS k(shop, "mediaId")
JOIN "ProductImageBackup" b ON b.shop = k.shop AND b."mediaId" = k."mediaId"
WHERE b."r2Key" IS NOT NULL
"""


def shops_existing_backups(conn: Any, images: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ImageBackup]:
    """Return which of these (shop, media GID) images are already backed up, in one query."""
    pairs = list(images)
    if not pairs:
        return {}
    with conn.cursor() as cur:
        cur.execute(_EXISTING, {"shops": [p[0] for p in pairs], "media_ids": [p[1] for p in pairs]})
        return {
            (row[0], row[1]): ImageBackup(
                row[1], row[2], r2_key=row[3], r2_url=row[4], backed_up_at=as_utc(row[5]) if row[5] else None
            )
            for row in cur.fetchall()
        }


def address_refusal(address: str) -> str | None:
    """Return why an IP address may not serve images ("a loopback address", ...), or None when it is public.

    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is judged as the IPv4 address it carries.
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, attribute in _NOT_PUBLIC:
        if getattr(ip, attribute):
            return f"{kind} address"
    return None if ip.is_global else "not a public address"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def url_refusal(url: str, allowed_origins: Collection[str]) -> str | None:
    """Return why ``url`` may not be fetched, or None: it must be http(s), of an allowed origin, and a host
    name must resolve to public addresses only (an allowed IP address is not checked further).

    ``allowed_origins`` are canonical (:func:`settings.canonical_origin`, as STATISTICS_EXPORT_IMAGE_HOSTS
    parses them). Raises :class:`_TransientDownloadError` when the name does not resolve (retried).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"{scheme or 'no'} scheme, only http and https are fetched"
    try:
        host, port = parts.hostname or "", parts.port
        if parts.username is not None or parts.password is not None:
            return "the URL carries credentials"
        origin = settings.canonical_origin(scheme, host, port)
    except ValueError as exc:
        return f"not a URL that can be fetched ({exc})"
    if origin not in allowed_origins:
        return f"{origin} is not an allowed image origin ({settings.IMAGE_HOSTS.env})"
    if _is_ip_literal(host):
        return None  # listed by the operator or the local stack, as an address: trusted as is
    try:
        answers = socket.getaddrinfo(host, port or (443 if scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _TransientDownloadError(f"{host} does not resolve ({exc}) fetching {url}") from None
    for *_, sockaddr in answers:
        address = str(sockaddr[0])
        reason = address_refusal(address)
        if reason is not None:
            return f"{host} resolves to {address}, {reason}"
    return None


def _as_sent(url: str) -> str:
    """Return the URL as it is sent (IDNA host, quoted path), so the checks see what is fetched: requests'
    preparation, whose ASCII result urllib3 sends unchanged."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except (requests.RequestException, ValueError):
        return url  # it cannot be sent either; the checks say why
    return prepared.url or url


def _checked(url: str, allowed_origins: Collection[str], refused: str) -> str:
    """Return ``url`` as it will be requested, or raise ImageURLRefused with ``refused`` and the reason."""
    sent = _as_sent(url)
    reason = url_refusal(sent, allowed_origins)
    if reason is not None:
        raise ImageURLRefused(f"{refused}: {reason}")
    return sent


def _allowed(origins: Iterable[str] | None) -> frozenset[str]:
    """Return the allowed origins in their canonical spelling; None: STATISTICS_EXPORT_IMAGE_HOSTS as set now."""
    if origins is None:
        return frozenset(settings.load().image_hosts)
    listed = ",".join(origins)
    return frozenset(settings.IMAGE_HOSTS.parse(listed)) if listed.strip(", ") else frozenset()


def _peer_checked(conn: HTTPConnection, sock: socket.socket) -> socket.socket:
    """Close and refuse a new connection whose peer is not public (a name whose DNS answer changed since its
    check); an IP address host passed the origin check as itself, and a proxy's peer is the proxy."""
    if conn.proxy is not None or _is_ip_literal(conn.host):
        return sock
    peer = str(sock.getpeername()[0])
    reason = address_refusal(peer)
    if reason is not None:
        sock.close()
        raise _PeerRefused(f"the connection to {conn.host} reached {peer}, {reason}")
    return sock


class _PeerCheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _peer_checked(self, super()._new_conn())


class _PeerCheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _peer_checked(self, super()._new_conn())


class _PeerCheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PeerCheckedHTTPConnection


class _PeerCheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PeerCheckedHTTPSConnection


class _DeadlinePassed(Exception):
    """An image (redirects and body included) took longer than its timeout."""


class ImageClient:
    """Pooled GETs for image downloads, on urllib3 directly: a requests session cost about 1.1 ms more CPU
    a GET (2.4 against 1.2 ms), and a day copies tens of thousands of images.

    Each new direct connection is refused if it reached a non-public address. The environment's proxies
    (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, read as requests and urllib read them) are used as requests would;
    TLS is verified against certifi's bundle, as requests does.
    """

    def __init__(self, pool_maxsize: int) -> None:
        self._pool_maxsize = pool_maxsize
        self._direct = PoolManager(num_pools=4, maxsize=pool_maxsize, ca_certs=certifi.where())
        self._direct.pool_classes_by_scheme = {"http": _PeerCheckedHTTPPool, "https": _PeerCheckedHTTPSPool}
        self._proxies = urllib.request.getproxies()
        self._via: dict[str, ProxyManager] = {}
        self._lock = threading.Lock()

    def get(self, url: str, timeout: float) -> BaseHTTPResponse:
        """Send one GET (no redirect followed, no retry): the response, its body not read yet."""
        return self._manager(url).request(
            "GET",
            url,
            preload_content=False,
            redirect=False,
            retries=False,
            timeout=Timeout(connect=timeout, read=timeout),
        )

    def _manager(self, url: str) -> PoolManager:
        if not self._proxies:  # no proxy set in the environment: the usual case, decided once
            return self._direct
        proxy = select_proxy(url, get_environ_proxies(url))  # requests' own choice, NO_PROXY included
        if not proxy:
            return self._direct
        with self._lock:
            if proxy not in self._via:
                self._via[proxy] = ProxyManager(proxy, maxsize=self._pool_maxsize, ca_certs=certifi.where())
            return self._via[proxy]

    def close(self) -> None:
        self._direct.clear()
        for manager in self._via.values():
            manager.clear()

    def __enter__(self) -> ImageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def image_session(pool_maxsize: int) -> ImageClient:
    """Return a client for image downloads: pooled (4 hosts, ``pool_maxsize`` connections each, for http and
    https), each new connection refused if it reached a non-public address."""
    return ImageClient(pool_maxsize)


def image_fetcher(config: settings.Settings) -> tuple[ImageFetch, ImageClient]:
    """Return a batch's image fetch, bound to the settings' size cap, timeout and allowed origins, and the
    pooled client it uses (``config.concurrency`` connections; the caller closes it)."""
    session = image_session(config.concurrency)
    fetch = partial(
        download_image,
        session,
        max_bytes=config.image_max_bytes,
        timeout=config.image_timeout,
        allowed_origins=config.image_hosts,
    )
    return fetch, session


def _timed_out(exc: BaseException) -> bool:
    # urllib3 makes a refused or unresolved connection a ConnectTimeoutError too; requests calls it a connection
    # error, and so does this module.
    return isinstance(exc, _DeadlinePassed) or (
        isinstance(exc, urllib3_exceptions.TimeoutError) and not isinstance(exc, urllib3_exceptions.NewConnectionError)
    )


def download_image(
    session: ImageClient,
    url: str,
    *,
    max_bytes: int = _DEFAULTS.image_max_bytes,
    timeout: float = _DEFAULTS.image_timeout,
    allowed_origins: Iterable[str] | None = None,
) -> tuple[bytes, str]:
    """Fetch an image (retrying 5xx, 429, connection errors and timeouts) and return its bytes and content type.

    ``max_bytes`` caps the body; ``timeout`` bounds each attempt as a whole, redirects included (settings
    IMAGE_MAX_BYTES and IMAGE_TIMEOUT). ``allowed_origins`` are the origins the URL and every redirect must
    be of (setting IMAGE_HOSTS; None: as the environment sets it now). A refused URL raises
    :class:`ImageURLRefused` before any connection to it.
    """
    allowed = _allowed(allowed_origins)
    retrying = Retrying(
        retry=retry_if_exception_type((_TransientDownloadError, urllib3_exceptions.HTTPError, _DeadlinePassed)),
        stop=stop_after_attempt(DOWNLOAD_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    try:
        return retrying(_download_once, session, url, max_bytes, timeout, allowed)
    except (urllib3_exceptions.HTTPError, _DeadlinePassed) as exc:
        if _timed_out(exc):
            raise ImageDownloadError(
                f"timed out after {timeout:g} s ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}"
            ) from None
        raise ImageDownloadError(f"{type(exc).__name__} ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}") from None


def _download_once(
    session: ImageClient, url: str, max_bytes: int, timeout: float, allowed: frozenset[str]
) -> tuple[bytes, str]:
    deadline = time.monotonic() + timeout
    target = _checked(url, allowed, f"image URL {url} refused")
    for hop in range(MAX_REDIRECTS + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed(f"{url} took over {timeout:g} s, redirects included")
        try:
            # The read timeout bounds each wait for bytes; the deadline bounds a body that trickles in.
            response = session.get(target, timeout=left)
        except _PeerRefused as exc:
            raise ImageURLRefused(f"image URL {url} refused: {exc}") from None
        read_whole = False
        try:
            location = response.get_redirect_location()
            if not location:
                body = _read_image(response, url, max_bytes, timeout, deadline)
                read_whole = True
                return body
            if hop == MAX_REDIRECTS:
                raise ImageURLRefused(f"image URL {url} refused: more than {MAX_REDIRECTS} redirects")
            after = urljoin(target, location)
            target = _checked(after, allowed, f"image URL {url}: redirect to {after} refused")
        finally:
            if not read_whole:  # a body left unread (an error page, a redirect, an oversized file) is not drained
                response.close()
            response.release_conn()
    raise AssertionError("unreachable: the last hop returns or raises")


def _read_image(
    response: BaseHTTPResponse, url: str, max_bytes: int, timeout: float, deadline: float
) -> tuple[bytes, str]:
    if response.status >= 500 or response.status == 429:
        raise _TransientDownloadError(f"HTTP {response.status} fetching {url}")
    if response.status != 200:
        raise ImageDownloadError(f"HTTP {response.status} fetching {url}")
    content_type = response.headers.get("Content-Type", "application/octet-stream")
    if not content_type.lower().startswith("image/"):
        raise ImageDownloadError(f"the CDN answered {content_type.split(';')[0]}, not an image, for {url}")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageDownloadError(
            f"{url} is {declared} bytes, over the {max_bytes}-byte cap ({settings.IMAGE_MAX_BYTES.env})"
        )
    chunks, size = [], 0
    for chunk in response.stream(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ImageDownloadError(f"{url} is over the {max_bytes}-byte cap ({settings.IMAGE_MAX_BYTES.env})")
        if time.monotonic() > deadline:
            raise _DeadlinePassed(f"the body of {url} took over {timeout:g} s")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not is_image(body, content_type):
        raise ImageDownloadError(f"the body of {url} is not an image file (declared {content_type.split(';')[0]})")
    return body, content_type


BackupOutcome = tuple[dict[str, ImageBackup], list[tuple[ImageOwner, ImageBackup]], list[str]]


def start_image_backups(
    shop_id: str,
    owners: dict[str, ImageOwner],
    already: dict[str, ImageBackup],
    fetch: ImageFetch,
    put: Callable[[str, bytes, str], None],
    object_url: Callable[[str], str],
    pool: ThreadPoolExecutor,
) -> Callable[[], BackupOutcome]:
    """Start copying the images not yet in R2 on ``pool``; return what waits for them (so several shops'
    copies run at once).

    Waiting returns every image's backup (old or new), the new backups to record, and one message per
    image that could not be copied (those keep null R2 fields and are tried again next run).
    """
    # The Shopify URL shown is today's; the R2 copy is the one made when the image was first seen.
    backups = {
        gid: replace(already[gid], shopify_url=owner.image.url) for gid, owner in owners.items() if gid in already
    }
    todo = [owner for gid, owner in owners.items() if gid not in already]

    def copy(owner: ImageOwner) -> ImageBackup:
        data, content_type = fetch(owner.image.url)
        key = image_key(shop_id, owner.product_id, owner.image.media_gid, owner.image.url)
        put(key, data, content_type)
        return ImageBackup(owner.image.media_gid, owner.image.url, key, object_url(key), now_ms())

    started = [(owner, pool.submit(copy, owner)) for owner in todo]

    def collect() -> BackupOutcome:
        new, failures = [], []
        for owner, future in started:
            try:
                backup = future.result()
            except ImageDownloadError as exc:
                failures.append(f"shop {shop_id} product {owner.product_id} image {owner.image.media_gid}: {exc}")
                backup = ImageBackup(owner.image.media_gid, owner.image.url)
            else:
                new.append((owner, backup))
            backups[owner.image.media_gid] = backup
        return backups, new, failures

    return collect
