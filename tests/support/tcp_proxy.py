"""A TCP proxy that tests put between a service and a real server to cut the line.

The server stays up for every other test; only connections through this proxy
see the outage: ``drop()`` severs the open ones (as a crashed peer or network
would), ``refuse()`` makes new ones fail until ``accept()``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    """Forward 127.0.0.1:<port> to a target address, with switches for outages."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._refusing = False
        self._holding: list[socket.socket] | None = None  # connections held silent
        self._closed = threading.Event()
        self.bytes_up = 0  # bytes clients sent through the proxy
        self._cut_at: int | None = None
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def mongo_uri(self) -> str:
        """Return a MongoDB URI through this proxy to a replica-set member.

        The connection is direct: a client that discovered the set would connect
        to the member's own address, around the proxy.
        """
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def drop(self) -> None:
        """Sever every connection open through the proxy."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut_after(self, nbytes: int) -> None:
        """Pass ``nbytes`` more client bytes upstream, then sever every connection."""
        with self._lock:
            self._cut_at = self.bytes_up + nbytes

    def refuse(self) -> None:
        """Sever open connections and close new ones at once, like a server that is down."""
        self._refusing = True
        self.drop()

    def hold(self) -> None:
        """Take new connections and never answer them, like a server that hangs."""
        self._holding = []

    def accept(self) -> None:
        """Forward new connections again (and hang up on any held ones)."""
        self._refusing = False
        held, self._holding = self._holding or [], None
        for sock in held:
            sock.close()

    @property
    def held(self) -> int:
        """Return how many connections are being held silent."""
        return len(self._holding or [])

    @property
    def connection_count(self) -> int:
        """Return how many connections are open through the proxy."""
        with self._lock:
            return len(self._pairs)

    def _count_up(self, data: bytes, upstream: socket.socket) -> bool:
        """Count bytes going upstream; return False (having sent what is allowed) at a cut."""
        with self._lock:
            allowed = len(data) if self._cut_at is None else self._cut_at - self.bytes_up
            if allowed >= len(data):
                self.bytes_up += len(data)
                return True
            self.bytes_up += max(allowed, 0)
            self._cut_at = None
        if allowed > 0:
            upstream.sendall(data[:allowed])
        return False

    def close(self) -> None:
        """Stop the proxy and sever everything."""
        self._closed.set()
        self._listener.close()
        self.drop()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            if self._holding is not None:
                self._holding.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        peer = {client: upstream, upstream: client}
        selector = selectors.DefaultSelector()
        try:
            for sock in pair:
                selector.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select(timeout=1.0):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is client and not self._count_up(data, peer[client]):
                        self.drop()
                        return
                    peer[key.fileobj].sendall(data)
                with self._lock:
                    if pair not in self._pairs:
                        return
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                sock.close()
