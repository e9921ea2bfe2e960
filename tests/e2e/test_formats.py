"""Output formats end to end: upload -> job -> email -> download, each file decoded by ffmpeg."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
import requests

from tests.e2e.test_cli_resume import Command
from tests.e2e.test_options import upload_with
from tests.e2e.test_pipeline import fid_in, wait_for_mail
from tests.support.media import (
    audio_packet_hashes,
    audio_stream,
    describe,
    make_video,
    probe_duration,
    read_tags,
)

SECONDS = 3.0
TAGS = {"title": "Live in Rome", "artist": "The Band", "album": "Tour ♪"}
# format: (Content-Type, label in the email, ffmpeg's container, codec, where the tags are)
FORMATS = {
    "mp3": ("audio/mpeg", "MP3", "mp3", "mp3", None),
    "m4a": ("audio/mp4", "M4A", "mov,mp4,m4a,3gp,3g2,mj2", "aac", None),
    "opus": ("audio/ogg", "Opus", "ogg", "opus", "a:0"),
    "flac": ("audio/flac", "FLAC", "flac", "flac", None),
    "wav": ("audio/wav", "WAV", "wav", "pcm_s16le", None),
}


def job_of(system, user, accepted) -> dict:
    response = requests.get(
        f"{system.gateway}{accepted.json()['status_url']}", headers=user.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def download(system, user, fid) -> requests.Response:
    response = requests.get(
        f"{system.gateway}/download", params={"fid": fid}, headers=user.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("output", list(FORMATS))
def test_each_format_is_made_named_served_and_announced_as_itself(
    system, user, mail_sink, tmp_path, output
):
    content_type, label, container, codec, tag_stream = FORMATS[output]
    source = make_video(tmp_path / "holiday.webm", seconds=SECONDS, audio_codec="libvorbis")

    accepted = upload_with(system, user, source, format=output.upper(), channels="1", **TAGS)

    assert accepted.status_code == 202, accepted.text
    assert job_of(system, user, accepted)["options"] == {"format": output, "channels": 1, **TAGS}
    [email] = wait_for_mail(mail_sink, user)
    assert email["Subject"] == f"Your {label} is ready: holiday.webm"
    text = email.get_body(("plain",)).get_content()
    assert f'"holiday.webm" has been converted to {label}.' in text
    assert f"File: holiday.{output}\r\n" in text
    assert f">Download holiday.{output}</a>" in email.get_body(("html",)).get_content()

    fid = fid_in(email)
    response = download(system, user, fid)
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Disposition"] == f'attachment; filename="holiday.{output}"'
    saved = tmp_path / f"downloaded.{output}"
    saved.write_bytes(response.content)
    assert f"Input #0, {container}, from" in describe(saved)
    stream = audio_stream(saved)
    assert re.match(rf"{codec}\b", stream)
    assert "mono" in stream
    assert abs(probe_duration(saved) - SECONDS) <= 0.1
    tags = read_tags(saved, stream=tag_stream)
    assert {key: tags.get(key) for key in TAGS} == TAGS
    # The stored file carries the same name and says its format.
    stored = system.mp3s["fs.files"].find_one({"metadata.job_id": accepted.json()["job_id"]})
    assert (stored["filename"], stored["metadata"]["format"]) == (f"holiday.{output}", output)


def test_aac_into_m4a_is_copied_packet_for_packet(system, user, mail_sink, tmp_path):
    source = make_video(tmp_path / "phone.mp4", seconds=SECONDS)

    assert upload_with(system, user, source, format="m4a").status_code == 202

    [email] = wait_for_mail(mail_sink, user)
    saved = tmp_path / "phone.m4a"
    saved.write_bytes(download(system, user, fid_in(email)).content)
    assert audio_packet_hashes(saved) == audio_packet_hashes(source)
    assert read_tags(saved)["title"] == "phone"


def test_a_zip_names_each_output_with_its_formats_extension(system, user, mail_sink, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    job_ids = []
    for output in ("flac", "mp3", "opus"):
        accepted = upload_with(system, user, source, format=output)
        assert accepted.status_code == 202, accepted.text
        job_ids.append(accepted.json()["job_id"])
    wait_for_mail(mail_sink, user, count=3)

    response = requests.get(
        f"{system.gateway}/download.zip",
        params=[("job_id", job_id) for job_id in job_ids],
        headers=user.headers,
        timeout=30,
    )

    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["clip.flac", "clip.mp3", "clip.opus"]
        assert archive.read("clip.flac")[:4] == b"fLaC"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"format": "ogg"}, "format"),
        ({"format": "flac", "bitrate": "192"}, "bitrate"),
        ({"format": "wav", "quality": "2"}, "quality"),
        ({"format": "m4a", "quality": "2"}, "quality"),
        ({"format": "m4a", "bitrate": "400"}, "bitrate"),
        ({"format": "opus", "bitrate": "511"}, "bitrate"),
        ({"format": "opus", "sample_rate": "44100"}, "sample_rate"),
    ],
)
def test_a_combination_the_format_does_not_take_is_refused_before_anything_is_stored(
    system, user, tmp_path, fields, field
):
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    response = upload_with(system, user, source, **fields)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_option"
    assert response.json()["field"] == field
    assert f"'{field}'" in response.json()["message"]
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0


def test_the_cli_saves_a_flac_with_format_flac(system, user, tmp_path):
    source = make_video(tmp_path / "holiday.mp4", seconds=SECONDS)
    command = Command(tmp_path, user, system.gateway)
    out = tmp_path / "out"

    done = command.run(str(source), "--format", "flac", "--wait", "-o", str(out))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"holiday.mp4: saved {out / 'holiday.flac'}\n"
    assert audio_stream(out / "holiday.flac").startswith("flac")
    assert abs(probe_duration(out / "holiday.flac") - SECONDS) <= 0.1
