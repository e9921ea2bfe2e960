"""Hostile HTTP clients against the gateway as shipped, through the real upload path.

Text posing as media, a 300 MiB multipart preamble, oversized part headers and
fields, and twenty clients trickling their uploads: each gets its error (415, 413,
408 or a closed connection), leaves nothing stored, and costs the gateway neither
its memory nor its answers to everyone else.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest
import requests

from devstack.procs import RssSampler, child_pids
from gateway.config import DEFAULT_MAX_CONTENT_LENGTH, DEFAULT_UPLOAD_READ_TIMEOUT
from gateway.uploads import MAX_FIELD_BYTES, MAX_FORM_HEADER_BYTES, MAX_PARTS
from tests.support.media import make_video
from tests.support.system import System, User, new_user

BOUNDARY = b"hostile-client-boundary"
MiB = 1024**2
# DESIGN targets: "a 300 MiB multipart preamble grows a gateway worker by < 20 MB";
# "20 trickling clients leave /health answering within a second".
PREAMBLE_BYTES = 300 * MiB
MAX_WORKER_GROWTH_MB = 20
SLOW_CLIENTS = 20
HEALTH_WITHIN_S = 1.0
# A real MP4's first box, then bytes the sniff does not look at.
FTYP = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


@pytest.fixture(scope="module")
def hostile_system(start_system) -> Iterator[System]:
    """A system with the gateway's production limits, its workers stopped.

    The upload limit is the shipped default (2 GiB), not the shared stack's 20 MiB, so
    a 300 MiB body reaches the multipart decoder; the thread count and the upload read
    timeout are the defaults. Converter and notification are stopped: accepted uploads
    stay queued, and no conversion competes for the two cores while /health is timed.
    """
    with start_system("hostile", {"MAX_CONTENT_LENGTH": str(DEFAULT_MAX_CONTENT_LENGTH)}) as system:
        system.stack.stop(("converter", "notification"))
        yield system


def report(line: str) -> None:
    """Print a measurement (shown with ``pytest -s``) for the record."""
    print(f"\n[measured] {line}", flush=True)


# --- forms and raw HTTP ------------------------------------------------------------------


def part(name: str, content: bytes, filename: str | None = None, headers: bytes = b"") -> bytes:
    """Encode one multipart part (a file when ``filename`` is given)."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return (
        b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        + headers + b"\r\n" + content + b"\r\n"
    )  # fmt: skip


def form(*parts: bytes) -> bytes:
    """Join encoded parts into a multipart body."""
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


def upload_headers(user: User) -> dict[str, str]:
    return {
        **user.headers,
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
    }


def post_form(system: System, user: User, body: bytes) -> requests.Response:
    return requests.post(
        f"{system.gateway}/upload", data=body, headers=upload_headers(user), timeout=60
    )


def gateway_address(system: System) -> tuple[str, int]:
    host, port = system.gateway.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def request_head(system: System, user: User, length: int) -> bytes:
    """Return the head of a ``POST /upload`` with a body of ``length`` bytes."""
    host, port = gateway_address(system)
    lines = [
        "POST /upload HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {length}",
        *(f"{name}: {value}" for name, value in upload_headers(user).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Answer:
    """What the server said on a raw connection: a response, or that it closed."""

    status: int | None
    body: dict = field(default_factory=dict)
    sent: int = 0


def read_answer(sock: socket.socket, sent: int = 0) -> Answer:
    """Read one HTTP response, or note that the server closed without one."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        raw = response.read()
    except (http.client.HTTPException, ConnectionError):
        return Answer(None, sent=sent)
    return Answer(response.status, json.loads(raw) if raw else {}, sent)


def stream_upload(system: System, user: User, pieces: Iterable[bytes], length: int) -> Answer:
    """Send a body piece by piece as a client would, stopping as soon as the server answers.

    A server may answer (413) long before the body is all sent; a client that kept
    writing would see its connection reset instead of the answer.
    """
    sock = socket.create_connection(gateway_address(system), timeout=60)
    with contextlib.closing(sock):
        sock.sendall(request_head(system, user, length))
        sent = 0
        for piece in pieces:
            view = memoryview(piece)
            while view:
                readable, writable, _ = select.select([sock], [sock], [], 60)
                if readable:
                    return read_answer(sock, sent)
                assert writable, "the gateway neither read nor answered for 60 s"
                try:
                    count = sock.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    return read_answer(sock, sent)
                view, sent = view[count:], sent + count
        return read_answer(sock, sent)


# --- what the gateway stored and how big its workers are ------------------------------------


def nothing_stored(system: System, user: User) -> bool:
    return (
        system.videos.jobs.count_documents({"owner": user.email}) == 0
        and system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    )


def orphan_chunks(system: System) -> int:
    """Count stored chunks that belong to no file (what an aborted upload could leave)."""
    files = system.videos["fs.files"].distinct("_id")
    return system.videos["fs.chunks"].count_documents({"files_id": {"$nin": files}})


def gateway_workers(system: System) -> list[int]:
    """Return the pids of the gateway's gunicorn workers (its master's children)."""
    return child_pids(system.stack.processes["gateway"].pid)


# --- text posing as media: 415 -------------------------------------------------------------

DASH_MANIFEST = (
    b'<!--free--><?xml version="1.0" encoding="UTF-8"?>\n'
    b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" minBufferTime="PT2S"\n'
    b'     mediaPresentationDuration="PT634.5S"'
    b' profiles="urn:mpeg:dash:profile:isoff-live:2011">\n'
    b"  <Period>\n"
    b'    <AdaptationSet mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">\n'
    b'      <Representation id="1" codecs="avc1.64001f" width="1280" height="720"'
    b' bandwidth="3000000">\n'
    b"      </Representation>\n"
    b"    </AdaptationSet>\n"
    b"  </Period>\n"
    b"</MPD>\n"
)
TEXT_WITH_A_MAGIC_PREFIX = {
    "dash-manifest-free": DASH_MANIFEST,
    "ftyp-comment": b"<!--ftyp--> an HTML page\n" * 20,
    "mdat-words": b"abcdmdat is how MP4 names its media data\n" * 12,
    "id3-prose": b"ID3 tags hold the title and artist of an MP3 file.\n" * 10,
    "id3-valid-header-then-text": b"ID3\x04\x00\x00\x00\x00\x00\x10"
    + b"TIT2\x00\x00\x00\x02\x00\x00\x03a"
    + b"Dear diary, today I uploaded a text file.\n" * 10,
    "riff-text": b"RIFF....WAVEfmt is a text file really\n" * 10,
    "ogg-text": b"OggS and more text\n" * 30,
    "flac-text": b"fLaC is a lossless codec\n" * 30,
    "amr-text": b"#!AMR\nlooks like speech, is a note\n" * 15,
    "aiff-text": b"FORM....AIFFCOMM text\n" * 25,
    "ts-like-text": (b"G" + b"o" * 187) * 3,
    "utf16-text": "\ufeffHello, this is UTF-16 text.\n".encode("utf-16-le") * 10,
}


def test_dash_manifest_case_is_the_issues_474_bytes():
    assert len(DASH_MANIFEST) == 474


@pytest.mark.parametrize(
    "content", TEXT_WITH_A_MAGIC_PREFIX.values(), ids=TEXT_WITH_A_MAGIC_PREFIX.keys()
)
def test_text_starting_like_media_is_refused_with_415(hostile_system, content):
    user = new_user(hostile_system)
    response = post_form(hostile_system, user, form(part("file", content, "video.mp4")))
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"
    assert nothing_stored(hostile_system, user)


REAL_CONTAINERS = {
    "mp4": ("clip.mp4", {}),
    "mp4-faststart": ("fast.mp4", {"faststart": True}),
    "mov": ("clip.mov", {}),
    "m4a": ("clip.m4a", {"video": False}),
    "mkv": ("clip.mkv", {}),
    "webm": ("clip.webm", {}),
    "webm-live": ("live.webm", {"seekable": False}),
    "avi": ("clip.avi", {}),
    "wav": ("tone.wav", {"video": False}),
    "mp3": ("tone.mp3", {"video": False}),
    "flac": ("tone.flac", {"video": False}),
    "ogg": ("tone.ogg", {"video": False}),
    "mpeg-ts": ("clip.ts", {"container": "mpegts", "audio_codec": "aac"}),
}


@pytest.mark.parametrize(("name", "options"), REAL_CONTAINERS.values(), ids=REAL_CONTAINERS.keys())
def test_real_containers_are_accepted(hostile_system, tmp_path, name, options):
    source = make_video(tmp_path / name, seconds=1, **options)
    user = new_user(hostile_system)
    response = post_form(hostile_system, user, form(part("file", source.read_bytes(), name)))
    assert response.status_code == 202, response.text


# --- a huge preamble, oversized headers and fields: 413 ------------------------------------


def test_a_300_mib_preamble_gets_413_and_no_worker_grows_20_mb(hostile_system):
    user = new_user(hostile_system)
    line = b"p" * 1022 + b"\r\n"
    piece = line * 1024  # 1 MiB, sent 300 times: never all in memory here either
    tail = form(part("file", FTYP + b"\x00" * 1024, "after-the-preamble.mp4"))
    pieces = itertools.chain(itertools.repeat(piece, PREAMBLE_BYTES // len(piece)), [tail])
    with RssSampler(gateway_workers(hostile_system)) as memory:
        answer = stream_upload(hostile_system, user, pieces, PREAMBLE_BYTES + len(tail))
    report(
        f"300 MiB preamble: {answer.status} {answer.body.get('error')} after "
        f"{answer.sent / MiB:.1f} MiB sent; largest worker RSS growth {memory.growth_mb():.1f} MB"
    )
    assert answer.status == 413, answer
    assert answer.body["error"] == "form_too_large"
    assert answer.body["message"]
    assert memory.growth_mb() < MAX_WORKER_GROWTH_MB
    assert nothing_stored(hostile_system, user)


OVERSIZED_FORMS = {
    "one-huge-part-header": (
        form(part("file", FTYP, "a.mp4", b"X-Padding: " + b"a" * MiB + b"\r\n")),
        "form_too_large",
    ),
    "many-part-headers": (
        form(part("file", FTYP, "a.mp4", b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 10_000)),
        "form_too_large",
    ),
    "a-filename-over-the-header-limit": (
        form(part("file", FTYP, "x" * (MAX_FORM_HEADER_BYTES + 1) + ".mp4")),
        "form_too_large",
    ),
    "a-field-just-over-its-limit": (
        form(part("title", b"t" * (MAX_FIELD_BYTES + 1)), part("file", FTYP, "a.mp4")),
        "field_too_large",
    ),
    "a-100-mib-field": (
        form(part("title", b"t" * 100 * MiB), part("file", FTYP, "a.mp4")),
        "field_too_large",
    ),
    "too-many-parts": (
        form(*(part(f"f{n}", b"x") for n in range(MAX_PARTS + 1)), part("file", FTYP, "a.mp4")),
        "too_many_parts",
    ),
}


@pytest.mark.parametrize(("body", "code"), OVERSIZED_FORMS.values(), ids=OVERSIZED_FORMS.keys())
def test_oversized_form_parts_get_413(hostile_system, body, code):
    user = new_user(hostile_system)
    answer = stream_upload(hostile_system, user, [body], len(body))
    assert answer.status == 413, answer
    assert answer.body["error"] == code
    assert answer.body["message"]
    assert nothing_stored(hostile_system, user)


# --- slow clients: 408 or closed, nothing left, everyone else served ----------------------


class Tricklers:
    """Clients that start an upload at full speed, then send one byte every few seconds."""

    def __init__(
        self, system: System, user: User, count: int, *, burst: int, interval: float
    ) -> None:
        self.interval = interval
        body_start = part("file", FTYP + os.urandom(burst), "slow.mp4")[: -len(b"\r\n")]
        # The body it announces is far longer than what it will ever send.
        head = request_head(system, user, len(body_start) + 100 * MiB)
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(gateway_address(system), timeout=30)
            sock.sendall(head + body_start)
            self.sockets.append(sock)
        self.started = time.monotonic()
        self.closed_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval):
            for index, sock in enumerate(self.sockets):
                if index in self.closed_at:
                    continue
                try:
                    sock.send(b"\x00")
                except OSError:
                    self.closed_at[index] = time.monotonic()

    def answers(self, timeout: float) -> list[Answer]:
        """Wait up to ``timeout`` seconds for each client to be answered or disconnected."""
        deadline = self.started + timeout
        answers = []
        for sock in self.sockets:
            readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            answers.append(read_answer(sock) if readable else Answer(-1))
        return answers

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def time_health(system: System, duration: float) -> list[float]:
    """GET /health four times a second for ``duration`` seconds; return each latency."""
    latencies = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            ok = requests.get(f"{system.gateway}/health", timeout=15).status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(time.monotonic() - started if ok else float("inf"))
        time.sleep(0.25)
    return latencies


def test_trickling_clients_are_cut_off_while_everyone_else_is_served(hostile_system, tmp_path):
    system = hostile_system
    slow, other = new_user(system), new_user(system)
    source = make_video(tmp_path / "normal.mp4", seconds=2)
    # Each slow client first sends 6 MiB at full speed, so chunks of its file reach
    # GridFS (they are written 4 MiB at a time) before it slows down to a byte every 2 s.
    tricklers = Tricklers(system, slow, SLOW_CLIENTS, burst=6 * MiB, interval=2.0)
    try:
        health = time_health(system, DEFAULT_UPLOAD_READ_TIMEOUT / 3)
        with source.open("rb") as video:
            started = time.monotonic()
            normal = requests.post(
                f"{system.gateway}/upload",
                headers=other.headers,
                files={"file": (source.name, video)},
                timeout=60,
            )
            normal_seconds = time.monotonic() - started
        health += time_health(system, DEFAULT_UPLOAD_READ_TIMEOUT / 3)
        answers = tricklers.answers(timeout=DEFAULT_UPLOAD_READ_TIMEOUT + 15)
        cut_off_after = time.monotonic() - tricklers.started
    finally:
        tricklers.close()
    report(
        f"/health under {SLOW_CLIENTS} trickling clients: {len(health)} probes, "
        f"p50 {statistics.median(health) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms; "
        f"another user's upload {normal.status_code} in {normal_seconds:.2f} s; "
        f"slow clients: {sorted(str(a.status) for a in answers)} within {cut_off_after:.1f} s"
    )
    assert max(health) < HEALTH_WITHIN_S
    assert normal.status_code == 202, normal.text
    for answer in answers:
        assert answer.status in (408, None), answer  # None: closed without an answer
        if answer.status == 408:
            assert answer.body["error"] == "upload_timeout"
    assert nothing_stored(system, slow)
    assert orphan_chunks(system) == 0
