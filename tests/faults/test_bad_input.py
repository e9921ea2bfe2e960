"""Bad input of every kind, through the real path: the exact error, and nothing left behind."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import forge
from tests.support.media import make_video
from tests.support.polling import wait_until
from tests.support.rabbit import put_raw, queue_depth
from tests.support.system import MAX_UPLOAD_BYTES

BOUNDARY = "bad-input-boundary"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


def form(*parts: tuple[str, bytes | None, bytes]) -> bytes:
    """Encode multipart parts: (field name, raw filename bytes or None, content)."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition
        body += b"\r\n\r\n" + content + b"\r\n"
    return body + b"--" + BOUNDARY.encode() + b"--\r\n"


def post_upload(system, headers, body: bytes, content_type: str | None = None):
    content_type = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    return requests.post(
        f"{system.gateway}/upload",
        data=body,
        timeout=30,
        headers={**headers, "Content-Type": content_type},
    )


def nothing_stored(system, user) -> bool:
    return (
        system.videos.jobs.count_documents({"owner": user.email}) == 0
        and system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    )


UPLOAD_TABLE = [
    ("no body at all", b"", None, 400, "malformed_upload"),
    ("not multipart", b'{"file": "x"}', "application/json", 400, "invalid_upload"),
    ("multipart without parts", b"--" + BOUNDARY.encode() + b"--\r\n", None, 400, "missing_file"),
    ("zero-byte file", form(("file", b"a.mp4", b"")), None, 400, "empty_file"),
    (
        "two files",
        form(("file", b"a.mp4", MP4_HEAD), ("file", b"b.mp4", MP4_HEAD)),
        None,
        400,
        "invalid_upload",
    ),
    ("wrong field name", form(("video", b"a.mp4", MP4_HEAD)), None, 400, "invalid_upload"),
    ("file sent as text", form(("file", None, MP4_HEAD)), None, 400, "invalid_upload"),
    (
        "random bytes named .mp4",
        form(("file", b"r.mp4", bytes(range(7, 255)) * 8)),
        None,
        415,
        "unsupported_media_type",
    ),
    (
        "a text file",
        form(("file", b"notes.txt", b"Dear diary, " * 50)),
        None,
        415,
        "unsupported_media_type",
    ),
    (
        "a PNG named .mp4",
        form(("file", b"x.mp4", b"\x89PNG\r\n\x1a\n" + b"\x00" * 600)),
        None,
        415,
        "unsupported_media_type",
    ),
    (
        "an unknown option",
        form(("colour", None, b"red"), ("file", b"a.mp4", MP4_HEAD)),
        None,
        400,
        "invalid_option",
    ),
    (
        "a bad option value",
        form(("channels", None, b"5"), ("file", b"a.mp4", MP4_HEAD)),
        None,
        400,
        "invalid_option",
    ),
    (
        "a non-UTF-8 option",
        form(("title", None, b"\xff\xfe"), ("file", b"a.mp4", MP4_HEAD)),
        None,
        400,
        "invalid_field",
    ),
    (
        "a file: callback",
        form(("callback_url", None, b"file:///etc/passwd"), ("file", b"a.mp4", MP4_HEAD)),
        None,
        400,
        "invalid_callback_url",
    ),
    # A raw CR LF ends the part's header line, so the part loses its filename.
    (
        "a filename with CR LF",
        form(("file", b"line\r\nBreak.mp4", MP4_HEAD)),
        None,
        400,
        "invalid_upload",
    ),
    (
        "a non-UTF-8 filename",
        form(("file", b"\xff\xfe\xfd.mp4", MP4_HEAD)),
        None,
        400,
        "malformed_upload",
    ),
    ("a body cut short", form(("file", b"a.mp4", MP4_HEAD))[:-30], None, 400, "malformed_upload"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [row[1:] for row in UPLOAD_TABLE],
    ids=[row[0] for row in UPLOAD_TABLE],
)
def test_bad_uploads(system, make_user, body, content_type, status, code):
    user = make_user()
    response = post_upload(system, user.headers, body, content_type)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert nothing_stored(system, user)


def test_an_upload_over_the_limit_is_413(system, user):
    response = post_upload(
        system, user.headers, form(("file", b"a.mp4", MP4_HEAD)) + b"\x00" * (MAX_UPLOAD_BYTES + 1)
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert nothing_stored(system, user)


@pytest.mark.parametrize(
    ("raw_name", "expected"),
    [
        (b"x" * 5000 + b".mp4", None),
        (b"../../etc/passwd.mp4", "passwd.mp4"),
        (b"C:\\\\Windows\\\\evil.mp4", "evil.mp4"),
        (b"nul\x00here.mp4", None),
        ("Fête à Noël.mp4".encode(), "Fête à Noël.mp4"),
    ],
    ids=["huge", "path-separators", "windows-path", "nul", "utf8"],
)
def test_hostile_filenames_are_reduced_to_a_safe_display_name(
    system, make_user, tmp_path, raw_name, expected
):
    user = make_user()
    video = make_video(tmp_path / "clip.mp4", seconds=1).read_bytes()
    response = post_upload(system, user.headers, form(("file", raw_name, video)))
    assert response.status_code == 202, response.text
    [job] = list(system.videos.jobs.find({"owner": user.email}))
    name = job["filename"]
    assert 0 < len(name) <= 200
    assert not set(name) & set('/\\\x00\r\n"')
    if expected is not None:
        assert name == expected


@pytest.mark.parametrize("name", sorted(set(forge.BAD_TOKENS) - {"too-long"}))
def test_bad_tokens_are_refused_everywhere(system, make_user, name):
    owner = make_user()
    token = forge.bad_token(name, system.signing_key, forge.new_rsa_key())
    headers = {"Authorization": f"Bearer {token}"}
    upload = post_upload(system, headers, form(("file", b"a.mp4", MP4_HEAD)))
    jobs = requests.get(f"{system.gateway}/jobs", headers=headers, timeout=10)
    for response in (upload, jobs):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
    assert nothing_stored(system, owner)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a b c"],
    ids=["empty", "scheme-only", "blank-token", "basic", "other-scheme", "spaces"],
)
def test_missing_or_garbled_authorization(system, header):
    response = requests.get(f"{system.gateway}/jobs", headers={"Authorization": header}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] in ("missing_token", "invalid_token")


@pytest.mark.parametrize("size", [9_000, 20_000])
def test_oversized_authorization_headers_stop_at_gunicorn(system, size):
    # gunicorn refuses header lines over 8190 bytes with its own 431 before the app runs.
    response = requests.get(
        f"{system.gateway}/jobs", timeout=10, headers={"Authorization": "Bearer " + "a" * size}
    )
    assert response.status_code == 431


@pytest.mark.parametrize(
    "fid",
    ["x", "0" * 24, "zzzzzzzzzzzzzzzzzzzzzzzz", "' OR 1=1 --", "%00", "a" * 500, "{}"],
)
def test_malformed_or_unknown_ids_are_404(system, user, fid):
    download = requests.get(
        f"{system.gateway}/download", params={"fid": fid}, headers=user.headers, timeout=10
    )
    job = requests.get(
        f"{system.gateway}/jobs/{requests.utils.quote(fid, safe='')}",
        headers=user.headers,
        timeout=10,
    )
    for response in (download, job):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("' OR 1=1 --", "x"),
        ("admin@e2e.test'; DROP TABLE users; --", "x"),
        ("admin@e2e.test", "' OR '1'='1"),
        ("a" * 300 + "@example.com", "x"),
        ("someone@example.com", "p" * 5000),
    ],
    ids=["sql-email", "sql-drop", "sql-password", "long-email", "long-password"],
)
def test_hostile_basic_credentials_are_just_wrong(system, email, password):
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    response = requests.post(
        f"{system.gateway}/login", timeout=30, headers={"Authorization": f"Basic {token}"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"
    assert (
        requests.post(
            f"{system.gateway}/login", auth=("admin@e2e.test", "admin-password-123"), timeout=30
        ).status_code
        == 200
    )  # the users table is intact


def dead_letter_gauge(metrics_url: str, dead_queue: str) -> float | None:
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "video2mp3_dead_letters" and sample.labels["queue"] == dead_queue:
                return sample.value
    return None


@pytest.mark.parametrize("queue_key", ["VIDEO_QUEUE", "MP3_QUEUE"])
@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2, 3]",
        json.dumps({"job_id": "x" * 100_000}).encode(),
        json.dumps({"job": str(uuid.uuid4()), "status": "done"}).encode(),
    ],
    ids=["not-json", "not-an-object", "oversized", "no-job-id"],
)
def test_garbage_on_the_queues_is_dead_lettered_and_work_goes_on(
    system, user, mail_sink, rabbitmq_config, tmp_path, queue_key, raw
):
    queue = system.env[queue_key]
    dead_before = queue_depth(rabbitmq_config, f"{queue}.dead")
    put_raw(rabbitmq_config, queue, raw)
    wait_until(lambda: queue_depth(rabbitmq_config, f"{queue}.dead") == dead_before + 1, timeout=30)
    # The queue's consumer reports its dead letters (the DeadLetters alerts' metric).
    port = system.env["CONVERTER_PORT" if queue_key == "VIDEO_QUEUE" else "NOTIFICATION_PORT"]
    wait_until(
        lambda: (
            dead_letter_gauge(f"http://127.0.0.1:{port}/metrics", f"{queue}.dead")
            == dead_before + 1
        ),
        timeout=15,
    )
    with make_video(tmp_path / "after.mp4", seconds=1).open("rb") as video:
        accepted = requests.post(
            f"{system.gateway}/upload", headers=user.headers, files={"file": video}, timeout=30
        )
    assert accepted.status_code == 202
    mail_sink.wait_for(1, to=user.email, timeout=60)  # the consumers kept going
