"""Cut off request bodies that arrive too slowly, so slow clients cannot hold the server.

Under gunicorn's threaded worker a request keeps its thread for as long as its body
is being read, and a read blocks until the bytes asked for have arrived: a client
sending one byte every few seconds would hold a thread for days, and a few dozen
such clients would hold them all. A socket timeout does not help, as each byte
resets it. Instead every read of an upload's body gets a deadline; one thread per
process watches the deadlines and, when one passes, shuts the reading side of that
client's socket, which wakes the blocked read at once. The view then answers 408
and discards what was stored. The deadline holds per read of ``READ_SIZE`` bytes,
so it is both an idle cutoff and a minimum rate.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import BinaryIO

from common.http.errors import ApiError


class _Watch:
    """One read under way: its client's socket and when it must be done."""

    __slots__ = ("deadline", "expired", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.expired = False


class ReadWatchdog:
    """Shut the reading side of sockets whose body read outlasts its deadline."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False

    def guard(self, stream: BinaryIO, sock: socket.socket | None) -> BinaryIO:
        """Return ``stream`` with a deadline on each read, enforced on the client's ``sock``.

        Without a socket (a server other than gunicorn, or the test client) the
        stream is returned as it is: the server in front bounds it, if anything does.
        """
        if sock is None:
            return stream
        return _GuardedStream(stream, sock, self)  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the watching thread."""
        with self._lock:
            self._closed = True
            self._changed.notify()

    def arm(self, sock: socket.socket) -> _Watch:
        """Start the clock for one read from ``sock``."""
        watch = _Watch(sock, time.monotonic() + self.timeout)
        with self._lock:
            # Started on first use, in the worker process: a thread made before
            # gunicorn forks its workers would not exist in them.
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="read-watchdog", daemon=True)
                self._thread.start()
            # Every read has the same timeout, so a new deadline is never the next one
            # due unless none is pending: only then does the watching thread need waking.
            if all(other.expired for other in self._watches):
                self._changed.notify()
            self._watches.add(watch)
        return watch

    def disarm(self, watch: _Watch) -> None:
        """Stop the clock for a read that is over."""
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                for watch in self._watches:
                    if not watch.expired and watch.deadline <= now:
                        watch.expired = True
                        # Under the lock, so never after the read is over and the
                        # connection may have moved on to another request.
                        with contextlib.suppress(OSError):
                            watch.sock.shutdown(socket.SHUT_RD)
                pending = [w.deadline for w in self._watches if not w.expired]
                self._changed.wait(min(pending) - now if pending else None)


class _GuardedStream:
    """A request body stream whose every read must finish within the watchdog's timeout."""

    def __init__(self, stream: BinaryIO, sock: socket.socket, watchdog: ReadWatchdog) -> None:
        self._stream = stream
        self._sock = sock
        self._watchdog = watchdog
        self._expired = False

    def read(self, size: int = -1) -> bytes:
        """Read like the stream does, or raise 408 once a read has taken too long.

        Raises:
            ApiError: 408 ``upload_timeout`` when this read or an earlier one was cut off.
        """
        if self._expired:
            raise self._timeout()
        watch = self._watchdog.arm(self._sock)
        try:
            data = self._stream.read(size)
        except Exception:
            # A cut-off read fails in the server's own way (the client "went away").
            if watch.expired:
                self._expired = True
                raise self._timeout() from None
            raise
        finally:
            self._watchdog.disarm(watch)
        if watch.expired:
            self._expired = True
            raise self._timeout()
        return data

    def _timeout(self) -> ApiError:
        seconds = self._watchdog.timeout
        return ApiError(
            408,
            "upload_timeout",
            f"The upload was too slow: a part of it took more than {seconds:g} s to arrive.",
        )
