"""The egress guard: the one module that connects to URLs a user gave us.

A user's URL (a webhook's ``callback_url``, later a video to import) makes us
connect, from inside our network, to wherever that URL points. Every such
request goes through here:

- ``check_url`` vets a URL without looking its host up: scheme http(s), a host,
  no credentials, a bounded length, an allowed port, and a host that is not a
  refused address literal (nor ``localhost``). The gateway calls it when a job is
  submitted; its verdict is never trusted later, since a name may resolve
  elsewhere by the time it is called.
- ``EgressGuard.request`` checks the URL again, resolves the host ONCE, refuses
  the call if ANY answer is not a public address, and connects to those same
  addresses (the first that answers, in the resolver's order) while speaking to
  the original host name: the Host header, the TLS server name (SNI) and the
  certificate check all use it. There is no second lookup for a rebinding name
  to answer with 127.0.0.1. Redirects are not followed: a 3xx is an answer.
- ``EgressGuard.get`` does the same for a download (a video imported by URL): it
  yields the answer with its body unread, and may follow a few redirects, each
  new URL checked, resolved and pinned as if the user had given it.
- One deadline bounds the whole call: connect, TLS handshake, sending, the
  response's headers and the first ``MAX_BODY_BYTES`` of its body (which is then
  dropped). A receiver that drips a byte at a time is cut off at the deadline.

The policy is ``common.config.EgressConfig``: ``EGRESS_ALLOW_PRIVATE=true`` lets
calls reach any address (development: receivers on this machine; its old name
``WEBHOOK_ALLOW_PRIVATE`` still works), and ``EGRESS_PORTS`` lists the ports a URL
may name, comma-separated (default ``80,443``), or is ``any`` for every port.

Built on the standard library's http.client and ssl rather than urllib3 (which
reads its responses with http.client anyway): a connection subclass decides how
it connects and which socket http.client then uses, while the Host header and
the TLS server name keep coming from the host name, so pinning takes one small
class; and owning the socket lets every read and write see only the time left.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from common.config import EgressConfig
from common.errors import PermanentError, TransientError

MAX_URL_LENGTH = 2048
# How much of an answer's body is read before it is dropped: enough for any
# receiver's "ok", too little to cost memory.
MAX_BODY_BYTES = 64 * 1024
# Answers that mean "try again later"; any other 3xx or 4xx is the receiver saying no.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
DEFAULT_PORTS = {"http": 80, "https": 443}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# socket.getaddrinfo's shape: (host, port, type=...) -> [(family, type, proto, canonname, sockaddr)]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_net = ipaddress.ip_network

# Every address range a user's URL may not reach, with what it is; the first match
# names the reason. The forms that embed an IPv4 address (IPv4-mapped and -compatible,
# NAT64, 6to4, Teredo) are refused outright rather than decoded: nothing legitimate
# needs them, and decoding each is one more place to get wrong.
REFUSED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_net("0.0.0.0/8"), "'this network' (unspecified)"),
    (_net("10.0.0.0/8"), "private (RFC 1918)"),
    (_net("100.64.0.0/10"), "carrier-grade NAT space (RFC 6598)"),
    (_net("127.0.0.0/8"), "loopback"),
    (_net("169.254.0.0/16"), "link-local (where cloud metadata answers)"),
    (_net("172.16.0.0/12"), "private (RFC 1918)"),
    (_net("192.0.0.0/24"), "reserved for IETF protocol assignments"),
    (_net("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_net("192.88.99.0/24"), "6to4 relay anycast"),
    (_net("192.168.0.0/16"), "private (RFC 1918)"),
    (_net("198.18.0.0/15"), "benchmarking (RFC 2544)"),
    (_net("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_net("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_net("224.0.0.0/4"), "multicast"),
    (_net("240.0.0.0/4"), "reserved (or broadcast)"),
    (_net("::/128"), "unspecified"),
    (_net("::1/128"), "loopback"),
    (_net("::ffff:0:0/96"), "IPv4-mapped"),
    (_net("::/96"), "IPv4-compatible"),
    (_net("64:ff9b::/96"), "NAT64 (embeds an IPv4 address)"),
    (_net("64:ff9b:1::/48"), "local-use NAT64"),
    (_net("100::/64"), "discard-only"),
    (_net("2001::/32"), "Teredo (embeds an IPv4 address)"),
    (_net("2001:2::/48"), "benchmarking"),
    (_net("2001:db8::/32"), "documentation"),
    (_net("2001::/23"), "reserved for IETF protocol assignments"),
    (_net("2002::/16"), "6to4 (embeds an IPv4 address)"),
    (_net("3fff::/20"), "documentation"),
    (_net("5f00::/16"), "SRv6 segment identifiers"),
    (_net("fc00::/7"), "unique local (private)"),
    (_net("fe80::/10"), "link-local"),
    (_net("fec0::/10"), "site-local"),
    (_net("ff00::/8"), "multicast"),
)
# The only IPv6 block handed out for public unicast so far.
GLOBAL_UNICAST_V6 = _net("2000::/3")

# Names that always mean this machine (RFC 6761), refused without a lookup.
_LOOPBACK_NAMES = re.compile(r"(.+\.)?localhost\.?")
# What the C library's inet_aton reads as an IPv4 address (2130706433, 0x7f.1, 127.1):
# getaddrinfo answers those without DNS, so they are address literals too.
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


class EgressRefused(PermanentError):
    """A URL, or an address its host resolves to, that may not be called."""


class ReceiverRefused(PermanentError):
    """The receiver answered no for good: a redirect (not followed) or a 4xx."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: what to connect to and what to ask for."""

    scheme: str
    host: str  # ASCII (IDNA for international names), no brackets
    port: int
    path: str  # path and query
    address: Address | None  # set when the host is an address literal


@dataclass(frozen=True, slots=True)
class Answer:
    """A receiver's answer (its body is read up to MAX_BODY_BYTES and dropped)."""

    status: int
    reason: str
    headers: Mapping[str, str]


def refusal(address: Address) -> str | None:
    """Return what ``address`` is if it may not be called, or None for a public unicast one."""
    for network, what in REFUSED_NETWORKS:
        if address in network:
            return what
    if address.version == 6 and address not in GLOBAL_UNICAST_V6:
        return "outside IPv6 global unicast (2000::/3)"
    if not address.is_global:  # anything the standard library knows of that the table lacks
        return "not globally reachable"
    return None


def check_url(url: str, policy: EgressConfig) -> Target:
    """Return the target of ``url`` if ``policy`` lets us call it, without resolving its host.

    Raises:
        EgressRefused: saying what is wrong with the URL.
    """
    if len(url) > MAX_URL_LENGTH:
        raise EgressRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL.search(url):
        raise EgressRefused("the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EgressRefused("the URL's host or port is malformed") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise EgressRefused("the URL must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise EgressRefused("the URL must not carry credentials")
    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    if not policy.allows_port(port):
        allowed = ", ".join(map(str, sorted(policy.ports))) if policy.ports else "1-65535"
        raise EgressRefused(f"the URL may not name port {port} (allowed: {allowed})")
    host = _ascii_host(parts.hostname)
    address = _address_literal(host)
    if not policy.allow_private:
        if address is not None and (what := refusal(address)):
            raise EgressRefused(f"{address} is {what}, not a public address")
        if address is None and _LOOPBACK_NAMES.fullmatch(host):
            raise EgressRefused(f"{host} is loopback, not a public address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A request line is ASCII: percent-encode the rest as UTF-8, as browsers do.
    path = _NON_ASCII.sub(lambda match: quote(match.group()), path)
    return Target(parts.scheme, host, port, path, address)


def _ascii_host(host: str) -> str:
    """Return ``host`` as it goes on the wire (IDNA for an international name)."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise EgressRefused(f"{host!r} is not a valid host name") from None


def _address_literal(host: str) -> Address | None:
    """Return the address ``host`` spells, or None when it is a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            pass
    return None


class EgressGuard:
    """Send HTTP requests to user-given URLs, reaching only the addresses the policy allows."""

    def __init__(
        self,
        policy: EgressConfig,
        *,
        resolver: Resolver = socket.getaddrinfo,
        ca_file: str | None = None,
    ) -> None:
        """Build a guard; ``ca_file`` replaces the system's CAs (tests' own receivers)."""
        self._policy = policy
        self._resolver = resolver
        self._tls = ssl.create_default_context(cafile=ca_file)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Answer:
        """Send one request to ``url`` and return a 2xx answer, all within ``timeout`` seconds.

        Raises:
            EgressRefused: the URL, or an address its host resolves to, may not be called.
            ReceiverRefused: the receiver answered a 3xx (not followed), 1xx or 4xx.
            TransientError: the host could not be looked up or reached, the whole answer
                did not arrive within ``timeout``, or it was 5xx, 408, 425 or 429.
        """
        deadline = time.monotonic() + timeout
        target = check_url(url, self._policy)
        addresses = self._addresses(target)
        with _translated(target.host, timeout):
            answer = self._exchange(target, addresses, method, body, headers or {}, deadline)
        _judge(target.host, answer.status)
        return answer

    @contextlib.contextmanager
    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        redirects: int = 0,
        idle_timeout: float | None = None,
    ) -> Iterator[Body]:
        """GET ``url`` and yield its 2xx answer with the body unread, all within ``timeout``.

        For a download (a video to import): the body is read piece by piece from the
        yielded ``Body``, every read within the same deadline. Up to ``redirects``
        redirects are followed, each new URL checked, resolved and pinned afresh as
        if the user had given it. With ``idle_timeout``, a read of the body that waits
        longer than that for a byte fails.

        Raises:
            EgressRefused, ReceiverRefused, TransientError: as ``request`` does (a 3xx
                beyond ``redirects``, or without a Location, is a ReceiverRefused).
        """
        deadline = time.monotonic() + timeout
        followed = 0
        while True:
            target = check_url(url, self._policy)
            addresses = self._addresses(target)
            with _translated(target.host, timeout):
                sock = self._open(target, addresses, deadline)
            try:
                with _translated(target.host, timeout):
                    pinned = _DeadlineSocket(sock, deadline)
                    connection = _PinnedConnection(target, pinned)
                    connection.request(
                        "GET", target.path, None, {"Connection": "close", **(headers or {})}
                    )
                    response = connection.getresponse()
                location = response.getheader("Location")
                if 300 <= response.status < 400 and location and followed < redirects:
                    followed += 1
                    url = urljoin(url, location)
                    continue
                _judge(target.host, response.status)
                answer = Answer(response.status, response.reason, dict(response.getheaders()))
                pinned.idle_timeout = idle_timeout
                yield Body(
                    answer,
                    response,
                    target.host,
                    timeout,
                    deadline=deadline,
                    idle_timeout=idle_timeout,
                )
                return
            finally:
                sock.close()

    def _addresses(self, target: Target) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        """Resolve the target's host once; return every (family, sockaddr), each one checked.

        Raises:
            EgressRefused: the host does not resolve, or to any refused address.
            TransientError: the resolver could not answer now.
        """
        if target.address is not None:
            literal = target.address
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, (str(literal).split("%", 1)[0], target.port))]
        try:
            infos = self._resolver(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise TransientError(f"{target.host} could not be looked up: {exc}") from None
            raise EgressRefused(f"{target.host} does not resolve") from None
        except UnicodeError:
            raise EgressRefused(f"{target.host!r} is not a valid host name") from None
        found = []
        for family, _type, _proto, _name, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise EgressRefused(f"{target.host} resolves to a non-IP address")
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if not self._policy.allow_private and (what := refusal(address)):
                raise EgressRefused(
                    f"{target.host} resolves to {address}, which is {what}, not a public address"
                )
            found.append((family, sockaddr))
        if not found:
            raise EgressRefused(f"{target.host} does not resolve")
        return found

    def _exchange(
        self,
        target: Target,
        addresses: list[tuple[socket.AddressFamily, tuple[Any, ...]]],
        method: str,
        body: bytes | None,
        headers: Mapping[str, str],
        deadline: float,
    ) -> Answer:
        """Connect, send the request and read the answer, all before ``deadline``."""
        sock = self._open(target, addresses, deadline)
        try:
            connection = _PinnedConnection(target, _DeadlineSocket(sock, deadline))
            connection.request(method, target.path, body, {"Connection": "close", **headers})
            response = connection.getresponse()
            # The status is the answer; the body is only read (and dropped) to be polite.
            with contextlib.suppress(OSError, http.client.HTTPException):
                response.read(MAX_BODY_BYTES)
            return Answer(response.status, response.reason, dict(response.getheaders()))
        finally:
            sock.close()

    def _open(
        self,
        target: Target,
        addresses: list[tuple[socket.AddressFamily, tuple[Any, ...]]],
        deadline: float,
    ) -> socket.socket:
        """Connect to the first of ``addresses`` that answers; start TLS for https."""
        error: OSError | None = None
        for family, sockaddr in addresses:
            try:
                sock = _connect(family, sockaddr, _remaining(deadline))
            except OSError as exc:
                error = exc
                continue
            break
        else:
            raise error or OSError(f"no address to connect to for {target.host}")
        if target.scheme == "https":
            try:
                sock.settimeout(_remaining(deadline))
                # CPython's handshake keeps one deadline for all its reads, so the timeout
                # bounds the whole handshake; the server name is the URL's, not the address.
                sock = self._tls.wrap_socket(sock, server_hostname=target.host)
            except BaseException:
                sock.close()
                raise
        return sock


@contextlib.contextmanager
def _translated(host: str, timeout: float) -> Iterator[None]:
    """Turn what a failed exchange with ``host`` raises into a TransientError saying why."""
    try:
        yield
    except TimeoutError:
        raise TransientError(f"{host} did not answer completely within {timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        raise TransientError(
            f"{host}'s TLS certificate was not accepted: {exc.verify_message}"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(f"{host} could not be reached: {exc!r}") from exc


def _judge(host: str, status: int) -> None:
    """Accept a 2xx status; raise what any other status from ``host`` means.

    Raises:
        TransientError: 5xx, 408, 425 or 429.
        ReceiverRefused: a 3xx (not followed), 1xx or other 4xx.
    """
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise TransientError(f"{host} answered {status}")
    if 300 <= status < 400:
        raise ReceiverRefused(status, f"{host} answered {status} (not followed)")
    if not 200 <= status < 300:
        raise ReceiverRefused(status, f"{host} answered {status}")


class Body:
    """A 2xx answer whose body is still to be read, within the call's deadline."""

    def __init__(
        self,
        answer: Answer,
        response: http.client.HTTPResponse,
        host: str,
        timeout: float,
        *,
        deadline: float,
        idle_timeout: float | None = None,
    ) -> None:
        self.answer = answer
        self._response = response
        self._host = host
        self._timeout = timeout
        self._deadline = deadline
        self._idle_timeout = idle_timeout

    def read(self, size: int) -> bytes:
        """Return up to ``size`` more bytes of the body; b"" at its end.

        Raises:
            TransientError: the body stopped short, nothing came for the idle timeout,
                or the deadline passed.
        """
        with _translated(self._host, self._timeout):
            try:
                return self._response.read1(size)
            except TimeoutError:
                if self._idle_timeout is None or time.monotonic() >= self._deadline:
                    raise
                raise TransientError(
                    f"{self._host} sent nothing for {self._idle_timeout:g} s"
                ) from None


def _connect(
    family: socket.AddressFamily, sockaddr: tuple[Any, ...], timeout: float
) -> socket.socket:
    """Open a TCP connection to ``sockaddr`` within ``timeout`` seconds.

    Every connection the guard makes starts here, which is where the tests watch
    which addresses it goes to.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _remaining(deadline: float) -> float:
    """Return the seconds left before ``deadline``.

    Raises:
        TimeoutError: none are left.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return left


class _DeadlineSocket:
    """The socket as http.client sees it: each send and receive gets only the time left.

    A socket timeout bounds one wait, so a receiver that sends a byte just inside it
    holds the call as long as it likes; setting it from the deadline before every wait
    makes the deadline bound the call. No watchdog thread is needed, and none can
    close a socket whose descriptor was already reused.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        # Set once the headers are in, for a download: the longest wait for a byte.
        self.idle_timeout: float | None = None

    def sendall(self, data: bytes) -> None:
        """Send all of ``data`` before the deadline (sendall's timeout is for the whole)."""
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def recv_into(self, buffer: memoryview) -> int:
        """Receive what has arrived into ``buffer``, waiting no later than the deadline
        (nor longer than the idle timeout, when there is one)."""
        left = _remaining(self._deadline)
        self._sock.settimeout(min(left, self.idle_timeout) if self.idle_timeout else left)
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        """Return a buffered reader whose every read keeps the deadline."""
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        """Leave the socket open: http.client closes its connection before it reads the
        body of a ``Connection: close`` answer; the guard closes the socket at the end."""


class _DeadlineReader(io.RawIOBase):
    """The raw stream under http.client's reads."""

    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


class _PinnedConnection(http.client.HTTPConnection):
    """http.client over a socket already connected: it talks to ``target.host`` wherever
    the socket leads, so the Host header is the URL's."""

    def __init__(self, target: Target, sock: _DeadlineSocket) -> None:
        super().__init__(target.host, target.port)
        # The Host header leaves the port out when it is the scheme's own.
        self.default_port = DEFAULT_PORTS[target.scheme]
        self._pinned = sock

    def connect(self) -> None:
        """Use the pinned socket; there is nothing to look up or connect."""
        self.sock = self._pinned  # type: ignore[assignment]  # the socket calls http.client makes
