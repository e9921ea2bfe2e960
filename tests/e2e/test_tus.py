"""Resumable uploads (tus 1.0.0) through the real gateway, with the official Python client."""

from __future__ import annotations

import base64
import math

import gridfs
import pytest
import requests
from bson import ObjectId
from openapi_core import OpenAPI
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from devstack.tcp_proxy import TcpProxy
from tests.e2e.test_openapi import conforms, load
from tests.e2e.test_pipeline import download_mp3, fid_in, wait_for_mail
from tests.support.media import make_video, probe_duration
from tests.support.polling import wait_until
from tests.support.system import MAX_UPLOAD_BYTES

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = 256 * 1024
# What one request's line and headers (a bearer token among them) take, at most.
REQUEST_OVERHEAD = 2048
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A clip of about 2 MB (PCM WAV): several tus chunks and GridFS chunks."""
    return make_video(tmp_path_factory.mktemp("tus") / "song.wav", seconds=12, video=False)


@pytest.fixture
def gateway_proxy(system):
    with TcpProxy.in_front_of(system.gateway) as proxy:
        yield proxy


def stored_video(system, upload_url: str) -> bytes:
    fid = ObjectId(upload_url.rstrip("/").rsplit("/", 1)[1])
    return gridfs.GridFSBucket(system.videos).open_download_stream(fid).read()


def create(system, user, length: int, metadata: str = "", **headers):
    return requests.post(
        f"{system.gateway}/files/",
        headers={
            **user.headers,
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata,
            **headers,
        },
        timeout=30,
    )


def test_tuspy_uploads_a_file_and_the_job_finishes(system, user, mail_sink, song, tmp_path):
    client = tus_client.TusClient(f"{system.gateway}/files/", headers=user.headers)
    uploader = client.uploader(
        file_path=str(song),
        chunk_size=CHUNK,
        metadata={"filename": "song.wav", "bitrate": "192"},
        upload_checksum=True,  # each chunk's sha1 in Upload-Checksum
    )
    uploader.upload()

    job_id = uploader.request.response_headers["video2mp3-job-id"]
    assert stored_video(system, uploader.url) == song.read_bytes()
    listed = requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=10).json()
    assert job_id in [job["job_id"] for job in listed["jobs"]]
    [email] = wait_for_mail(mail_sink, user)
    assert "song.wav" in email["Subject"]
    mp3 = download_mp3(system, user, fid_in(email), tmp_path / "song.mp3")
    assert abs(probe_duration(mp3) - probe_duration(song)) <= 0.1
    job = requests.get(f"{system.gateway}/jobs/{job_id}", headers=user.headers, timeout=10).json()
    assert job["status"] == "done"
    assert job["options"]["bitrate"] == 192
    # Asked again, the server has it all and names the job.
    head = requests.head(uploader.url, headers={**user.headers, **TUS}, timeout=10)
    assert head.headers["Upload-Offset"] == str(song.stat().st_size)
    assert head.headers["Video2mp3-Job-Id"] == job_id


def test_an_upload_cut_off_midway_resumes_resending_at_most_one_chunk(
    system, user, mail_sink, song, gateway_proxy
):
    size = song.stat().st_size
    url = f"http://127.0.0.1:{gateway_proxy.port}/files/"
    metadata = {"filename": "song.wav"}
    first = tus_client.TusClient(url, headers=user.headers).uploader(
        file_path=str(song), chunk_size=CHUNK, metadata=metadata
    )
    gateway_proxy.cut_after(size // 2 + CHUNK // 3)  # inside a chunk
    with pytest.raises((TusUploadFailed, TusCommunicationError)):
        first.upload()
    assert 0 < first.offset < size
    # The gateway keeps what arrived of the cut request, once its read ends.
    record_id = ObjectId(first.url.rsplit("/", 1)[1])
    wait_until(
        lambda: system.videos["tus_uploads"].count_documents(
            {"_id": record_id, "offset": {"$gt": first.offset}, "lock_holder": None}
        ),
        timeout=10,
    )

    # Another client (a restarted program) picks the upload up by its URL.
    second = tus_client.TusClient(url, headers=user.headers).uploader(
        file_path=str(song), chunk_size=CHUNK, url=first.url, retries=3, retry_delay=1
    )
    assert second.offset > first.offset  # the part of the cut chunk that arrived was kept
    second.upload()

    assert stored_video(system, second.url) == song.read_bytes()
    requests_made = math.ceil(size / CHUNK) + 6  # creation, chunks, the cut one, HEADs, retries
    resent = gateway_proxy.bytes_up - size - requests_made * REQUEST_OVERHEAD
    assert resent <= CHUNK
    print(f"resumed after a cut: {gateway_proxy.bytes_up} bytes sent for {size}")
    assert second.request.response_headers["video2mp3-job-id"]
    [email] = wait_for_mail(mail_sink, user)
    assert email["Subject"].startswith("Your MP3 is ready")


def test_protocol_answers_match_the_document(system, user, make_user, song):
    openapi = OpenAPI.from_dict(load("gateway"))
    base, data = system.gateway, song.read_bytes()

    def check(response: requests.Response, status: int) -> requests.Response:
        assert response.status_code == status, response.text
        assert response.headers["Tus-Resumable"] == "1.0.0"
        conforms(openapi, response)
        return response

    options = requests.options(f"{base}/files/", headers=user.headers, timeout=10)
    assert options.status_code == 204
    assert options.headers["Tus-Version"] == "1.0.0"
    assert set(options.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert "sha1" in options.headers["Tus-Checksum-Algorithm"].split(",")
    assert options.headers["Tus-Max-Size"] == str(MAX_UPLOAD_BYTES)

    created = check(create(system, user, len(data), f"filename {b64('song.wav')}"), 201)
    location = created.headers["Location"]
    assert location.startswith("/files/")
    assert created.headers["Upload-Offset"] == "0"
    assert created.headers["Upload-Expires"]
    url = base + location

    def patch(offset: int, body: bytes, who=user, **headers):
        return requests.patch(
            url,
            data=body,
            headers={**who.headers, **TUS, **OCTETS, "Upload-Offset": str(offset), **headers},
            timeout=30,
        )

    first = check(patch(0, data[:100_000]), 204)
    assert first.headers["Upload-Offset"] == "100000"
    wrong = check(patch(0, data[:10]), 409)
    assert wrong.json()["error"] == "offset_mismatch"
    assert wrong.headers["Upload-Offset"] == "100000"
    check(patch(100_000, data[100_000:100_010], **{"Content-Type": "text/plain"}), 415)
    check(patch(100_000, data[100_000:], **{"Tus-Resumable": "0.2.2"}), 412)
    check(patch(100_000, data[100_000:] + b"extra"), 413)
    mismatch = check(
        patch(100_000, data[100_000:200_000], **{"Upload-Checksum": "sha1 " + b64("x" * 20)}), 460
    )
    assert mismatch.json()["error"] == "checksum_mismatch"

    stranger = make_user()
    check(patch(100_000, data[100_000:], who=stranger), 404)
    assert requests.head(url, headers={**stranger.headers, **TUS}, timeout=10).status_code == 404
    check(requests.delete(url, headers={**stranger.headers, **TUS}, timeout=10), 404)
    check(
        requests.patch(url, data=b"x", headers={**TUS, **OCTETS, "Upload-Offset": "0"}, timeout=10),
        401,
    )

    head = requests.head(url, headers={**user.headers, **TUS}, timeout=10)
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, "100000")
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"

    # Termination removes the bytes stored so far.
    fid = ObjectId(location.rsplit("/", 1)[1])
    assert system.videos["fs.chunks"].count_documents({"files_id": fid}) == 0  # all in the tail
    check(requests.delete(url, headers={**user.headers, **TUS}, timeout=10), 204)
    assert requests.head(url, headers={**user.headers, **TUS}, timeout=10).status_code == 404
    assert system.videos["tus_uploads"].count_documents({"_id": fid}) == 0


@pytest.mark.parametrize(
    ("length", "metadata", "status", "code"),
    [
        (1000, f"filename {b64('a.wav')},bitrate {b64('7')}", 400, "invalid_option"),
        (1000, f"colour {b64('blue')}", 400, "invalid_option"),
        (1000, f"callback_url {b64('ftp://example.com/hook')}", 400, "invalid_callback_url"),
        (1000, "filename %%%", 400, "invalid_metadata"),
        (0, "", 400, "empty_file"),
        (MAX_UPLOAD_BYTES + 1, "", 413, "too_large"),
    ],
    ids=["bad-option", "unknown-option", "bad-callback", "bad-base64", "empty", "too-large"],
)
def test_a_refused_creation_stores_nothing(system, user, length, metadata, status, code):
    response = create(system, user, length, metadata)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert "Location" not in response.headers
    assert system.videos["tus_uploads"].count_documents({"owner": user.email}) == 0


def test_deferred_length_and_other_versions_are_refused(system, user):
    deferred = requests.post(
        f"{system.gateway}/files/",
        headers={**user.headers, **TUS, "Upload-Defer-Length": "1"},
        timeout=10,
    )
    assert deferred.status_code == 400
    old = requests.post(
        f"{system.gateway}/files/",
        headers={**user.headers, "Tus-Resumable": "0.2.2", "Upload-Length": "10"},
        timeout=10,
    )
    assert (old.status_code, old.headers["Tus-Version"]) == (412, "1.0.0")


def test_a_non_media_upload_is_refused_and_removed(system, user):
    text = b"These are my notes, not a video.\n" * 1000
    response = requests.post(
        f"{system.gateway}/files/",
        data=text,
        headers={**user.headers, **TUS, **OCTETS, "Upload-Length": str(len(text))},
        timeout=30,
    )
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"
    assert system.videos["tus_uploads"].count_documents({"owner": user.email}) == 0
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0


def test_creation_with_upload_finishes_a_small_file_in_one_request(system, user, mail_sink, song):
    data = song.read_bytes()
    response = requests.post(
        f"{system.gateway}/files/",
        data=data,
        headers={
            **user.headers,
            **TUS,
            **OCTETS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"filename {b64('one.wav')}",
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.headers["Upload-Offset"] == str(len(data))
    job_id = response.headers["Video2mp3-Job-Id"]
    [email] = wait_for_mail(mail_sink, user)
    assert "one.wav" in email["Subject"]
    job = requests.get(f"{system.gateway}/jobs/{job_id}", headers=user.headers, timeout=10)
    assert job.json()["status"] == "done"
