"""The queue contract: what producers publish and what consumers accept (no servers needed)."""

from __future__ import annotations

import json

import pytest
from bson import ObjectId

from common.errors import PermanentError
from common.messages import (
    job_id_in,
    mp3_message,
    read_mp3_message,
    read_video_message,
    read_webhook_message,
    video_message,
    webhook_message,
)

VIDEO_FID, MP3_FID = ObjectId(), ObjectId()


def job(**fields):
    """Return a job record as ``common.jobs`` stores it."""
    return {
        "_id": "j1",
        "owner": "ann@example.com",
        "status": "queued",
        "error": None,
        "filename": "clip.mp4",
        "video_fid": VIDEO_FID,
        "mp3_fid": None,
        "options": {"bitrate": 128},
        "callback_url": "https://hooks.example.com/done",
        **fields,
    }


def on_the_wire(body):
    """Return ``body`` as a consumer decodes it after the broker."""
    return json.loads(json.dumps(body))


def test_a_video_message_names_the_job_in_the_course_projects_fields():
    message = video_message(job())
    assert message.message_id == "j1"
    assert on_the_wire(message.body) == {
        "job_id": "j1",
        "video_fid": str(VIDEO_FID),
        "mp3_fid": None,
        "username": "ann@example.com",
        "filename": "clip.mp4",
        "options": {"bitrate": 128},
    }
    assert read_video_message(on_the_wire(message.body)) == "j1"


@pytest.mark.parametrize(
    ("finished", "mp3_fid", "error"),
    [
        ({"status": "done", "mp3_fid": MP3_FID}, str(MP3_FID), None),
        ({"status": "failed", "error": "no audio track"}, None, "no audio track"),
    ],
)
def test_an_mp3_message_says_how_the_job_ended(finished, mp3_fid, error):
    message = mp3_message(job(**finished))
    body = on_the_wire(message.body)
    assert message.message_id == "j1"
    assert body["status"] == finished["status"]
    assert body["mp3_fid"] == mp3_fid
    assert body["error"] == error
    # The fields the video message carries, as the converter has always announced them.
    assert {name: body[name] for name in ("job_id", "video_fid", "username", "options")} == {
        "job_id": "j1",
        "video_fid": str(VIDEO_FID),
        "username": "ann@example.com",
        "options": {"bitrate": 128},
    }
    assert read_mp3_message(body) == "j1"


def test_a_webhook_message_names_only_the_job():
    message = webhook_message("j1")
    assert message.message_id == "j1.webhook"  # apart from the job's mp3 message
    assert on_the_wire(message.body) == {"job_id": "j1"}
    assert read_webhook_message(on_the_wire(message.body)) == "j1"


def test_messages_of_earlier_versions_are_accepted():
    # The course project's video message: no filename.
    course = {"job_id": "j1", "video_fid": "v", "mp3_fid": None, "username": "u", "options": {}}
    assert read_video_message(course) == "j1"
    # An mp3 message that carries fields a reader does not know.
    assert read_mp3_message({"job_id": "j1", "status": "done", "extra": 1}) == "j1"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({}, "'job_id'"),
        ({"job_id": "j"}, "'video_fid'"),
        ({"job_id": "j", "video_fid": "v"}, "'username'"),
        ({"job_id": 1, "video_fid": "v", "username": "u"}, "'job_id'"),
        ({"job_id": "", "video_fid": "v", "username": "u"}, "'job_id'"),
    ],
)
def test_a_malformed_video_message_is_permanent(message, reason):
    with pytest.raises(PermanentError, match=f"video message lacks a {reason} string"):
        read_video_message(message)


@pytest.mark.parametrize("read", [read_mp3_message, read_webhook_message])
@pytest.mark.parametrize(
    "message",
    [
        {},
        {"job_id": ""},
        {"job_id": 5, "username": "a@b.c", "status": "done"},
        {"job_id": ["j"]},
    ],
)
def test_a_message_naming_no_job_is_permanent(read, message):
    with pytest.raises(PermanentError, match="message lacks a 'job_id' string"):
        read(message)


@pytest.mark.parametrize(
    ("message", "job_id"),
    [
        ({"job_id": "j1", "anything": "else"}, "j1"),
        ({"job_id": 5}, None),
        ({"job_id": ""}, None),
        ({}, None),
        (["job_id"], None),
        (None, None),
    ],
)
def test_job_id_in_never_raises(message, job_id):
    assert job_id_in(message) == job_id
