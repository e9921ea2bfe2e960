"""``video2mp3 convert URL``: the server fetches the video (POST /jobs) and the command
follows the job like an upload's, against the real system and an origin on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.support.media import make_video, probe_duration
from tests.support.origin import MediaOrigin

CLIP_SECONDS = 2.0


@pytest.fixture
def origin(tmp_path):
    clip = make_video(tmp_path / "talk.mp4", seconds=CLIP_SECONDS).read_bytes()
    with MediaOrigin({"talk.mp4": clip}) as server:
        yield server


def test_convert_url_wait_saves_the_mp3(cli, logged_in, origin, tmp_path):
    out = tmp_path / "out"
    result = cli("convert", origin.url("talk.mp4"), "--bitrate", "96", "--wait", "-o", str(out))
    assert result.code == 0, result.err
    [saved] = out.iterdir()
    assert saved.name == "talk.mp3"
    assert probe_duration(saved) == pytest.approx(CLIP_SECONDS, abs=0.15)
    assert origin.requests["/talk.mp4"] == 1
    assert f"saved {saved}" in result.out


def test_convert_url_without_wait_prints_the_job(cli, logged_in, origin):
    result = cli("convert", origin.url("talk.mp4"))
    assert result.code == 0, result.err
    assert f"{origin.url('talk.mp4')}: queued as job " in result.out


def test_a_url_the_server_refuses_exits_1_with_its_reason(cli, logged_in):
    result = cli("convert", "https://someone:secret@media.example/talk.mp4")
    assert result.code == 1
    assert "must not carry credentials" in result.err


def test_a_url_that_fails_to_fetch_under_wait_exits_1_with_the_reason(
    cli, logged_in, origin, tmp_path
):
    result = cli("convert", origin.url("gone.mp4"), "--wait", "-o", str(tmp_path / "out"))
    assert result.code == 1
    assert "conversion failed" in result.err
    assert "answered 404" in result.err
