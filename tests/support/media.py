"""Media files for tests, made and inspected with the real ffmpeg that imageio-ffmpeg ships.

Clips come from ffmpeg's lavfi sources (``testsrc`` pictures, a ``sine``
tone), so they are small, quick to make and need no fixtures on disk. The
inspectors read files back the way a user's player would: by decoding them.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import imageio_ffmpeg
import pytest

# The codecs a container usually carries, for make_video's "auto".
_AUDIO_CODECS = {
    ".mp4": "aac",
    ".m4a": "aac",
    ".mov": "aac",
    ".mkv": "libvorbis",
    ".webm": "libopus",
    ".ogg": "libvorbis",
    ".avi": "libmp3lame",
    ".wav": "pcm_s16le",
    ".mp3": "libmp3lame",
    ".flac": "flac",
}
_VIDEO_CODECS = {".webm": "libvpx", ".avi": "mpeg4"}
# Fastest settings per video encoder: tests need a picture, not a good one.
_VIDEO_SPEED = {
    "libx264": ["-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "libvpx": ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
    "mpeg4": ["-q:v", "10"],
}
_MP4_LIKE = {".mp4", ".m4a", ".mov"}
_PIPE_MUXERS = {".webm": "webm", ".mkv": "matroska", ".ts": "mpegts"}


def ffmpeg_exe() -> str:
    """Return the ffmpeg binary the tests and the converter share."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_children() -> list[int]:
    """Return the pids of ffmpeg processes this process started, zombies included."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        name = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        if parent == os.getpid() and name.startswith("ffmpeg"):
            pids.append(int(stat.parent.name))
    return pids


def run_ffmpeg(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg with ``args``; fail the test with ffmpeg's words if it fails."""
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", *map(str, args)]
    completed = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        pytest.fail(
            f"ffmpeg {' '.join(map(str, args))} exited {completed.returncode}:\n"
            + completed.stderr.decode(errors="replace"),
            pytrace=False,
        )
    return completed


def make_video(
    path: str | Path,
    *,
    seconds: float = 3.0,
    video: bool = True,
    audio_codec: str | None = "auto",
    video_codec: str = "auto",
    container: str | None = None,
    size: str = "320x240",
    rate: int = 25,
    sample_rate: int = 44100,
    channels: int = 2,
    frequency: int = 440,
    faststart: bool = False,
    seekable: bool = True,
    subtitles: bool = False,
) -> Path:
    """Write a clip of a test picture and a sine tone; return its path.

    The container follows ``path``'s extension unless ``container`` names an
    ffmpeg muxer. ``audio_codec=None`` leaves the audio track out,
    ``video=False`` the picture; "auto" picks the container's usual codec.
    ``faststart`` puts an MP4/MOV's index (moov) before the media data (mdat)
    instead of after it, as ffmpeg does by default. ``seekable=False`` makes
    ffmpeg write to a pipe, as a live recorder does, so a WebM/MKV carries no
    duration and no index. ``subtitles`` adds a subtitle track.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not video and audio_codec is None:
        raise ValueError("a clip needs a picture or a sound")
    inputs: list[str] = []
    encode: list[str] = []
    if video:
        codec = _VIDEO_CODECS.get(suffix, "libx264") if video_codec == "auto" else video_codec
        picture = f"testsrc=size={size}:rate={rate}:duration={seconds}"
        encode += ["-map", "0:v", "-c:v", codec, *_VIDEO_SPEED.get(codec, [])]
        inputs += ["-f", "lavfi", "-i", picture]
    if audio_codec is not None:
        codec = _AUDIO_CODECS[suffix] if audio_codec == "auto" else audio_codec
        tone = f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={seconds}"
        encode += ["-map", f"{inputs.count('-i')}:a", "-c:a", codec, "-ac", str(channels)]
        inputs += ["-f", "lavfi", "-i", tone]
    if subtitles:
        srt = path.with_name(f"{path.stem}-subtitles.srt")
        srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
        codec = "mov_text" if suffix in _MP4_LIKE else "srt"
        encode += ["-map", f"{inputs.count('-i')}:s", "-c:s", codec]
        inputs += ["-i", str(srt)]
    if faststart:
        if suffix not in _MP4_LIKE:
            raise ValueError(f"faststart applies to MP4/MOV files, not {suffix}")
        encode += ["-movflags", "+faststart"]
    muxer = container or _PIPE_MUXERS.get(suffix)
    if seekable:
        output = [*(["-f", container] if container else []), str(path)]
    elif muxer is None:
        raise ValueError(f"say which container to stream {suffix} files in")
    else:
        output = ["-f", muxer, "pipe:1"]
    # -t would let the muxer write the duration up front even into a pipe;
    # the lavfi sources already end on time, so only a seekable file gets it.
    limit = ["-t", str(seconds)] if seekable else []
    made = run_ffmpeg("-loglevel", "error", "-y", *inputs, *encode, *limit, *output)
    if not seekable:
        path.write_bytes(made.stdout)
    return path


def make_audio(
    path: str | Path, *, seconds: float = 3.0, codec: str = "auto", **kwargs: Any
) -> Path:
    """Write a sine tone with no picture; return its path."""
    return make_video(path, seconds=seconds, video=False, audio_codec=codec, **kwargs)


def make_scenes(
    path: str | Path, scenes: list[tuple[str, float]], *, size: str = "320x240", rate: int = 25
) -> Path:
    """Write an MP4 of consecutive scenes over a sine tone; return its path.

    Each scene is a colour ("black", "red") or "testsrc", and its seconds. The
    picture has a keyframe each second, as phones and streaming sites write them.
    """
    inputs: list[str] = []
    for source, seconds in scenes:
        picture = "testsrc=" if source == "testsrc" else f"color=c={source}:"
        inputs += ["-f", "lavfi", "-i", f"{picture}size={size}:rate={rate}:duration={seconds}"]
    total = sum(seconds for _, seconds in scenes)
    inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={total}"]
    joined = "".join(f"[{index}:v]" for index in range(len(scenes)))
    run_ffmpeg(
        *("-loglevel", "error", "-y", *inputs),
        *("-filter_complex", f"{joined}concat=n={len(scenes)}:v=1:a=0[v]", "-map", "[v]"),
        *("-map", f"{len(scenes)}:a", "-c:v", "libx264", *_VIDEO_SPEED["libx264"]),
        *("-g", str(rate), "-c:a", "aac", "-t", str(total), path),
    )
    return Path(path)


def add_cover_art(path: str | Path, dst: str | Path, *, colour: str) -> Path:
    """Copy an audio file to ``dst`` with a plain picture of ``colour`` as its cover art."""
    run_ffmpeg(
        *("-loglevel", "error", "-y", "-i", path, "-f", "lavfi"),
        # One frame: "-frames:v 1" would end the sound with it.
        *("-i", f"color=c={colour}:size=300x300:rate=1:duration=1", "-map", "0:a", "-map", "1:v"),
        *("-c:a", "copy", "-c:v", "mjpeg"),
        *("-disposition:v", "attached_pic", dst),
    )
    return Path(dst)


def mean_colour(path: str | Path) -> tuple[int, int, int]:
    """Return the mean RGB of a file's first picture: an image, a frame, or its cover art."""
    completed = run_ffmpeg(
        *("-loglevel", "error", "-i", path, "-map", "0:v:0", "-frames:v", "1"),
        *("-vf", "scale=1:1:flags=area", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"),
    )
    red, green, blue = completed.stdout[:3]
    return red, green, blue


def picture_size(path: str | Path) -> tuple[int, int]:
    """Return the width and height of a file's first picture, as ffmpeg reads them."""
    match = re.search(r"Stream #0:\d+\S*: Video: .*?, (\d+)x(\d+)", describe(path))
    if match is None:
        pytest.fail(f"{path} has no picture:\n{describe(path)}", pytrace=False)
    return int(match.group(1)), int(match.group(2))


def video_with_chapters(path: Path, chapters: list[tuple[str, float, float]]) -> Path:
    """Write a clip as long as ``chapters`` (title, start, end in seconds) that has them."""
    plain = make_video(path.with_name(f"plain-{path.name}"), seconds=chapters[-1][2])
    metadata = path.with_name(f"{path.stem}-chapters.txt")
    lines = [";FFMETADATA1"]
    for title, start, end in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={start * 1000}", f"END={end * 1000}"]
        lines.append(f"title={title}")
    metadata.write_text("\n".join(lines) + "\n")
    run_ffmpeg(
        "-loglevel", "error", "-y", "-i", plain, "-i", metadata,
        "-map", "0", "-map_chapters", "1", "-c", "copy", path,
    )  # fmt: skip
    return path


def truncate(src: str | Path, dst: str | Path, *, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst``, as a cut-off upload would."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def mp4_boxes(path: str | Path) -> list[str]:
    """Return the types of an MP4/MOV file's top-level boxes, in file order."""
    boxes = []
    with open(path, "rb") as file:
        while header := file.read(8):
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            header_size = 8
            if size == 1:
                (size,) = struct.unpack(">Q", file.read(8))
                header_size = 16
            boxes.append(kind.decode("latin-1"))
            if size == 0:
                break
            file.seek(size - header_size, 1)
    return boxes


def describe(path: str | Path) -> str:
    """Return what ``ffmpeg -i`` says about a file (its container and streams)."""
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)]
    completed = subprocess.run(command, capture_output=True, timeout=30, check=False)
    return completed.stderr.decode(errors="replace")


def audio_stream(path: str | Path) -> str:
    """Return ffmpeg's line for the file's first audio stream, e.g. "mp3, 44100 Hz, stereo"."""
    match = re.search(r"Stream #0:\d+\S*: Audio: (.*)", describe(path))
    if match is None:
        pytest.fail(f"{path} has no audio stream:\n{describe(path)}", pytrace=False)
    return match.group(1)


def probe_duration(path: str | Path, *, stream: str | None = "a:0") -> float:
    """Return the seconds of media in a file, found by decoding it all.

    ``stream`` picks what to decode (the first audio stream by default);
    None decodes every stream.
    """
    mapping = ["-map", f"0:{stream}"] if stream else []
    completed = run_ffmpeg("-i", path, *mapping, "-f", "null", "-")
    times = re.findall(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)", completed.stderr.decode())
    if not times:
        pytest.fail(f"ffmpeg decoded no time from {path}", pytrace=False)
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def read_tags(path: str | Path, *, stream: str | None = None) -> dict[str, str]:
    """Return a file's global metadata tags (ID3 for an MP3), as ffmpeg reads them.

    ``stream`` (e.g. "a:0") reads that stream's tags instead: ffmpeg shows an Ogg
    file's Vorbis comments as its audio stream's.
    """
    source = ["-map_metadata", f"0:s:{stream}"] if stream else []
    completed = run_ffmpeg("-loglevel", "error", "-i", path, *source, "-f", "ffmetadata", "-")
    tags = {}
    for line in completed.stdout.decode().splitlines():
        if not line or line.startswith((";", "[")):
            continue
        key, value = _split_metadata_line(line)
        tags[key.lower()] = value
    return tags


def _split_metadata_line(line: str) -> tuple[str, str]:
    """Split an ffmetadata ``key=value`` line, undoing its backslash escapes."""
    key: str | None = None
    current: list[str] = []
    escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(char)
    return (key or ""), "".join(current)


def audio_packet_hashes(path: str | Path) -> list[str]:
    """Return an MD5 per packet of the first audio stream, copied out without decoding."""
    completed = run_ffmpeg(
        "-loglevel", "error", "-i", path, "-map", "0:a:0", "-c", "copy", "-f", "framemd5", "-"
    )
    hashes = []
    for line in completed.stdout.decode().splitlines():
        if line and not line.startswith("#"):
            hashes.append(line.split(",")[5].strip())
    return hashes


class Loudness(NamedTuple):
    """A file's EBU R128 integrated loudness (LUFS) and true peak (dBTP)."""

    integrated: float
    true_peak: float


def loudness_of(path: str | Path) -> Loudness:
    """Measure a file's loudness with ffmpeg's ebur128 filter, as a loudness meter would."""
    meter = ["-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"]
    completed = run_ffmpeg("-nostats", "-i", path, "-map", "0:a:0", *meter)
    summary = completed.stderr.decode(errors="replace").rpartition("Summary:")[2]
    integrated = re.search(r"^\s+I:\s+(\S+) LUFS$", summary, re.MULTILINE)
    peak = re.search(r"^\s+Peak:\s+(\S+) dBFS$", summary, re.MULTILINE)
    if not summary or integrated is None or peak is None:
        pytest.fail(f"ebur128 measured nothing in {path}:\n{summary}", pytrace=False)
    return Loudness(float(integrated.group(1)), float(peak.group(1)))
