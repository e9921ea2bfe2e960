"""``video2mp3 convert`` with loudness, a cover and a split, and what ``status`` and
``download`` show and fetch of them, against the real system."""

from __future__ import annotations

import contextlib
import re

import pytest
import requests

from common.options import InvalidOption, Options
from tests.cli.test_audio_only import JOB_LINE, job_of
from tests.cli.test_commands import assert_one_line_error
from tests.support.media import make_audio, make_video, probe_duration
from video2mp3 import soundtrack
from video2mp3.cli.output import format_clock, job_lines, loudness_text, track_rows
from video2mp3.progress import human_size

WHOLE_FILE = re.compile(r"^(?P<name>.+): sending the whole file: (?P<reason>.+)$", re.MULTILINE)


def test_the_flags_reach_the_jobs_options_and_status_shows_them(cli, logged_in, system, tmp_path):
    source = make_video(tmp_path / "talk.mp4", seconds=2)

    result = cli(
        "convert", str(source), "--loudness", "-16", "--cover-at", "0:01", "--split", "10:00"
    )  # fmt: skip

    assert result.code == 0, result.err
    job = job_of(system, logged_in, result)
    assert job["options"] == {"loudness": -16.0, "cover_at": 1.0, "split": 600.0}
    status = cli("status", job["job_id"])
    assert status.code == 0, status.err
    [options] = re.findall(r"^options: +(.+)$", status.out, re.MULTILINE)
    assert sorted(options.split()) == ["cover_at=1.0", "loudness=-16.0", "split=600.0"]


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--cover", "frame"), "the cover is a frame of the video"),
        (("--cover-at", "1.5"), "the cover is a frame of the video"),
        (("--split", "chapters"), "the chapters are in the video's container"),
    ],
)
def test_a_cover_or_chapters_send_the_whole_video_and_say_why(
    cli, logged_in, system, tmp_path, flags, reason
):
    source = make_video(tmp_path / "clip.mp4", seconds=3, size="640x480")

    result = cli("convert", str(source), *flags)

    assert result.code == 0, result.err
    assert job_of(system, logged_in, result)["size"] == source.stat().st_size
    assert [m.groups() for m in WHOLE_FILE.finditer(result.err)] == [("clip.mp4", reason)]
    assert "audio only" not in result.err


@pytest.mark.parametrize(
    ("options", "whole"),
    [
        ({"cover": "frame"}, True),
        ({"cover_at": "1:30"}, True),
        ({"cover": "frame", "cover_at": "3"}, True),
        ({"split": " Chapters "}, True),
        ({"cover": "none", "cover_at": "3"}, False),  # refused by the server as it comes
        ({"cover": "none", "split": "600"}, False),
        ({"loudness": "-16", "split": "10:00"}, False),
        ({}, False),
    ],
)
def test_the_client_reads_the_servers_rule_for_the_whole_video(options, whole):
    assert (soundtrack.whole_video_reason(options) is not None) is whole
    with contextlib.suppress(InvalidOption):
        assert Options.from_dict(options).needs_whole_video is whole


@pytest.mark.parametrize("flags", [("--split", "10"), ("--loudness", "-23"), ("--cover", "none")])
def test_other_output_options_send_only_the_audio_track(cli, logged_in, system, tmp_path, flags):
    source = make_video(tmp_path / "clip.mp4", seconds=3, size="640x480")

    result = cli("convert", str(source), *flags)

    assert result.code == 0, result.err
    job = job_of(system, logged_in, result)
    assert job["size"] < source.stat().st_size / 2
    assert f"clip.mp4: sending the audio only (aac): {human_size(job['size'])} of " in result.err
    assert "whole file" not in result.err


def test_full_upload_with_a_cover_says_nothing_more(cli, logged_in, system, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    result = cli("convert", "--full-upload", "--cover", "frame", str(source))

    assert result.code == 0, result.err
    assert job_of(system, logged_in, result)["size"] == source.stat().st_size
    assert "sending the" not in result.err


@pytest.mark.parametrize(
    ("flags", "flag", "says"),
    [
        (("--loudness", "-100"), "--loudness", "must be from -70 to -5 LUFS"),
        (("--loudness", "loud"), "--loudness", "must be a loudness in LUFS such as -16"),
        (("--split", "5"), "--split", "parts must last from 10"),
        (("--split", "sometimes"), "--split", "'chapters' or a part length"),
        (("--cover", "none", "--cover-at", "5"), "--cover-at", "but cover is none"),
        (("--cover", "frame", "--format", "wav"), "--cover", "no place for cover art"),
    ],
)
def test_a_refused_value_gives_the_servers_message_and_exits_2(
    cli, logged_in, system, tmp_path, flags, flag, says
):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    form = {name.removeprefix("--").replace("-", "_"): value for name, value in pairs(flags)}
    refused = requests.post(
        f"{system.gateway}/upload",
        headers=logged_in.headers,
        files={"file": ("clip.mp4", source.read_bytes())},
        data=form,
        timeout=10,
    )
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["message"]

    message = assert_one_line_error(cli("convert", str(source), *flags), 2)

    assert message == f"video2mp3: {refused.json()['message']} ({flag})"
    assert cli("jobs").err == "No jobs.\n"


def pairs(flags: tuple[str, ...]) -> list[tuple[str, str]]:
    return list(zip(flags[::2], flags[1::2], strict=True))


def test_download_tracks_of_a_job_without_tracks_says_so(cli, logged_in, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    done = cli("convert", str(source), "--wait", "-o", str(tmp_path / "out"))
    assert done.code == 0, done.err
    job_id = JOB_LINE.search(done.err)["job_id"]

    message = assert_one_line_error(cli("download", job_id, "--tracks", "-o", str(tmp_path)), 1)

    assert message == f"video2mp3: job {job_id} has no tracks: it was not split (--split)"
    usage = assert_one_line_error(cli("download", job_id, "--tracks", "--zip"), 2)
    assert "--tracks takes job ids" in usage
    assert "not a job id" in assert_one_line_error(cli("download", "0" * 24, "--tracks"), 2)


def test_status_lays_out_loudness_and_tracks():
    loudness = {
        "target": -16,
        "input_i": -31.24,
        "input_tp": -20.1,
        "input_lra": 1.0,
        "output_i": -16.04,
        "output_tp": -1.6,
        "output_lra": 0.9,
    }
    tracks = [
        {"fid": "a" * 24, "number": 1, "title": "Part 1", "start": 0.0, "duration": 10.0,
         "size": 160_000, "filename": "talk - 01 - Part 1.mp3"},
        {"fid": "b" * 24, "number": 2, "title": "Part 2", "start": 10.0, "duration": 4.6,
         "size": 74_000, "filename": "talk - 02 - Part 2.mp3"},
    ]  # fmt: skip
    job = {
        "job_id": "f" * 32,
        "status": "done",
        "progress": 100,
        "mp3_fid": "c" * 24,
        "options": {"loudness": -16.0, "split": 10.0},
        "loudness": loudness,
        "tracks": tracks,
    }

    lines = dict(job_lines(job))

    assert lines["loudness"] == loudness_text(loudness)
    assert loudness_text(loudness) == (
        "-31.2 LUFS -> -16.0 LUFS (target -16.0 LUFS; true peak -20.1 -> -1.6 dBTP)"
    )
    assert lines["tracks"] == f"2: video2mp3 download {'f' * 32} --tracks"
    assert track_rows(tracks) == [
        ("1", "Part 1", "0:00", "0:10", "156.2 KiB", "talk - 01 - Part 1.mp3"),
        ("2", "Part 2", "0:10", "0:05", "72.3 KiB", "talk - 02 - Part 2.mp3"),
    ]
    assert "loudness" not in dict(job_lines({**job, "loudness": None}))
    assert "tracks" not in dict(job_lines({**job, "tracks": None}))
    assert loudness_text({"target": -16}) == (
        "? LUFS -> ? LUFS (target -16.0 LUFS; true peak ? -> ? dBTP)"
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (4.6, "0:05"), (600, "10:00"), (3723, "1:02:03"), (None, "-"), (-1, "-")],
)
def test_track_times_show_on_a_clock(seconds, shown):
    assert format_clock(seconds) == shown


@pytest.mark.slow
def test_a_split_normalised_job_shows_its_loudness_and_tracks_and_downloads_them(
    cli, logged_in, system, tmp_path
):
    source = make_audio(tmp_path / "lecture.m4a", seconds=25)
    out_dir = tmp_path / "out"

    result = cli(
        "convert", str(source), "--split", "10", "--loudness", "-16", "--wait", "-o", str(out_dir)
    )  # fmt: skip

    assert result.code == 0, result.err
    job = job_of(system, logged_in, result)
    saved, loudness, listed, header, *rows = result.out.splitlines()
    assert saved == f"lecture.m4a: saved {out_dir / 'lecture.mp3'}"
    assert loudness == f"lecture.m4a: loudness {loudness_text(job['loudness'])}"
    assert job["loudness"]["target"] == -16
    assert abs(job["loudness"]["output_i"] + 16) <= 1.0
    assert listed == (
        f"lecture.m4a: 3 tracks, saved by: video2mp3 download {job['job_id']} --tracks"
    )
    assert header.split() == ["#", "TITLE", "START", "LENGTH", "SIZE", "FILE"]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert abs(probe_duration(out_dir / "lecture.mp3") - 25) <= 0.2

    status = cli("status", job["job_id"])

    assert status.code == 0, status.err
    fields, table = status.out.split("\n\n")
    assert f"\nloudness:  {loudness_text(job['loudness'])}\n" in fields
    assert f"\ntracks:    3: video2mp3 download {job['job_id']} --tracks" in fields
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["1", "2", "3"]
    assert [tuple(row[2:4]) for row in track_rows(job["tracks"])] == [
        ("0:00", "0:10"),
        ("0:10", "0:10"),
        ("0:20", "0:05"),
    ]

    tracks_dir = tmp_path / "tracks"
    downloaded = cli("download", job["job_id"], "--tracks", "-o", str(tracks_dir))

    assert downloaded.code == 0, downloaded.err
    names = [track["filename"] for track in job["tracks"]]
    assert len(set(names)) == 3
    assert downloaded.out.splitlines() == [f"saved {tracks_dir / name}" for name in names]
    assert sorted(path.name for path in tracks_dir.iterdir()) == sorted(names)
    durations = [probe_duration(tracks_dir / name) for name in names]
    assert durations == pytest.approx([10, 10, 5], abs=0.2)
