"""ShopifySandbox: a loopback HTTP server speaking Shopify's Admin GraphQL API and CDN."""

from __future__ import annotations

import hmac
import json
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from .catalog import CatalogIndex
from .engine import ShopState, run_graphql
from .images import content_type_for, image_bytes
from .resolvers import sandbox_schema
from .world import SandboxShop

SUPPORTED_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
RATE_LIMITED = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."

_GRAPHQL_PATH = re.compile(r"^/(?P<shop>[^/]+)/admin/api/(?P<version>[^/]+)/graphql\.json$")
_CDN_PATH = re.compile(r"^/cdn/(?P<shop>[^/]+)/(?P<media>\d+)/(?P<filename>[^/]+)$")


def served_version(requested: str) -> str:
    """Return the API version Shopify serves for a requested one (the oldest supported if unknown)."""
    return requested if requested in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # exporters open many connections at once from thread pools

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        # Track open (keep-alive) connections so stop() can close them: a stopped sandbox
        # must look down to clients, not keep answering on pooled sockets.
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients' sessions expect
    server_version = "ShopifySandbox/1.0"
    timeout = 30  # idle keep-alive connections are closed eventually
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls
    sandbox: "ShopifySandbox"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: tests and benchmarks read their own output."""

    # -- plumbing -------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        latency = self.sandbox.latency_seconds
        if latency > 0:
            time.sleep(latency)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- routes ---------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        """Serve `POST /{shop}/admin/api/{version}/graphql.json`."""
        raw = self._read_body()  # always drain the body so keep-alive stays in sync
        match = _GRAPHQL_PATH.match(urlsplit(self.path).path)
        if not match:
            self._send_json(404, {"errors": "Not Found"})
            return
        version = {"X-Shopify-API-Version": served_version(match["version"])}
        state = self.sandbox._state(match["shop"])
        if state is None:
            self._send_json(404, {"errors": "Not Found"}, version)
            return
        with state.lock:
            state.stats.requests += 1
        failure = state.take_failure()
        if failure is not None:
            status, retry_after = failure
            headers = dict(version)
            if retry_after is not None:
                headers["Retry-After"] = f"{retry_after:g}"
            message = RATE_LIMITED if status == 429 else HTTPStatus(status).phrase
            self._send_json(status, {"errors": message}, headers)
            return
        token = self.headers.get("X-Shopify-Access-Token") or ""
        if state.revoked or not hmac.compare_digest(token.encode(), state.shop.access_token.encode()):
            self._send_json(401, {"errors": INVALID_TOKEN}, version)
            return
        try:
            status, payload = run_graphql(state, self.sandbox._catalog, raw, self.sandbox.base_url)
        except Exception as exc:  # noqa: BLE001 - a sandbox bug must still answer like a 500
            status, payload = 500, {"errors": f"Internal Server Error: {type(exc).__name__}: {exc}"}
        self._send_json(status, payload, version)

    def do_GET(self) -> None:  # noqa: N802
        """Serve `GET /cdn/{shop}/{media_id}/{filename}` (no token, as on a CDN)."""
        self._serve_cdn(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        """Serve HEAD for CDN files."""
        self._serve_cdn(head_only=True)

    def _serve_cdn(self, head_only: bool) -> None:
        url = urlsplit(self.path)
        match = _CDN_PATH.match(url.path)
        found = self.sandbox._cdn_file(match) if match else None
        if found is None:
            self._send(404, b"Not Found", "text/plain", head_only=head_only)
            return
        media_id, filename, fault = found
        if fault is not None:
            self._send(fault, HTTPStatus(fault).phrase.encode(), "text/plain", head_only=head_only)
            return
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        width = int(params["width"]) if params.get("width", "").isdigit() else None
        height = int(params["height"]) if params.get("height", "").isdigit() else None
        fmt = params.get("format") if params.get("format") in ("jpg", "png", "webp") else None
        body = image_bytes(media_id, filename, width, height, fmt)
        headers = {"Cache-Control": "public, max-age=31536000", "ETag": f'"{media_id}-{len(body)}"'}
        self._send(200, body, content_type_for(filename, fmt), headers, head_only=head_only)


class ShopifySandbox:
    """A faithful little Shopify Admin GraphQL server (plus CDN) on loopback, run in a daemon thread."""

    def __init__(
        self, shops: Iterable[SandboxShop] = (), host: str = "127.0.0.1", port: int = 0, latency_seconds: float = 0.0
    ) -> None:
        self.host = host
        self.port = port
        self.latency_seconds = float(latency_seconds)
        self._states: dict[str, ShopState] = {}
        self._lock = threading.Lock()
        self._catalog = CatalogIndex()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        sandbox_schema()  # build once up front, not inside the first request
        for shop in shops:
            self.add_shop(shop)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> "ShopifySandbox":
        """Bind the port and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() fast (shutdown waits for one poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="shopify-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "ShopifySandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Return `http://127.0.0.1:PORT` (only once started)."""
        if self._server is None:
            raise RuntimeError("ShopifySandbox is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint_template(self) -> str:
        """Return the GraphQL URL with literal `{shop}` and `{api_version}` placeholders."""
        return f"{self.base_url}/{{shop}}/admin/api/{{api_version}}/graphql.json"

    # -- world ----------------------------------------------------------------------

    def _state(self, domain: str) -> ShopState | None:
        with self._lock:
            return self._states.get(domain)

    def _require(self, domain: str) -> ShopState:
        state = self._state(domain)
        if state is None:
            raise KeyError(f"unknown shop {domain!r}")
        return state

    def add_shop(self, shop: SandboxShop) -> None:
        """Serve a shop (replacing any shop with the same domain)."""
        with self._lock:
            self._states[shop.domain] = ShopState(shop)
        self._catalog.invalidate(shop.domain)

    def shop(self, domain: str) -> SandboxShop:
        """Return the live SandboxShop (mutations are seen by later requests)."""
        return self._require(domain).shop

    def shops(self) -> list[SandboxShop]:
        """Return every served shop."""
        with self._lock:
            return [state.shop for state in self._states.values()]

    def delete_product(self, domain: str, product_id: int) -> bool:
        """Delete a product; returns False when it did not exist."""
        shop = self._require(domain).shop
        kept = [p for p in shop.products if p.id != product_id]
        # Replace the list rather than edit it so in-flight requests keep a consistent view.
        deleted = len(kept) != len(shop.products)
        shop.products = kept
        return deleted

    def revoke_token(self, domain: str) -> None:
        """Make every later call to the shop answer 401 until `set_token`."""
        self._require(domain).revoked = True

    def set_token(self, domain: str, token: str) -> None:
        """Set the shop's valid access token (and lift a revocation)."""
        state = self._require(domain)
        state.shop.access_token = token
        state.revoked = False

    # -- faults -----------------------------------------------------------------------

    def fail_next(self, domain: str, status: int = 503, count: int = 1, retry_after: float | None = None) -> None:
        """Make the next `count` GraphQL requests answer HTTP `status` (5xx or 429), optionally with Retry-After."""
        if not (status == 429 or 500 <= status <= 599):
            raise ValueError("fail_next status must be 429 or 5xx")
        state = self._require(domain)
        with state.lock:
            state.failures.extend([(status, retry_after)] * count)

    def throttle_next(self, domain: str, count: int = 1) -> None:
        """Make the next `count` valid queries answer THROTTLED (nothing charged)."""
        state = self._require(domain)
        with state.lock:
            state.forced_throttles += count

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by `seconds`."""
        self.latency_seconds = float(seconds)

    def image_fault(self, domain: str, media_id: int, status: int | None) -> None:
        """Make the CDN answer `status` for a media's image; None clears the fault."""
        state = self._require(domain)
        with state.lock:
            if status is None:
                state.image_faults.pop(media_id, None)
            else:
                state.image_faults[media_id] = int(status)

    def refill(self, domain: str) -> None:
        """Fill the shop's cost bucket to its maximum (a test convenience)."""
        state = self._require(domain)
        state.bucket.refund(state.bucket.bucket_size)

    # -- stats --------------------------------------------------------------------------

    def stats(self, domain: str) -> dict[str, Any]:
        """Return requests, throttled, cost_charged, max_requested_cost and the queries received."""
        state = self._require(domain)
        with state.lock:
            return state.stats.snapshot()

    def reset_stats(self, domain: str | None = None) -> None:
        """Zero the stats of one shop, or of every shop."""
        with self._lock:
            states = list(self._states.values()) if domain is None else [self._states[domain]]
        for state in states:
            with state.lock:
                state.stats = type(state.stats)()

    # -- CDN ------------------------------------------------------------------------------

    def _cdn_file(self, match: re.Match) -> tuple[int, str, int | None] | None:
        """Return (media id, filename, fault status) for a CDN path, or None when it is not served."""
        state = self._state(unquote(match["shop"]))
        if state is None:
            return None
        media_id = int(match["media"])
        hit = self._catalog.lookup(state.shop).media(media_id)
        if hit is None:
            return None
        media = hit[1]
        if media.content_type != "IMAGE" or media.filename is None or media.filename != unquote(match["filename"]):
            return None
        with state.lock:
            fault = state.image_faults.get(media_id)
        return media_id, media.filename, fault
