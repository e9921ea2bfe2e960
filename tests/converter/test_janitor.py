"""Housekeeping against real MongoDB and RabbitMQ: stalled jobs come back, old ones go."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import timedelta

import pytest
from bson import ObjectId
from prometheus_client import REGISTRY

from common.accounts import COLLECTION as ACCOUNT_DELETIONS
from common.accounts import ERASE_BATCH, AccountDeletions
from common.jobs import DONE, FAILED, QUEUED, JobStore, new_job_id
from common.messaging import Publisher
from common.mongo import utcnow
from common.storage import RESUMABLE_UPLOADS
from converter.config import ORPHANED_VIDEO_SECONDS
from converter.janitor import Janitor
from tests.support.rabbit import get_message


@pytest.fixture
def jobs(storage):
    store = JobStore(storage.client, storage.config)
    store.ensure_indexes()
    return store


@pytest.fixture
def queues(queue_name):
    return queue_name("video"), queue_name("mp3")


@pytest.fixture
def janitor(storage, jobs, rabbitmq_config, queues):
    publisher = Publisher(rabbitmq_config, name="test-janitor")
    yield Janitor(
        storage=storage,
        jobs=jobs,
        publisher=publisher,
        video_queue=queues[0],
        mp3_queue=queues[1],
        stale_after=timedelta(seconds=60),
        abandoned_after=timedelta(seconds=60),
        retention=timedelta(days=7),
        max_attempts=3,
        orphaned_video_after=timedelta(seconds=ORPHANED_VIDEO_SECONDS),  # shipped: 3 days
    )
    publisher.close()


def stored_job(storage, jobs, *, owner="ann@example.com"):
    job_id = new_job_id()
    video_fid = storage.videos.put(io.BytesIO(b"video"), "clip.mp4", {"job_id": job_id})
    jobs.create(
        job_id=job_id,
        owner=owner,
        video_fid=video_fid,
        filename="clip.mp4",
        size=5,
        options={"bitrate": 128},
    )
    return job_id, video_fid


def age(jobs, job_id, **fields_seconds_ago):
    jobs._jobs.update_one(
        {"_id": job_id},
        {
            "$set": {
                name: utcnow() - timedelta(seconds=seconds)
                for name, seconds in fields_seconds_ago.items()
            }
        },
    )


def test_a_stalled_job_is_put_back_on_the_queue(storage, jobs, janitor, rabbitmq_config, queues):
    job_id, video_fid = stored_job(storage, jobs)
    jobs.start(job_id)
    age(jobs, job_id, updated_at=120)
    fresh_id, _ = stored_job(storage, jobs)
    jobs.start(fresh_id)  # a job still making progress is left alone

    report = janitor.run_once()

    assert report.requeued == 1
    assert jobs.get(job_id)["status"] == QUEUED
    assert jobs.get(fresh_id)["status"] == "processing"
    message = json.loads(get_message(rabbitmq_config, queues[0])[1])
    assert message == {
        "job_id": job_id,
        "video_fid": str(video_fid),
        "mp3_fid": None,
        "username": "ann@example.com",
        "filename": "clip.mp4",
        "options": {"bitrate": 128},
    }
    assert janitor.run_once().requeued == 0  # taken once, not again


def test_a_job_that_keeps_stalling_fails_and_its_owner_is_told(
    storage, jobs, janitor, rabbitmq_config, queues
):
    job_id, _ = stored_job(storage, jobs)
    for _ in range(3):
        jobs.start(job_id)
    age(jobs, job_id, updated_at=120)

    report = janitor.run_once()

    assert (report.requeued, report.failed) == (0, 1)
    job = jobs.get(job_id)
    assert job["status"] == FAILED
    assert "stalled" in job["error"]
    assert report.requeued == 0  # given up, not put back on the video queue
    announced = json.loads(get_message(rabbitmq_config, queues[1])[1])
    assert announced["status"] == "failed"
    assert announced["job_id"] == job_id


def test_an_upload_never_marked_enqueued_is_deleted_with_its_video(storage, jobs, janitor):
    abandoned_id, abandoned_video = stored_job(storage, jobs)
    age(jobs, abandoned_id, created_at=120)
    accepted_id, accepted_video = stored_job(storage, jobs)
    assert jobs.mark_enqueued(accepted_id)
    age(jobs, accepted_id, created_at=120)  # queued behind a backlog: left alone
    young_id, _ = stored_job(storage, jobs)  # its upload may still be publishing
    started_id, _ = stored_job(storage, jobs)
    age(jobs, started_id, created_at=120)
    jobs.start(started_id)  # its message got through after all: a converter has it
    legacy_id, _ = stored_job(storage, jobs)
    jobs._jobs.update_one({"_id": legacy_id}, {"$unset": {"enqueued_at": ""}})
    age(jobs, legacy_id, created_at=120)  # from before the field existed: left alone

    report = janitor.run_once()

    assert report.abandoned == 1
    assert jobs.get(abandoned_id) is None
    assert storage.videos.find_one({"_id": abandoned_video}) is None
    assert storage.videos.find_one({"_id": accepted_video}) is not None
    for kept in (accepted_id, young_id, started_id, legacy_id):
        assert jobs.get(kept) is not None
    assert janitor.run_once().abandoned == 0


def test_marking_a_job_enqueued_fails_once_the_janitor_removed_it(storage, jobs, janitor):
    job_id, _ = stored_job(storage, jobs)
    age(jobs, job_id, created_at=120)  # its publish took longer than abandoned_after
    assert janitor.run_once().abandoned == 1
    assert jobs.mark_enqueued(job_id) is False  # so the gateway answers 503, not 202


def test_jobs_past_retention_are_deleted_with_their_files(storage, jobs, janitor):
    old_id, old_video = stored_job(storage, jobs)
    jobs.start(old_id)
    old_mp3 = storage.mp3s.put(io.BytesIO(b"mp3"), "clip.mp3", {"job_id": old_id})
    jobs.finish(old_id, mp3_fid=old_mp3)
    age(jobs, old_id, finished_at=8 * 24 * 3600)
    recent_id, recent_video = stored_job(storage, jobs)
    jobs.start(recent_id)
    jobs.finish(recent_id, mp3_fid=ObjectId())
    running_id, _ = stored_job(storage, jobs)  # unfinished jobs are never expired

    assert janitor.run_once().expired == 1

    assert jobs.get(old_id) is None
    assert storage.videos.find_one({"_id": old_video}) is None
    assert storage.mp3s.find_one({"_id": old_mp3}) is None
    assert jobs.get(recent_id)["status"] == DONE
    assert storage.videos.find_one({"_id": recent_video}) is not None
    assert jobs.get(running_id) is not None


def test_a_short_retention_deletes_soon(storage, jobs, janitor):
    janitor._retention = timedelta(seconds=1)
    job_id, _ = stored_job(storage, jobs)
    jobs.start(job_id)
    jobs.fail(job_id, error="no audio")
    age(jobs, job_id, finished_at=2)
    assert janitor.run_once().expired == 1
    assert jobs.get(job_id) is None


def stored_mp3(storage, job_id=None, *, seconds_ago=0):
    metadata = {"owner": "ann@example.com", "job_id": job_id} if job_id else {}
    mp3_fid = storage.mp3s.put(io.BytesIO(b"mp3"), "clip.mp3", metadata)
    if seconds_ago:
        stored_at = utcnow() - timedelta(seconds=seconds_ago)
        storage.mp3s.files.update_one({"_id": mp3_fid}, {"$set": {"uploadDate": stored_at}})
    return mp3_fid


def kept(storage, mp3_fid):
    chunks = storage.mp3s.chunks.count_documents({"files_id": mp3_fid})
    return storage.mp3s.find_one({"_id": mp3_fid}) is not None and chunks > 0


def removed_count():
    return (
        REGISTRY.get_sample_value("video2mp3_orphaned_files_removed_total", {"kind": "mp3"}) or 0.0
    )


def test_an_old_mp3_no_job_refers_to_is_deleted(storage, jobs, janitor):
    gone_job = stored_mp3(storage, new_job_id(), seconds_ago=120)  # its job was deleted
    raced_id, _ = stored_job(storage, jobs)
    jobs.start(raced_id)
    winner = stored_mp3(storage, raced_id, seconds_ago=120)
    jobs.finish(raced_id, mp3_fid=winner)
    loser = stored_mp3(storage, raced_id, seconds_ago=120)  # its delivery died before dropping it
    anonymous = stored_mp3(storage, seconds_ago=120)
    before = removed_count()

    report = janitor.run_once()

    assert report.orphans == 3
    assert removed_count() - before == 3
    for orphan in (gone_job, loser, anonymous):
        assert not kept(storage, orphan)
    assert kept(storage, winner)
    assert janitor.run_once().orphans == 0


def test_a_young_orphan_is_kept(storage, jobs, janitor):
    # Younger than the grace (stale_after, 60 s here): its converter may be about to record it.
    just_stored = stored_mp3(storage, new_job_id())
    nearly_old = stored_mp3(storage, new_job_id(), seconds_ago=50)
    anonymous = stored_mp3(storage, seconds_ago=50)

    assert janitor.run_once().orphans == 0

    for young in (just_stored, nearly_old, anonymous):
        assert kept(storage, young)


def test_an_mp3_a_job_points_to_is_kept_whatever_its_age(storage, jobs, janitor):
    job_id, _ = stored_job(storage, jobs)
    jobs.start(job_id)
    mp3_fid = stored_mp3(storage, job_id, seconds_ago=30 * 24 * 3600)
    jobs.finish(job_id, mp3_fid=mp3_fid)
    # Whatever a file's metadata says, a job that points to it keeps it.
    other_id, _ = stored_job(storage, jobs)
    jobs.start(other_id)
    foreign = stored_mp3(storage, new_job_id(), seconds_ago=30 * 24 * 3600)
    jobs.finish(other_id, mp3_fid=foreign)
    bare = stored_mp3(storage, seconds_ago=30 * 24 * 3600)
    bare_id, _ = stored_job(storage, jobs)
    jobs.start(bare_id)
    jobs.finish(bare_id, mp3_fid=bare)

    assert janitor.run_once().orphans == 0

    for referenced in (mp3_fid, foreign, bare):
        assert kept(storage, referenced)


def test_the_mp3_of_an_unfinished_job_is_kept_until_the_job_ends_without_it(storage, jobs, janitor):
    # Stored, then its converter died before finishing the job: a redelivery reuses it.
    processing_id, _ = stored_job(storage, jobs)
    jobs.start(processing_id)
    processing_mp3 = stored_mp3(storage, processing_id, seconds_ago=3600)
    # The same, after the janitor put the stalled job back on the queue.
    queued_id, _ = stored_job(storage, jobs)
    jobs.start(queued_id)
    queued_mp3 = stored_mp3(storage, queued_id, seconds_ago=3600)
    jobs._jobs.update_one({"_id": queued_id}, {"$set": {"status": QUEUED}})

    assert janitor.run_once().orphans == 0
    assert kept(storage, processing_mp3)
    assert kept(storage, queued_mp3)

    jobs.finish(processing_id, mp3_fid=processing_mp3)  # the redelivery reused it
    jobs.fail(queued_id, error="no audio")  # this one ended without it
    assert janitor.run_once().orphans == 1
    assert kept(storage, processing_mp3)
    assert not kept(storage, queued_mp3)


def test_a_job_finishing_during_the_sweep_keeps_its_mp3(storage, jobs, janitor, monkeypatch):
    job_id, _ = stored_job(storage, jobs)
    jobs.start(job_id)
    mp3_fid = stored_mp3(storage, job_id, seconds_ago=3600)
    look_up = jobs.referenced_mp3s

    def finished_meanwhile(mp3_fids):
        referenced = look_up(mp3_fids)
        jobs.finish(job_id, mp3_fid=mp3_fid)  # after the sweep read who points where
        return referenced

    monkeypatch.setattr(jobs, "referenced_mp3s", finished_meanwhile)

    assert janitor.run_once().orphans == 0
    assert kept(storage, mp3_fid)
    assert jobs.get(job_id)["mp3_fid"] == mp3_fid


def test_each_round_looks_at_a_batch_and_the_next_goes_on_from_there(storage, jobs, janitor):
    janitor._orphan_batch = 2
    referenced = []
    for seconds_ago in (500, 400):  # the oldest are in use: they must not hold the sweep up
        job_id, _ = stored_job(storage, jobs)
        jobs.start(job_id)
        referenced.append(stored_mp3(storage, job_id, seconds_ago=seconds_ago))
        jobs.finish(job_id, mp3_fid=referenced[-1])
    orphans = [stored_mp3(storage, new_job_id(), seconds_ago=s) for s in (300, 200, 100)]

    rounds = [janitor.run_once().orphans for _ in range(4)]

    assert rounds == [0, 2, 1, 0]  # the third round reached the young end; the fourth starts over
    assert all(kept(storage, mp3_fid) for mp3_fid in referenced)
    assert not any(kept(storage, mp3_fid) for mp3_fid in orphans)


def test_run_forever_survives_a_store_outage_and_stops_on_request(janitor, monkeypatch):
    from common.errors import TransientError

    calls = []

    def flaky_round():
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("MongoDB unavailable")
        return janitor_report

    janitor_report = janitor.run_once()
    monkeypatch.setattr(janitor, "run_once", flaky_round)
    stop = threading.Event()
    thread = threading.Thread(target=janitor.run_forever, args=(stop,), kwargs={"interval": 0.05})
    thread.start()
    try:
        threading.Event().wait(0.5)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert len(calls) >= 3  # kept going after the failed round


def video_begun(storage, *, days_ago: float, sealed: bool = False, seconds: int = 0):
    """Store a video's first piece (and, if ``sealed``, its record) as begun ``days_ago``."""
    begun = utcnow() - timedelta(days=days_ago, seconds=seconds)
    video_fid = ObjectId.from_datetime(begun)
    storage.videos.put_chunk(video_fid, 0, b"the first megabyte")
    if sealed:
        storage.videos.seal(video_fid, length=18, filename="clip.mp4", metadata={})
    return video_fid


def video_kept(storage, video_fid):
    return storage.videos.chunks.count_documents({"files_id": video_fid}) > 0


def videos_removed():
    sample = REGISTRY.get_sample_value("video2mp3_orphaned_files_removed_total", {"kind": "video"})
    return sample or 0.0


def test_a_video_nothing_refers_to_is_deleted_once_no_upload_can_still_be_writing_it(
    storage, jobs, janitor
):
    # Past the shipped 3 days (the slowest 2 GiB upload the gateway allows takes 68 h):
    cut_off = video_begun(storage, days_ago=4)  # its gateway died mid-request
    unrecorded = video_begun(storage, days_ago=4, sealed=True, seconds=1)  # died before the job
    in_a_job = video_begun(storage, days_ago=40, sealed=True)
    jobs.create(
        job_id=new_job_id(),
        owner="ann@example.com",
        video_fid=in_a_job,
        filename="clip.mp4",
        size=18,
        options={},
    )
    resumable = video_begun(storage, days_ago=5)  # a tus upload the client may still resume
    storage.client[storage.config.videos_db][RESUMABLE_UPLOADS].insert_one({"_id": resumable})
    # Younger than that: an upload may still be arriving, at the slowest pace allowed.
    arriving = video_begun(storage, days_ago=2.5)
    before = videos_removed()

    report = janitor.run_once()

    assert report.orphaned_videos == 2
    assert videos_removed() - before == 2
    for gone in (cut_off, unrecorded):
        assert not video_kept(storage, gone)
    assert storage.videos.files.count_documents({"_id": unrecorded}) == 0
    for kept_video in (in_a_job, resumable, arriving):
        assert video_kept(storage, kept_video)
    assert janitor.run_once().orphaned_videos == 0


def test_the_video_sweep_goes_on_past_a_batch_of_kept_videos(storage, jobs, rabbitmq_config):
    publisher = Publisher(rabbitmq_config, name="test-janitor")
    small = Janitor(
        storage=storage,
        jobs=jobs,
        publisher=publisher,
        video_queue="unused-video",
        mp3_queue="unused-mp3",
        stale_after=timedelta(seconds=60),
        abandoned_after=timedelta(seconds=60),
        retention=None,
        max_attempts=3,
        orphaned_video_after=timedelta(seconds=ORPHANED_VIDEO_SECONDS),
        orphan_batch=2,
    )
    records = storage.client[storage.config.videos_db][RESUMABLE_UPLOADS]
    for seconds in (0, 1):  # the oldest batch: kept, as resumable uploads
        records.insert_one({"_id": video_begun(storage, days_ago=9, seconds=-seconds)})
    orphan = video_begun(storage, days_ago=8)
    try:
        assert small.run_once().orphaned_videos == 0  # a batch of kept ones...
        assert small.run_once().orphaned_videos == 1  # ...then the next batch, not the same
        assert not video_kept(storage, orphan)
    finally:
        publisher.close()


def test_a_split_jobs_tracks_are_kept_while_listed_and_deleted_when_it_expires(
    storage, jobs, janitor
):
    job_id, _ = stored_job(storage, jobs)
    jobs.start(job_id)
    whole = stored_mp3(storage, job_id, seconds_ago=120)
    listed = [stored_mp3(storage, job_id, seconds_ago=120) for _ in range(2)]
    # A track of a delivery that died before storing the output: the finished job lists others.
    leftover = stored_mp3(storage, job_id, seconds_ago=120)
    tracks = [{"fid": fid, "number": n, "title": f"T{n}"} for n, fid in enumerate(listed, 1)]
    jobs.finish(job_id, mp3_fid=whole, results={"tracks": tracks})

    assert janitor.run_once().orphans == 1

    assert not kept(storage, leftover)
    assert all(kept(storage, fid) for fid in (whole, *listed))
    age(jobs, job_id, finished_at=8 * 24 * 3600)
    assert janitor.run_once().expired == 1
    assert not any(kept(storage, fid) for fid in (whole, *listed))


def deletion_records(storage):
    return storage.client[storage.config.videos_db][ACCOUNT_DELETIONS]


def test_a_confirmed_account_deletion_is_finished_in_batches(storage, jobs, janitor):
    old = [stored_job(storage, jobs, owner="gone@example.com") for _ in range(ERASE_BATCH + 3)]
    other = stored_job(storage, jobs, owner="stays@example.com")
    deletions = AccountDeletions(storage.client, storage.config)
    deletions.request("gone@example.com")
    deletions.confirm("gone@example.com")
    # The address registered again, and its new account uploaded: not the old one's.
    time.sleep(0.01)  # registering again takes a round trip to auth at least
    new = stored_job(storage, jobs, owner="gone@example.com")

    janitor.run_once()  # one batch a round: more than a batch is left for the next

    left = [job_id for job_id, _ in old if jobs.get(job_id) is not None]
    assert len(left) == 3
    assert deletion_records(storage).find_one()["state"] == "confirmed"

    assert janitor.run_once().accounts_erased == 1

    for job_id, video_fid in old:
        assert jobs.get(job_id) is None
        assert storage.videos.find_one({"_id": video_fid}) is None
    assert jobs.get(new[0]) is not None
    assert storage.videos.find_one({"_id": new[1]}) is not None
    assert jobs.get(other[0]) is not None
    assert deletion_records(storage).find_one()["state"] == "done"


def test_an_unconfirmed_account_deletion_erases_nothing_and_is_dropped_after_a_day(
    storage, jobs, janitor
):
    job_id, _ = stored_job(storage, jobs, owner="kept@example.com")
    deletions = AccountDeletions(storage.client, storage.config)
    deletions.request("kept@example.com")  # auth never confirmed it
    deletions.request("old@example.com")
    deletion_records(storage).update_one(
        {"_id": "old@example.com"},
        {"$set": {"requested_at": utcnow() - timedelta(days=1, seconds=1)}},
    )

    assert janitor.run_once().accounts_erased == 0

    assert jobs.get(job_id) is not None
    assert [record["_id"] for record in deletion_records(storage).find()] == ["kept@example.com"]
