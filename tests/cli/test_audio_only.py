"""``video2mp3 convert`` sends only a video's audio track, or the whole file when it cannot."""

from __future__ import annotations

import os
import re
import stat
import tempfile

import pytest
import requests

from tests.support.media import make_video, probe_duration
from video2mp3.progress import human_size

JOB_LINE = re.compile(r"^(?P<name>.+): queued as job (?P<job_id>[0-9a-f]{32})$", re.MULTILINE)
SENDING = re.compile(r"^(?P<name>.+): sending the audio only \((?P<codec>\w+)\): (?P<figures>.+)$")


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """Make the command's temp dirs inside this test's directory, where they can be counted."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def job_of(system, user, result) -> dict:
    job_id = JOB_LINE.search(result.out + result.err)["job_id"]
    response = requests.get(f"{system.gateway}/jobs/{job_id}", headers=user.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_video_is_sent_as_its_audio_track_under_its_own_name(
    cli, logged_in, system, tmp_path, private_tmp
):
    source = make_video(tmp_path / "holiday.mov", seconds=6, size="1280x720")
    out_dir = tmp_path / "out"

    result = cli("convert", str(source), "--wait", "-o", str(out_dir))

    assert result.code == 0, result.err
    assert result.out == f"holiday.mov: saved {out_dir / 'holiday.mp3'}\n"
    job = job_of(system, logged_in, result)
    full = source.stat().st_size
    assert job["filename"] == "holiday.mov"
    assert job["size"] < full / 3
    [sending] = [m for line in result.err.splitlines() if (m := SENDING.fullmatch(line))]
    assert (sending["name"], sending["codec"]) == ("holiday.mov", "aac")
    assert sending["figures"] == f"{human_size(job['size'])} of {human_size(full)}"
    assert f"uploading holiday.mov: {human_size(job['size'])} in " in result.err
    assert abs(probe_duration(out_dir / "holiday.mp3") - probe_duration(source)) <= 0.1
    assert list(private_tmp.iterdir()) == []


def test_only_the_trimmed_range_is_sent_and_the_mp3_has_its_length(
    cli, logged_in, system, tmp_path, private_tmp
):
    source = make_video(tmp_path / "talk.mp4", seconds=12, size="640x480")
    whole = cli("convert", str(source))
    whole_size = job_of(system, logged_in, whole)["size"]
    out_dir = tmp_path / "out"

    result = cli(
        "convert", str(source), "--start", "5", "--end", "0:07.5", "--wait", "-o", str(out_dir)
    )  # fmt: skip

    assert result.code == 0, result.err
    job = job_of(system, logged_in, result)
    # 2.5 s and a second on either side of the 12 s track.
    assert job["size"] < whole_size * 0.5
    # The job shows the trim as given, in the video's times, though the server trims the
    # copy at times moved by where the copy begins (the copy's own `clip_start`).
    assert job["options"] == pytest.approx({"start": 5.0, "end": 7.5}, abs=1e-6)
    assert abs(probe_duration(out_dir / "talk.mp3") - 2.5) <= 0.1
    assert list(private_tmp.iterdir()) == []


def test_full_upload_sends_the_whole_file(cli, logged_in, system, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=2)

    result = cli("convert", "--full-upload", str(source))

    assert result.code == 0, result.err
    assert job_of(system, logged_in, result)["size"] == source.stat().st_size
    assert "audio only" not in result.err


def test_a_failing_ffmpeg_means_the_whole_file_silently(
    cli, logged_in, system, tmp_path, monkeypatch, private_tmp
):
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'ffmpeg: broken' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    source = make_video(tmp_path / "clip.mp4", seconds=2)
    out_dir = tmp_path / "out"

    result = cli("convert", str(source), "--wait", "-o", str(out_dir))

    assert result.code == 0, result.err
    assert job_of(system, logged_in, result)["size"] == source.stat().st_size
    assert "audio only" not in result.err
    assert "broken" not in result.err
    assert abs(probe_duration(out_dir / "clip.mp3") - probe_duration(source)) <= 0.1
    assert list(private_tmp.iterdir()) == []
