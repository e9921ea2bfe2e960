"""Job records and their guarded state transitions, on a real MongoDB server."""

from __future__ import annotations

import time

import pytest
from bson import ObjectId

from common.jobs import (
    DONE,
    FAILED,
    PROCESSING,
    QUEUED,
    JobStore,
    files_of,
    jobs_collection,
    new_job_id,
    public_view,
    track_of,
)


@pytest.fixture
def jobs(storage):
    store = JobStore(storage.client, storage.config)
    store.ensure_indexes()
    return store


def make_job(jobs, owner="a@example.com", **overrides):
    fields = {
        "job_id": new_job_id(),
        "owner": owner,
        "video_fid": ObjectId(),
        "filename": "clip.mp4",
        "size": 1234,
        "options": {"bitrate": 192},
    }
    fields.update(overrides)
    return jobs.create(**fields)


def test_create_and_read_a_queued_job(jobs):
    job = make_job(jobs)
    stored = jobs.get(job["_id"])
    assert stored["status"] == QUEUED
    assert stored["progress"] == 0
    assert stored["created_at"].tzinfo is not None
    view = public_view(stored)
    assert view["job_id"] == job["_id"]
    assert view["video_fid"] == str(job["video_fid"])
    assert view["mp3_fid"] is None
    assert view["created_at"].endswith("Z")
    assert view["options"] == {"bitrate": 192}


def test_other_users_cannot_see_a_job(jobs):
    job = make_job(jobs, owner="a@example.com")
    assert jobs.get_owned(job["_id"], "a@example.com") is not None
    assert jobs.get_owned(job["_id"], "b@example.com") is None
    assert jobs.find_by_file(job["video_fid"], "b@example.com") is None


def test_jobs_are_found_by_video_or_mp3_id(jobs):
    job = make_job(jobs)
    assert jobs.find_by_file(str(job["video_fid"]), "a@example.com")["_id"] == job["_id"]
    jobs.start(job["_id"])
    mp3_fid = ObjectId()
    jobs.finish(job["_id"], mp3_fid=mp3_fid)
    assert jobs.find_by_file(mp3_fid, "a@example.com")["_id"] == job["_id"]


def test_list_is_newest_first_filtered_and_paged(jobs):
    created = []
    for _ in range(5):
        created.append(make_job(jobs)["_id"])
        time.sleep(0.002)  # creation times are kept to the millisecond
    make_job(jobs, owner="someone-else@example.com")
    jobs.start(created[0])

    page, total = jobs.list_owned("a@example.com", limit=2, offset=0)
    assert total == 5
    assert [j["_id"] for j in page] == created[::-1][:2]
    page, _ = jobs.list_owned("a@example.com", limit=2, offset=4)
    assert [j["_id"] for j in page] == [created[0]]
    processing, total = jobs.list_owned("a@example.com", status=PROCESSING)
    assert total == 1
    assert processing[0]["_id"] == created[0]


def test_a_page_of_jobs_comes_from_the_index_in_order_not_from_a_sort(jobs, storage):
    for _ in range(30):
        make_job(jobs)
        make_job(jobs, owner="someone-else@example.com")
    database = storage.client[storage.config.videos_db]
    database.command("profile", 2)  # MongoDB records how it ran each query
    try:
        jobs.list_owned("a@example.com", limit=5)
        jobs.list_owned("a@example.com", status=QUEUED, limit=5, offset=5)
    finally:
        database.command("profile", 0)
    pages = list(database["system.profile"].find({"op": "query", "ns": f"{database.name}.jobs"}))
    assert len(pages) == 2
    for page in pages:
        assert not page.get("hasSortStage"), page["planSummary"]
        assert page["docsExamined"] <= 10, page["planSummary"]  # the page and what it skips


def test_indexes_that_newer_ones_cover_are_dropped(storage):
    collection = storage.client[storage.config.videos_db]["jobs"]
    collection.create_index([("owner", 1), ("created_at", -1)])
    collection.create_index([("owner", 1), ("status", 1), ("created_at", -1)])
    JobStore(storage.client, storage.config).ensure_indexes()
    names = set(collection.index_information())
    assert "owner_1_created_at_-1__id_-1" in names
    assert not names & {"owner_1_created_at_-1", "owner_1_status_1_created_at_-1"}


def test_lifecycle_queued_processing_done(jobs):
    job = make_job(jobs)
    started = jobs.start(job["_id"])
    assert started["status"] == PROCESSING
    assert started["attempts"] == 1
    jobs.set_progress(job["_id"], 42)
    assert jobs.get(job["_id"])["progress"] == 42
    assert jobs.finish(job["_id"], mp3_fid=ObjectId()) is True
    done = jobs.get(job["_id"])
    assert done["status"] == DONE
    assert done["progress"] == 100
    assert done["finished_at"] >= done["started_at"]


def test_finished_jobs_cannot_move_backwards(jobs):
    job = make_job(jobs)
    jobs.start(job["_id"])
    jobs.finish(job["_id"], mp3_fid=ObjectId())

    assert jobs.start(job["_id"]) is None  # a redelivery of a finished job
    assert jobs.fail(job["_id"], error="late failure") is False
    assert jobs.finish(job["_id"], mp3_fid=ObjectId()) is False
    jobs.set_progress(job["_id"], 3)
    assert jobs.get(job["_id"])["status"] == DONE
    assert jobs.get(job["_id"])["progress"] == 100


def test_fail_records_a_reason(jobs):
    job = make_job(jobs)
    assert jobs.fail(job["_id"], error="the video has no audio track") is True
    failed = jobs.get(job["_id"])
    assert failed["status"] == FAILED
    assert failed["error"] == "the video has no audio track"
    assert jobs.start(job["_id"]) is None


def test_unfinished_among_names_the_queued_and_processing_jobs(jobs):
    queued, processing, done, failed = (make_job(jobs)["_id"] for _ in range(4))
    for job_id in (processing, done, failed):
        jobs.start(job_id)
    jobs.finish(done, mp3_fid=ObjectId())
    jobs.fail(failed, error="no audio")

    everyone = [queued, processing, done, failed, new_job_id()]  # the last never existed
    assert jobs.unfinished_among(everyone) == {queued, processing}
    assert jobs.unfinished_among([]) == set()


def test_referenced_mp3s_names_the_mp3s_jobs_point_to(jobs):
    job_id = make_job(jobs)["_id"]
    jobs.start(job_id)
    kept, unknown = ObjectId(), ObjectId()
    jobs.finish(job_id, mp3_fid=kept)
    make_job(jobs)  # one without an MP3 yet

    assert jobs.referenced_mp3s([kept, unknown]) == {kept}
    assert jobs.referenced_mp3s(iter([unknown])) == set()


def test_delete(jobs):
    job = make_job(jobs)
    assert jobs.delete(job["_id"]) is True
    assert jobs.delete(job["_id"]) is False
    assert jobs.get(job["_id"]) is None


def test_a_clips_trim_is_shown_in_the_videos_times(jobs):
    # An audio copy from 3.320454 s on, trimmed at 0.979546-4.179546 s of the copy: the
    # user asked for 4.3-7.5 s of the video, and that is what the job shows.
    trimmed = {"start": 0.979546, "end": 4.179546, "bitrate": 192}
    job = make_job(jobs, options=trimmed, clip_start=3.320454)
    stored = jobs.get(job["_id"])
    assert stored["options"] == trimmed  # what the converter applies to the copy
    assert public_view(stored)["options"] == {"start": 4.3, "end": 7.5, "bitrate": 192}
    untrimmed = make_job(jobs, options={"bitrate": 128}, clip_start=None)
    assert public_view(jobs.get(untrimmed["_id"]))["options"] == {"bitrate": 128}


def test_a_split_jobs_tracks_find_it_count_as_referenced_and_are_indexed(jobs, storage):
    job = make_job(jobs)
    jobs.start(job["_id"])
    whole, first, second, unknown = ObjectId(), ObjectId(), ObjectId(), ObjectId()
    tracks = [{"fid": first, "number": 1}, {"fid": second, "number": 2}]
    jobs.finish(job["_id"], mp3_fid=whole, results={"tracks": tracks})
    stored = jobs.get(job["_id"])

    assert jobs.find_by_file(str(second), "a@example.com")["_id"] == job["_id"]
    assert jobs.find_by_file(second, "b@example.com") is None
    assert track_of(stored, str(second)) == {"fid": second, "number": 2}
    assert track_of(stored, whole) is None
    assert files_of(stored) == [whole, first, second]
    assert jobs.referenced_mp3s([first, second, unknown]) == {first, second}
    assert public_view(stored)["tracks"][0] == {"fid": str(first), "number": 1}
    indexes = jobs_collection(storage.client, storage.config).index_information()
    assert indexes["tracks.fid_1"].get("sparse") is True
