"""FaultProxy: a loopback HTTP reverse proxy in front of the S3 server that injects R2's failures on cue."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from local_stack.fault_rules import Hook, Rule, SeenRequest, access_key_id_of, bucket_and_key, error_xml
from shopify_sandbox.transport import SandboxHTTPServer

__all__ = ["FaultProxy", "Hook", "Rule", "SeenRequest"]

CHUNK = 64 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) and Expect, which the proxy answers itself: never forwarded.
_HOP_BY_HOP = frozenset(
    "connection keep-alive proxy-authenticate proxy-authorization te trailer transfer-encoding upgrade expect".split()
)


class _Server(SandboxHTTPServer):
    """The sandbox's HTTP server (closable keep-alive connections), serving the proxy's handler."""

    def __init__(self, proxy: "FaultProxy") -> None:
        super().__init__(("127.0.0.1", proxy.port), _Handler)
        self.proxy = proxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's pooled connections expect
    server_version = "FaultProxy/1.0"
    timeout = 60  # idle keep-alive connections are closed eventually
    disable_nagle_algorithm = True
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: tests and benchmarks read their own output."""

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            pass  # a client that went away (or was killed) mid-request
        finally:
            if self._upstream is not None:
                self._upstream.close()

    def _proxy(self) -> None:
        proxy = self.server.proxy
        bucket, key = bucket_and_key(self.path)
        access_key_id = access_key_id_of(self.headers.get("Authorization"), self.path)
        if proxy.latency_seconds > 0:
            time.sleep(proxy.latency_seconds)  # the round trip of a distant endpoint, per request
        rule = proxy._rule_for(self.command, key, access_key_id)
        if rule is not None and rule.action == "delay" and proxy._stopping.wait(rule.seconds):
            self.close_connection = True
            return
        if rule is not None and rule.action == "drop":
            proxy._record(SeenRequest(self.command, bucket, key, access_key_id, None))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if rule is not None and rule.action == "error":
            self._discard_body()
            body = error_xml(rule.code, f"/{bucket}/{key}", access_key_id)
            seen = SeenRequest(self.command, bucket, key, access_key_id, rule.status)
            proxy._record(seen)
            proxy._run_hooks(seen)
            self._answer(rule.status, [("Content-Type", "application/xml")], body)
            return
        self._forward(bucket, key, access_key_id)

    def _forward(self, bucket: str, key: str, access_key_id: str | None) -> None:
        proxy = self.server.proxy
        try:
            response = self._send_upstream()
        except OSError:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            seen = SeenRequest(self.command, bucket, key, access_key_id, 502)
            proxy._record(seen)
            self.close_connection = True  # part of the request body may still be unread
            self._answer(502, [("Content-Type", "text/plain")], b"Bad Gateway: the S3 server did not answer")
            return
        seen = SeenRequest(self.command, bucket, key, access_key_id, response.status)
        proxy._record(seen)
        proxy._run_hooks(seen)
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        chunked = not no_body and length is None
        self.send_response(response.status)
        for name, value in headers:
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while not no_body:
            piece = response.read(CHUNK)
            if not piece:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        response.read()  # an unread rest would desynchronise the kept-alive upstream connection
        if response.will_close:
            self._upstream.close()
            self._upstream = None

    def _send_upstream(self) -> http.client.HTTPResponse:
        if self._upstream is None:
            proxy = self.server.proxy
            self._upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
            self._upstream.connect()
            self._upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = self._upstream
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                upstream.putheader(name, value)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.endheaders()
        for piece in self._body_pieces():
            upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            upstream.send(b"0\r\n\r\n")
        return upstream.getresponse()

    def _body_pieces(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = self.rfile.read(min(CHUNK, remaining))
            if not piece:
                raise ConnectionError("the client closed the connection mid-body")
            remaining -= len(piece)
            yield piece

    def _discard_body(self) -> None:
        for _ in self._body_pieces():
            pass

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _proxy  # every S3 call goes through the same path


class FaultProxy:
    """A threaded reverse proxy on loopback in front of an S3 endpoint, injecting faults per rule.

    Point the R2 connection's ``endpoint_url`` at :attr:`endpoint`. Requests are streamed through one
    kept-alive upstream connection per client connection. See :class:`Rule` and :class:`Hook`.
    """

    def __init__(self, upstream: str, *, port: int = 0, latency_seconds: float = 0.0) -> None:
        target = urlsplit(upstream)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"the upstream must be an http:// URL, got {upstream!r}")
        self.upstream_host = target.hostname
        self.upstream_port = target.port or 80
        self.port = port
        self.latency_seconds = float(latency_seconds)
        self.seen: list[SeenRequest] = []
        self._rules: list[Rule] = []
        self._hooks: list[Hook] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        """Start serving in a daemon thread."""
        self._stopping.clear()
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (delayed requests are abandoned)."""
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Return the URL clients use instead of the S3 server's."""
        return f"http://127.0.0.1:{self.port}"

    # -- faults ------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        """Apply a rule from now on (earlier rules are consulted first); return it to read its counters."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail(
        self,
        status: int = 503,
        code: str = "SlowDown",
        *,
        method: str | None = "PUT",
        key_prefix: str | None = None,
        skip: int = 0,
        times: int | None = 1,
    ) -> Rule:
        """Answer an S3 error (503 SlowDown by default) to matching requests."""
        return self.add_rule(Rule("error", method, key_prefix, None, skip, times, status, code))

    def delay(
        self, seconds: float, *, method: str | None = "PUT", key_prefix: str | None = None, times: int | None = 1
    ) -> Rule:
        """Hold matching requests ``seconds`` before forwarding them (a client read timeout fires first)."""
        return self.add_rule(Rule("delay", method, key_prefix, times=times, seconds=seconds))

    def drop(self, *, method: str | None = "PUT", key_prefix: str | None = None, times: int | None = 1) -> Rule:
        """Close the connection of matching requests without answering."""
        return self.add_rule(Rule("drop", method, key_prefix, times=times))

    def reject_access_key(self, access_key_id: str, code: str = "InvalidAccessKeyId") -> Rule:
        """Answer 403 ``code`` to every request signed with ``access_key_id`` (the S3 server checks none)."""
        return self.add_rule(Rule("error", None, None, access_key_id, status=403, code=code))

    def on_request(
        self,
        callback: Callable[[SeenRequest], Any],
        nth: int | None = None,
        *,
        method: str | None = "PUT",
        key_prefix: str | None = None,
    ) -> Hook:
        """Call ``callback`` for the ``nth`` matching request from now on (each one when None); see :class:`Hook`."""
        hook = Hook(callback, nth, method, key_prefix)
        with self._lock:
            self._hooks.append(hook)
        return hook

    def set_latency(self, seconds: float) -> None:
        """Delay every request by ``seconds`` (e.g. 0.04 for R2 seen from a cloud worker)."""
        self.latency_seconds = float(seconds)

    def clear(self) -> None:
        """Remove every rule and hook (the request log and counts stay)."""
        with self._lock:
            self._rules.clear()
            self._hooks.clear()

    # -- observation ---------------------------------------------------------------------

    def count(self, method: str | None = None) -> int:
        """Return how many requests (of one method) the proxy has received."""
        with self._lock:
            return sum(self._counts.values()) if method is None else self._counts[method]

    def requests(self, method: str | None = None) -> list[SeenRequest]:
        """Return the requests received so far (of one method), in arrival order."""
        with self._lock:
            return [seen for seen in self.seen if method is None or seen.method == method]

    def wait_for(self, count: int, method: str | None = "PUT", timeout: float = 10.0) -> int:
        """Wait until ``count`` requests (of one method) were received; return the count, raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (current := sum(self._counts.values()) if method is None else self._counts[method]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the proxy saw {current} {method or 'requests'}, expected {count}")
                self._changed.wait(left)
            return current

    # -- internals -------------------------------------------------------------------------

    def _rule_for(self, method: str, key: str, access_key_id: str | None) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, key, access_key_id) and rule.take():
                    return rule
        return None

    def _record(self, seen: SeenRequest) -> None:
        with self._changed:
            self.seen.append(seen)
            self._counts[seen.method] += 1
            self._changed.notify_all()

    def _run_hooks(self, seen: SeenRequest) -> None:
        due = []
        with self._lock:
            for hook in self._hooks:
                if (hook.method is None or hook.method == seen.method) and (
                    hook.key_prefix is None or seen.key.startswith(hook.key_prefix)
                ):
                    hook.matched += 1
                    if hook.nth is None or hook.matched == hook.nth:
                        due.append(hook)
        for hook in due:
            try:
                hook.callback(seen)
            except Exception as exc:  # noqa: BLE001 - kept for the test to assert, the proxy goes on
                hook.errors.append(exc)
