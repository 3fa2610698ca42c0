"""The image CDN hook: pooled downloads of product images under the origin rules (``image_origins``).

A download that fails (HTTP 4xx, 5xx or 429 after retries, a timeout, an HTML page or any body that is not an
image, a file over the size cap) raises :class:`ImageDownloadError`. 5xx, 429, connection errors, timeouts and
a name that does not resolve are retried here (DOWNLOAD_ATTEMPTS); a 4xx, a page that is not an image or an
oversized file is the same answer seconds later, so it is not. An oversized file is refused from its
Content-Length, or at the cap when it has none, never read whole. Redirects are followed here, not by urllib3:
at most MAX_REDIRECTS, each Location checked the same way before it is requested. A refused URL raises
:class:`ImageURLRefused` before any connection to it.

DNS rebinding (a name answering a public address to the check and a private one at connect time): the client
checks the address every new connection reached, right after the TCP handshake and before TLS or any byte of
the request, and closes a connection that reached a non-public address. What remains: that handshake itself
with the address; behind an HTTP(S) proxy (HTTPS_PROXY, ...) the proxy resolves and connects, so only the
checks before each request apply.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urljoin

import certifi
import requests
from requests.utils import get_environ_proxies, select_proxy
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3 import exceptions as urllib3_exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from export_hooks.errors import ImageDownloadError, ImageURLRefused
from export_hooks.image_origins import HostUnresolved, address_refusal, is_ip_literal, url_refusal

DOWNLOAD_ATTEMPTS = 3
MAX_REDIRECTS = 3

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


class _TransientDownloadError(ImageDownloadError):
    pass


class _PeerRefused(ImageURLRefused):
    """A new connection reached a non-public address (raised from the connection, before the request)."""


class _DeadlinePassed(Exception):
    """An image (redirects and body included) took longer than its timeout."""


@dataclass(frozen=True)
class ImageRules:
    """What a download may fetch: the allowed origins (canonical), the size cap and the time for the whole
    download, and the names of the settings they come from (for the messages)."""

    allowed_origins: Collection[str]
    max_bytes: int
    timeout: float
    origins_setting: str = ""
    cap_setting: str = ""


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


def _peer_checked(conn: HTTPConnection, sock: socket.socket) -> socket.socket:
    """Close and refuse a new connection whose peer is not public (a name whose DNS answer changed since its
    check); an IP address host passed the origin check as itself, and a proxy's peer is the proxy."""
    if conn.proxy is not None or is_ip_literal(conn.host):
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


class ImageClient:
    """Pooled GETs for image downloads, on urllib3 directly: a requests session cost about 1.1 ms more CPU
    a GET (2.4 against 1.2 ms), and a day copies tens of thousands of images.

    Pooled for 4 hosts, ``pool_maxsize`` connections each, for http and https. Each new direct connection is
    refused if it reached a non-public address. The environment's proxies (HTTP_PROXY, HTTPS_PROXY, NO_PROXY,
    read as requests and urllib read them) are used as requests would; TLS is verified against certifi's
    bundle, as requests does.
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


class ImageCdnHook:
    """The export's :class:`ImageSource`: one pooled client and the rules every download follows."""

    def __init__(self, rules: ImageRules, pool_maxsize: int) -> None:
        self.rules = rules
        self.client = ImageClient(pool_maxsize)

    def fetch(self, url: str) -> tuple[bytes, str]:
        """Return an image's bytes and content type (see :func:`download_image`)."""
        return download_image(self.client, url, self.rules)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ImageCdnHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timed_out(exc: BaseException) -> bool:
    # urllib3 makes a refused or unresolved connection a ConnectTimeoutError too; requests calls it a connection
    # error, and so does this module.
    return isinstance(exc, _DeadlinePassed) or (
        isinstance(exc, urllib3_exceptions.TimeoutError) and not isinstance(exc, urllib3_exceptions.NewConnectionError)
    )


def download_image(client: ImageClient, url: str, rules: ImageRules) -> tuple[bytes, str]:
    """Fetch an image (retrying 5xx, 429, connection errors and timeouts) and return its bytes and content type.

    ``rules.max_bytes`` caps the body; ``rules.timeout`` bounds each attempt as a whole, redirects included. The
    URL and every redirect must be of ``rules.allowed_origins``. A refused URL raises :class:`ImageURLRefused`
    before any connection to it.
    """
    retrying = Retrying(
        retry=retry_if_exception_type(
            (_TransientDownloadError, HostUnresolved, urllib3_exceptions.HTTPError, _DeadlinePassed)
        ),
        stop=stop_after_attempt(DOWNLOAD_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    try:
        return retrying(_download_once, client, url, rules)
    except (urllib3_exceptions.HTTPError, _DeadlinePassed) as exc:
        if _timed_out(exc):
            raise ImageDownloadError(
                f"timed out after {rules.timeout:g} s ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}"
            ) from None
        raise ImageDownloadError(f"{type(exc).__name__} ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}") from None


def _as_sent(url: str) -> str:
    """Return the URL as it is sent (IDNA host, quoted path), so the checks see what is fetched: requests'
    preparation, whose ASCII result urllib3 sends unchanged."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except (requests.RequestException, ValueError):
        return url  # it cannot be sent either; the checks say why
    return prepared.url or url


def _checked(url: str, rules: ImageRules, refused: str) -> str:
    """Return ``url`` as it will be requested, or raise ImageURLRefused with ``refused`` and the reason."""
    sent = _as_sent(url)
    reason = url_refusal(sent, rules.allowed_origins, rules.origins_setting)
    if reason is not None:
        raise ImageURLRefused(f"{refused}: {reason}")
    return sent


def _download_once(client: ImageClient, url: str, rules: ImageRules) -> tuple[bytes, str]:
    deadline = time.monotonic() + rules.timeout
    target = _checked(url, rules, f"image URL {url} refused")
    for hop in range(MAX_REDIRECTS + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed(f"{url} took over {rules.timeout:g} s, redirects included")
        try:
            # The read timeout bounds each wait for bytes; the deadline bounds a body that trickles in.
            response = client.get(target, timeout=left)
        except _PeerRefused as exc:
            raise ImageURLRefused(f"image URL {url} refused: {exc}") from None
        read_whole = False
        try:
            location = response.get_redirect_location()
            if not location:
                body = _read_image(response, url, rules, deadline)
                read_whole = True
                return body
            if hop == MAX_REDIRECTS:
                raise ImageURLRefused(f"image URL {url} refused: more than {MAX_REDIRECTS} redirects")
            after = urljoin(target, location)
            target = _checked(after, rules, f"image URL {url}: redirect to {after} refused")
        finally:
            if not read_whole:  # a body left unread (an error page, a redirect, an oversized file) is not drained
                response.close()
            response.release_conn()
    raise AssertionError("unreachable: the last hop returns or raises")


def _read_image(response: BaseHTTPResponse, url: str, rules: ImageRules, deadline: float) -> tuple[bytes, str]:
    if response.status >= 500 or response.status == 429:
        raise _TransientDownloadError(f"HTTP {response.status} fetching {url}")
    if response.status != 200:
        raise ImageDownloadError(f"HTTP {response.status} fetching {url}")
    content_type = response.headers.get("Content-Type", "application/octet-stream")
    if not content_type.lower().startswith("image/"):
        raise ImageDownloadError(f"the CDN answered {content_type.split(';')[0]}, not an image, for {url}")
    cap = f"the {rules.max_bytes}-byte cap" + (f" ({rules.cap_setting})" if rules.cap_setting else "")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > rules.max_bytes:
        raise ImageDownloadError(f"{url} is {declared} bytes, over {cap}")
    chunks, size = [], 0
    for chunk in response.stream(64 * 1024):
        size += len(chunk)
        if size > rules.max_bytes:
            raise ImageDownloadError(f"{url} is over {cap}")
        if time.monotonic() > deadline:
            raise _DeadlinePassed(f"the body of {url} took over {rules.timeout:g} s")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not is_image(body, content_type):
        raise ImageDownloadError(f"the body of {url} is not an image file (declared {content_type.split(';')[0]})")
    return body, content_type
