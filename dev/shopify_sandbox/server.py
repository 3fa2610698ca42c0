"""ShopifySandbox: a loopback HTTP server speaking Shopify's Admin GraphQL API and CDN."""

from __future__ import annotations

import json
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from .bulk import BulkOperations
from .catalog import CatalogIndex
from .engine import ShopState, run_graphql
from .faults import HTML_ERROR_PAGE, STREAM_CHUNK, FaultControls, ImageFault, oversized_body
from .images import content_type_for, image_bytes
from .resolvers import sandbox_schema
from .tokens import INVALID_TOKEN, TOKEN_LIFETIME, TokenRefused
from .transport import SandboxHTTPServer
from .world import SandboxShop

SUPPORTED_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")
RATE_LIMITED = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."

_GRAPHQL_PATH = re.compile(r"^/(?P<shop>[^/]+)/admin/api/(?P<version>[^/]+)/graphql\.json$")
_TOKEN_PATH = re.compile(r"^/(?P<shop>[^/]+)/admin/oauth/access_token$")
_CDN_PATH = re.compile(r"^/cdn/(?P<shop>[^/]+)/(?P<media>\d+)/(?P<filename>[^/]+)$")
_BULK_PATH = re.compile(r"^/bulk/(?P<shop>[^/]+)/(?P<file>[A-Za-z0-9.-]+\.jsonl)$")


def served_version(requested: str) -> str:
    """Return the API version Shopify serves for a requested one (the oldest supported if unknown)."""
    return requested if requested in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients' sessions expect
    server_version = "ShopifySandbox/1.0"
    timeout = 30  # idle keep-alive connections are closed eventually
    disable_nagle_algorithm = True  # a streamed body goes out in many writes: avoid 40 ms delayed-ACK stalls
    # Buffer what a handler writes (the server flushes after each request), so a response's headers and
    # body leave in one send rather than two; streamed bodies still leave STREAM_CHUNK by STREAM_CHUNK.
    wbufsize = STREAM_CHUNK
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

    def _send_stream(
        self,
        status: int,
        chunks: Iterable[bytes],
        content_type: str,
        length: int | None = None,
        head_only: bool = False,
    ) -> None:
        """Send a body piece by piece: with Content-Length when known, else chunked transfer encoding."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if head_only:
            return
        for chunk in chunks:
            if not chunk:
                continue
            if length is None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
        if length is None:
            self.wfile.write(b"0\r\n\r\n")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- routes ---------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        """Serve `POST /{shop}/admin/api/{version}/graphql.json` and `POST /{shop}/admin/oauth/access_token`."""
        raw = self._read_body()  # always drain the body so keep-alive stays in sync
        token_match = _TOKEN_PATH.match(urlsplit(self.path).path)
        if token_match:
            self._serve_token(token_match["shop"], raw)
            return
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
        fault = state.take_failure()
        partial_code = None
        if fault is not None:
            if fault.kind == "reset":
                self.server.reset_on_close(self.connection)
                self.close_connection = True
                return
            if fault.kind == "stall" and self.sandbox._stopping.wait(fault.seconds):
                return  # the sandbox is stopping: leave without answering
            if fault.kind == "html":
                self._send(fault.status, HTML_ERROR_PAGE.encode(), "text/html; charset=utf-8")
                return
            if fault.kind == "status":
                headers = dict(version)
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                message = RATE_LIMITED if fault.status == 429 else HTTPStatus(fault.status).phrase
                self._send_json(fault.status, {"errors": message}, headers)
                return
            if fault.kind == "partial":
                partial_code = fault.code
        state.count_toward_expiry()
        token = self.headers.get("X-Shopify-Access-Token") or ""
        refused = (
            (401, INVALID_TOKEN) if state.revoked else state.tokens.check(token, self.sandbox.non_expiring_rejected)
        )
        if refused is not None:
            self._send_json(refused[0], {"errors": refused[1]}, version)
            return
        try:
            status, payload = run_graphql(
                state,
                self.sandbox._catalog,
                raw,
                self.sandbox.base_url,
                api_version=version["X-Shopify-API-Version"],
                bulk=self.sandbox.bulk,
                partial_code=partial_code,
            )
        except Exception as exc:  # noqa: BLE001 - a sandbox bug must still answer like a 500
            status, payload = 500, {"errors": f"Internal Server Error: {type(exc).__name__}: {exc}"}
        self._send_json(status, payload, version)

    def _serve_token(self, shop: str, raw: bytes) -> None:
        """Answer a refresh or a token exchange, form-encoded (as Shopify documents) or JSON (as its libraries send)."""
        state = self.sandbox._state(unquote(shop))
        if state is None:
            self._send_json(404, {"errors": "Not Found"})
            return
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            try:
                decoded = json.loads(raw or b"{}")
            except ValueError:
                decoded = None
            form = {str(k): str(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}
        else:
            form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        with state.lock:
            state.stats.token_requests += 1
            failure = state.token_failures.pop(0) if state.token_failures else None
        if failure is not None:
            self._send_json(failure, {"errors": HTTPStatus(failure).phrase})
            return
        try:
            grant, issued = state.tokens.grant(form)
        except TokenRefused as refused:
            self._send_json(refused.status, refused.body())
            return
        if issued:
            with state.lock:
                counter = "refreshes" if form.get("grant_type") == "refresh_token" else "exchanges"
                setattr(state.stats, counter, getattr(state.stats, counter) + 1)
        self._send_json(200, grant.answer(time.time()))

    def do_GET(self) -> None:  # noqa: N802
        """Serve CDN files and bulk results (no token: a CDN and signed storage URLs)."""
        if urlsplit(self.path).path.startswith("/bulk/"):
            self._serve_bulk(head_only=False)
        else:
            self._serve_cdn(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        """Serve HEAD for CDN files and bulk results."""
        if urlsplit(self.path).path.startswith("/bulk/"):
            self._serve_bulk(head_only=True)
        else:
            self._serve_cdn(head_only=True)

    def _serve_bulk(self, head_only: bool) -> None:
        match = _BULK_PATH.match(urlsplit(self.path).path)
        found = self.sandbox.bulk.result_file(unquote(match["shop"]), match["file"]) if match else None
        if found is None:
            self._send(404, b"Not Found", "text/plain", head_only=head_only)
            return
        size, chunks = found
        self._send_stream(200, chunks, "application/jsonl", length=size, head_only=head_only)

    def _serve_cdn(self, head_only: bool) -> None:
        url = urlsplit(self.path)
        match = _CDN_PATH.match(url.path)
        found = self.sandbox._cdn_file(match) if match else None
        if found is None:
            self._send(404, b"Not Found", "text/plain", head_only=head_only)
            return
        media_id, filename, fault = found
        if fault is not None and fault.stall_seconds and self.sandbox._stopping.wait(fault.stall_seconds):
            return  # the sandbox is stopping: leave without answering
        if fault is not None and fault.html:
            page = HTML_ERROR_PAGE.encode()
            self._send(fault.status or 200, page, "text/html; charset=utf-8", head_only=head_only)
            return
        if fault is not None and fault.status is not None and not 200 <= fault.status < 300:
            self._send(fault.status, HTTPStatus(fault.status).phrase.encode(), "text/plain", head_only=head_only)
            return
        content_type = content_type_for(filename)
        if fault is not None and fault.size_bytes is not None:
            length = None if fault.chunked else fault.size_bytes
            chunks = oversized_body(fault.size_bytes)
            self._send_stream(fault.status or 200, chunks, content_type, length=length, head_only=head_only)
            return
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        width = int(params["width"]) if params.get("width", "").isdigit() else None
        height = int(params["height"]) if params.get("height", "").isdigit() else None
        fmt = params.get("format") if params.get("format") in ("jpg", "png", "webp") else None
        body = image_bytes(media_id, filename, width, height, fmt)
        headers = {"Cache-Control": "public, max-age=31536000", "ETag": f'"{media_id}-{len(body)}"'}
        self._send(200, body, content_type_for(filename, fmt), headers, head_only=head_only)


class ShopifySandbox(FaultControls):
    """A faithful little Shopify Admin GraphQL server (plus CDN) on loopback, run in a daemon thread."""

    def __init__(
        self,
        shops: Iterable[SandboxShop] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        token_lifetime_seconds: float = TOKEN_LIFETIME,
    ) -> None:
        self.host = host
        self.port = port
        self.latency_seconds = float(latency_seconds)
        # How long an expiring access token lasts (Shopify: an hour), and whether the 2027-01-01 deadline has
        # passed: then a non-expiring token is answered 403, as Shopify answers public apps.
        self.token_lifetime_seconds = float(token_lifetime_seconds)
        self.non_expiring_rejected = False
        self._states: dict[str, ShopState] = {}
        self._lock = threading.Lock()
        self._catalog = CatalogIndex()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # releases stalled answers so stop() leaves no thread behind
        self.bulk = BulkOperations(self)
        sandbox_schema()  # build once up front, not inside the first request
        for shop in shops:
            self.add_shop(shop)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> "ShopifySandbox":
        """Bind the port and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        self._server = SandboxHTTPServer((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() fast (shutdown waits for one poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="shopify-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._stopping.set()
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
            self._states[shop.domain] = ShopState(shop, self.token_lifetime_seconds)
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
        """Make ``token`` the shop's one valid access token, a non-expiring one (and lift a revocation)."""
        state = self._require(domain)
        state.shop.access_token = token
        state.tokens.replace_with_non_expiring(token)
        state.revoked = False

    @property
    def token_endpoint_template(self) -> str:
        """Return the token endpoint's URL with a literal `{shop}` placeholder."""
        return f"{self.base_url}/{{shop}}/admin/oauth/access_token"

    def expire_tokens_after(self, domain: str, requests: int) -> None:
        """End the hour of the shop's access tokens at its ``requests``-th next GraphQL request (which gets 401)."""
        state = self._require(domain)
        with state.lock:
            state.expire_tokens_after = requests

    def expire_access_tokens(self, domain: str) -> None:
        """End the hour of the shop's expiring access tokens now."""
        self._require(domain).tokens.expire_access_tokens()

    def fail_token_requests(self, domain: str, status: int = 503, count: int = 1) -> None:
        """Make the shop's next ``count`` token requests answer HTTP ``status`` (5xx or 429)."""
        if not (status == 429 or 500 <= status <= 599):
            raise ValueError("fail_token_requests status must be 429 or 5xx")
        state = self._require(domain)
        with state.lock:
            state.token_failures.extend([status] * count)

    def revoke_refresh_tokens(self, domain: str) -> None:
        """Make every refresh token of the shop invalid: a refresh answers invalid_grant."""
        self._require(domain).tokens.revoke_refresh_tokens()

    def issued_tokens(self, domain: str) -> list[str]:
        """Return every access and refresh token the token endpoint issued the shop, oldest first."""
        tokens = self._require(domain).tokens
        with tokens.lock:
            return [token for grant in tokens.issued for token in (grant.access_token, grant.refresh_token)]

    def accepts(self, domain: str, access_token: str, refresh_token: str | None) -> bool:
        """Tell whether Shopify would accept a stored pair now (a non-expiring token: ``refresh_token`` None)."""
        return self._require(domain).tokens.accepts(access_token, refresh_token)

    def refill(self, domain: str) -> None:
        """Fill the shop's cost bucket to its maximum (a test convenience)."""
        state = self._require(domain)
        state.bucket.refund(state.bucket.bucket_size)

    # -- stats --------------------------------------------------------------------------

    def stats(self, domain: str) -> dict[str, Any]:
        """Return requests, throttled, cost_charged, max_requested_cost, bulk_operations, cdn_requests (image
        downloads) and the queries received."""
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

    def _cdn_file(self, match: re.Match) -> tuple[int, str, ImageFault | None] | None:
        """Return (media id, filename, fault) for a CDN path, or None when it is not served."""
        state = self._state(unquote(match["shop"]))
        if state is None:
            return None
        with state.lock:
            state.stats.cdn_requests += 1
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
