"""The egress guard: which URLs and addresses it refuses, pinning, and its one deadline.

No test here reaches a public address: the ``connections`` fixture records every
connection the guard makes, refuses any that is not to loopback, and can route a
public address to a receiver on loopback (standing in for a host on the internet).
Tests that must reach a loopback receiver by its own address allow private
addresses (``LOOPBACK_ALLOWED``) and say so; every other test runs the shipped policy.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common import egress
from common.config import DEFAULT_EGRESS_PORTS, EgressConfig
from common.egress import EgressGuard, EgressRefused, ReceiverRefused, check_url
from common.errors import TransientError
from tests.support.receiver import WebhookReceiver

SHIPPED = EgressConfig()
# Only for tests whose receiver must be reached at its loopback address.
LOOPBACK_ALLOWED = EgressConfig(allow_private=True, ports=None)
PUBLIC_ADDRESS = "93.184.216.34"

# Every address form the guard refuses, with a word of the reason it gives.
REFUSED_ADDRESSES = [
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address refused, not bound
    ("0.1.2.3", "unspecified"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "IETF protocol"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "6to4 relay"),
    ("192.168.0.10", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),  # embedded forms are refused whatever they embed
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "NAT64"),  # 127.0.0.1 through NAT64
    ("64:ff9b::a9fe:a9fe", "NAT64"),  # cloud metadata through NAT64
    ("64:ff9b::808:808", "NAT64"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("100::1", "discard-only"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:2::1", "benchmarking"),
    ("2001:db8::1", "documentation"),
    ("2001:20::1", "IETF protocol"),  # ORCHIDv2
    ("2002:7f00:1::", "6to4"),  # 127.0.0.1 through 6to4
    ("2002:808:808::1", "6to4"),
    ("3fff::1", "documentation"),
    ("5f00::1", "SRv6"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("4000::1", "outside IPv6 global unicast"),
]

PUBLIC_ADDRESSES = [
    PUBLIC_ADDRESS,
    "8.8.8.8",
    "1.1.1.1",
    "100.128.0.1",  # just past carrier-grade NAT space
    "172.32.0.1",  # just past 172.16.0.0/12
    "198.20.0.1",  # just past the benchmarking range
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
]


def in_url(address: str) -> str:
    """Return ``address`` as a URL's host."""
    return f"[{address}]" if ":" in address else address


def answers(*addresses: str, lookups: list[str] | None = None):
    """Return a resolver shaped like socket.getaddrinfo that answers ``addresses``."""

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        if lookups is not None:
            lookups.append(host)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]

    return resolve


@dataclass
class Connections:
    """Where the guard connected; ``routes`` maps a public address to a loopback port."""

    attempts: list[str] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> Connections:
    """Watch every connection the guard makes, and keep all of them on this machine."""
    record = Connections()
    real_connect = egress._connect

    def connect(family, sockaddr, timeout):
        address = sockaddr[0]
        record.attempts.append(address)
        if address in record.routes:
            return real_connect(socket.AF_INET, ("127.0.0.1", record.routes[address]), timeout)
        if not ipaddress.ip_address(address).is_loopback:
            raise ConnectionRefusedError(f"this test reaches no address outside ({address})")
        return real_connect(family, sockaddr, timeout)

    monkeypatch.setattr(egress, "_connect", connect)
    return record


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


# URL checks ------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "what"), REFUSED_ADDRESSES)
def test_an_address_literal_in_a_url_is_refused(address, what):
    with pytest.raises(EgressRefused, match=re.escape(what)):
        check_url(f"http://{in_url(address)}/hook", SHIPPED)


@pytest.mark.parametrize(("address", "what"), REFUSED_ADDRESSES)
def test_a_name_resolving_to_a_refused_address_is_refused(address, what, connections):
    guard = EgressGuard(SHIPPED, resolver=answers(address))
    with pytest.raises(EgressRefused, match=f"resolves to .*{re.escape(what)}"):
        guard.request("POST", "https://hooks.example.com/hook", body=b"{}", timeout=2)
    assert connections.attempts == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://0x7f.1/hook",
        "http://127.1/hook",
        "http://017700000001/hook",  # octal
        "http://0/hook",
        "http://localhost/hook",
        "http://api.localhost./hook",
        "http://LOCALHOST/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[fe80::1%25eth0]/hook",
    ],
)
def test_other_spellings_of_local_addresses_are_refused(url, connections):
    with pytest.raises(EgressRefused, match="not a public address"):
        check_url(url, SHIPPED)
    with pytest.raises(EgressRefused):
        EgressGuard(SHIPPED).request("POST", url, body=b"{}", timeout=2)
    assert connections.attempts == []


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass_the_check(address):
    assert egress.refusal(ipaddress.ip_address(address)) is None
    target = check_url(f"https://{in_url(address)}/hook?a=1", SHIPPED)
    assert (target.port, target.path, str(target.address)) == (443, "/hook?a=1", address)


@pytest.mark.parametrize(
    ("url", "ports", "allowed"),
    [
        ("http://hooks.example.com:25/", DEFAULT_EGRESS_PORTS, False),
        ("http://hooks.example.com:8080/", DEFAULT_EGRESS_PORTS, False),
        ("https://hooks.example.com/", DEFAULT_EGRESS_PORTS, True),
        ("http://hooks.example.com/", DEFAULT_EGRESS_PORTS, True),
        ("https://hooks.example.com:443/", DEFAULT_EGRESS_PORTS, True),
        ("https://hooks.example.com:80/", DEFAULT_EGRESS_PORTS, True),
        ("https://hooks.example.com:8443/", frozenset({8443}), True),
        ("https://hooks.example.com/", frozenset({8443}), False),
        ("http://hooks.example.com:25/", None, True),  # EGRESS_PORTS=any
        ("http://hooks.example.com:0/", None, False),
    ],
)
def test_ports(url, ports, allowed):
    policy = EgressConfig(ports=ports)
    if allowed:
        assert check_url(url, policy).host == "hooks.example.com"
    else:
        with pytest.raises(EgressRefused, match="may not name port"):
            check_url(url, policy)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http:///no-host", "http:// or https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("https://@example.com/hook", "credentials"),
        ("https://example.com/" + "a" * 3000, "longer than"),
        ("http://exa mple.com/hook", "control characters"),
        ("http://example.com/hook\r\nX-Injected: 1", "control characters"),
        ("http://example.com:99999/hook", "malformed"),
        ("http://example.com:http/hook", "malformed"),
        ("http://[::1/hook", "malformed"),
    ],
)
def test_malformed_urls_are_refused(url, reason):
    with pytest.raises(EgressRefused, match=reason):
        check_url(url, LOOPBACK_ALLOWED)  # refused even where private addresses are allowed


def test_international_names_and_paths_go_out_as_ascii():
    target = check_url("https://bücher.example/größe?q=ü", SHIPPED)
    assert target.host == "xn--bcher-kva.example"
    assert target.path == "/gr%C3%B6%C3%9Fe?q=%C3%BC"


def test_the_check_is_made_again_when_sending(connections):
    with pytest.raises(EgressRefused, match="port 25"):
        EgressGuard(SHIPPED).request("POST", "http://mail.example.com:25/", timeout=2)
    assert connections.attempts == []


# Resolution and pinning ----------------------------------------------------------------


def test_a_rebinding_name_is_looked_up_once_and_loopback_never_reached(connections, receiver):
    # The name's first answer is public (a host served here by the loopback receiver),
    # every later one is 127.0.0.1.
    connections.routes[PUBLIC_ADDRESS] = receiver.port
    lookups: list[str] = []
    first, later = answers(PUBLIC_ADDRESS), answers("127.0.0.1")

    def rebinding(host, port, **kwargs):
        lookups.append(host)
        return (first if len(lookups) == 1 else later)(host, port)

    guard = EgressGuard(SHIPPED, resolver=rebinding)
    answer = guard.request("POST", "http://rebind.example.com/hook", body=b"{}", timeout=5)

    assert answer.status == 200
    assert lookups == ["rebind.example.com"]  # one answer, both checked and used
    assert connections.attempts == [PUBLIC_ADDRESS]
    assert receiver.calls[0].headers["Host"] == "rebind.example.com"
    with pytest.raises(EgressRefused, match=r"resolves to 127\.0\.0\.1"):
        guard.request("POST", "http://rebind.example.com/hook", body=b"{}", timeout=5)
    assert connections.attempts == [PUBLIC_ADDRESS]
    assert len(receiver.calls) == 1


def test_one_refused_answer_among_public_ones_refuses_the_call(connections):
    guard = EgressGuard(SHIPPED, resolver=answers(PUBLIC_ADDRESS, "127.0.0.1"))
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1, which is loopback"):
        guard.request("POST", "https://hooks.example.com/hook", body=b"{}", timeout=2)
    assert connections.attempts == []


def test_the_next_checked_address_is_tried_when_the_first_does_not_answer(connections, receiver):
    # 8.8.8.8 is refused by the fixture, as an address that does not answer would be.
    connections.routes[PUBLIC_ADDRESS] = receiver.port
    guard = EgressGuard(SHIPPED, resolver=answers("8.8.8.8", PUBLIC_ADDRESS))
    assert guard.request("POST", "http://hooks.example.com/", timeout=5).status == 200
    assert connections.attempts == ["8.8.8.8", PUBLIC_ADDRESS]


@pytest.mark.parametrize(
    ("errno", "error", "message"),
    [
        (socket.EAI_NONAME, EgressRefused, "does not resolve"),
        (socket.EAI_AGAIN, TransientError, "could not be looked up"),
    ],
)
def test_lookup_failures(errno, error, message):
    def failing(host, port, **kwargs):
        raise socket.gaierror(errno, "lookup failed")

    with pytest.raises(error, match=message):
        EgressGuard(SHIPPED, resolver=failing).request(
            "POST", "https://nowhere.example/", timeout=2
        )


def test_the_pinned_address_is_asked_for_the_url_host(receiver):
    # Private addresses allowed: "receiver.test" is the loopback receiver.
    guard = EgressGuard(LOOPBACK_ALLOWED, resolver=answers("127.0.0.1"))
    url = f"http://receiver.test:{receiver.port}/hook?attempt=1"
    guard.request("POST", url, body=b"{}", headers={"X-Event": "job.finished"}, timeout=5)
    [call] = receiver.calls
    assert call.headers["Host"] == f"receiver.test:{receiver.port}"
    assert call.headers["X-Event"] == "job.finished"
    assert (call.path, call.body) == ("/hook?attempt=1", b"{}")


# TLS -------------------------------------------------------------------------------------


@dataclass
class LocalCA:
    """A certificate authority made for the test, and certificates it issues."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    folder: Path

    @property
    def ca_file(self) -> str:
        path = self.folder / "ca.pem"
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def server_context(self, name: str, server_names: list[str | None]) -> ssl.SSLContext:
        """Return a server context with a certificate for ``name``; it records each SNI."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            _builder(name, self.certificate.subject, key)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        chain = self.folder / f"{name}.pem"
        chain.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        context.sni_callback = lambda _sock, server_name, _context: server_names.append(server_name)
        return context


def _builder(common_name: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey):
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


@pytest.fixture(scope="module")
def local_ca(tmp_path_factory) -> LocalCA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "video2mp3 test CA")])
    certificate = (
        _builder("video2mp3 test CA", name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return LocalCA(key, certificate, tmp_path_factory.mktemp("ca"))


def test_https_keeps_the_host_name_for_sni_and_the_certificate(local_ca):
    server_names: list[str | None] = []
    server = WebhookReceiver(tls=local_ca.server_context("receiver.test", server_names))
    try:
        # Private addresses allowed: "receiver.test" is the loopback receiver.
        guard = EgressGuard(
            LOOPBACK_ALLOWED, resolver=answers("127.0.0.1"), ca_file=local_ca.ca_file
        )
        url = f"https://receiver.test:{server.port}/hook"
        assert guard.request("POST", url, body=b"{}", timeout=5).status == 200
    finally:
        server.close()
    assert server_names == ["receiver.test"]
    assert server.calls[0].headers["Host"] == f"receiver.test:{server.port}"


def test_a_certificate_for_another_name_is_not_accepted(local_ca):
    server_names: list[str | None] = []
    server = WebhookReceiver(tls=local_ca.server_context("other.test", server_names))
    try:
        guard = EgressGuard(
            LOOPBACK_ALLOWED, resolver=answers("127.0.0.1"), ca_file=local_ca.ca_file
        )
        with pytest.raises(TransientError, match="certificate was not accepted"):
            guard.request("POST", f"https://receiver.test:{server.port}/hook", timeout=5)
    finally:
        server.close()
    assert server_names == ["receiver.test"]
    assert server.calls == []


# Answers and the deadline -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (200, None),
        (204, None),
        (302, ReceiverRefused),
        (404, ReceiverRefused),
        (410, ReceiverRefused),
        (408, TransientError),
        (425, TransientError),
        (429, TransientError),
        (500, TransientError),
        (503, TransientError),
    ],
)
def test_answers_are_classified(receiver, status, error):
    receiver.statuses = [status]
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data"
    # Private addresses allowed: the receiver is on loopback.
    guard = EgressGuard(LOOPBACK_ALLOWED)
    if error is None:
        assert guard.request("POST", receiver.url, body=b"{}", timeout=5).status == status
    else:
        with pytest.raises(error, match=str(status)):
            guard.request("POST", receiver.url, body=b"{}", timeout=5)
    assert len(receiver.calls) == 1  # no redirect followed, no retry here


def test_an_unreachable_receiver_is_transient():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    # Private addresses allowed: the (closed) port is on loopback.
    with pytest.raises(TransientError, match="could not be reached"):
        EgressGuard(LOOPBACK_ALLOWED).request("POST", f"http://127.0.0.1:{port}/", timeout=2)


class StreamingReceiver:
    """Answer every request with ``head``, then ``chunk`` every ``interval`` s until cut off."""

    def __init__(self, head: bytes, chunk: bytes, interval: float) -> None:
        self.sent = 0
        self._head, self._chunk, self._interval = head, chunk, interval
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with client:
            try:
                client.recv(65536)
                client.sendall(self._head)
                while not self._closing.wait(self._interval):
                    client.sendall(self._chunk)
                    self.sent += len(self._chunk)
            except OSError:
                return  # the guard hung up

    def close(self) -> None:
        self._closing.set()
        self._listener.close()


@pytest.fixture
def streaming():
    servers: list[StreamingReceiver] = []

    def start(head: bytes, chunk: bytes, interval: float) -> StreamingReceiver:
        servers.append(StreamingReceiver(head, chunk, interval))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_receiver_dripping_its_headers_is_cut_off_at_the_deadline(streaming):
    # One byte of a header every 0.3 s: each read returns in time, so a per-read
    # timeout never fires. 1.5 s stands for the shipped WEBHOOK_TIMEOUT (10 s).
    drip = streaming(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.3)
    # Private addresses allowed: the receiver is on loopback.
    guard = EgressGuard(LOOPBACK_ALLOWED)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"within 1\.5 s"):
        guard.request("POST", f"http://127.0.0.1:{drip.port}/hook", body=b"{}", timeout=1.5)
    assert time.monotonic() - started < 2.0
    assert drip.sent >= 3  # it was dripping, not silent


def test_a_body_dripped_after_the_status_is_cut_off_and_the_status_stands(streaming):
    drip = streaming(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"a", 0.3)
    # Private addresses allowed: the receiver is on loopback.
    guard = EgressGuard(LOOPBACK_ALLOWED)
    started = time.monotonic()
    answer = guard.request("POST", f"http://127.0.0.1:{drip.port}/hook", timeout=1.5)
    assert answer.status == 200
    assert time.monotonic() - started < 2.0


def test_a_large_body_is_read_only_up_to_the_cap(streaming):
    size = 256 * 1024 * 1024
    flood = streaming(
        f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode(), bytes(65536), 0
    )
    # Private addresses allowed: the receiver is on loopback.
    answer = EgressGuard(LOOPBACK_ALLOWED).request(
        "POST", f"http://127.0.0.1:{flood.port}/hook", timeout=5
    )
    assert answer.status == 200
    time.sleep(0.2)
    # The guard read MAX_BODY_BYTES and hung up; what else was sent sat in the kernel's
    # buffers (a few MiB on loopback), far from the whole body.
    assert flood.sent < size // 8
