"""GridFS buckets against a real MongoDB server (the session's mongod)."""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import gridfs.errors
import pytest

from common.errors import TransientError
from common.mongo import FileNotFound, parse_object_id
from common.storage import CHUNK_SIZE, READ_BATCH_CHUNKS, UPLOAD_BATCH_CHUNKS, Storage
from devstack.tcp_proxy import TcpProxy
from tests.support.polling import wait_until


class CountingReader(io.RawIOBase):
    """A stream that makes its bytes up as it goes and records the largest read."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        self.largest_read = max(self.largest_read, n)
        self.remaining -= n
        return b"v" * n


def test_put_streams_in_chunks_and_reads_back(storage):
    source = CountingReader(3 * CHUNK_SIZE + 123)
    file_id = storage.videos.put(source, "clip.mp4", {"owner": "a@example.com", "job_id": "j1"})

    assert source.largest_read == CHUNK_SIZE  # never asked for the whole file at once
    grid_out = storage.videos.open(str(file_id))
    assert grid_out.length == 3 * CHUNK_SIZE + 123
    assert grid_out.filename == "clip.mp4"
    assert grid_out.metadata == {"owner": "a@example.com", "job_id": "j1"}
    assert b"".join(storage.videos.iter_chunks(file_id)) == b"v" * grid_out.length


def test_ranges_read_exactly_the_requested_bytes(storage):
    payload = os.urandom(CHUNK_SIZE + 5000)
    file_id = storage.mp3s.put(io.BytesIO(payload), "a.mp3", {})
    start, end = CHUNK_SIZE - 10, CHUNK_SIZE + 20
    assert b"".join(storage.mp3s.iter_chunks(file_id, start, end)) == payload[start:end]


def test_download_to_copies_the_file(storage, tmp_path):
    payload = os.urandom(200_000)
    file_id = storage.videos.put(io.BytesIO(payload), "x.mp4", {})
    with (tmp_path / "copy").open("wb") as out:
        assert storage.videos.download_to(file_id, out) == len(payload)
    assert (tmp_path / "copy").read_bytes() == payload


def test_buckets_are_separate(storage):
    file_id = storage.videos.put(io.BytesIO(b"video"), "v.mp4", {})
    with pytest.raises(FileNotFound):
        storage.mp3s.open(file_id)


@pytest.mark.parametrize("bad_id", ["", "nope", "123", "g" * 24, None, "0" * 25])
def test_malformed_ids_are_not_found(storage, bad_id):
    with pytest.raises(FileNotFound):
        storage.videos.open(bad_id)
    with pytest.raises(FileNotFound):
        parse_object_id(bad_id)


def test_delete_removes_the_file_and_reports_unknown_ids(storage):
    file_id = storage.videos.put(io.BytesIO(b"x" * 10), "v.mp4", {})
    assert storage.videos.delete(file_id) is True
    assert storage.videos.delete(file_id) is False
    assert storage.videos.delete("not-an-id") is False
    with pytest.raises(FileNotFound):
        storage.videos.open(file_id)


def test_a_failed_upload_leaves_nothing_behind(storage):
    class Exploding(io.RawIOBase):
        calls = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("client went away")
            return b"z" * CHUNK_SIZE

    with pytest.raises(OSError, match="client went away"):
        storage.videos.put(Exploding(), "half.mp4", {"job_id": "half"})
    database = storage.client[storage.config.videos_db]
    assert database["fs.chunks"].count_documents({}) == 0
    assert database["fs.files"].count_documents({}) == 0


def test_an_upload_sends_its_chunks_as_it_goes(storage):
    upload = storage.videos.open_upload("big.mp4", {})
    for _ in range(UPLOAD_BATCH_CHUNKS * 2 + 1):
        upload.write(b"c" * CHUNK_SIZE)
    chunks = storage.client[storage.config.videos_db]["fs.chunks"]

    # Never more than a batch waits in memory (pymongo's GridIn would hold up to 48 MB).
    assert chunks.count_documents({}) >= UPLOAD_BATCH_CHUNKS * 2
    file_id = upload.finish()
    assert storage.videos.open(file_id).length == (UPLOAD_BATCH_CHUNKS * 2 + 1) * CHUNK_SIZE


def test_a_reader_hands_on_chunks_from_any_offset(storage):
    payload = os.urandom(READ_BATCH_CHUNKS * CHUNK_SIZE + 3 * CHUNK_SIZE + 77)
    file_id = storage.mp3s.put(io.BytesIO(payload), "a.mp3", {})
    reader = storage.mp3s.reader(storage.mp3s.open(file_id))

    assert b"".join(reader) == payload
    for offset in (0, 5, CHUNK_SIZE, READ_BATCH_CHUNKS * CHUNK_SIZE + 1, len(payload) - 1):
        assert reader.seek(offset) == offset
        assert b"".join(reader) == payload[offset:]
    assert reader.seek(len(payload)) == len(payload)
    assert list(reader) == []


def test_a_missing_chunk_is_reported_not_skipped(storage):
    file_id = storage.mp3s.put(io.BytesIO(os.urandom(3 * CHUNK_SIZE)), "a.mp3", {})
    storage.client[storage.config.mp3s_db]["fs.chunks"].delete_one({"files_id": file_id, "n": 1})

    with pytest.raises(gridfs.errors.CorruptGridFile):
        b"".join(storage.mp3s.iter_chunks(file_id))


def test_find_one_looks_up_by_metadata(storage):
    file_id = storage.mp3s.put(io.BytesIO(b"mp3"), "a.mp3", {"job_id": "j-77"})
    assert storage.mp3s.find_one({"metadata.job_id": "j-77"})["_id"] == file_id
    assert storage.mp3s.find_one({"metadata.job_id": "other"}) is None


def test_files_stored_before_a_moment_are_listed_oldest_first_from_an_index(storage):
    now = datetime.now(UTC)
    file_ids = [
        storage.mp3s.put(io.BytesIO(b"mp3"), "a.mp3", {"job_id": f"j{n}"}) for n in range(5)
    ]
    moments = [now - timedelta(seconds=seconds) for seconds in (40, 30, 30, 30, 20)]
    for file_id, moment in zip(file_ids, moments, strict=True):
        storage.mp3s.files.update_one({"_id": file_id}, {"$set": {"uploadDate": moment}})
    young = storage.mp3s.put(io.BytesIO(b"mp3"), "a.mp3", {})  # stored now: not listed
    database = storage.client[storage.config.mp3s_db]
    database.command("profile", 2)  # MongoDB records how it ran each query
    try:
        first = storage.mp3s.stored_before(now - timedelta(seconds=10), limit=2)
        last = first[-1]
        rest = storage.mp3s.stored_before(
            now - timedelta(seconds=10), after=(last["uploadDate"], last["_id"])
        )
    finally:
        database.command("profile", 0)

    # Three files share a moment: the listing goes on past the first of them, by _id.
    listed = [file["_id"] for file in first + rest]
    assert listed == [file_ids[0], *sorted(file_ids[1:4]), file_ids[4]]
    assert young not in listed
    assert first[0]["metadata"] == {"job_id": "j0"}
    queries = list(
        database["system.profile"].find({"op": "query", "ns": f"{database.name}.fs.files"})
    )
    assert len(queries) == 2
    for query in queries:
        assert not query.get("hasSortStage"), query["planSummary"]
        assert "IXSCAN" in query["planSummary"], query["planSummary"]


@pytest.fixture
def proxy(mongo_server) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the test's MongoDB, which the test can cut."""
    proxy = TcpProxy(mongo_server.host, mongo_server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_storage(mongo_config, proxy) -> Iterator[Storage]:
    """The test's buckets reached through ``proxy``, giving up on a cut store after 0.5 s."""
    store = Storage(dataclasses.replace(mongo_config, uri=proxy.mongo_uri, timeout_ms=500))
    yield store
    store.close()


def test_store_down_is_transient_and_recovers(proxied_storage, proxy):
    store = proxied_storage
    store.ping()
    proxy.refuse()
    with pytest.raises(TransientError, match="MongoDB unavailable"):
        store.ping()
    with pytest.raises(TransientError):
        store.videos.put(io.BytesIO(b"x"), "v.mp4", {})
    proxy.accept()
    wait_until(lambda: not raises_transient(store.ping), timeout=10)
    assert store.videos.put(io.BytesIO(b"x"), "v.mp4", {}) is not None


def raises_transient(call) -> bool:
    """Tell whether ``call()`` fails with a TransientError."""
    try:
        call()
    except TransientError:
        return True
    return False


@pytest.mark.parametrize(("patience", "left_behind"), [(10.0, 0), (0.0, 1)])
def test_an_aborted_upload_waits_out_a_short_outage_to_remove_itself(
    proxied_storage, proxy, storage, patience, left_behind
):
    upload = proxied_storage.videos.open_upload("v.mp4", {"job_id": "cut"}, abort_patience=patience)
    upload.write(b"v" * (CHUNK_SIZE * UPLOAD_BATCH_CHUNKS))  # a batch of chunks is stored
    proxy.refuse()
    threading.Timer(1.5, proxy.accept).start()  # the outage ends during the abort
    started = time.monotonic()
    upload.abort()  # never raises, either way
    waited = time.monotonic() - started
    chunks = storage.client[storage.config.videos_db]["fs.chunks"]  # straight, not proxied
    assert chunks.count_documents({}) == left_behind * UPLOAD_BATCH_CHUNKS
    assert (waited >= 1.5) == (patience > 0)
