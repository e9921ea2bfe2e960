"""Cover art end to end: upload with ``cover`` -> job -> email -> download, the picture decoded."""

from __future__ import annotations

import re

import pytest

from converter.cover import NO_PICTURE
from tests.e2e.test_formats import download, job_of
from tests.e2e.test_options import upload_with
from tests.e2e.test_pipeline import fid_in, wait_for_mail
from tests.support.media import (
    audio_stream,
    describe,
    make_audio,
    make_scenes,
    make_video,
    mean_colour,
    picture_size,
)

ATTACHED_PICTURE = re.compile(r"Stream #0:\d+\S*: Video: mjpeg.*\(attached pic\)")


def converted(system, user, mail_sink, tmp_path, source, **fields):
    """Upload ``source`` with ``fields``, wait for the email and save the download."""
    accepted = upload_with(system, user, source, **fields)
    assert accepted.status_code == 202, accepted.text
    [email] = wait_for_mail(mail_sink, user)
    response = download(system, user, fid_in(email))
    path = tmp_path / f"out.{fields.get('format', 'mp3')}"
    path.write_bytes(response.content)
    return path


@pytest.mark.parametrize("output", ["mp3", "flac", "opus"])
def test_the_automatic_cover_is_a_scene_of_the_video_not_its_black_opening(
    system, user, mail_sink, tmp_path, output
):
    source = make_scenes(tmp_path / "film.mp4", [("black", 3), ("testsrc", 1)], size="1280x720")

    path = converted(system, user, mail_sink, tmp_path, source, format=output, cover="frame")

    assert ATTACHED_PICTURE.search(describe(path)), describe(path)
    assert picture_size(path) == (1000, 563)
    assert sum(mean_colour(path)) > 3 * 60, mean_colour(path)
    assert audio_stream(path).startswith(output)


def test_cover_at_alone_takes_the_frame_at_that_time(system, user, mail_sink, tmp_path):
    source = make_scenes(tmp_path / "rb.mp4", [("red", 2), ("blue", 2)])

    path = converted(system, user, mail_sink, tmp_path, source, format="m4a", cover_at="3")

    assert ATTACHED_PICTURE.search(describe(path)), describe(path)
    red, green, blue = mean_colour(path)
    assert blue > 200
    assert max(red, green) < 30


@pytest.mark.parametrize("fields", [{}, {"cover": "none"}], ids=["default", "none"])
def test_without_a_cover_the_file_is_sound_only(system, user, mail_sink, tmp_path, fields):
    source = make_video(tmp_path / "clip.mp4", seconds=2)

    path = converted(system, user, mail_sink, tmp_path, source, **fields)

    assert "Video:" not in describe(path)


def test_a_cover_of_a_sound_only_upload_fails_the_job_saying_why(system, user, mail_sink, tmp_path):
    # What the page and the CLI send without a cover: the sound alone.
    source = make_audio(tmp_path / "holiday.m4a", seconds=2)

    accepted = upload_with(system, user, source, cover="frame")

    assert accepted.status_code == 202, accepted.text
    [email] = wait_for_mail(mail_sink, user)
    assert email["Subject"].startswith("We could not convert")
    job = job_of(system, user, accepted)
    assert job["status"] == "failed"
    assert NO_PICTURE in job["error"]
    assert f"Reason: {job['error']}" in email.get_body(("plain",)).get_content()
    assert job["attempts"] == 1


def test_a_wav_with_a_cover_is_refused_naming_the_option(system, user, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    response = upload_with(system, user, source, format="wav", cover="frame")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_option"
    assert response.json()["field"] == "cover"
    assert "'cover'" in response.json()["message"]
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
