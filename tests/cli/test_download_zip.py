"""``video2mp3 download`` of several jobs (or --all) as one ZIP, against the real system."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import requests

from tests.cli.test_commands import assert_one_line_error
from tests.e2e.test_pipeline import upload, wait_for_mail
from tests.support.media import make_video, probe_duration

pytestmark = pytest.mark.slow


def done_jobs(system, user, mail_sink, tmp_path, names: list[str]) -> dict[str, bytes]:
    """Convert a clip under each name; return each job id with its MP3 as /download gives it."""
    clip = make_video(tmp_path / "clip.mp4", seconds=1)
    job_ids = []
    for name in names:
        accepted = upload(system, user, clip, name=name)
        assert accepted.status_code == 202, accepted.text
        job_ids.append(accepted.json()["job_id"])
    wait_for_mail(mail_sink, user, count=len(names))
    mp3s = {}
    for job_id in job_ids:
        job = requests.get(f"{system.gateway}/jobs/{job_id}", headers=user.headers, timeout=10)
        download = requests.get(
            f"{system.gateway}/download",
            params={"fid": job.json()["mp3_fid"]},
            headers=user.headers,
            timeout=30,
        )
        assert download.status_code == 200, download.text
        mp3s[job_id] = download.content
    return mp3s


def files_in(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_several_ids_come_as_one_zip_unpacked_without_overwriting(
    cli, logged_in, system, mail_sink, tmp_path
):
    mp3s = done_jobs(system, logged_in, mail_sink, tmp_path, ["talk.mp4", "talk.mp4", "song.mov"])
    talk, talk_again, song = mp3s
    out = tmp_path / "out"

    result = cli("download", talk, talk_again, song, "-o", str(out))

    assert result.code == 0, result.err
    assert files_in(out) == {
        "song.mp3": mp3s[song],
        "talk (1).mp3": mp3s[talk_again],
        "talk.mp3": mp3s[talk],
    }  # unpacked, the ZIP and every .part gone
    assert [line.split("/")[-1] for line in result.out.splitlines()] == [
        "talk.mp3",
        "talk (1).mp3",
        "song.mp3",
    ]
    assert "downloading video2mp3-" in result.err  # the progress line names the ZIP
    assert abs(probe_duration(out / "song.mp3") - 1.0) <= 0.1

    again = cli("download", talk, song, "-o", str(out))

    assert again.code == 0, again.err
    assert files_in(out)["talk (2).mp3"] == mp3s[talk]
    assert files_in(out)["song (1).mp3"] == mp3s[song]
    assert len(files_in(out)) == 5


def test_all_done_jobs_come_unpacked_or_as_the_zip_itself(
    cli, logged_in, system, mail_sink, tmp_path
):
    mp3s = done_jobs(system, logged_in, mail_sink, tmp_path, ["one.mp4", "two.mp4"])
    failed = upload(
        system, logged_in, make_video(tmp_path / "mute.mp4", seconds=1, audio_codec=None)
    )
    assert failed.status_code == 202, failed.text
    wait_for_mail(mail_sink, logged_in, count=3)

    unpacked = cli("download", "--all", "-o", str(tmp_path / "all"))

    assert unpacked.code == 0, unpacked.err
    assert sorted(files_in(tmp_path / "all").values()) == sorted(mp3s.values())
    assert set(files_in(tmp_path / "all")) == {"one.mp3", "two.mp3"}  # not the failed one

    zipped = cli("download", "--all", "--zip", "-o", str(tmp_path / "zip"))

    assert zipped.code == 0, zipped.err
    [archive_path] = (tmp_path / "zip").iterdir()
    assert re.fullmatch(r"video2mp3-\d{8}-\d{6}\.zip", archive_path.name)
    assert zipped.out.strip() == f"saved {archive_path}"
    with zipfile.ZipFile(archive_path) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["one.mp3", "two.mp3"]
        assert sorted(archive.read(name) for name in archive.namelist()) == sorted(mp3s.values())


def test_a_refused_job_is_one_line_naming_it_and_leaves_nothing(
    cli, logged_in, system, mail_sink, tmp_path
):
    [mine] = done_jobs(system, logged_in, mail_sink, tmp_path, ["mine.mp4"])
    unknown = "f" * 32
    out = tmp_path / "out"

    result = cli("download", mine, unknown, "-o", str(out))

    assert unknown in assert_one_line_error(result, 1)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ("download",),
        ("download", "--all", "0" * 32),
        ("download", "0" * 32, "0" * 24),  # a file id cannot be part of a ZIP
    ],
)
def test_usage_mistakes_exit_2(cli, logged_in, argv):
    assert_one_line_error(cli(*argv), 2)


def test_no_done_jobs_is_said_and_not_an_error(cli, logged_in, tmp_path):
    result = cli("download", "--all", "-o", str(tmp_path / "none"))

    assert result.code == 0, result.err
    assert "No done jobs." in result.err
    assert not (tmp_path / "none").exists()
