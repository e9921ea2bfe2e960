"""The test proxy limits a line's rate as asked, and a cut can take the network away."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from devstack.tcp_proxy import TcpProxy

RATE = 1024 * 1024  # bytes a second
PAYLOAD = 2 * RATE
# Through an unlimited loopback proxy the payload takes milliseconds; limited, about 2 s
# (less the first burst). The bounds are tight on the early side (a limiter may be late,
# never early) and generous on the late one, for a busy two-core machine.
EARLIEST = 0.9
LATEST = 1.6


class Server:
    """A loopback server that either swallows what it is sent or sends ``PAYLOAD`` bytes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                command = conn.recv(1)
                if command == b"r":  # read the payload, then say how much came
                    received = 0
                    while received < PAYLOAD and (data := conn.recv(65536)):
                        received += len(data)
                    conn.sendall(str(received).encode())
                elif command == b"w":  # write the payload
                    conn.sendall(bytes(PAYLOAD))

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def proxy(server):
    proxy = TcpProxy("127.0.0.1", server.port)
    yield proxy
    proxy.close()


def send_payload(port: int) -> tuple[float, int | None]:
    """Send the payload; return the seconds until the server confirmed it, and its count.

    The count is None when the line was cut before the server answered.
    """
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"r" + bytes(PAYLOAD))
            answer = sock.recv(64)
    except OSError:
        answer = b""
    return time.perf_counter() - started, int(answer) if answer else None


def receive_payload(port: int) -> tuple[float, int]:
    """Receive the payload; return the seconds it took and how many bytes came."""
    started = time.perf_counter()
    received = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"w")
        while data := sock.recv(65536):
            received += len(data)
    return time.perf_counter() - started, received


def expected_seconds(proxy_rate: float) -> float:
    """Return how long the payload takes at that rate, after the burst a limit allows."""
    burst = max(65536, int(proxy_rate / 10))
    return (PAYLOAD - burst) / proxy_rate


def test_an_upload_through_a_limited_proxy_takes_the_time_the_rate_gives(proxy):
    unlimited, count = send_payload(proxy.port)
    assert count == PAYLOAD
    proxy.limit_rate(up=RATE)
    limited, count = send_payload(proxy.port)
    assert count == PAYLOAD
    expected = expected_seconds(RATE)
    assert unlimited < EARLIEST * expected
    assert EARLIEST * expected <= limited <= LATEST * expected
    assert proxy.bytes_up == 2 * (PAYLOAD + 1)


def test_the_downward_limit_is_its_own(proxy):
    proxy.limit_rate(up=RATE / 100, down=RATE)  # the one-byte command goes up at once
    seconds, received = receive_payload(proxy.port)
    assert received == PAYLOAD
    expected = expected_seconds(RATE)
    assert EARLIEST * expected <= seconds <= LATEST * expected


def test_connections_share_the_limit_as_on_one_line(proxy):
    proxy.limit_rate(up=RATE)
    started = time.perf_counter()
    threads = [threading.Thread(target=send_payload, args=(proxy.port,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    expected = 2 * expected_seconds(RATE)
    assert EARLIEST * expected <= seconds <= LATEST * expected


def test_no_limit_again_after_lifting_it(proxy):
    proxy.limit_rate(up=RATE / 100)
    proxy.limit_rate(up=None)
    seconds, count = send_payload(proxy.port)
    assert count == PAYLOAD
    assert seconds < EARLIEST * expected_seconds(RATE)


def test_a_cut_that_refuses_keeps_a_reconnecting_client_out(proxy):
    proxy.cut_after(1000, refuse=True)
    assert send_payload(proxy.port)[1] is None
    assert proxy.bytes_up == 1000
    assert send_payload(proxy.port)[1] is None  # closed at once: nothing more gets through
    assert proxy.bytes_up == 1000
    proxy.accept()
    _seconds, count = send_payload(proxy.port)
    assert count == PAYLOAD
