"""The sandbox's HTTP server: threads per connection, closable keep-alive sockets, TCP resets on demand."""

from __future__ import annotations

import socket
import struct
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can close its keep-alive connections and reset chosen ones."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # exporters open many connections at once from thread pools

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._resets: set[socket.socket] = set()
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

    def reset_on_close(self, request: socket.socket) -> None:
        """Make closing this connection send a TCP reset instead of an orderly FIN."""
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._connections_lock:
            self._resets.add(request)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            self.close_request(request)  # no SHUT_WR first: that would send a FIN before the reset
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or stop reading mid-body are part of the faults under test, not errors.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
