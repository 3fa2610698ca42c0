"""The image CDN hook: product image downloads under the origin rules (``image_origins``), waiting without a
thread each.

Every download is a coroutine on one event loop of this process (aiohttp), at most ``max_in_flight`` of a
hook's at once: the export starts all of a batch's downloads and writes each image to R2 as it arrives, in the
same coroutine (:meth:`ImageCdnHook.start_copy`).

A download that fails (HTTP 4xx, 5xx or 429 after retries, a timeout, an HTML page or any body that is not an
image, a file over the size cap) raises :class:`ImageDownloadError`. 5xx, 429, connection errors, timeouts and
a name that does not resolve are retried here (DOWNLOAD_ATTEMPTS); a 4xx, a page that is not an image or an
oversized file is the same answer seconds later, so it is not. An oversized file is refused from its
Content-Length, or at the cap when it has none, never read whole. Redirects are followed here, not by aiohttp:
at most MAX_REDIRECTS, each Location checked the same way before it is requested. A refused URL raises
:class:`ImageURLRefused` before any connection to it.

DNS rebinding (a name answering a public address to a check and a private one at connect time) cannot happen:
the client's resolver judges the addresses a lookup answers and the connection is made to those very
addresses, so a name with any non-public address is refused before any connection. Behind an HTTP(S) proxy
(HTTPS_PROXY, ...) the proxy resolves and connects, so only the origin checks apply; the proxy's own address is
the operator's choice and is not judged.

The loop is asyncio's own, not uvloop: Python's sockets raise the audit events (``socket.getaddrinfo``,
``socket.connect``) that prove, in the tests and to a deployment's audit hook, what the client looked up and
reached. An image is copied once, not daily, so its CPU matters less than the writes'.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
import certifi
import requests
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from requests.utils import get_environ_proxies, select_proxy
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from export_hooks.background_loop import BackgroundLoop
from export_hooks.errors import ImageDownloadError, ImageURLRefused
from export_hooks.image_origins import HostUnresolved, answers_refusal, url_refusal

DOWNLOAD_ATTEMPTS = 3
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
T = TypeVar("T")

# The event loop every image download of this process waits on.
DOWNLOADS = BackgroundLoop("image-downloads")

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


class _AddressRefused(ImageURLRefused):
    """A host name resolved to a non-public address (raised by the resolver, before any connection)."""


@dataclass(frozen=True)
class ImageRules:
    """What a download may fetch: the allowed origins (canonical), the size cap and the time for the whole
    download, and the names of the settings they come from (for the messages)."""

    allowed_origins: frozenset[str]
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


class PublicOnlyResolver(ThreadedResolver):
    """aiohttp's resolver (``getaddrinfo``), refusing a name any of whose addresses is not public: the connection
    is made to the addresses returned, so none it reaches was not judged. The proxies' hosts are not judged."""

    def __init__(self, trusted_hosts: frozenset[str]) -> None:
        super().__init__()
        self._trusted = trusted_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            answers = await super().resolve(host, port, family)
        except (OSError, UnicodeError) as exc:
            raise HostUnresolved(f"{host} does not resolve ({exc})") from None
        if host.lower() not in self._trusted:
            reason = answers_refusal(host, [answer["host"] for answer in answers])
            if reason is not None:
                raise _AddressRefused(reason)
        return answers


class ImageClient:
    """Image GETs on the downloads' loop: one aiohttp session, at most ``max_in_flight`` downloads at once.

    The environment's proxies (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) are used as requests would; TLS is verified
    against certifi's bundle, as requests does. The session is made on the loop at the first download.
    """

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        # Read once: aiohttp's trust_env reads the environment and ~/.netrc again for every request, which
        # doubled the CPU of a download (bench/image_clients.py).
        self._proxies = urllib.request.getproxies()
        self._proxy_hosts = frozenset((urlsplit(proxy).hostname or "").lower() for proxy in self._proxies.values())
        self._session: aiohttp.ClientSession | None = None
        self._gate: asyncio.Semaphore | None = None

    def start(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine of this client on the downloads' loop; return its future at once."""
        return DOWNLOADS.submit(coroutine)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_in_flight,
                resolver=PublicOnlyResolver(self._proxy_hosts),
                ssl=ssl.create_default_context(cafile=certifi.where()),
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def slot(self) -> asyncio.Semaphore:
        """The hook's in-flight bound, made on the loop at its first use."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.max_in_flight)
        return self._gate

    async def get(self, url: str) -> aiohttp.ClientResponse:
        """Send one GET (no redirect followed, no retry): the response, its body not read yet."""
        session = await self.session()
        # The environment's proxy for this URL, NO_PROXY included, as requests chooses it; none is the usual case.
        proxy = select_proxy(url, get_environ_proxies(url)) if self._proxies else None
        return await session.get(url, allow_redirects=False, proxy=proxy)

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            self.start(session.close()).result()

    def __enter__(self) -> ImageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageCdnHook:
    """The export's :class:`ImageSource`: one client and the rules every download follows."""

    def __init__(self, rules: ImageRules, max_in_flight: int) -> None:
        self.rules = rules
        self.client = ImageClient(max_in_flight)

    def start_fetch(self, url: str) -> Future[tuple[bytes, str]]:
        """Start downloading an image and return at once: a future of its bytes and content type (see
        :func:`fetch_image`)."""
        return self.client.start(fetch_image(self.client, url, self.rules))

    def start_copy(self, url: str, keep: Callable[[bytes, str], Awaitable[T]]) -> Future[T]:
        """Start downloading an image and, in the same coroutine, awaiting ``keep(bytes, content_type)`` as soon
        as it arrives (an object store's write, on this loop too); return at once: a future of what ``keep``
        returns, raising the download's error or keep's. An image crosses threads once each way, not per step."""

        async def copy() -> T:
            data, content_type = await fetch_image(self.client, url, self.rules)
            return await keep(data, content_type)

        return self.client.start(copy())

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ImageCdnHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def download_image(client: ImageClient, url: str, rules: ImageRules) -> tuple[bytes, str]:
    """Download one image and wait for it (:func:`fetch_image`)."""
    return client.start(fetch_image(client, url, rules)).result()


async def fetch_image(client: ImageClient, url: str, rules: ImageRules) -> tuple[bytes, str]:
    """Fetch an image (retrying 5xx, 429, connection errors and timeouts) and return its bytes and content type.

    ``rules.max_bytes`` caps the body; ``rules.timeout`` bounds each attempt as a whole, redirects included. The
    URL and every redirect must be of ``rules.allowed_origins``. A refused URL raises :class:`ImageURLRefused`
    before any connection to it.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((_TransientDownloadError, HostUnresolved, aiohttp.ClientError, TimeoutError)),
        stop=stop_after_attempt(DOWNLOAD_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await _download_once(client, url, rules)
    except TimeoutError:
        raise ImageDownloadError(
            f"timed out after {rules.timeout:g} s ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}"
        ) from None
    except aiohttp.ClientError as exc:
        raise ImageDownloadError(f"{type(exc).__name__} ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _as_sent(url: str) -> str:
    """Return the URL as it is sent (IDNA host, quoted path), so the checks see what is fetched: requests'
    preparation, whose ASCII result is then sent unchanged."""
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


async def _download_once(client: ImageClient, url: str, rules: ImageRules) -> tuple[bytes, str]:
    refused = f"image URL {url} refused"
    target = _checked(url, rules, refused)
    async with client.slot(), asyncio.timeout(rules.timeout):  # the timeout bounds redirects and body together
        for hop in range(MAX_REDIRECTS + 1):
            try:
                response = await client.get(target)
            except _AddressRefused as exc:
                raise ImageURLRefused(f"{refused}: {exc}") from None
            except HostUnresolved as exc:
                raise HostUnresolved(f"{exc} fetching {url}") from None
            read_whole = False
            try:
                location = response.headers.get("Location") if response.status in _REDIRECTS else None
                if not location:
                    image = await _read_image(response, url, rules)
                    read_whole = True
                    return image
                if hop == MAX_REDIRECTS:
                    raise ImageURLRefused(f"image URL {url} refused: more than {MAX_REDIRECTS} redirects")
                after = urljoin(target, location)
                refused = f"image URL {url}: redirect to {after} refused"
                target = _checked(after, rules, refused)
            finally:
                if read_whole:
                    response.release()  # the connection goes back to the pool
                else:  # a body left unread (an error page, a redirect, an oversized file) is not drained
                    response.close()
    raise AssertionError("unreachable: the last hop returns or raises")


async def _read_image(response: aiohttp.ClientResponse, url: str, rules: ImageRules) -> tuple[bytes, str]:
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
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > rules.max_bytes:
            raise ImageDownloadError(f"{url} is over {cap}")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not is_image(body, content_type):
        raise ImageDownloadError(f"the body of {url} is not an image file (declared {content_type.split(';')[0]})")
    return body, content_type
