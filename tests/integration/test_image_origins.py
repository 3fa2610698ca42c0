"""Image downloads come only from the allowed origins: every URL and every redirect is checked before it is
requested, a host name must resolve to public addresses, and a refused image is an image failure of the
export, never a crash.

Nothing here sends a packet anywhere but 127.0.0.1: the URLs to 169.254.169.254, 10.0.0.1 and
cdn.shopify.com are refused before any lookup or connection, which the audit hook below proves.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from export_hooks.errors import ImageDownloadError, ImageURLRefused
from export_hooks.image_cdn import DOWNLOAD_ATTEMPTS, ImageClient, is_image
from faults_support import DOMAIN, SHOP, world_fixture  # noqa: F401 - provides the `world` fixture
from helpers import download_image, product
from include.statistics_export import settings
from shopify_sandbox.images import image_bytes
from shopify_sandbox.world import SandboxShop

HOSTS_ENV = settings.IMAGE_HOSTS.env
CDN = settings.IMAGE_HOSTS.default
SANDBOX_DOMAIN = "origins-shop.myshopify.com"
FAILED_MEDIA = 102  # in the fault world: variant 1002's own image, and product 1's second image
LOOPBACK = r"(127\.0\.0\.1|::1)"

# -- what the process looks up and connects to: Python's audit events, no mock ------------------------

_seen: list[tuple[str, object]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _seen is None:
        return
    if event == "socket.getaddrinfo":
        _seen.append(("lookup", args[0]))
    elif event == "socket.connect" and isinstance(args[1], tuple):
        _seen.append(("connect", args[1][:2]))


sys.addaudithook(_audit)


@contextmanager
def watched_network():
    """Yield the list of (``lookup``, host) and (``connect``, (address, port)) the process does meanwhile."""
    global _seen
    _seen = seen = []
    try:
        yield seen
    finally:
        _seen = None


def hosts_reached(seen) -> set[str]:
    return {str(target[0]) for kind, target in seen if kind == "connect"}


def hosts_looked_up(seen) -> set[str]:
    return {str(host) for kind, host in seen if kind == "lookup"}


# -- a small origin on loopback that answers redirects -----------------------------------------------


class Origin:
    """An HTTP server on 127.0.0.1: ``/img.jpg`` is an image, a path given to :meth:`redirect` a 302."""

    IMAGE = b"\xff\xd8\xff\xe0" + b"\x00" * 200

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.redirects: dict[str, str] = {}
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - stdlib signature
                """Stay quiet."""

            def do_GET(self):  # noqa: N802 - stdlib naming
                origin.requests.append(self.path)
                if self.path in origin.redirects:
                    self.send_response(302)
                    self.send_header("Location", origin.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/img.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(origin.IMAGE)))
                    self.end_headers()
                    self.wfile.write(origin.IMAGE)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def redirect(self, path: str, location: str) -> str:
        """Answer ``path`` with a 302 to ``location``; return the URL of ``path``."""
        self.redirects[path] = location
        return self.base + path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def origin():
    served = Origin()
    yield served
    served.stop()


@pytest.fixture
def other():
    """A second loopback server, never allowed: it must never be asked anything."""
    served = Origin()
    yield served
    served.stop()


@pytest.fixture
def sandbox_image(sandbox):
    """The URL of an image on the sandbox's CDN, and its bytes."""
    sandbox.add_shop(SandboxShop(SANDBOX_DOMAIN, "token", products=[product(7, images=1)]))
    return f"{sandbox.base_url}/cdn/{SANDBOX_DOMAIN}/701/img1.jpeg", image_bytes(701, "img1.jpeg")


@pytest.fixture
def session():
    with ImageClient(2) as images:
        yield images


# -- one URL ---------------------------------------------------------------------------------------------


def test_an_image_of_an_allowed_origin_is_fetched_through_redirects_within_the_allowed_origins(
    sandbox, sandbox_image, origin, session
):
    url, body = sandbox_image
    allowed = (CDN, sandbox.base_url, origin.base)
    assert download_image(session, url, allowed_origins=allowed) == (body, "image/jpeg")
    # Three redirects is the most followed: origin -> origin -> origin -> the sandbox's CDN.
    origin.redirect("/c", url)
    origin.redirect("/b", "/c")
    start = origin.redirect("/a", f"{origin.base}/b")
    with watched_network() as seen:
        data, content_type = download_image(session, start, allowed_origins=allowed)
    assert (data, content_type) == (body, "image/jpeg") and is_image(data, content_type)
    assert origin.requests == ["/a", "/b", "/c"]
    assert hosts_reached(seen) == {"127.0.0.1"}


def test_the_origin_is_the_exact_scheme_host_and_port(sandbox, sandbox_image, session):
    url, body = sandbox_image
    port = sandbox.port
    # https's default port is 443 and http's 80: the same origin spelled with or without them, in any case.
    assert download_image(session, url, allowed_origins=[f"HTTP://127.0.0.1:{port}/"])[0] == body
    with watched_network() as seen, pytest.raises(ImageURLRefused, match="is not an allowed image origin"):
        download_image(session, url, allowed_origins=[f"https://127.0.0.1:{port}", "http://127.0.0.1"])
    assert seen == []


@pytest.mark.parametrize(
    ("make_url", "allow_own_origin", "reason", "looked_up"),
    [
        pytest.param(
            lambda origin, other: f"{other.base}/img.jpg",
            False,
            lambda origin, other: re.escape(f"{other.base} is not an allowed image origin ({HOSTS_ENV})"),
            set(),
            id="loopback-port-not-allowed",
        ),
        pytest.param(
            lambda origin, other: "http://169.254.169.254/latest/meta-data/",
            False,
            lambda origin, other: re.escape(f"http://169.254.169.254 is not an allowed image origin ({HOSTS_ENV})"),
            set(),
            id="cloud-metadata-address",
        ),
        pytest.param(
            lambda origin, other: "http://cdn.shopify.com/s/files/1/0001/img.jpg",
            False,
            lambda origin, other: re.escape(f"http://cdn.shopify.com is not an allowed image origin ({HOSTS_ENV})"),
            set(),
            id="plain-http-to-shopify",
        ),
        pytest.param(
            lambda origin, other: f"http://localhost:{origin.port}/img.jpg",
            True,
            lambda origin, other: f"localhost resolves to {LOOPBACK}, a loopback address",
            {"localhost"},
            id="allowed-name-resolving-to-loopback",
        ),
    ],
)
def test_a_url_is_refused_before_any_connection(
    origin, other, sandbox, session, make_url, allow_own_origin, reason, looked_up
):
    url = make_url(origin, other)
    allowed = [CDN, sandbox.base_url] + ([f"http://localhost:{origin.port}"] if allow_own_origin else [])
    with watched_network() as seen, pytest.raises(ImageURLRefused) as refused:
        download_image(session, url, allowed_origins=allowed)
    assert re.fullmatch(f"image URL {re.escape(url)} refused: {reason(origin, other)}", str(refused.value))
    assert hosts_reached(seen) == set()  # not even a TCP handshake
    assert hosts_looked_up(seen) == looked_up  # names only: an address or a refused origin is never looked up
    assert origin.requests == other.requests == []


def test_the_default_allows_shopifys_cdn_over_https_only(session, monkeypatch):
    monkeypatch.delenv(HOSTS_ENV, raising=False)
    assert settings.Settings().image_hosts == settings.load().image_hosts == ("https://cdn.shopify.com",)
    with watched_network() as seen, pytest.raises(ImageURLRefused, match="http://cdn.shopify.com is not an allowed"):
        download_image(session, "http://cdn.shopify.com/s/files/img.jpg")  # the environment's (default) origins
    assert seen == []


# -- redirects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        pytest.param(
            lambda other: "http://10.0.0.1/x.jpg",
            lambda other: re.escape(f"http://10.0.0.1 is not an allowed image origin ({HOSTS_ENV})"),
            id="private-address",
        ),
        pytest.param(
            lambda other: f"{other.base}/img.jpg",
            lambda other: re.escape(f"{other.base} is not an allowed image origin ({HOSTS_ENV})"),
            id="loopback-port-not-allowed",
        ),
        pytest.param(
            lambda other: "file:///etc/passwd",
            lambda other: "file scheme, only http and https are fetched",
            id="file-scheme",
        ),
    ],
)
def test_a_redirect_out_of_the_allowed_origins_is_refused_before_it_is_followed(
    origin, other, session, location, reason
):
    target = location(other)
    url = origin.redirect("/moved.jpg", target)
    with watched_network() as seen, pytest.raises(ImageURLRefused) as refused:
        download_image(session, url, allowed_origins=[CDN, origin.base])
    expected = f"image URL {re.escape(url)}: redirect to {re.escape(target)} refused: {reason(other)}"
    assert re.fullmatch(expected, str(refused.value))
    assert origin.requests == ["/moved.jpg"]  # asked once: a refusal is not retried
    assert other.requests == []
    assert {target for kind, target in seen if kind == "connect"} == {("127.0.0.1", origin.port)}
    assert hosts_looked_up(seen) <= {"127.0.0.1"}


def test_a_redirect_to_an_allowed_name_resolving_to_loopback_is_refused(origin, session):
    target = f"http://localhost:{origin.port}/img.jpg"
    url = origin.redirect("/moved.jpg", target)
    with pytest.raises(ImageURLRefused) as refused:
        download_image(session, url, allowed_origins=[origin.base, f"http://localhost:{origin.port}"])
    expected = f"image URL {re.escape(url)}: redirect to {re.escape(target)} refused: localhost resolves to {LOOPBACK}, a loopback address"
    assert re.fullmatch(expected, str(refused.value))
    assert origin.requests == ["/moved.jpg"]


def test_more_than_three_redirects_are_refused(origin, session):
    origin.redirect("/3", "/img.jpg")
    origin.redirect("/2", "/3")
    origin.redirect("/1", "/2")
    url = origin.redirect("/0", "/1")
    with pytest.raises(ImageURLRefused, match=re.escape(f"image URL {url} refused: more than 3 redirects")):
        download_image(session, url, allowed_origins=[origin.base])
    assert origin.requests == ["/0", "/1", "/2", "/3"]


# -- the connection itself: DNS answering differently at connect time ------------------------------------


def test_a_name_is_judged_by_the_addresses_the_connection_is_made_to(origin, session):
    # As if a name checked public resolved to loopback at connect time (DNS rebinding): the client's own
    # resolver judges the very addresses it connects to, so even a GET that skips the URL checks is refused
    # before any connection.
    async def get(url: str) -> bytes:
        response = await session.get(url)
        try:
            return await response.read()
        finally:
            response.close()

    with (
        watched_network() as seen,
        pytest.raises(ImageURLRefused, match=f"localhost resolves to {LOOPBACK}, a loopback address"),
    ):
        session.start(get(f"http://localhost:{origin.port}/img.jpg")).result()
    assert hosts_looked_up(seen) == {"localhost"} and hosts_reached(seen) == set()
    assert origin.requests == []
    # An address host passed the origin check as itself: it is not judged again.
    assert session.start(get(f"{origin.base}/img.jpg")).result() == Origin.IMAGE


# -- in an export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("foreign", "allow", "reason", "asked"),
    [
        pytest.param(
            lambda origin: "http://169.254.169.254/latest/meta-data/img.jpg",
            False,
            re.escape(f"http://169.254.169.254 is not an allowed image origin ({HOSTS_ENV})"),
            [],
            id="not-an-allowed-origin",
        ),
        pytest.param(
            lambda origin: f"http://localhost:{origin.port}/img.jpg",
            True,
            f"localhost resolves to {LOOPBACK}, a loopback address",
            [],
            id="allowed-name-resolving-to-loopback",
        ),
        pytest.param(
            lambda origin: origin.redirect("/moved.jpg", "http://10.0.0.1/x.jpg"),
            True,
            re.escape("redirect to http://10.0.0.1/x.jpg refused: http://10.0.0.1 is not an allowed image origin"),
            ["/moved.jpg"],
            id="redirect-to-a-private-address",
        ),
    ],
)
def test_a_refused_image_is_an_image_failure_of_the_export(
    world, sandbox, origin, monkeypatch, foreign, allow, reason, asked
):
    url = foreign(origin)
    if allow:  # the world allows Shopify's CDN and the sandbox's; the small origin too, by address and by name
        allowed = ",".join(settings.load().image_hosts)
        monkeypatch.setenv(HOSTS_ENV, f"{allowed},{origin.base},http://localhost:{origin.port}")
    sandbox.foreign_image_url(DOMAIN, FAILED_MEDIA, url)

    with watched_network() as seen:
        (result,) = world.run()

    assert (result.images_backed_up, result.images_failed) == (3, 1)
    (failure,) = result.image_failures
    assert failure.startswith(f"shop {SHOP} product 1 image gid://shopify/MediaImage/{FAILED_MEDIA}: image URL {url}")
    assert re.search(reason, failure), failure
    assert hosts_reached(seen) == {"127.0.0.1"}  # the export spoke to loopback only
    assert not hosts_looked_up(seen) & {"169.254.169.254", "10.0.0.1"}
    assert origin.requests == asked  # once at most: a refusal is not retried
    state = world.state()
    own = json.loads(state.objects[f"statistic-exports/{SHOP}/1/1002/20261121.json"])["variant"]["images"]
    assert [(i["mediaId"], i["shopifyUrl"], i["r2Key"], i["r2Url"]) for i in own] == [
        (f"gid://shopify/MediaImage/{FAILED_MEDIA}", url, None, None)
    ]
    assert len(state.rows["ProductImageBackup"]) == 3  # nothing recorded: the next run tries again

    sandbox.foreign_image_url(DOMAIN, FAILED_MEDIA, None)  # Shopify's URL is its CDN's again
    (result,) = world.run()
    assert (result.images_backed_up, result.images_reused, result.image_failures) == (1, 3, [])
    assert world.state() == world.expected


def test_a_name_that_does_not_resolve_is_retried_then_an_image_failure(session):
    url = "http://no-such-host.invalid/img.jpg"  # .invalid never resolves (RFC 2606)
    with watched_network() as seen, pytest.raises(ImageDownloadError) as failed:
        download_image(session, url, allowed_origins=["http://no-such-host.invalid"])
    assert re.fullmatch(rf"no-such-host\.invalid does not resolve \(.+\) fetching {re.escape(url)}", str(failed.value))
    assert not isinstance(failed.value, ImageURLRefused)  # tried again next run
    assert [host for kind, host in seen if kind == "lookup"] == ["no-such-host.invalid"] * DOWNLOAD_ATTEMPTS
    assert hosts_reached(seen) == set()
