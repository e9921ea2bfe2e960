"""A TCP proxy that tests and benchmarks put between a client and a real server to cut the line.

The server stays up for every other test; only connections through this proxy
see the outage: ``drop()`` severs the open ones (as a crashed peer or network
would), ``refuse()`` makes new ones fail until ``accept()``. ``limit_rate()`` makes
the line a slow one (a home uplink, a phone network), shared by all its connections.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
import urllib.parse

READ_SIZE = 65536


class TokenBucket:
    """Let bytes through at ``rate`` bytes a second on average, in bursts of up to ``burst``.

    Shared by threads: each ``take`` books its bytes at once (the balance may go below
    zero) and then sleeps until the line has carried them, so takers queue in turn.
    """

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst
        self._balance = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more may pass."""
        with self._lock:
            now = time.monotonic()
            self._balance = min(self.burst, self._balance + (now - self._stamp) * self.rate)
            self._stamp = now
            self._balance -= nbytes
            wait = -self._balance / self.rate
        if wait > 0:
            time.sleep(wait)


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
        self._refuse_at_cut = False
        self._limits: dict[str, TokenBucket | None] = {"up": None, "down": None}
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

    def cut_after(self, nbytes: int, *, refuse: bool = False) -> None:
        """Pass ``nbytes`` more client bytes upstream, then sever every connection.

        With ``refuse``, new connections are refused from that moment on (until
        ``accept()``), like a network that went away rather than one that hiccuped: a
        client that reconnects at once sends nothing more.
        """
        with self._lock:
            self._cut_at = self.bytes_up + nbytes
            self._refuse_at_cut = refuse

    def limit_rate(self, up: float | None, down: float | None = None) -> None:
        """Carry at most ``up`` bytes a second client->server and ``down`` back (None: no limit).

        One limit per direction for all connections together, as on one network link;
        bursts are a tenth of a second's worth (at least one 64 KiB read).
        """
        self._limits = {
            name: None if rate is None else TokenBucket(rate, max(READ_SIZE, int(rate / 10)))
            for name, rate in (("up", up), ("down", down))
        }

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
    def refusing(self) -> bool:
        """Tell whether new connections are being refused (after ``refuse()`` or such a cut)."""
        return self._refusing

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
            if self._refuse_at_cut:
                self._refusing = True
        if allowed > 0:
            upstream.sendall(data[:allowed])
        return False

    @classmethod
    def in_front_of(cls, url: str) -> TcpProxy:
        """Return a proxy to the server at ``url`` (``http://host:port``, as services give it)."""
        address = urllib.parse.urlsplit(url)
        return cls(address.hostname or "127.0.0.1", address.port or 80)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

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
                    data = key.fileobj.recv(READ_SIZE)
                    if not data:
                        return
                    limit = self._limits["up" if key.fileobj is client else "down"]
                    if limit is not None:
                        limit.take(len(data))
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
