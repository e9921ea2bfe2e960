"""Tracks: where a split puts them (pure), and cutting them out of each format by real ffmpeg."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from common.errors import PermanentError
from common.options import FORMATS, Options
from converter.tracks import (
    MAX_TRACKS,
    NO_CHAPTERS,
    Track,
    TrackPlan,
    clean_title,
    cut_tracks,
    plan_tracks,
    track_filename,
)
from converter.transcode import Chapter, MediaInfo, probe, transcode
from tests.support.media import (
    audio_packet_hashes,
    describe,
    make_audio,
    make_video,
    probe_duration,
    read_tags,
    run_ffmpeg,
    video_with_chapters,
)


def info(duration: float | None = 30.0, chapters: tuple[Chapter, ...] = ()) -> MediaInfo:
    return MediaInfo(
        container="mov", duration=duration, has_video=True, has_audio=True, chapters=chapters
    )


def spans(plans: list[TrackPlan]) -> list[tuple]:
    return [(plan.number, plan.title, plan.start, plan.end) for plan in plans]


THREE = (Chapter(0, 10, "Intro"), Chapter(10, 20, "Middle"), Chapter(20, 30, "Outro"))


def test_no_split_plans_no_tracks():
    assert plan_tracks(info(chapters=THREE), Options()) == []


def test_chapters_become_numbered_titled_tracks_the_last_running_to_the_end():
    plans = plan_tracks(info(chapters=THREE), Options(split="chapters"))

    assert spans(plans) == [(1, "Intro", 0, 10), (2, "Middle", 10, 20), (3, "Outro", 20, None)]


def test_chapters_are_sorted_and_untitled_ones_named_by_their_number():
    shuffled = (Chapter(20, 30, None), Chapter(0, 10, "  "), Chapter(10, 20, "Middle"))

    plans = plan_tracks(info(chapters=shuffled), Options(split="chapters"))

    assert spans(plans) == [
        (1, "Chapter 1", 0, 10),
        (2, "Middle", 10, 20),
        (3, "Chapter 3", 20, None),
    ]


def test_a_trim_drops_the_chapters_outside_it_and_clips_those_it_cuts():
    # The output is 5..25 s of the source: Intro loses 5 s, Outro 5 s, in output times.
    plans = plan_tracks(info(chapters=THREE), Options(split="chapters", start=5, end=25))
    assert spans(plans) == [(1, "Intro", 0, 5), (2, "Middle", 5, 15), (3, "Outro", 15, None)]

    plans = plan_tracks(info(chapters=THREE), Options(split="chapters", start=12, end=18))
    assert spans(plans) == [(1, "Middle", 0, None)]


@pytest.mark.parametrize(
    ("chapters", "expected"),
    [
        # An overlap: the later chapter starts where the earlier ends.
        (
            (Chapter(0, 12, "A"), Chapter(10, 20, "B"), Chapter(20, 30, "C")),
            [(1, "A", 0, 12), (2, "B", 12, 20), (3, "C", 20, None)],
        ),
        # A chapter inside another adds nothing; zero-length and backwards ones are dropped.
        (
            (Chapter(0, 20, "A"), Chapter(5, 8, "nested"), Chapter(20, 20, "empty"),
             Chapter(25, 22, "backwards"), Chapter(20, 30, "C")),
            [(1, "A", 0, 20), (2, "C", 20, None)],
        ),
        # Negative starts begin at 0; a sliver joins the chapter before it.
        (
            (Chapter(-3, 10, "A"), Chapter(10, 10.4, "sliver"), Chapter(10.4, 30, "C")),
            [(1, "A", 0, 10.4), (2, "C", 10.4, None)],
        ),
        # A first chapter shorter than a second joins the next, titled by it.
        (
            (Chapter(0, 0.5, "blip"), Chapter(0.5, 30, "Main")),
            [(1, "Main", 0, None)],
        ),
    ],
)  # fmt: skip
def test_overlapping_empty_and_tiny_chapters_are_made_sane(chapters, expected):
    assert spans(plan_tracks(info(chapters=chapters), Options(split="chapters"))) == expected


def test_titles_lose_control_characters_and_are_bounded():
    hostile = "Intro\x00\x1b[31m\n\tPart\u202e" + "x" * 500
    plans = plan_tracks(info(chapters=(Chapter(0, 30, hostile),)), Options(split="chapters"))

    title = plans[0].title
    assert title.startswith("Intro [31m Part")
    assert len(title) == 200
    assert not any(ord(char) < 32 or char == "\u202e" for char in title)
    assert clean_title("\x00\x01") == ""


def test_a_source_without_chapters_fails_with_a_reason():
    with pytest.raises(
        PermanentError, match=r"^the video has no chapters; choose split by seconds"
    ):
        plan_tracks(info(), Options(split="chapters"))
    assert NO_CHAPTERS.startswith("the video has no chapters")


def test_chapters_all_outside_the_trim_fail_with_a_reason():
    with pytest.raises(PermanentError, match="none of the video's chapters lies within the trim"):
        plan_tracks(info(chapters=(Chapter(0, 5, "A"),)), Options(split="chapters", start=10))


def test_seconds_make_consecutive_parts_the_last_shorter():
    plans = plan_tracks(info(duration=25.0), Options(split=10))

    assert spans(plans) == [(1, "Part 1", 0, 10), (2, "Part 2", 10, 20), (3, "Part 3", 20, None)]


@pytest.mark.parametrize(
    ("duration", "count"), [(20.5, 2), (21.0, 3), (30.0, 3), (5.0, 1), (0.4, 1)]
)
def test_a_tail_under_a_second_joins_the_part_before(duration, count):
    plans = plan_tracks(info(duration=duration), Options(split=10))

    assert len(plans) == count
    assert plans[-1].end is None
    assert plans[-1].start == (count - 1) * 10


def test_seconds_split_the_trimmed_output_and_its_measured_length_wins():
    options = Options(split=10, start=5, end=30)
    assert len(plan_tracks(info(duration=60.0), options)) == 3  # 25 s: 10, 10, 5

    assert len(plan_tracks(info(duration=60.0), options, output_duration=19.0)) == 2


def test_seconds_of_an_unknown_length_are_planned_once_the_output_is_made():
    assert plan_tracks(info(duration=None), Options(split=10)) == []

    assert len(plan_tracks(info(duration=None), Options(split=10), output_duration=35.0)) == 4


def test_more_tracks_than_the_limit_fail_before_anything_is_cut():
    hours = 6 * 3600.0
    with pytest.raises(PermanentError, match=r"^splitting gives 2160 tracks, more than 500; "):
        plan_tracks(info(duration=hours), Options(split=10))
    chapters = tuple(Chapter(n * 2.0, n * 2.0 + 2, None) for n in range(MAX_TRACKS + 1))
    with pytest.raises(PermanentError, match="gives 501 tracks"):
        plan_tracks(info(duration=2000.0, chapters=chapters), Options(split="chapters"))
    assert len(plan_tracks(info(duration=5000.0), Options(split=10))) == MAX_TRACKS


def test_track_file_names_are_numbered_and_safe():
    track = Track(Path("x"), number=3, title='a/b\\c:d*"e"<f>|?', start=0, duration=1, size=1)

    name = track_filename("My video.mp4", track, 12, FORMATS["flac"])

    assert name == "My video - 03 - a_b_c_d_e_f_.flac"
    long = Track(Path("x"), number=7, title="t" * 300, start=0, duration=1, size=1)
    assert len(track_filename("v.mp4", long, 120, FORMATS["mp3"])) == 200
    assert track_filename("v.mp4", long, 120, FORMATS["mp3"]).startswith("v - 007 - ttt")
    assert track_filename(None, track, 2, FORMATS["mp3"]).startswith("audio - 03 - ")


# Each format's own tag layout, as tests/e2e/test_formats.py reads them.
TAG_STREAM = {"mp3": None, "m4a": None, "opus": "a:0", "flac": None, "wav": None}
SOURCE_SECONDS = 25.0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audio(tmp_path_factory.mktemp("tracks") / "source.wav", seconds=SOURCE_SECONDS)


@pytest.mark.parametrize("output", list(FORMATS))
def test_each_format_is_cut_into_tagged_tracks_of_the_planned_lengths(source, tmp_path, output):
    options = Options(format=output, title="Whole", artist="The Band", split=10)
    made = tmp_path / f"whole.{output}"
    result = transcode(source, made, options)
    plans = plan_tracks(probe(source), options, output_duration=result.duration)

    started = time.monotonic()
    tracks = cut_tracks(made, plans, FORMATS[output], options, tmp_path)
    elapsed = time.monotonic() - started

    assert [track.number for track in tracks] == [1, 2, 3]
    assert [track.start for track in tracks] == [0, 10, 20]
    for track, expected in zip(tracks, (10.0, 10.0, 5.0), strict=True):
        assert track.size == track.path.stat().st_size > 0
        # Copies cut on packets (at most one of 20-26 ms more); FLAC to the sample.
        assert abs(track.duration - expected) < 0.1, track
        assert abs(probe_duration(track.path) - expected) < 0.1
        # The header says the track's own length, not the whole output's.
        assert abs(probe(track.path).duration - expected) < 0.1
        tags = read_tags(track.path, stream=TAG_STREAM[output])
        assert tags.get("title") == f"Part {track.number}"
        assert tags.get("track") == f"{track.number}/3"
        assert tags.get("album") == "Whole"  # no album: the output's title
        assert tags.get("artist") == "The Band"
    print(f"{output}: {elapsed / len(tracks) * 1000:.0f} ms per track")


def test_copied_tracks_hold_the_outputs_packets_with_no_gap(source, tmp_path):
    options = Options(format="m4a", split=10)
    made = tmp_path / "whole.m4a"
    transcode(source, made, options)
    plans = plan_tracks(probe(made), Options(split=10))

    tracks = cut_tracks(made, plans, FORMATS["m4a"], options, tmp_path)

    whole = audio_packet_hashes(made)
    pieces = [audio_packet_hashes(track.path) for track in tracks]
    # Each track is a run of the whole's packets, starting where the one before ends
    # or at most one packet before it.
    position = 0
    for piece in pieces:
        start = next(i for i in range(max(0, position - 1), position + 1) if whole[i] == piece[0])
        assert whole[start : start + len(piece)] == piece
        position = start + len(piece)
    assert position == len(whole)


def test_the_album_option_wins_and_a_cover_is_kept(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=12)
    cover = tmp_path / "cover.png"
    run_ffmpeg(
        "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", cover
    )
    made = tmp_path / "whole.mp3"
    transcode(video, tmp_path / "plain.mp3", Options(title="T"))
    run_ffmpeg(
        "-loglevel", "error", "-i", tmp_path / "plain.mp3", "-i", cover, "-map", "0", "-map", "1",
        "-c", "copy", "-disposition:v", "attached_pic", made,
    )  # fmt: skip
    options = Options(album="The Album", split=10)

    tracks = cut_tracks(made, plan_tracks(probe(made), options), FORMATS["mp3"], options, tmp_path)

    assert [read_tags(track.path)["album"] for track in tracks] == ["The Album"] * 2
    assert all("(attached pic)" in describe(track.path) for track in tracks)


def test_a_track_that_cannot_be_cut_fails_with_ffmpegs_reason(tmp_path):
    broken = tmp_path / "whole.mp3"
    broken.write_bytes(b"\x00" * 10_000)
    plans = [TrackPlan(1, "A", 0, 5), TrackPlan(2, "B", 5, None)]

    with pytest.raises(PermanentError):
        cut_tracks(broken, plans, FORMATS["mp3"], Options(split=5), tmp_path)


def test_chapter_tracks_carry_no_chapter_marks_of_the_whole(tmp_path):
    video = video_with_chapters(tmp_path / "talk.mp4", [("One", 0, 3), ("Two", 3, 6)])
    options = Options(split="chapters")
    made = tmp_path / "whole.mp3"
    transcode(video, made, options)
    assert "Chapter #0:1" in describe(made)  # the whole output keeps them

    tracks = cut_tracks(made, plan_tracks(probe(video), options), FORMATS["mp3"], options, tmp_path)

    assert [read_tags(track.path)["title"] for track in tracks] == ["One", "Two"]
    assert not any("Chapter #" in describe(track.path) for track in tracks)
