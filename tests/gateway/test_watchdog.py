"""The upload read deadline, on real TCP sockets: stalls and trickles are cut off, 408."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from common.http.errors import ApiError
from gateway.watchdog import ReadWatchdog

# Stands for UPLOAD_READ_TIMEOUT (30 s by default), shortened 60 times with the
# clients' schedules below.
TIMEOUT = 0.5


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (client, server side) pair of TCP sockets on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    with contextlib.closing(client), contextlib.closing(server_side):
        yield client, server_side


@pytest.fixture
def watchdog() -> Iterator[ReadWatchdog]:
    watchdog = ReadWatchdog(TIMEOUT)
    yield watchdog
    watchdog.close()


def send_slowly(sock: socket.socket, count: int, interval: float) -> threading.Thread:
    def trickle() -> None:
        with contextlib.suppress(OSError):
            for _ in range(count):
                time.sleep(interval)
                sock.send(b"x")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    return thread


def test_a_stalled_read_is_cut_off_with_408(connection, watchdog):
    client, server_side = connection
    body = watchdog.guard(server_side.makefile("rb"), server_side)
    client.sendall(b"x" * 10)  # then nothing
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        body.read(100)
    assert (caught.value.status, caught.value.code) == (408, "upload_timeout")
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 1
    with pytest.raises(ApiError):  # and it stays cut off
        body.read(1)


def test_a_trickle_is_cut_off_although_bytes_keep_coming(connection, watchdog):
    client, server_side = connection
    body = watchdog.guard(server_side.makefile("rb"), server_side)
    send_slowly(client, count=100, interval=TIMEOUT / 10)  # a byte every 50 ms
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        body.read(1000)
    assert caught.value.status == 408
    assert time.monotonic() - started < TIMEOUT + 1


def test_reads_that_each_finish_in_time_go_on_for_as_long_as_they_need(connection, watchdog):
    client, server_side = connection
    body = watchdog.guard(server_side.makefile("rb"), server_side)
    send_slowly(client, count=8, interval=TIMEOUT / 2).join(0)
    received = b"".join(body.read(1) for _ in range(8))  # 2 s in all, 0.25 s a read
    assert received == b"x" * 8
    client.sendall(b"more")  # the connection was left whole
    assert body.read(4) == b"more"


def test_without_a_socket_the_stream_is_left_as_it_is(watchdog):
    stream = object()
    assert watchdog.guard(stream, None) is stream
