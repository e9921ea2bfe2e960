"""The converter's handler, called directly: real MongoDB and ffmpeg, a recording publisher."""

from __future__ import annotations

import contextlib
import threading

import pytest

from common.errors import PermanentError, TransientError
from common.jobs import DONE, FAILED, JobStore, new_job_id
from common.messaging import Delivery
from converter.handler import Converter
from converter.tracks import NO_CHAPTERS
from tests.support.media import make_video, probe_duration


class RecordingPublisher:
    """Stands in for the broker: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []

    def publish(self, queue: str, message: dict, *, message_id: str | None = None) -> None:
        self.published.append((queue, message))


@pytest.fixture
def jobs(storage):
    return JobStore(storage.client, storage.config)


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def converter(storage, jobs, publisher, workdir):
    return Converter(
        storage=storage, jobs=jobs, publisher=publisher, mp3_queue="mp3", workdir=str(workdir)
    )


def queued_job(storage, jobs, path, owner="ann@example.com"):
    job_id = new_job_id()
    with path.open("rb") as video:
        video_fid = storage.videos.put(video, path.name, {"owner": owner, "job_id": job_id})
    jobs.create(
        job_id=job_id,
        owner=owner,
        video_fid=video_fid,
        filename=path.name,
        size=path.stat().st_size,
        options={},
    )
    return {
        "job_id": job_id,
        "video_fid": str(video_fid),
        "mp3_fid": None,
        "username": owner,
        "options": {},
    }


def delivery(attempt=1):
    return Delivery("video", attempt=attempt, max_attempts=5, message_id=None)


def test_a_video_becomes_a_stored_mp3_and_is_announced(
    converter, storage, jobs, publisher, workdir, tmp_path
):
    source = make_video(tmp_path / "clip.mp4", seconds=2)
    message = queued_job(storage, jobs, source)

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == DONE
    assert job["progress"] == 100
    stored = storage.mp3s.find_one({"metadata.job_id": message["job_id"]})
    assert stored["_id"] == job["mp3_fid"]
    assert stored["filename"] == "clip.mp3"
    assert stored["metadata"]["owner"] == "ann@example.com"
    out = tmp_path / "out.mp3"
    with out.open("wb") as mp3:
        storage.mp3s.download_to(job["mp3_fid"], mp3)
    assert abs(probe_duration(out) - probe_duration(source)) <= 0.1
    [(queue, announced)] = publisher.published
    assert queue == "mp3"
    assert announced["status"] == "done"
    assert announced["mp3_fid"] == str(job["mp3_fid"])
    assert announced["username"] == "ann@example.com"
    assert list(workdir.iterdir()) == []  # temp files gone


def test_a_redelivered_message_makes_no_second_mp3_but_announces_again(
    converter, storage, jobs, publisher, tmp_path
):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=1))
    converter.handle(message, delivery())
    converter.handle(message, delivery(attempt=2))

    mp3s = storage.client[storage.config.mp3s_db]["fs.files"]
    assert mp3s.count_documents({"metadata.job_id": message["job_id"]}) == 1
    assert [m["status"] for _, m in publisher.published] == ["done", "done"]
    assert publisher.published[0][1] == publisher.published[1][1]


def test_an_mp3_stored_before_a_crash_is_reused(converter, storage, jobs, publisher, tmp_path):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=1))
    converter.handle(message, delivery())
    first_mp3 = jobs.get(message["job_id"])["mp3_fid"]
    # As if the converter died after storing the MP3 but before finishing the job:
    jobs._jobs.update_one(
        {"_id": message["job_id"]}, {"$set": {"status": "processing", "mp3_fid": None}}
    )

    converter.handle(message, delivery(attempt=2))

    assert jobs.get(message["job_id"])["mp3_fid"] == first_mp3
    mp3s = storage.client[storage.config.mp3s_db]["fs.files"]
    assert mp3s.count_documents({"metadata.job_id": message["job_id"]}) == 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: make_video(d / "silent.mp4", seconds=1, audio_codec=None), "no audio"),
        (lambda d: _write(d / "junk.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 5000), "corrupt"),
    ],
)
def test_bad_input_fails_the_job_and_is_announced(
    converter, storage, jobs, publisher, workdir, tmp_path, make, reason
):
    message = queued_job(storage, jobs, make(tmp_path))
    converter.handle(message, delivery())  # no exception: the message is acked

    job = jobs.get(message["job_id"])
    assert job["status"] == FAILED
    assert reason in job["error"]
    [(_, announced)] = publisher.published
    assert announced["status"] == "failed"
    assert announced["error"] == job["error"]
    assert storage.mp3s.find_one({"metadata.job_id": message["job_id"]}) is None
    assert list(workdir.iterdir()) == []


def test_a_deleted_job_is_skipped(converter, storage, jobs, publisher, tmp_path):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=1))
    jobs.delete(message["job_id"])
    converter.handle(message, delivery())
    assert publisher.published == []
    assert storage.mp3s.find_one({"metadata.job_id": message["job_id"]}) is None


def test_a_vanished_video_fails_the_job(converter, storage, jobs, publisher, tmp_path):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=1))
    storage.videos.delete(message["video_fid"])
    converter.handle(message, delivery())
    assert jobs.get(message["job_id"])["status"] == FAILED
    assert publisher.published[0][1]["status"] == "failed"


def test_a_malformed_message_is_permanent(converter):
    # Which messages are malformed is the contract's (tests/common/test_messages.py).
    with pytest.raises(PermanentError, match="video message lacks"):
        converter.handle({"job_id": "j", "video_fid": "v"}, delivery())


def test_giving_up_fails_the_job_and_tells_the_owner(converter, storage, jobs, publisher, tmp_path):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=1))
    converter.give_up(message, TransientError("MongoDB unavailable"))
    job = jobs.get(message["job_id"])
    assert job["status"] == FAILED
    assert "try again later" in job["error"]
    assert "MongoDB" not in job["error"]  # internals stay in the logs
    assert publisher.published[0][1]["status"] == "failed"
    converter.give_up(message, TransientError("again"))  # already failed: not announced twice
    assert len(publisher.published) == 1


def _write(path, data):
    path.write_bytes(data)
    return path


class HeldFinish(JobStore):
    """A job store whose ``finish`` waits until the test lets it go."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reached = threading.Event()
        self.release = threading.Event()

    def finish(self, job_id, *, mp3_fid, results=None):
        self.reached.set()
        assert self.release.wait(60), "the test never let the finish go"
        return super().finish(job_id, mp3_fid=mp3_fid, results=results)


@contextlib.contextmanager
def held_before_finishing(storage, publisher, workdir, message):
    """Run a delivery of ``message`` until it has stored its MP3; let it finish on leaving."""
    held = HeldFinish(storage.client, storage.config)
    first = Converter(
        storage=storage, jobs=held, publisher=publisher, mp3_queue="mp3", workdir=str(workdir)
    )
    worker = threading.Thread(target=first.handle, args=(message, delivery()))
    worker.start()
    try:
        assert held.reached.wait(60)
        yield
    finally:
        held.release.set()
        worker.join(60)


def test_the_slower_of_two_deliveries_of_a_job_leaves_the_mp3_it_shares(
    converter, storage, jobs, publisher, workdir, tmp_path
):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=2))
    with held_before_finishing(storage, publisher, workdir, message):
        # A duplicate finds the MP3 the first delivery stored and finishes the job with it.
        converter.handle(message, delivery(attempt=2))
        done = jobs.get(message["job_id"])
        assert done["status"] == DONE

    job = jobs.get(message["job_id"])
    assert job["mp3_fid"] == done["mp3_fid"]
    mp3s = list(storage.mp3s.files.find({"metadata.job_id": message["job_id"]}))
    assert [mp3["_id"] for mp3 in mp3s] == [job["mp3_fid"]], "the job's MP3 was deleted"
    with (tmp_path / "out.mp3").open("wb") as out:
        assert storage.mp3s.download_to(job["mp3_fid"], out) == mp3s[0]["length"]
    assert probe_duration(tmp_path / "out.mp3") == pytest.approx(2.0, abs=0.1)


def test_a_losing_delivery_deletes_only_an_mp3_no_job_points_to(
    storage, jobs, publisher, workdir, tmp_path
):
    message = queued_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=2))
    with held_before_finishing(storage, publisher, workdir, message):
        orphan = storage.mp3s.find_one({"metadata.job_id": message["job_id"]})["_id"]
        # Meanwhile the job ended another way (the janitor gave up on it).
        assert jobs.fail(message["job_id"], error="stalled")

    assert jobs.get(message["job_id"])["status"] == FAILED
    assert storage.mp3s.find_one({"_id": orphan}) is None, "an MP3 no job refers to was kept"


def split_job(storage, jobs, path, split):
    message = queued_job(storage, jobs, path)
    jobs._jobs.update_one({"_id": message["job_id"]}, {"$set": {"options": {"split": split}}})
    return message


def test_a_split_job_stores_its_tracks_before_its_output_and_a_redelivery_reuses_them(
    converter, storage, jobs, publisher, workdir, tmp_path
):
    message = split_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=12), 10)

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == DONE
    assert [(t["number"], t["title"], t["start"]) for t in job["tracks"]] == [
        (1, "Part 1", 0),
        (2, "Part 2", 10),
    ]
    files = storage.client[storage.config.mp3s_db]["fs.files"]
    stored = list(files.find({"metadata.job_id": message["job_id"]}).sort("_id", 1))
    assert [f["metadata"].get("track") for f in stored] == [1, 2, None]  # the whole last
    assert [f["_id"] for f in stored] == [t["fid"] for t in job["tracks"]] + [job["mp3_fid"]]
    assert [f["filename"] for f in stored[:2]] == [
        "clip - 01 - Part 1.mp3",
        "clip - 02 - Part 2.mp3",
    ]
    assert [f["length"] for f in stored[:2]] == [t["size"] for t in job["tracks"]]
    assert list(workdir.iterdir()) == []
    # As if the converter died after storing the output but before finishing the job:
    jobs._jobs.update_one(
        {"_id": message["job_id"]},
        {"$set": {"status": "processing", "mp3_fid": None, "tracks": None}},
    )

    converter.handle(message, delivery(attempt=2))

    assert jobs.get(message["job_id"])["tracks"] == job["tracks"]
    assert files.count_documents({"metadata.job_id": message["job_id"]}) == 3


def test_a_split_on_chapters_of_a_video_without_any_fails_before_converting(
    converter, storage, jobs, publisher, tmp_path, monkeypatch
):
    message = split_job(storage, jobs, make_video(tmp_path / "clip.mp4", seconds=2), "chapters")
    monkeypatch.setattr("converter.handler.transcode", None)  # never reached

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert (job["status"], job["error"]) == (FAILED, NO_CHAPTERS)
    files = storage.client[storage.config.mp3s_db]["fs.files"]
    assert files.count_documents({"metadata.job_id": message["job_id"]}) == 0
