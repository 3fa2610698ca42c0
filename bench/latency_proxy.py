"""The bench's latency proxy: an asyncio HTTP/1.1 reverse proxy (on uvloop) adding a fixed wait to every request.

R2 seen from a cloud worker answers each request tens of milliseconds later; this proxy, in front of the local
S3 server, makes every request wait ``latency`` seconds before it is forwarded. Waiting costs it no thread: one
event loop serves every connection, so it is not what bounds the export (the project's ``FaultProxy``, a thread
per connection, capped the store at about 560 requests/s at 40 ms). Its own cap is measured by
``python -m bench.store_clients --store-latency 0.04`` (bench/README.md).

It also counts the requests by method and the most requests in flight at once (received, not yet answered),
which the bench reports for the export (S) and for its floor (F).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

# Hop-by-hop and Expect: what the proxy answers itself and never forwards (RFC 9110 7.6.1).
_NOT_FORWARDED = (b"expect:", b"proxy-connection:", b"keep-alive:", b"te:", b"trailer:", b"upgrade:")
CHUNK = 64 * 1024


class AsyncLatencyProxy:
    """Forward every request to ``upstream`` (``http://host:port``) after ``latency`` seconds, on its own loop."""

    def __init__(self, upstream: str, latency: float) -> None:
        host, _, port = upstream.removeprefix("http://").rstrip("/").partition(":")
        self._upstream = (host, int(port or 80))
        self.latency = latency
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._loop = _new_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="latency-proxy", daemon=True)
        self._thread.start()
        started.wait()
        self.address = f"http://127.0.0.1:{self._port}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=CHUNK, backlog=1024)
        )
        self._port = self._server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()

    def count(self, method: str | None = None) -> int:
        """Return how many requests (of ``method``, or of any) were received so far."""
        return self.counts[method] if method else sum(self.counts.values())

    def peak(self) -> int:
        """Return the most requests in flight at once since the start or the last :meth:`reset_peak`."""
        return self.peak_in_flight

    def reset_peak(self) -> None:
        self.peak_in_flight = self.in_flight

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await client.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed its kept-alive connection
                method, headers, length, chunked, expect = _request_head(head)
                if expect:
                    to_client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _body(client, length, chunked)
                self.counts[method] += 1
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    await asyncio.sleep(self.latency)  # the round trip of a distant endpoint, per request
                    if upstream is None:
                        upstream = await asyncio.open_connection(*self._upstream, limit=CHUNK)
                    upstream[1].write(headers + body)
                    keep = await _relay_response(upstream[0], to_client, method)
                finally:
                    self.in_flight -= 1
                if not keep:
                    upstream[1].close()
                    upstream = None
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a client or the store that went away mid-request
        finally:
            if upstream is not None:
                upstream[1].close()
            to_client.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # plain asyncio: slower, still a loop and no thread per request
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _framing(lines: list[bytes]) -> tuple[int | None, bool, bool, bool]:
    """Return what a message head says of its body and connection: its Content-Length (None when absent),
    whether it is chunked, whether the connection closes after it, whether a 100 Continue is expected."""
    length, chunked, close, expect = None, False, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = b"close" in value
        elif name == b"expect":
            expect = b"100-continue" in value
    return length, chunked, close, expect


def _request_head(head: bytes) -> tuple[str, bytes, int, bool, bool]:
    """Return the method, the head to forward (without Expect and hop-by-hop fields), the body's length, whether
    the body is chunked and whether the client expects a 100 Continue."""
    lines = head[:-4].split(b"\r\n")
    method = lines[0].split(b" ", 1)[0].decode("ascii", "replace")
    length, chunked, _, expect = _framing(lines)
    kept = [lines[0]] + [line for line in lines[1:] if not line.lower().startswith(_NOT_FORWARDED)]
    return method, b"\r\n".join(kept) + b"\r\n\r\n", length or 0, chunked, expect


async def _body(reader: asyncio.StreamReader, length: int, chunked: bool) -> bytes:
    """Read a message body whole, as it was sent (a chunked one with its chunk framing)."""
    if not chunked:
        return await reader.readexactly(length) if length else b""
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        parts.append(size_line)
        if size == 0:  # then the trailer fields, if any, up to an empty line
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                parts.append(line)
            parts.append(line)
            break
        parts.append(await reader.readexactly(size + 2))
    return b"".join(parts)


async def _relay_response(upstream: asyncio.StreamReader, client: asyncio.StreamWriter, method: str) -> bool:
    """Copy one response from the store to the client; return whether the store keeps the connection open."""
    head = await upstream.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close, _ = _framing(lines)
    keep = not close
    client.write(head)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        pass
    elif chunked:
        client.write(await _body(upstream, 0, True))
    elif length is not None:
        left = length
        while left:
            piece = await upstream.read(min(left, CHUNK))
            if not piece:
                raise ConnectionError("the store closed the connection mid-body")
            client.write(piece)
            left -= len(piece)
            await client.drain()
    else:  # a body up to the close of the connection
        while piece := await upstream.read(CHUNK):
            client.write(piece)
        keep = False
    await client.drain()
    return keep
