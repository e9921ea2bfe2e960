"""Output options given as upload form fields, applied by the converter, checked by decoding."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.test_pipeline import download_mp3, fid_in, wait_for_mail
from tests.support.media import audio_stream, make_video, probe_duration, read_tags


def upload_with(system, user, path, **fields):
    with open(path, "rb") as video:
        return requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": (path.name, video)},
            data=fields,
            timeout=60,
        )


def test_options_are_applied_and_echoed(system, user, mail_sink, tmp_path):
    source = make_video(tmp_path / "Concert.mp4", seconds=4, sample_rate=48000, channels=2)
    response = upload_with(
        system,
        user,
        source,
        bitrate="128",
        sample_rate="22050",
        channels="1",
        start="0.5",
        end="3",
        title="Live",
        artist="The Band",
        album="Tour",
    )
    assert response.status_code == 202, response.text
    job = requests.get(
        f"{system.gateway}{response.json()['status_url']}", headers=user.headers, timeout=10
    ).json()
    assert job["options"] == {
        "bitrate": 128,
        "sample_rate": 22050,
        "channels": 1,
        "start": 0.5,
        "end": 3.0,
        "title": "Live",
        "artist": "The Band",
        "album": "Tour",
    }

    [email] = wait_for_mail(mail_sink, user)
    mp3 = download_mp3(system, user, fid_in(email), tmp_path / "out.mp3")
    stream = audio_stream(mp3)
    assert stream.startswith("mp3")
    assert "22050 Hz" in stream
    assert "mono" in stream
    assert "128 kb/s" in stream
    assert abs(probe_duration(mp3) - 2.5) <= 0.1
    tags = read_tags(mp3)
    assert (tags["title"], tags["artist"], tags["album"]) == ("Live", "The Band", "Tour")


def test_vbr_quality_and_the_default_title(system, user, mail_sink, tmp_path):
    source = make_video(tmp_path / "Holiday in Rome.mp4", seconds=2)
    assert upload_with(system, user, source, quality="4").status_code == 202
    [email] = wait_for_mail(mail_sink, user)
    mp3 = download_mp3(system, user, fid_in(email), tmp_path / "out.mp3")
    assert read_tags(mp3)["title"] == "Holiday in Rome"
    assert abs(probe_duration(mp3) - probe_duration(source)) <= 0.1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"bitrate": "100"}, "bitrate"),
        ({"bitrate": "fast"}, "bitrate"),
        ({"quality": "11"}, "quality"),
        ({"bitrate": "128", "quality": "2"}, "quality"),
        ({"sample_rate": "12345"}, "sample_rate"),
        ({"channels": "6"}, "channels"),
        ({"start": "-1"}, "start"),
        ({"start": "5", "end": "2"}, "end"),
        ({"title": "x" * 300}, "title"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_options_are_refused_naming_the_field(system, user, tmp_path, fields, field):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    response = upload_with(system, user, source, **fields)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_option"
    assert response.json()["field"] == field
    assert field in response.json()["message"]
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
