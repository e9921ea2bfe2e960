"""Split jobs through the real stack: tracks listed, downloaded, zipped and deleted with the job."""

from __future__ import annotations

import io
import zipfile

import requests

from tests.e2e.test_formats import download, job_of
from tests.e2e.test_options import upload_with
from tests.e2e.test_pipeline import fid_in, wait_for_mail
from tests.support.media import (
    make_audio,
    make_video,
    probe_duration,
    read_tags,
    video_with_chapters,
)

CHAPTERS = [("Intro", 0, 4), ("The middle", 4, 8), ("Outro", 8, 12)]


def test_a_video_split_by_chapters_lists_serves_zips_and_deletes_its_tracks(
    system, user, mail_sink, tmp_path
):
    source = video_with_chapters(tmp_path / "talk.mp4", CHAPTERS)

    accepted = upload_with(system, user, source, split="chapters")

    assert accepted.status_code == 202, accepted.text
    [email] = wait_for_mail(mail_sink, user)
    job = job_of(system, user, accepted)
    assert job["status"] == "done", job
    text = email.get_body(("plain",)).get_content()
    assert "Split into 3 tracks" in text
    assert fid_in(email) == job["mp3_fid"]  # the link stays the whole output's
    tracks = job["tracks"]
    assert [(t["number"], t["title"], t["start"]) for t in tracks] == [
        (1, "Intro", 0),
        (2, "The middle", 4),
        (3, "Outro", 8),
    ]
    assert [t["filename"] for t in tracks] == [
        "talk - 01 - Intro.mp3",
        "talk - 02 - The middle.mp3",
        "talk - 03 - Outro.mp3",
    ]
    for track in tracks:
        assert abs(track["duration"] - 4) < 0.1, track
        response = download(system, user, track["fid"])
        assert response.headers["Content-Type"] == "audio/mpeg"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="{track["filename"]}"'
        )
        assert response.headers["ETag"] == f'"{track["fid"]}"'
        assert len(response.content) == track["size"]
        saved = tmp_path / f"track-{track['number']}.mp3"
        saved.write_bytes(response.content)
        assert abs(probe_duration(saved) - 4) < 0.1
        tags = read_tags(saved)
        assert (tags["title"], tags["track"], tags["album"]) == (
            track["title"],
            f"{track['number']}/3",
            "talk",
        )
    ranged = requests.get(
        f"{system.gateway}/download",
        params={"fid": tracks[1]["fid"]},
        headers={**user.headers, "Range": "bytes=0-99"},
        timeout=30,
    )
    assert ranged.status_code == 206
    assert ranged.content == (tmp_path / "track-2.mp3").read_bytes()[:100]

    zipped = requests.get(
        f"{system.gateway}/download.zip",
        params={"job_id": job["job_id"]},
        headers=user.headers,
        timeout=30,
    )
    assert zipped.status_code == 200, zipped.text
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert archive.namelist() == ["talk.mp3", *(t["filename"] for t in tracks)]
        assert archive.read(tracks[2]["filename"]) == (tmp_path / "track-3.mp3").read_bytes()

    stored = system.mp3s["fs.files"]
    assert stored.count_documents({"metadata.job_id": job["job_id"]}) == 4
    deleted = requests.delete(
        f"{system.gateway}/jobs/{job['job_id']}", headers=user.headers, timeout=30
    )
    assert deleted.status_code == 204
    assert stored.count_documents({"metadata.job_id": job["job_id"]}) == 0
    gone = requests.get(
        f"{system.gateway}/download",
        params={"fid": tracks[0]["fid"]},
        headers=user.headers,
        timeout=30,
    )
    assert gone.status_code == 404


def test_split_by_seconds_makes_parts_of_that_length_the_last_shorter(
    system, user, mail_sink, tmp_path
):
    source = make_audio(tmp_path / "tone.m4a", seconds=25)

    accepted = upload_with(system, user, source, split="10", format="opus")

    assert accepted.status_code == 202, accepted.text
    wait_for_mail(mail_sink, user)
    job = job_of(system, user, accepted)
    assert job["status"] == "done", job
    assert [t["title"] for t in job["tracks"]] == ["Part 1", "Part 2", "Part 3"]
    durations = [t["duration"] for t in job["tracks"]]
    assert all(abs(got - want) < 0.1 for got, want in zip(durations, (10, 10, 5), strict=True))
    last = job["tracks"][2]
    saved = tmp_path / "last.opus"
    saved.write_bytes(download(system, user, last["fid"]).content)
    assert abs(probe_duration(saved) - 5) < 0.1
    assert read_tags(saved, stream="a:0")["track"] == "3/3"


def test_split_by_chapters_of_a_video_without_any_fails_the_job_with_the_reason(
    system, user, mail_sink, tmp_path
):
    source = make_video(tmp_path / "plain.mp4", seconds=2)

    accepted = upload_with(system, user, source, split="chapters")

    assert accepted.status_code == 202, accepted.text
    [email] = wait_for_mail(mail_sink, user)
    job = job_of(system, user, accepted)
    assert job["status"] == "failed"
    assert job["error"] == "the video has no chapters; choose split by seconds instead"
    assert job["tracks"] is None
    assert "the video has no chapters" in email.get_body(("plain",)).get_content()


def test_someone_elses_track_is_not_found(system, user, make_user, mail_sink, tmp_path):
    source = make_audio(tmp_path / "tone.m4a", seconds=12)
    accepted = upload_with(system, user, source, split="10")
    assert accepted.status_code == 202, accepted.text
    wait_for_mail(mail_sink, user)
    [first, _] = job_of(system, user, accepted)["tracks"]
    stranger = make_user()

    response = requests.get(
        f"{system.gateway}/download",
        params={"fid": first["fid"]},
        headers=stranger.headers,
        timeout=30,
    )

    assert response.status_code == 404
    assert download(system, user, first["fid"]).content[:3] == b"ID3"
