"""Resumable uploads' storage against a real MongoDB: pieces in, a GridFS file out."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import gridfs
import pytest

from common.config import MongoConfig
from common.http.errors import ApiError
from common.jobs import JobStore
from common.storage import CHUNK_SIZE
from gateway import create_app
from gateway.config import Config
from gateway.intake import Submission
from gateway.resumable import COLLECTION, Checksum, ResumableUploads
from gateway.services import EXTENSION

MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
OWNER = "owner@example.test"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class BrokenStream(io.BytesIO):
    """A body whose connection breaks after its bytes, as a client that went away."""

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        if not data:
            raise ConnectionResetError("the client went away")
        return data


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def uploads(storage, mongo_config, clock) -> ResumableUploads:
    return ResumableUploads(
        storage,
        JobStore(storage.client, mongo_config),
        expiry=timedelta(hours=24),
        lease=timedelta(minutes=3),
        clock=clock,
    )


def sweepers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "tus-sweeper" and t.is_alive()}


def video_bytes(size: int) -> bytes:
    return MP4_HEAD + os.urandom(size - len(MP4_HEAD))


def new_upload(uploads, length: int):
    return uploads.create(
        owner=OWNER,
        job_id="job-1",
        length=length,
        filename="clip.mp4",
        submission=Submission(options={"bitrate": 192}, callback_url=None),
    )


def send(uploads, upload, data: bytes, *, stream_type=io.BytesIO):
    return uploads.append(
        upload, offset=upload.offset, stream=stream_type(data), content_length=None
    )


def test_pieces_sent_in_several_requests_become_one_gridfs_file(uploads, storage):
    video = video_bytes(3 * CHUNK_SIZE + 12345)
    upload = new_upload(uploads, len(video))
    # Pieces that end inside a chunk, at its edge, and across several chunks.
    for end in (100, 5000, CHUNK_SIZE, CHUNK_SIZE + 7, 3 * CHUNK_SIZE + 1, len(video)):
        upload = send(uploads, upload, video[upload.offset : end])
        assert upload.offset == end
    assert upload.sealed
    assert upload.container == "mp4"
    # Read back by pymongo's own GridFS reader, as the converter reads it.
    grid_out = gridfs.GridFSBucket(storage.videos.files.database).open_download_stream(
        upload.video_fid
    )
    assert grid_out.read() == video
    assert grid_out.chunk_size == CHUNK_SIZE
    assert grid_out.filename == "clip.mp4"
    assert grid_out.metadata == {"owner": OWNER, "job_id": "job-1"}
    assert storage.videos.chunks.count_documents({"files_id": upload.video_fid}) == 4


def test_the_bytes_before_a_broken_connection_are_kept(uploads, storage):
    video = video_bytes(2 * CHUNK_SIZE)
    upload = new_upload(uploads, len(video))
    with pytest.raises(ConnectionResetError):
        send(uploads, upload, video[: CHUNK_SIZE + 300_000], stream_type=BrokenStream)
    upload = uploads.find(upload.upload_id, OWNER)
    assert upload.offset == CHUNK_SIZE + 300_000  # the partial chunk too, and the lock is free
    upload = send(uploads, upload, video[upload.offset :])
    assert upload.sealed
    assert storage.videos.open(upload.video_fid).read() == video


def test_a_wrong_offset_is_a_conflict_naming_the_right_one(uploads):
    upload = new_upload(uploads, 10_000)
    upload = send(uploads, upload, video_bytes(5000))
    with pytest.raises(ApiError) as conflict:
        uploads.append(upload, offset=4000, stream=io.BytesIO(b"x" * 10), content_length=10)
    assert conflict.value.status == 409
    assert conflict.value.headers["Upload-Offset"] == "5000"


@pytest.mark.parametrize("content_length", [6000, None], ids=["announced", "chunked"])
def test_bytes_beyond_the_length_are_refused(uploads, content_length):
    upload = new_upload(uploads, 10_000)
    upload = send(uploads, upload, video_bytes(5000))
    with pytest.raises(ApiError) as refused:
        uploads.append(
            upload, offset=5000, stream=io.BytesIO(b"x" * 6000), content_length=content_length
        )
    assert refused.value.status == 413
    assert uploads.find(upload.upload_id, OWNER).offset == 5000


def test_a_non_media_upload_is_refused_and_removed(uploads, storage, mongo_config):
    text = b"These are my notes, not a video.\n" * 40_000
    upload = new_upload(uploads, len(text))
    with pytest.raises(ApiError) as refused:
        send(uploads, upload, text)
    assert refused.value.status == 415
    assert uploads.find(upload.upload_id, OWNER) is None
    assert storage.videos.chunks.count_documents({"files_id": upload.video_fid}) == 0


def test_only_one_request_writes_an_upload_at_a_time(uploads, clock):
    video = video_bytes(2 * CHUNK_SIZE)
    upload = new_upload(uploads, len(video))
    reading, release = threading.Event(), threading.Event()

    class SlowStream(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            reading.set()
            release.wait(10)
            return super().read(size)

    writer = threading.Thread(
        target=send, args=(uploads, upload, video[:1000]), kwargs={"stream_type": SlowStream}
    )
    writer.start()
    try:
        assert reading.wait(10)
        with pytest.raises(ApiError) as busy:
            send(uploads, upload, video[:1000])
        assert busy.value.status == 423
    finally:
        release.set()
        writer.join(10)
    assert uploads.find(upload.upload_id, OWNER).offset == 1000


def test_a_lock_whose_writer_died_is_taken_over_after_its_lease(uploads, clock):
    upload = new_upload(uploads, 10_000)
    uploads._lock(upload.video_fid, OWNER)  # a writer that never lets go
    with pytest.raises(ApiError) as busy:
        send(uploads, upload, video_bytes(1000))
    assert busy.value.status == 423
    clock.now += timedelta(minutes=4)
    assert send(uploads, upload, video_bytes(1000)).offset == 1000


def test_someone_elses_upload_is_not_found(uploads):
    upload = new_upload(uploads, 10_000)
    assert uploads.find(upload.upload_id, "stranger@example.test") is None
    assert uploads.find("not-an-id", OWNER) is None


def test_an_expired_upload_is_swept_with_its_bytes(uploads, storage, clock):
    video = video_bytes(3 * CHUNK_SIZE)
    stale = new_upload(uploads, len(video))
    stale = send(uploads, stale, video[: 2 * CHUNK_SIZE + 10])
    clock.now += timedelta(hours=20)
    fresh = new_upload(uploads, len(video))
    fresh = send(uploads, fresh, video[:CHUNK_SIZE])
    assert storage.videos.chunks.count_documents({"files_id": stale.video_fid}) == 2
    clock.now += timedelta(hours=5)  # 25 h after the stale one's last bytes, 5 h after the fresh
    assert uploads.find(stale.upload_id, OWNER) is None  # gone for the client at once
    assert uploads.sweep() == 0  # ...and its bytes already removed on that access
    assert storage.videos.chunks.count_documents({"files_id": stale.video_fid}) == 0
    records = storage.client[storage.config.videos_db][COLLECTION]
    assert records.count_documents({"_id": stale.video_fid}) == 0
    assert uploads.find(fresh.upload_id, OWNER).offset == CHUNK_SIZE
    clock.now += timedelta(hours=20)
    assert uploads.sweep() == 1
    assert storage.videos.chunks.count_documents({"files_id": fresh.video_fid}) == 0
    assert records.count_documents({}) == 0


def test_a_finished_uploads_expiry_leaves_its_jobs_video(uploads, storage, clock):
    video = video_bytes(5000)
    upload = send(uploads, new_upload(uploads, len(video)), video)
    uploads.mark_accepted(upload)
    clock.now += timedelta(days=2)
    assert uploads.sweep() == 1
    assert storage.videos.open(upload.video_fid).read() == video


def test_termination_removes_the_bytes(uploads, storage):
    video = video_bytes(2 * CHUNK_SIZE)
    upload = send(uploads, new_upload(uploads, len(video)), video[: CHUNK_SIZE + 5])
    uploads.terminate(upload)
    assert uploads.find(upload.upload_id, OWNER) is None
    assert storage.videos.chunks.count_documents({"files_id": upload.video_fid}) == 0


def test_unfinished_uploads_count_towards_what_their_owner_stores(uploads):
    new_upload(uploads, 10_000)
    finished = new_upload(uploads, 5000)
    send(uploads, finished, video_bytes(5000))
    assert uploads.pending_bytes(OWNER) == 10_000
    assert uploads.pending_bytes("someone@example.test") == 0


def test_a_body_that_fails_its_checksum_keeps_nothing(uploads, storage):
    video = video_bytes(3 * CHUNK_SIZE)
    upload = send(uploads, new_upload(uploads, len(video)), video[:1000])
    body = video[1000 : 2 * CHUNK_SIZE]
    wrong = Checksum("sha1", hashlib.sha1(body + b"x", usedforsecurity=False).digest())
    with pytest.raises(ApiError) as mismatch:
        uploads.append(
            upload, offset=1000, stream=io.BytesIO(body), content_length=None, checksum=wrong
        )
    assert mismatch.value.status == 460
    upload = uploads.find(upload.upload_id, OWNER)
    assert upload.offset == 1000  # even though whole chunks of it reached storage
    for algorithm in ("md5", "sha1", "sha256"):
        end = upload.offset + CHUNK_SIZE // 2 if algorithm != "sha256" else len(video)
        body = video[upload.offset : end]
        right = Checksum(algorithm, hashlib.new(algorithm, body, usedforsecurity=False).digest())
        upload = uploads.append(
            upload,
            offset=upload.offset,
            stream=io.BytesIO(body),
            content_length=None,
            checksum=right,
        )
        assert upload.offset == end
    assert upload.sealed
    assert storage.videos.open(upload.video_fid).read() == video


def test_a_checksummed_body_cut_short_keeps_nothing_of_it(uploads):
    video = video_bytes(3 * CHUNK_SIZE)
    upload = send(uploads, new_upload(uploads, len(video)), video[:1000])
    body = video[1000:]
    checksum = Checksum("sha1", hashlib.sha1(body, usedforsecurity=False).digest())
    with pytest.raises(ConnectionResetError):
        uploads.append(
            upload,
            offset=1000,
            stream=BrokenStream(body[: CHUNK_SIZE + 5]),
            content_length=None,
            checksum=checksum,
        )
    assert uploads.find(upload.upload_id, OWNER).offset == 1000


def test_a_gateway_process_sweeps_on_its_own_with_no_upload_coming(
    uploads, storage, clock, monkeypatch
):
    # The shipped sweep runs every SWEEP_INTERVAL_S (60 s); scaled down to keep this short.
    monkeypatch.setattr("gateway.resumable.SWEEP_INTERVAL_S", 0.05)
    video = video_bytes(2 * CHUNK_SIZE)
    stale = send(uploads, new_upload(uploads, len(video)), video[: CHUNK_SIZE + 10])
    clock.now += timedelta(hours=25)
    before = sweepers()
    try:
        uploads.keep_sweeping()
        uploads.keep_sweeping()  # a second request in the same process starts no second thread
        records = storage.client[storage.config.videos_db][COLLECTION]
        deadline = time.monotonic() + 10
        while records.count_documents({"_id": stale.video_fid}) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert records.count_documents({"_id": stale.video_fid}) == 0
        assert storage.videos.chunks.count_documents({"files_id": stale.video_fid}) == 0
        assert len(sweepers() - before) == 1
    finally:
        uploads.close()


def test_a_gateway_process_starts_its_sweeper_with_the_first_request_it_serves(rabbitmq_config):
    config = Config(
        # Never reached here: the sweeper's first round is a minute away.
        mongo=MongoConfig(uri="mongodb://127.0.0.1:1/", timeout_ms=100),
        rabbit=rabbitmq_config,
    )
    app = create_app(config)
    before = sweepers()
    try:
        assert app.test_client().get("/health").status_code == 200
        assert len(sweepers() - before) == 1
    finally:
        app.extensions[EXTENSION].resumable.close()
