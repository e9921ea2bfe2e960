"""Cover art taken from the video with the real ffmpeg, embedded with mutagen, read back by both."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggopus import OggOpus

from common.errors import PermanentError, TransientError
from common.options import FORMATS, Options
from converter import cover as cover_module
from converter.cover import MAX_COVER_BYTES, NO_PICTURE, embed_cover, take_cover
from converter.transcode import probe, transcode
from tests.support.media import (
    add_cover_art,
    describe,
    make_audio,
    make_scenes,
    make_video,
    mean_colour,
    mp4_boxes,
    picture_size,
    probe_duration,
    read_tags,
    run_ffmpeg,
)

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 128, 0)
TAGS = {"title": "Live in Rome", "artist": "The Band"}


def cover_of(video: Path, workdir: Path, **options) -> bytes:
    info = probe(video, require_audio=False)
    return take_cover(video, info, Options.from_dict({"cover": "frame", **options}), workdir)


def saved(jpeg: bytes, path: Path) -> Path:
    path.write_bytes(jpeg)
    return path


def near(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    """Tell whether a decoded colour is ``expected`` give or take JPEG's rounding."""
    return all(abs(got - want) <= 24 for got, want in zip(colour, expected, strict=True))


def test_the_automatic_pick_passes_over_the_black_opening(tmp_path):
    # Candidates at 10, 25 and 50 % are black; the one at 75 % is the test pattern.
    video = make_scenes(tmp_path / "film.mp4", [("black", 6), ("testsrc", 4)])

    jpeg = cover_of(video, tmp_path)

    assert jpeg.startswith(b"\xff\xd8")
    picture = saved(jpeg, tmp_path / "cover.jpg")
    assert picture_size(picture) == (320, 240)
    assert sum(mean_colour(picture)) > 3 * 60, mean_colour(picture)


def test_when_no_candidate_is_a_scene_a_colour_beats_black(tmp_path):
    # Black, then one plain red second: every candidate is dark or uniform.
    video = make_scenes(tmp_path / "fade.mp4", [("black", 3), ("red", 1)])

    assert near(mean_colour(saved(cover_of(video, tmp_path), tmp_path / "c.jpg")), RED)


def test_an_all_black_video_still_gets_its_best_frame(tmp_path):
    video = make_scenes(tmp_path / "night.mp4", [("black", 3)])

    assert near(mean_colour(saved(cover_of(video, tmp_path), tmp_path / "c.jpg")), (0, 0, 0))


def test_the_automatic_pick_looks_inside_the_trimmed_part(tmp_path):
    video = make_scenes(tmp_path / "two.mp4", [("red", 4), ("blue", 4)])

    jpeg = cover_of(video, tmp_path, start="4.5", end="8")

    assert near(mean_colour(saved(jpeg, tmp_path / "c.jpg")), BLUE)


@pytest.mark.parametrize(
    ("options", "colour"),
    [
        ({"cover_at": "1"}, RED),
        ({"cover_at": "3"}, BLUE),
        ({"cover_at": "0:03.5"}, BLUE),
        # cover_at is a time in the video, not in the trimmed output.
        ({"cover_at": "1", "start": "2.5", "end": "4"}, RED),
    ],
)
def test_cover_at_takes_the_frame_shown_then(tmp_path, options, colour):
    video = make_scenes(tmp_path / "rb.mp4", [("red", 2), ("blue", 2)])

    jpeg = cover_of(video, tmp_path, **options)

    assert near(mean_colour(saved(jpeg, tmp_path / "c.jpg")), colour)


def test_cover_at_past_the_end_is_refused_with_the_times(tmp_path):
    video = make_scenes(tmp_path / "rb.mp4", [("red", 2), ("blue", 2)])

    with pytest.raises(PermanentError, match=r"cover time \(9 s\) is past the end of the 4.0 s"):
        cover_of(video, tmp_path, cover_at="9")


@pytest.mark.parametrize(
    ("size", "filters", "expected"),
    [
        ("4000x3000", (), (1000, 750)),
        ("1200x2000", (), (600, 1000)),
        ("320x240", (), (320, 240)),
        # Anamorphic: stored 360x300, shown twice as wide.
        ("360x300", ("-vf", "setsar=2"), (720, 300)),
    ],
    ids=["4000x3000", "portrait", "never-upscaled", "anamorphic"],
)
def test_the_longest_side_is_at_most_1000_pixels_in_the_shown_aspect(
    tmp_path, size, filters, expected
):
    video = tmp_path / "big.mkv"
    run_ffmpeg(
        *("-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=5:duration=1"),
        *("-f", "lavfi", "-i", "sine=duration=1", *filters, "-c:v", "libx264", "-preset"),
        *("ultrafast", "-pix_fmt", "yuv420p", "-c:a", "libvorbis", video),
    )

    jpeg = cover_of(video, tmp_path)

    assert picture_size(saved(jpeg, tmp_path / "c.jpg")) == expected
    assert len(jpeg) <= MAX_COVER_BYTES


def test_a_cover_too_large_is_made_again_smaller(tmp_path, monkeypatch):
    video = make_video(tmp_path / "clip.mp4", seconds=1, size="640x480")
    full = cover_of(video, tmp_path)
    monkeypatch.setattr(cover_module, "MAX_COVER_BYTES", len(full) - 1)

    smaller = cover_of(video, tmp_path)

    assert len(smaller) < len(full)
    assert picture_size(saved(smaller, tmp_path / "c.jpg")) == (640, 480)


def test_a_cover_too_large_at_any_quality_is_refused(tmp_path, monkeypatch):
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    monkeypatch.setattr(cover_module, "MAX_COVER_BYTES", 100)

    with pytest.raises(PermanentError, match=r"could not take a cover .* over the 0.0 MB limit"):
        cover_of(video, tmp_path)


@pytest.mark.parametrize("name", ["song.m4a", "song.mp3", "song.ogg"])
def test_a_file_without_a_picture_is_refused_with_a_reason_a_user_reads(tmp_path, name):
    audio = make_audio(tmp_path / name, seconds=2)

    with pytest.raises(PermanentError) as raised:
        cover_of(audio, tmp_path)

    assert str(raised.value) == NO_PICTURE
    assert "upload the whole video" in str(raised.value)


@pytest.mark.parametrize("options", [{}, {"cover_at": "1"}], ids=["automatic", "cover_at"])
@pytest.mark.parametrize("name", ["song.mp3", "song.m4a"])
def test_the_cover_art_of_a_song_is_its_picture(tmp_path, name, options):
    song = add_cover_art(
        make_audio(tmp_path / f"plain-{name}", seconds=3), tmp_path / name, colour="green"
    )

    jpeg = cover_of(song, tmp_path, **options)

    assert near(mean_colour(saved(jpeg, tmp_path / "c.jpg")), GREEN)


def test_a_video_that_makes_ffmpeg_decode_past_its_budget_is_refused(tmp_path, monkeypatch):
    # 2000 frames of 720p after a single keyframe: the exact seek to the last one decodes
    # them all, about 2.7 s of CPU here. The budget shrinks from 20 s to 1 s, which
    # the same file's first frame stays well within.
    video = tmp_path / "long-gop.mp4"
    run_ffmpeg(
        *("-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=50:duration=40"),
        *("-f", "lavfi", "-i", "sine=duration=40", "-c:v", "libx264", "-preset", "ultrafast"),
        *("-g", "2000", "-pix_fmt", "yuv420p", "-c:a", "aac", video),
        timeout=300,
    )
    limits = dataclasses.replace(cover_module.COVER_LIMITS, cpu_seconds=1)
    monkeypatch.setattr(cover_module, "COVER_LIMITS", limits)
    assert cover_of(video, tmp_path, cover_at="0.1").startswith(b"\xff\xd8")

    with pytest.raises(PermanentError, match=r"could not take a cover .* 1 s of processor time"):
        cover_of(video, tmp_path, cover_at="39.9")


@pytest.fixture(scope="module")
def red_cover(tmp_path_factory) -> bytes:
    workdir = tmp_path_factory.mktemp("cover")
    video = make_scenes(workdir / "red.mp4", [("red", 2)], size="640x360")
    return cover_of(video, workdir)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("source") / "holiday.mp4", seconds=2)


def converted(source: Path, tmp_path: Path, output: str) -> Path:
    path = tmp_path / f"holiday.{output}"
    transcode(source, path, Options(format=output, **TAGS))
    return path


def front_covers(path: Path, output: str) -> list[tuple[int, str, bytes]]:
    """Return (picture type, MIME type, data) of each picture mutagen finds in the file."""
    if output == "mp3":
        return [(p.type, p.mime, p.data) for p in ID3(path).getall("APIC")]
    if output == "m4a":
        covers = MP4(path).tags["covr"]
        assert all(c.imageformat == MP4Cover.FORMAT_JPEG for c in covers)
        return [(3, "image/jpeg", bytes(c)) for c in covers]
    if output == "flac":
        return [(p.type, p.mime, p.data) for p in FLAC(path).pictures]
    blocks = OggOpus(path).get("metadata_block_picture", [])
    pictures = [Picture(base64.b64decode(block)) for block in blocks]
    return [(p.type, p.mime, p.data) for p in pictures]


# Where ffmpeg reads each file's tags: an Ogg file's Vorbis comments are its stream's.
TAG_STREAMS = {"mp3": None, "m4a": None, "flac": None, "opus": "a:0"}


@pytest.mark.parametrize("output", list(TAG_STREAMS))
def test_the_cover_is_embedded_as_the_front_cover_and_the_tags_stay(
    tmp_path, red_cover, source, output
):
    path = converted(source, tmp_path, output)
    duration = probe_duration(path)

    embed_cover(path, FORMATS[output], red_cover)

    assert front_covers(path, output) == [(3, "image/jpeg", red_cover)]
    # ffmpeg, as a player would, shows the cover as a picture stream of the file.
    text = describe(path)
    assert re.search(r"Video: mjpeg.*\(attached pic\)", text), text
    assert near(mean_colour(path), RED)
    assert picture_size(path) == (640, 360)
    tags = read_tags(path, stream=TAG_STREAMS[output])
    assert {key: tags.get(key) for key in TAGS} == TAGS
    assert probe_duration(path) == pytest.approx(duration, abs=0.05)


def test_an_mp3_keeps_its_id3v2_3_tag(tmp_path, red_cover, source):
    path = converted(source, tmp_path, "mp3")

    embed_cover(path, FORMATS["mp3"], red_cover)

    assert ID3(path).version == (2, 3, 0)


def test_an_m4a_keeps_its_index_first(tmp_path, red_cover, source):
    path = converted(source, tmp_path, "m4a")

    embed_cover(path, FORMATS["m4a"], red_cover)

    boxes = mp4_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")


def test_embedding_again_replaces_the_cover(tmp_path, red_cover, source):
    path = converted(source, tmp_path, "flac")
    embed_cover(path, FORMATS["flac"], red_cover)
    green = cover_of(
        add_cover_art(make_audio(tmp_path / "a.mp3"), tmp_path / "g.mp3", colour="green"), tmp_path
    )

    embed_cover(path, FORMATS["flac"], green)

    assert front_covers(path, "flac") == [(3, "image/jpeg", green)]


def test_wav_has_no_place_for_a_cover(tmp_path, red_cover, source):
    path = converted(source, tmp_path, "wav")

    with pytest.raises(ValueError, match="WAV files have no place for cover art"):
        embed_cover(path, FORMATS["wav"], red_cover)


def test_bytes_that_are_not_a_jpeg_are_refused(tmp_path, source):
    path = converted(source, tmp_path, "mp3")

    with pytest.raises(ValueError, match="not a JPEG"):
        embed_cover(path, FORMATS["mp3"], b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_a_file_mutagen_cannot_read_is_the_machines_fault(tmp_path, red_cover):
    path = tmp_path / "broken.flac"
    path.write_bytes(b"not a flac file" * 10)

    with pytest.raises(TransientError, match="could not write the cover into the FLAC"):
        embed_cover(path, FORMATS["flac"], red_cover)
