"""Upload -> MP3 -> email -> download, end to end through HTTP, as a user goes."""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
import requests
from bson import ObjectId

from common.messaging import Publisher
from common.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.support.media import audio_packet_hashes, make_video, probe_duration, truncate
from tests.support.receiver import WebhookReceiver
from tests.support.system import MAX_UPLOAD_BYTES, WEBHOOK_SECRET


def upload(system, user, path, *, name=None):
    with open(path, "rb") as video:
        return requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": (name or path.name, video)},
            timeout=60,
        )


def wait_for_mail(mail_sink, user, count=1, timeout=60):
    return mail_sink.wait_for(count, to=user.email, timeout=timeout)


def fid_in(email) -> str:
    match = re.search(r"fid: ([0-9a-f]{24})", email.get_body(("plain",)).get_content())
    assert match, "the email names no fid"
    return match.group(1)


def test_the_course_walkthrough_converts_a_video(system, user, mail_sink, tmp_path):
    source = make_video(tmp_path / "holiday.mp4", seconds=3)

    accepted = upload(system, user, source)
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["message"] == "success"
    assert set(body) >= {"job_id", "video_fid", "status_url"}

    [email] = wait_for_mail(mail_sink, user)
    assert "holiday.mp4" in email["Subject"]
    fid = fid_in(email)

    download = requests.get(
        f"{system.gateway}/download", params={"fid": fid}, headers=user.headers, timeout=30
    )
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "audio/mpeg"
    assert download.headers["Content-Disposition"] == 'attachment; filename="holiday.mp3"'
    assert download.headers["Accept-Ranges"] == "bytes"
    mp3 = tmp_path / "holiday.mp3"
    mp3.write_bytes(download.content)
    assert abs(probe_duration(mp3) - probe_duration(source)) <= 0.1

    by_video = requests.get(
        f"{system.gateway}/download",
        params={"fid": body["video_fid"]},
        headers=user.headers,
        timeout=30,
    )
    assert by_video.status_code == 200
    assert by_video.content == download.content

    job = requests.get(f"{system.gateway}{body['status_url']}", headers=user.headers, timeout=10)
    assert job.json()["status"] == "done"
    assert job.json()["progress"] == 100
    assert job.json()["mp3_fid"] == fid


def convert(system, user, mail_sink, path, *, count=1):
    """Upload ``path``, wait for its email and return (upload body, email)."""
    accepted = upload(system, user, path)
    assert accepted.status_code == 202, accepted.text
    emails = wait_for_mail(mail_sink, user, count)
    return accepted.json(), emails[-1]


def download_mp3(system, user, fid, dest):
    response = requests.get(
        f"{system.gateway}/download", params={"fid": fid}, headers=user.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    dest.write_bytes(response.content)
    return dest


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("moov-at-end.mp4", {}),
        ("faststart.mp4", {"faststart": True}),
        ("clip.mov", {}),
        ("clip.webm", {}),
        ("clip.avi", {}),
        ("audio-only.m4a", {"video": False}),
    ],
)
def test_common_containers_convert_with_the_right_duration(
    system, user, mail_sink, tmp_path, name, options
):
    source = make_video(tmp_path / name, seconds=2.5, **options)
    _, email = convert(system, user, mail_sink, source)
    assert email["Subject"].startswith("Your MP3 is ready")
    mp3 = download_mp3(system, user, fid_in(email), tmp_path / "out.mp3")
    assert abs(probe_duration(mp3) - probe_duration(source)) <= 0.1


def test_mp3_audio_is_stream_copied(system, user, mail_sink, tmp_path):
    source = make_video(tmp_path / "clip.mkv", seconds=3, audio_codec="libmp3lame")
    _, email = convert(system, user, mail_sink, source)
    mp3 = download_mp3(system, user, fid_in(email), tmp_path / "out.mp3")
    # The same audio packets, not a re-encode of them.
    assert audio_packet_hashes(mp3) == audio_packet_hashes(source)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: make_video(d / "silent.mp4", seconds=2, audio_codec=None), "no audio"),
        (
            lambda d: truncate(
                make_video(d / "full.mp4", seconds=4, faststart=True), d / "cut.mp4", fraction=0.5
            ),
            "truncated",
        ),
        (lambda d: _write(d / "fake.mp4", FTYP + os.urandom(50_000)), "corrupt"),
    ],
    ids=["no-audio", "truncated-mp4", "garbage-after-mp4-header"],
)
def test_bad_videos_fail_with_a_reason_and_an_email(
    system, user, mail_sink, tmp_path, make, reason
):
    body, email = convert(system, user, mail_sink, make(tmp_path))
    assert email["Subject"].startswith("We could not convert")
    job = requests.get(
        f"{system.gateway}{body['status_url']}", headers=user.headers, timeout=10
    ).json()
    assert job["status"] == "failed"
    assert reason in job["error"].lower()
    assert f"Reason: {job['error']}" in email.get_body(("plain",)).get_content()
    # Failed for good: no retries piling up, nothing dead-lettered.
    assert job["attempts"] == 1
    download = requests.get(
        f"{system.gateway}/download",
        params={"fid": body["video_fid"]},
        headers=user.headers,
        timeout=10,
    )
    assert download.status_code == 409
    assert download.json()["status"] == "failed"


def test_random_bytes_named_mp4_are_refused_at_upload(system, user, tmp_path):
    jobs_before = system.videos.jobs.count_documents({})
    response = upload(system, user, _write(tmp_path / "random.mp4", os.urandom(100_000)))
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
    assert system.videos.jobs.count_documents({}) == jobs_before


def test_other_users_files_and_jobs_are_not_found(system, make_user, mail_sink, tmp_path):
    owner, stranger = make_user(), make_user()
    body, email = convert(system, owner, mail_sink, make_video(tmp_path / "mine.mp4", seconds=2))
    for fid in (fid_in(email), body["video_fid"]):
        response = requests.get(
            f"{system.gateway}/download", params={"fid": fid}, headers=stranger.headers, timeout=10
        )
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    for method in (requests.get, requests.delete):
        response = method(
            f"{system.gateway}/jobs/{body['job_id']}", headers=stranger.headers, timeout=10
        )
        assert response.status_code == 404
    assert (
        requests.get(f"{system.gateway}/jobs", headers=stranger.headers, timeout=10).json()["total"]
        == 0
    )


def test_download_before_done_is_409_with_the_status(system, user, mail_sink, tmp_path):
    system.stack.stop(("converter",))
    try:
        accepted = upload(system, user, make_video(tmp_path / "wait.mp4", seconds=2))
        assert accepted.status_code == 202
        response = requests.get(
            f"{system.gateway}/download",
            params={"fid": accepted.json()["video_fid"]},
            headers=user.headers,
            timeout=10,
        )
        assert response.status_code == 409
        assert response.json()["error"] == "not_ready"
        assert response.json()["status"] == "queued"
    finally:
        system.stack.restart("converter")
    [email] = wait_for_mail(mail_sink, user)  # queued work survives the converter's absence
    assert email["Subject"].startswith("Your MP3 is ready")


def test_a_duplicated_video_message_makes_one_mp3_and_one_email(
    system, user, mail_sink, tmp_path, rabbitmq_config
):
    body, _email = convert(system, user, mail_sink, make_video(tmp_path / "once.mp4", seconds=2))
    duplicate = {
        "job_id": body["job_id"],
        "video_fid": body["video_fid"],
        "mp3_fid": None,
        "username": user.email,
        "options": {},
    }
    publisher = Publisher(rabbitmq_config, name="test-duplicate")
    try:
        publisher.publish(system.env["VIDEO_QUEUE"], duplicate)
    finally:
        publisher.close()
    # Queues are first in, first out: once a later job is mailed, the duplicate was handled.
    convert(system, user, mail_sink, make_video(tmp_path / "later.mp4", seconds=1), count=2)
    assert system.mp3s["fs.files"].count_documents({"metadata.job_id": body["job_id"]}) == 1
    mails_for_job = [
        m for m in mail_sink.messages(to=user.email) if m["X-Video2mp3-Job"] == body["job_id"]
    ]
    assert len(mails_for_job) == 1


def test_ranges_and_etags_work_on_downloads(system, user, mail_sink, tmp_path):
    _, email = convert(system, user, mail_sink, make_video(tmp_path / "range.mp4", seconds=3))
    url, fid = f"{system.gateway}/download", fid_in(email)
    full = requests.get(url, params={"fid": fid}, headers=user.headers, timeout=10)
    etag = full.headers["ETag"]

    part = requests.get(
        url, params={"fid": fid}, timeout=10, headers={**user.headers, "Range": "bytes=100-1099"}
    )
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(full.content)}"
    assert part.content == full.content[100:1100]

    unchanged = requests.get(
        url, params={"fid": fid}, timeout=10, headers={**user.headers, "If-None-Match": etag}
    )
    assert unchanged.status_code == 304

    beyond = requests.get(
        url,
        params={"fid": fid},
        timeout=10,
        headers={**user.headers, "Range": f"bytes={len(full.content) + 10}-"},
    )
    assert beyond.status_code == 416


def test_jobs_are_listed_newest_first_filtered_paged_and_deleted(system, user, mail_sink, tmp_path):
    bodies = [
        convert(system, user, mail_sink, make_video(tmp_path / f"{n}.mp4", seconds=1), count=n + 1)[
            0
        ]
        for n in range(3)
    ]
    listing = requests.get(
        f"{system.gateway}/jobs", headers=user.headers, params={"limit": 2}, timeout=10
    ).json()
    assert listing["total"] == 3
    assert [j["job_id"] for j in listing["jobs"]] == [bodies[2]["job_id"], bodies[1]["job_id"]]
    assert listing["jobs"][0]["download_url"].startswith("/download?fid=")
    done = requests.get(
        f"{system.gateway}/jobs",
        headers=user.headers,
        params={"status": "done", "offset": 2},
        timeout=10,
    ).json()
    assert [j["job_id"] for j in done["jobs"]] == [bodies[0]["job_id"]]
    bad = requests.get(
        f"{system.gateway}/jobs", headers=user.headers, params={"status": "exploded"}, timeout=10
    )
    assert bad.status_code == 400

    target = bodies[0]
    job = requests.get(
        f"{system.gateway}/jobs/{target['job_id']}", headers=user.headers, timeout=10
    ).json()
    deleted = requests.delete(
        f"{system.gateway}/jobs/{target['job_id']}", headers=user.headers, timeout=10
    )
    assert deleted.status_code == 204
    assert (
        requests.get(
            f"{system.gateway}/jobs/{target['job_id']}", headers=user.headers, timeout=10
        ).status_code
        == 404
    )
    assert system.videos["fs.files"].count_documents({"_id": ObjectId(job["video_fid"])}) == 0
    assert system.mp3s["fs.files"].count_documents({"_id": ObjectId(job["mp3_fid"])}) == 0


def test_uploads_while_the_broker_is_unreachable_get_503_and_leave_nothing(
    system, user, mail_sink, tmp_path
):
    source = make_video(tmp_path / "outage.mp4", seconds=1)
    system.proxies["broker"].refuse()
    try:
        response = upload(system, user, source)
    finally:
        system.proxies["broker"].accept()
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    # and the gateway reconnects by itself
    accepted = upload(system, user, source)
    assert accepted.status_code == 202
    # recorded as accepted, so the janitor never takes it for an abandoned upload
    assert system.videos.jobs.find_one({"_id": accepted.json()["job_id"]})["enqueued_at"]
    wait_for_mail(mail_sink, user)


FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("files", "data", "status", "code"),
    [
        (
            {"file": ("a.mp4", FTYP * 10), "other": ("b.mp4", FTYP * 10)},
            None,
            400,
            "invalid_upload",
        ),
        ({"video": ("a.mp4", FTYP * 10)}, None, 400, "invalid_upload"),
        ({"file": ("empty.mp4", b"")}, None, 400, "empty_file"),
        (
            {"file": ("notes.txt", b"just some notes, nothing to hear" * 10)},
            None,
            415,
            "unsupported_media_type",
        ),
        (None, {"file": "not a file"}, 400, "invalid_upload"),
    ],
    ids=["two-files", "wrong-field", "zero-bytes", "text-file", "text-field"],
)
def test_bad_uploads_get_a_json_error_and_leave_nothing(system, user, files, data, status, code):
    response = requests.post(
        f"{system.gateway}/upload", headers=user.headers, files=files, data=data, timeout=30
    )
    assert response.status_code == status
    assert response.json()["error"] == code
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer not.a.token"}, "invalid_token"),
        ({"Authorization": "Basic YTpi"}, "invalid_token"),
    ],
)
def test_uploads_need_a_valid_token(system, headers, code):
    response = requests.post(
        f"{system.gateway}/upload",
        headers=headers,
        files={"file": ("a.mp4", FTYP * 10)},
        timeout=30,
    )
    assert response.status_code == 401
    assert response.json()["error"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_oversized_upload_is_refused_before_its_body_is_read(system, user):
    host, port = system.gateway.removeprefix("http://").split(":")
    declared = 10 * MAX_UPLOAD_BYTES
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {user.token}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
            + b"--x\r\n"
            + b"\x00" * 1000
        )
        # The answer comes while almost all of the declared body is still unsent.
        answer = sock.recv(65536)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += sock.recv(65536)
    head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert json.loads(body)["error"] == "too_large"


def test_login_through_the_gateway_passes_auths_answers_on(system, user):
    good = requests.post(f"{system.gateway}/login", auth=(user.email, user.password), timeout=30)
    assert good.status_code == 200
    assert good.json()["token_type"] == "Bearer"
    bad = requests.post(f"{system.gateway}/login", auth=(user.email, "wrong"), timeout=30)
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_credentials"
    missing = requests.post(f"{system.gateway}/login", timeout=30)
    assert missing.status_code == 401
    assert missing.json()["error"] == "missing_credentials"


def test_health_and_readiness(system):
    assert requests.get(f"{system.gateway}/health", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{system.gateway}/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"mongodb": "ok", "rabbitmq": "ok"}
    for port in (system.env["CONVERTER_PORT"], system.env["NOTIFICATION_PORT"]):
        assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200


def test_a_callback_url_gets_the_signed_finished_job(system, user, mail_sink, tmp_path):
    receiver = WebhookReceiver()
    try:
        with make_video(tmp_path / "hooked.mp4", seconds=1).open("rb") as video:
            accepted = requests.post(
                f"{system.gateway}/upload",
                headers=user.headers,
                files={"file": ("hooked.mp4", video)},
                data={"callback_url": receiver.url},
                timeout=30,
            )
        assert accepted.status_code == 202
        [call] = receiver.wait_for(1)
    finally:
        receiver.close()
    assert verify_signature(
        WEBHOOK_SECRET.encode(),
        signature=call.headers[SIGNATURE_HEADER],
        timestamp=call.headers[TIMESTAMP_HEADER],
        body=call.body,
    )
    payload = json.loads(call.body)
    assert payload["job_id"] == accepted.json()["job_id"]
    assert payload["status"] == "done"
    assert payload["callback_url"] == receiver.url
    wait_for_mail(mail_sink, user)


def test_a_bad_callback_url_is_refused_at_upload(system, user, tmp_path):
    with make_video(tmp_path / "clip.mp4", seconds=1).open("rb") as video:
        response = requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": ("clip.mp4", video)},
            data={"callback_url": "ftp://example.com/x"},
            timeout=30,
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_callback_url"
    assert response.json()["field"] == "callback_url"
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
