"""Housekeeping against real MongoDB and RabbitMQ: stalled jobs come back, old ones go."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
from bson import ObjectId

from common.jobs import DONE, FAILED, QUEUED, JobStore, new_job_id, utcnow
from common.messaging import Publisher
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
